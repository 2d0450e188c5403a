"""reconstruct's one validation path (ptyxr.reconstruct.validate) for numpy and dask intensities."""

from __future__ import annotations

import numpy as np
import pytest

from ptyxr.errors import SchemaError
from ptyxr.reconstruct.validate import validate_input
from ptyxr.schema import DETECTOR_MASK, INTENSITY, POSITION_X, POSITION_Y


@pytest.fixture(scope="module")
def raw(tiny):
    return tiny[0].isel(energy=slice(0, 4))


def _message(ds) -> str:
    with pytest.raises(SchemaError) as info:
        validate_input(ds, "reconstruct")
    return str(info.value)


def _emptied(raw, mask: bool):
    ds = raw.copy(deep=True)
    if mask:  # the frame's counts lie only under masked pixels: no valid pixel left
        n = ds.sizes["det_y"]
        valid = np.ones((n, n), bool)
        valid[: n // 2] = False
        ds[DETECTOR_MASK] = (("det_y", "det_x"), valid)
        ds[INTENSITY][2, 5, n // 2 :] = 0.0
    else:
        ds[INTENSITY][2, 5] = 0.0
    return ds


@pytest.mark.parametrize("mask", [False, True], ids=["zero counts", "masked out"])
def test_numpy_and_dask_intensities_take_the_same_path(raw, mask):
    """An empty frame at a scan point with a position: one message, whatever holds the data."""
    ds = _emptied(raw, mask)
    eager, lazy = _message(ds), _message(ds.chunk({"energy": 2}))
    assert eager == lazy
    assert "1 frame(s) with a position hold no valid pixel or zero counts (index [[2, 5]]" in eager
    # a scan point without a position may be empty (padding)
    ds[POSITION_Y][2, 5] = ds[POSITION_X][2, 5] = np.nan
    ds[INTENSITY][2, 5] = np.nan
    for data in (ds, ds.chunk({"energy": 2})):
        assert validate_input(data, "reconstruct") is data


def test_valid_input_passes_unchanged_and_dask_stays_lazy(raw):
    """Validation reduces a dask intensity blockwise (per-frame numbers) but returns it unloaded."""
    assert validate_input(raw, "reconstruct") is raw
    lazy = raw.chunk({"energy": 2})
    out = validate_input(lazy, "reconstruct")
    assert out is lazy and hasattr(out[INTENSITY].data, "dask")
