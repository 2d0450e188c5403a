"""The paper demo's cost cuts (issue 12 point 5): same results, less time."""

from __future__ import annotations

import numpy as np
import pytest

from ptyxr.reconstruct import grid


def _per_frame(frames: np.ndarray, scale: float, order: int) -> np.ndarray:
    """Independent reference: each frame resampled on its own with 2-D matrix products."""
    w, inside = grid.resample_matrix(frames.shape[-1], scale, order)
    taps = (w != 0).astype(np.float64)
    out = np.empty(frames.shape, dtype=np.float32)
    for idx in np.ndindex(frames.shape[:-2]):
        f = frames[idx]
        invalid = ~np.isfinite(f)
        r = w @ np.where(invalid, 0.0, f).astype(np.float64) @ w.T * scale**2
        if order == 3:
            r = np.clip(r, 0.0, None)
        bad = (taps @ invalid.astype(np.float64) @ taps.T > 0) | ~(inside[:, None] & inside[None, :])
        out[idx] = np.where(bad, np.nan, r)
    return out


@pytest.mark.parametrize("masks", ["shared", "per-frame", "none"])
@pytest.mark.parametrize("order", [1, 3])
def test_resample_frames_equals_frame_by_frame(masks, order):
    """The batched resampling (one GEMM per side, one mask product when all frames share
    the mask — the PRTF's cost on the paper preset) gives each frame's own 2-D result."""
    rng = np.random.default_rng(3)
    frames = rng.poisson(4.0, (2, 5, 48, 48)).astype(np.float32)
    if masks == "shared":
        frames[..., 7, :] = np.nan  # a dead detector row in every frame
    elif masks == "per-frame":
        frames[rng.random(frames.shape) < 0.01] = np.nan
    out = grid.resample_frames(frames, 1.043, order=order)
    ref = _per_frame(frames, 1.043, order)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    # float64 sums of the same terms, rounded to float32: equal to the last float32 bit or two
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=0, equal_nan=True)
    assert np.isnan(out).any() and np.isfinite(out).mean() > 0.5  # not all lost to the masks


def test_demo_report_from_truths_read_back_equals_in_memory(tmp_path, monkeypatch):
    """The demo writes each truth when its particle is simulated and reads the files back
    for the accuracy report (less peak memory): the report equals the one made from the
    truths as simulated."""
    from ptyxr import cli, simulate
    from ptyxr.io.netcdf import open_dataset

    monkeypatch.setattr(simulate, "PAPER_PARTICLES", {"P1": "as-prepared"})
    seen = []
    real_simulate = simulate.demo_dataset

    def spy(*args, **kwargs):
        out = real_simulate(*args, **kwargs)
        seen.append(out[1])
        return out

    monkeypatch.setattr(simulate, "demo_dataset", spy)
    reports = []
    real_report = simulate.accuracy_report
    monkeypatch.setattr(simulate, "accuracy_report", lambda r, t, **k: reports.append((r, t)) or real_report(r, t, **k))
    cli.demo("tiny", out=tmp_path, progress=False)  # tiny: 100 iterations, a few seconds
    assert len(seen) == 1 and (tmp_path / "truth-P1.nc").exists()
    result, truths = reports[0]
    assert truths[0].identical(open_dataset(tmp_path / "truth-P1.nc", load=True))
    for name in seen[0].data_vars:  # every truth variable read back exactly
        np.testing.assert_array_equal(truths[0][name].values, seen[0][name].values)
    assert str(real_report(result, truths)) == str(real_report(result, seen))
