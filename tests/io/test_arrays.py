"""scan_from_arrays (ptyxr.io.arrays): the documented way in for data of any format."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import scipy.constants as const

from ptyxr import schema as s
from ptyxr.io import arrays, scan_from_arrays
from ptyxr.schema import SchemaError

N = 8


def test_scan_from_arrays_docstring_example():
    result = doctest.testmod(arrays, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4 and result.failed == 0


def test_scan_from_arrays_single_energy_and_units():
    rng = np.random.default_rng(0)
    frames = rng.random((6, N, N)).astype(np.float32)  # (scan, N, N): one energy
    py, px = rng.normal(size=6), rng.normal(size=6)
    raw = scan_from_arrays(frames, py, px, 5420.0, 1.5, 75e-6, positions_in="um")
    assert raw[s.INTENSITY].dims == (s.ENERGY, s.SCAN, s.DET_Y, s.DET_X) and raw.sizes[s.ENERGY] == 1
    np.testing.assert_allclose(raw[s.POSITION_Y][0], py * 1e-6)
    assert raw[s.ENERGY].dtype == np.float64 and raw[s.INTENSITY].dtype == np.float32
    assert s.check_attrs(raw) == []


def test_scan_from_arrays_pixels_use_each_energys_pixel_size():
    energies = np.array([5420.0, 5540.0])
    frames = np.ones((2, 3, N, N), np.float32)
    py = np.array([1.0, 2.0, 3.0])  # same pixel positions at both energies
    raw = scan_from_arrays(frames, py, py, energies, 1.5, 75e-6, positions_in="pixels")
    # independent: dx = hc/E · z / (N p)
    dx = const.h * const.c / (energies * const.e) * 1.5 / (N * 75e-6)
    np.testing.assert_allclose(raw[s.POSITION_X], py[None, :] * dx[:, None], rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"intensity": np.ones((2, 3, N, N + 1))}, "square"),
        ({"intensity": np.ones((3, N))}, "shape"),
        ({"energy": [5540.0, 5420.0]}, "increasing"),
        ({"energy": [5420.0, 5420.0]}, "increasing"),
        ({"energy": [5420.0]}, "energies"),
        ({"intensity": -np.ones((2, 3, N, N))}, "negative"),
        ({"intensity": np.full((2, 3, N, N), np.inf)}, "inf"),
        ({"intensity": np.full((2, 3, N, N), "x")}, "numeric"),
        ({"detector_distance": 0.0}, "positive"),
        ({"detector_pixel_size": "a"}, "number"),
        ({"position_y": np.zeros((2, 4))}, "shape"),
        ({"position_y": np.array([[0.0, np.nan, 0.0]] * 2)}, "NaN positions"),
        ({"detector_mask": np.ones((N, 3), bool)}, "detector_mask"),
        ({"probe_guess": np.ones((3, N, N))}, "probe_guess"),
        ({"positions_in": "inch"}, "positions_in"),
    ],
)
def test_scan_from_arrays_errors(kwargs, message):
    args = {
        "intensity": np.ones((2, 3, N, N)),
        "position_y": np.zeros(3),
        "position_x": np.zeros(3),
        "energy": [5420.0, 5540.0],
        "detector_distance": 1.5,
        "detector_pixel_size": 75e-6,
    }
    args.update(kwargs)
    with pytest.raises(SchemaError, match=message):
        scan_from_arrays(**args)
