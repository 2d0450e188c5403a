"""The shared pieces of the vacuum model (ptyxr/vacuum.py) against exact constructions."""

from __future__ import annotations

import numpy as np
import pytest

from ptyxr import vacuum


def _wrap(phase: np.ndarray) -> np.ndarray:
    return np.angle(np.exp(1j * phase))


def test_unwrap_anchored_recovers_a_wrapping_ramp_with_vacuum_at_zero():
    # a ramp spanning ~5 turns, vacuum (left columns) at true phase 0 plus 2π·3 offset in
    # the wrapped data: the unwrapped map must equal the truth exactly (up to rounding)
    rows, cols = np.indices((24, 40), dtype=float)
    truth = 0.8 * cols  # 0 … 31 rad
    region = np.ones(truth.shape, bool)
    anchor = cols < 3
    truth -= np.median(truth[anchor])  # vacuum median at 0
    out = vacuum.unwrap_anchored(_wrap(truth + 6 * np.pi), region, anchor)
    np.testing.assert_allclose(out, truth, atol=1e-9)


def test_unwrap_anchored_parts_fill_and_anchor_all():
    truth = np.zeros((10, 21))
    truth[:, 11:] = 4 * np.pi + 0.5  # second part sits two turns up, without vacuum pixels
    region = np.ones(truth.shape, bool)
    region[:, 10] = False  # two connected parts
    anchor = np.zeros(truth.shape, bool)
    anchor[:, :3] = True
    kept = vacuum.unwrap_anchored(_wrap(truth), region, anchor)
    assert np.isnan(kept[:, 10]).all()  # default fill outside region
    np.testing.assert_allclose(kept[:, :10], 0.0, atol=1e-12)
    # anchor_all moves the vacuum-free part too
    moved = vacuum.unwrap_anchored(_wrap(truth), region, anchor, fill=0.0, anchor_all=True)
    assert (moved[:, 10] == 0.0).all()
    np.testing.assert_allclose(moved[:, 11:], 0.5, atol=1e-12)  # its own median on the branch nearest 0


def test_unwrap_anchored_single_row_uses_numpy_unwrap():
    truth = np.linspace(0.0, 12.0, 30)[None, :]
    region = np.ones(truth.shape, bool)
    anchor = np.zeros(truth.shape, bool)
    anchor[0, 0] = True
    np.testing.assert_allclose(vacuum.unwrap_anchored(_wrap(truth), region, anchor), truth, atol=1e-12)


def test_robust_centre_and_neighbour_sigma_match_gaussian_noise():
    rng = np.random.default_rng(3)
    values = rng.normal(2.0, 0.3, 200_000)
    centre, sigma = vacuum.robust_centre(values)
    assert centre == pytest.approx(2.0, abs=0.005) and sigma == pytest.approx(0.3, rel=0.01)
    assert vacuum.robust_centre(np.zeros(10), floor=1e-6) == (0.0, 1e-6)  # the floor of exact vacuum
    # neighbour differences cancel a smooth background: σ of the noise alone
    rows, cols = np.indices((300, 300), dtype=float)
    image = 5.0 + 0.01 * rows - 0.02 * cols + rng.normal(0.0, 0.1, rows.shape)
    assert vacuum.neighbour_sigma(image, np.ones(image.shape, bool)) == pytest.approx(0.1, rel=0.02)
    assert vacuum.neighbour_sigma(image, np.zeros(image.shape, bool)) == 0.0


def test_callers_use_the_one_kernel():
    from ptyxr import registration, spectra
    from ptyxr.reconstruct import kkr

    assert spectra.detect_background is vacuum.detect_background
    assert spectra.fit_vacuum is vacuum.fit_vacuum and registration.fit_vacuum is vacuum.fit_vacuum
    assert spectra.normalise_image is vacuum.normalise_image
    assert kkr.vacuum_normalise is vacuum.vacuum_normalise and kkr.VacuumFit is vacuum.VacuumFit
    assert spectra.SIGMA_FLOOR == vacuum.IMAGE_SIGMA_FLOOR == 1e-6 and vacuum.STACK_SIGMA_FLOOR == 1e-5
