"""Dead-pixel detection (ptyxr.reconstruct.detector) on Poisson-counted patterns."""

from __future__ import annotations

import numpy as np

from ptyxr.reconstruct.detector import MIN_EXPECTED_COUNTS, dead_pixel_mask


def _pattern(n: int = 64, peak: float = 5e4, seed: int = 0) -> np.ndarray:
    """Summed counts of a bright centred pattern falling to ≪ 1 count at the corners."""
    yy, xx = np.mgrid[:n, :n] - n // 2
    r2 = (yy**2 + xx**2) / (n / 8) ** 2
    return np.random.default_rng(seed).poisson(peak * np.exp(-r2)).astype(np.float64)


def test_dead_row_gap_and_beam_stop_are_found_and_nothing_else():
    totals = _pattern()
    truth = np.zeros(totals.shape, bool)
    truth[30, :] = True  # dead row through the bright centre
    truth[:, 20:24] = True  # 4-px module gap
    truth[31:34, 31:34] = True  # beam-stop shadow
    totals[truth] = 0
    found = dead_pixel_mask(totals)
    # every flagged pixel is a real defect: the live zeros are all in the dark outer region,
    # where the expected count is ≪ MIN_EXPECTED_COUNTS (P(false flag) ≈ e^-20 per pixel)
    assert not (found & ~truth).any()
    # every defect pixel where the pattern expects ≥ 20 counts is found
    expected = 5e4 * np.exp(-((np.mgrid[:64, :64] - 32) ** 2).sum(0) / 8**2)
    bright = truth & (expected > 2 * MIN_EXPECTED_COUNTS)
    assert bright.sum() > 30
    assert found[bright].all()


def test_no_false_dead_pixels_in_dim_data():
    """Live pixels at low count (expected ≤ 3) read zero often; none may be flagged."""
    rng = np.random.default_rng(1)
    totals = rng.poisson(3.0, (128, 128)).astype(float)
    assert (totals == 0).sum() > 100
    assert not dead_pixel_mask(totals).any()


def test_nan_pixels_are_left_to_the_mask():
    totals = _pattern()
    totals[10, 10] = np.nan
    totals[32, 32] = 0
    found = dead_pixel_mask(totals)
    assert not found[10, 10] and found[32, 32]
