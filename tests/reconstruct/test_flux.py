"""Per-frame incident flux (issue 12 point 3): monitor normalisation and flux refinement.

Accuracy is measured on the simulator's "tiny" preset (16 energies, 4×4 raster, 1e7
photons) with ``flux_jitter`` (5 % rms per frame) and ``flux_decay`` (10 % over the
acquisition), against the jitter-free twin (same seed, no flux variation), 100 ePIE
iterations without KKR; object NRMSE per energy after undoing the simulator's known drift,
as in tests/reconstruct/test_reconstruct.py. Measured (docs/design-notes/s11-flux.md): twin 0.100,
no correction 1.04 (the 2.5 % amplitude errors are as large as the small particle's
contrast), monitor 0.099, refinement without a monitor 0.097.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from checkpoint_runs import assert_resume_equals, full_and_checkpoint, killed_run
from test_reconstruct import _drift_corrected_nrmse  # tests/ is on sys.path (conftest)

import ptyxr
from ptyxr import schema as S
from ptyxr.reconstruct import flux as F
from ptyxr.reconstruct.api import reconstruct
from ptyxr.reconstruct.checkpoint import read_checkpoint

ITERATIONS = 100
RECON = dict(iterations=ITERATIONS, kkr=False, progress=False)


def _object_nrmse(out: xr.Dataset, truth: xr.Dataset) -> float:
    """Mean over energies of the object NRMSE inside coverage, the known drift undone."""
    return float(np.mean(_drift_corrected_nrmse(out, truth)))


def _relative(flux: np.ndarray) -> np.ndarray:
    return flux / np.nanmean(flux, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def twin():
    """The jitter-free twin and its reconstruction's object NRMSE."""
    sim = pytest.importorskip("ptyxr.simulate")
    raw, truth = sim.demo_dataset("tiny", seed=0, progress=False)
    return raw, truth, _object_nrmse(reconstruct(raw, **RECON), truth)


@pytest.fixture(scope="module")
def jittered():
    """Same seed with the ``flux_jitter_monitor`` variant (jitter, decay and a monitor)."""
    sim = pytest.importorskip("ptyxr.simulate")
    return sim.demo_dataset("tiny", seed=0, progress=False, **sim.REALISM["flux_jitter_monitor"])


def test_variants_are_the_issue_12_flux():
    sim = pytest.importorskip("ptyxr.simulate")
    assert sim.REALISM["flux_jitter"] == {"flux_jitter": 0.05, "flux_decay": 0.1}
    assert sim.REALISM["flux_jitter_monitor"] == {**sim.REALISM["flux_jitter"], "monitor": True}


def test_monitor_normalisation_matches_the_jitter_free_twin(twin, jittered):
    """With the monitor the object is within 5 % of the twin's NRMSE; uncorrected it is far worse.

    Measured: twin 0.100, monitor 0.099, no correction 1.04. The uncorrected run must be at
    least 3× the twin (it is ~10×) so that the 5 % bound tests the normalisation.
    """
    _, truth, err_twin = twin
    raw, truth_j = jittered
    np.testing.assert_array_equal(truth_j[S.OBJECT].values, truth[S.OBJECT].values)  # same sample
    with_monitor = reconstruct(raw, **RECON)
    without = reconstruct(raw, **RECON, use_monitor=False)
    err_monitor, err_none = _object_nrmse(with_monitor, truth), _object_nrmse(without, truth)
    print(f"object NRMSE: twin {err_twin:.4f}, monitor {err_monitor:.4f}, no correction {err_none:.4f}")
    assert err_monitor <= 1.05 * err_twin, (err_monitor, err_twin)
    assert err_none >= 3 * err_twin, (err_none, err_twin)
    # relative_flux = monitor / its mean per energy; recorded in the provenance
    expected = _relative(raw[S.MONITOR].values)
    np.testing.assert_allclose(with_monitor[S.RELATIVE_FLUX].values, expected, rtol=1e-12)
    np.testing.assert_allclose(with_monitor[S.RELATIVE_FLUX].values, _relative(truth_j[S.TRUE_FLUX].values), rtol=1e-9)
    assert with_monitor[S.RELATIVE_FLUX].attrs["units"] == "1"
    params = ptyxr.provenance.parameters(with_monitor, "reconstruct")
    assert params["use_monitor"] is True and params["monitor_used"] is True
    assert ptyxr.provenance.parameters(without, "reconstruct")["monitor_used"] is False
    assert S.RELATIVE_FLUX not in without
    # the input Dataset is not modified by the normalisation
    assert with_monitor[S.INTENSITY] is not None
    np.testing.assert_array_equal(with_monitor[S.INTENSITY].values, raw[S.INTENSITY].values)


def test_refine_flux_without_monitor(twin, jittered):
    """Without a monitor, per-frame flux refinement gives the object within 5 % of the twin.

    Measured: object NRMSE 0.0968 = 0.97× the twin (no correction 1.04; without the object
    restarts 1.12×); refined flux vs truth correlation ≥ 0.999 per energy, rms residual
    0.0007 (truth spread 0.045). Asserted: issue 12's ≤ 1.05× the twin; correlation ≥ 0.99
    and residual ≤ 0.05× the truth's spread.
    """
    _, truth, err_twin = twin
    raw, truth_j = jittered
    raw = raw.drop_vars(S.MONITOR)
    out = reconstruct(raw, **RECON, refine_flux=True)
    err = _object_nrmse(out, truth)
    true_flux = _relative(truth_j[S.TRUE_FLUX].values)
    flux = out[S.RELATIVE_FLUX].values
    corr = np.mean([np.corrcoef(flux[e], true_flux[e])[0, 1] for e in range(flux.shape[0])])
    rms = float(np.sqrt(np.mean((flux - true_flux) ** 2)))
    spread = float(np.std(true_flux))
    print(f"refined: object NRMSE {err:.4f} (twin {err_twin:.4f}), flux corr {corr:.4f}, rms {rms:.4f} / {spread:.4f}")
    assert err <= 1.05 * err_twin, (err, err_twin)
    assert corr >= 0.99 and rms <= 0.05 * spread, (corr, rms, spread)
    np.testing.assert_allclose(np.mean(flux, axis=1), 1.0, rtol=1e-12)  # the global scale stays with the probe
    params = ptyxr.provenance.parameters(out, "reconstruct")
    assert params["refine_flux"] is True and params["flux_refinement_iterations"] == F.schedule(ITERATIONS)
    assert params["flux_object_restarts"] == F.restarts(ITERATIONS) == [20, 40]


#: Seeds of the multi-seed check (seed 0 is also the fixtures' seed above).
SEEDS = (0, 1, 2, 3)


def test_refine_flux_holds_over_seeds():
    """Flux refinement without a monitor at four seeds: within issue 12's 5 % of the twin at each.

    The ratio to the jitter-free twin is itself noisy: the twin's frames hold another Poisson
    realisation, and the same jittered frames reconstructed with the EXACT flux (their
    monitor, equal to the simulator's ``true_flux``) gave 0.986 / 0.991 / 0.970 / 1.011 /
    1.036 / 1.018× the twin at seeds 0–5. Measured with refinement and the cross-energy prior
    (docs/design-notes/s13-flux2.md): 0.953 / 0.973 / 1.013 / 1.013× (seeds 0–3), mean 0.988;
    without the prior 0.968 / 1.015 / 1.041 / 1.052 (mean 1.019, so this test failed at seed 3
    before). Asserted: 1.05 at every seed, and ≤ 1.01 on the mean (the exact flux averages
    0.990 over these seeds: the refinement may cost no more than 0.02 of it; without the prior
    it cost 0.03), correlation ≥ 0.99 at every energy.
    A refinement that failed (no correction: ~10× the twin) or oscillated would break all.
    """
    sim = pytest.importorskip("ptyxr.simulate")
    ratios = []
    for seed in SEEDS:
        raw_twin, truth = sim.demo_dataset("tiny", seed=seed, progress=False)
        raw, truth_j = sim.demo_dataset("tiny", seed=seed, progress=False, **sim.REALISM["flux_jitter"])
        assert S.MONITOR not in raw
        err_twin = _object_nrmse(reconstruct(raw_twin, **RECON), truth)
        out = reconstruct(raw, **RECON, refine_flux=True)
        ratios.append(_object_nrmse(out, truth_j) / err_twin)
        flux, true_flux = out[S.RELATIVE_FLUX].values, _relative(truth_j[S.TRUE_FLUX].values)
        corr = [np.corrcoef(flux[e], true_flux[e])[0, 1] for e in range(flux.shape[0])]
        assert min(corr) >= 0.99, (seed, min(corr))
    print("refined / twin object NRMSE per seed:", np.round(ratios, 3))
    assert max(ratios) <= 1.05, ratios
    assert np.mean(ratios) <= 1.01, ratios


def test_options_off_change_nothing(jittered):
    """No monitor used and no refinement: the run equals the monitor-free data's, bit for bit."""
    raw, _ = jittered
    kw = dict(iterations=4, kkr=True, kkr_start=2, kkr_every=2, progress=False, seed=3)
    plain = reconstruct(raw.drop_vars(S.MONITOR), **kw)
    ignored = reconstruct(raw, **kw, use_monitor=False)
    assert S.RELATIVE_FLUX not in plain and S.RELATIVE_FLUX not in ignored
    for name in (S.OBJECT, S.PROBE, S.FOURIER_ERROR, S.COVERAGE):
        np.testing.assert_array_equal(plain[name].values, ignored[name].values)


def test_refine_flux_checkpoint_resume_is_exact(jittered, tmp_path):
    raw, _ = jittered
    raw = raw.drop_vars(S.MONITOR)
    kw = dict(iterations=9, kkr=False, progress=False, seed=2, checkpoint_every=4, refine_flux=True)
    full, ck = full_and_checkpoint(raw, tmp_path, 6, kw)
    # checkpoint after the cross-energy prior started (iteration 5): it holds the prior's registration
    extra = read_checkpoint(ck)["extra"]
    assert F.PRIOR_START < 6 and extra[S.FLUX_PRIOR_SHIFT_Y].shape == extra[S.FLUX_PRIOR_SHIFT_X].shape == (
        raw.sizes[S.ENERGY],
    )
    assert_resume_equals(raw, ck, full, (S.OBJECT, S.PROBE, S.FOURIER_ERROR, S.RELATIVE_FLUX), kw)
    with pytest.raises(S.SchemaError, match="refine_flux"):
        reconstruct(raw, **{**kw, "refine_flux": False}, resume_from=ck)


def test_refine_flux_resume_after_a_crash_is_exact(jittered, tmp_path, monkeypatch):
    """A run with object restarts (after 12 and 24 of 60) that dies at 15 resumes from its checkpoint at 10."""
    raw, _ = jittered
    raw = raw.drop_vars(S.MONITOR).isel({S.ENERGY: slice(0, 4)})
    kw = dict(iterations=60, kkr=False, progress=False, seed=2, checkpoint_every=10, refine_flux=True)
    assert F.restarts(60) == [12, 24]
    full = reconstruct(raw, **kw)
    ck = killed_run(raw, tmp_path, monkeypatch, F.FluxRefiner, lambda self, obj, probe, done: done == 15, kw)
    resumed = assert_resume_equals(raw, ck, full, (S.OBJECT, S.PROBE, S.FOURIER_ERROR, S.RELATIVE_FLUX), kw)
    assert ptyxr.provenance.parameters(resumed, "reconstruct")["resumed_at"] == 10


@pytest.mark.parametrize("bad", [0.0, -5.0, np.nan, np.inf])
def test_bad_monitor_is_refused(jittered, bad):
    raw, _ = jittered
    mon = raw[S.MONITOR].values.copy()
    mon[1, 3] = bad
    broken = raw.assign({S.MONITOR: S.variable(S.MONITOR, mon)})
    with pytest.raises(S.SchemaError, match=r"'monitor' \(I0\) must be positive and finite.*\[\[1, 3\]\]"):
        reconstruct(broken, iterations=1, kkr=False, progress=False)
    # ignored on request
    out = reconstruct(broken, iterations=1, kkr=False, progress=False, use_monitor=False)
    assert S.RELATIVE_FLUX not in out


def test_monitor_dims_and_argument_types_are_checked(jittered):
    raw, _ = jittered
    swapped = raw.assign({S.MONITOR: raw[S.MONITOR].transpose()})
    with pytest.raises(S.SchemaError, match="dims"):
        reconstruct(swapped, iterations=1, kkr=False, progress=False)
    for name in ("use_monitor", "refine_flux"):
        with pytest.raises(S.SchemaError, match=name):
            reconstruct(raw, iterations=1, kkr=False, progress=False, **{name: "yes"})


def test_monitor_at_padding_points_may_be_nan():
    """A NaN monitor at a padding scan point (no position) is fine; there it stays NaN."""
    sim = pytest.importorskip("ptyxr.simulate")
    raw, _ = sim.demo_dataset("tiny", seed=1, progress=False, **sim.REALISM["flux_jitter_monitor"])
    raw = raw.isel({S.ENERGY: slice(0, 3)})
    py, px, mon = (raw[name].values.copy() for name in (S.POSITION_Y, S.POSITION_X, S.MONITOR))
    py[0, -1], px[0, -1], mon[0, -1] = np.nan, np.nan, np.nan
    raw = raw.assign(
        {name: S.variable(name, v) for name, v in ((S.POSITION_Y, py), (S.POSITION_X, px), (S.MONITOR, mon))}
    )
    frames = raw[S.INTENSITY].values.copy()
    frames[0, -1] = np.nan
    raw = raw.assign({S.INTENSITY: S.variable(S.INTENSITY, frames)})
    out = reconstruct(raw, iterations=2, kkr=False, progress=False)
    flux = out[S.RELATIVE_FLUX].values
    assert np.isnan(flux[0, -1]) and np.isfinite(flux[0, :-1]).all()
    np.testing.assert_allclose(np.nanmean(flux, axis=1), 1.0, rtol=1e-12)


# ------------------------------------------------------------------ the estimator
def test_frame_scales_use_only_valid_pixels():
    """Σ I / Σ|F(P·O_k)|² on valid pixels returns each frame's flux exactly, masked pixels and all.

    Frames made as f_k·|F(P·O_k)|² (unnormalised FFT, FFT order) with a dead row and a
    zeroed beam-stop block marked −1 in most frames: the estimate is f_k to float32 rounding,
    where Parseval's Σ|P·O_k|² (counting the masked pixels too) would be off by their share;
    frames without a marker take the Parseval path.
    """
    rng = np.random.default_rng(4)
    n_e, n_scan, n = 2, 5, 16
    obj = np.exp(0.3j * rng.standard_normal((n_e, 24, 24)) - 0.1 * rng.random((n_e, 24, 24))).astype(np.complex64)
    probe = (rng.standard_normal((n_e, n, n)) + 1j * rng.standard_normal((n_e, n, n))).astype(np.complex64)
    offsets = rng.integers(0, 24 - n, size=(n_e, n_scan, 2))
    flux = 1 + 0.2 * rng.standard_normal((n_e, n_scan))
    amplitudes = np.empty((n_e, n_scan, n, n), dtype=np.float32)
    for e in range(n_e):
        for k in range(n_scan):
            (oy, ox) = offsets[e, k]
            far = np.fft.fft2(probe[e].astype(np.complex128) * obj[e, oy : oy + n, ox : ox + n])
            amplitudes[e, k] = np.sqrt(flux[e, k]) * np.abs(far)
    amplitudes[:, 2:, 3, :] = -1  # frames 0 and 1 complete (Parseval), the others masked (FFT)
    amplitudes[:, 2:, :2, :2] = -1
    active = np.ones((n_e, n_scan), dtype=bool)
    active[1, 4] = False
    got = F.frame_scales(amplitudes, obj, probe, offsets, active)
    np.testing.assert_allclose(got[active], flux[active], rtol=1e-5)
    assert np.isnan(got[1, 4])
    measured, complete = F.measured_counts(amplitudes)
    assert complete[:, :2].all() and not complete[:, 2:].any()
    # Parseval on the masked frames would miss by the masked pixels' share of the counts
    parseval = F.frame_scales(amplitudes, obj, probe, offsets, active, measured, np.ones_like(complete))
    assert np.max(np.abs(parseval[:, 2:][active[:, 2:]] / flux[:, 2:][active[:, 2:]] - 1)) > 0.01


def test_rescale_keeps_invalid_markers_and_replays_exactly():
    rng = np.random.default_rng(5)
    amplitudes = rng.random((2, 3, 4, 4)).astype(np.float32)
    amplitudes[:, :, 0, 0] = -1
    original = amplitudes.copy()
    old, new = np.ones((2, 3)), 1 + 0.1 * rng.random((2, 3))
    F.rescale_amplitudes(amplitudes, old, new)
    assert np.all(amplitudes[:, :, 0, 0] == -1)
    np.testing.assert_allclose(
        amplitudes[:, :, 1:, :], original[:, :, 1:, :] / np.sqrt(new)[:, :, None, None], rtol=1e-6
    )
    # a refiner restored from the history reproduces the same amplitudes bit for bit
    a1, a2 = original.copy(), original.copy()
    active = np.ones((2, 3), dtype=bool)
    r1 = F.FluxRefiner(a1, np.zeros((2, 3, 2), int), active, 10)
    for _ in range(3):
        r1._apply(F._normalised(1 + 0.1 * rng.random((2, 3)), active))
    r2 = F.FluxRefiner(a2, np.zeros((2, 3, 2), int), active, 10)
    r2.restore({S.RELATIVE_FLUX: r1.checkpoint_state()[S.RELATIVE_FLUX][1]})
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(r1.flux, r2.flux)


def test_particle_dim_gets_its_own_flux(jittered):
    """A ``particle`` dim: each particle is normalised by its own monitor; refined flux per particle."""
    raw, _ = jittered
    one = raw.drop_vars([v for v in raw.data_vars if v.startswith(S.TRUE_PREFIX)]).isel({S.ENERGY: [0, 1]})
    other = one.copy(deep=True)
    other[S.MONITOR] = other[S.MONITOR] * 3.0  # another beam current: same relative flux
    both = xr.concat(
        [one, other], dim=S.PARTICLE, coords="minimal", compat="override", combine_attrs="override"
    ).assign_coords({S.PARTICLE: ["A", "B"]})
    kw = dict(iterations=2, kkr=False, progress=False)
    res = reconstruct(both, **kw)
    assert res[S.RELATIVE_FLUX].dims == (S.PARTICLE, S.ENERGY, S.SCAN)
    np.testing.assert_allclose(res[S.RELATIVE_FLUX].values[0], res[S.RELATIVE_FLUX].values[1], rtol=1e-12)
    np.testing.assert_allclose(res[S.RELATIVE_FLUX].values[0], _relative(one[S.MONITOR].values), rtol=1e-12)
    refined = reconstruct(both.drop_vars(S.MONITOR), **kw, refine_flux=True)
    assert refined[S.RELATIVE_FLUX].dims == (S.PARTICLE, S.ENERGY, S.SCAN)
    assert np.isfinite(refined[S.RELATIVE_FLUX].values).all()


def test_cross_energy_prior_finds_independent_smooth_amplitude():
    """The prior's residual: ~0 on a rank-3 stack, and recovers an independent smooth modulation.

    Synthetic stack: log|O| of 12 energies = three "materials" (sharp discs) with random
    spectra, plus per energy an independent smooth modulation (Gaussian-filtered noise, σ 8 px,
    rms 0.003 — the size of the flux errors left on the small preset). Without the modulation
    the residual is < 1e-6 (exactly rank 3). With it, the recovered log g matches the
    modulation up to what no cross-energy prior can see: the modulation's share in the
    stack's three energy spectra (~3/12 of its variance, 0.5× its rms) and what the σ = 4 px
    low-pass and the region's border take. Measured rms error 0.72× the modulation's rms;
    asserted ≤ 0.8× (a prior returning 0 gives 1.0×, one with the wrong sign 2×).
    """
    from scipy import ndimage

    rng = np.random.default_rng(1)
    n_e, ny, nx = 12, 64, 64
    yy, xx = np.mgrid[:ny, :nx]
    maps = [
        ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2).astype(float) for cy, cx, r in ((30, 30, 12), (20, 40, 6), (44, 24, 8))
    ]
    spectra = rng.uniform(-0.05, -0.01, size=(n_e, 3))
    log_amp = np.einsum("em,myx->eyx", spectra, np.array(maps))
    region = np.zeros((ny, nx), dtype=bool)
    region[6:-6, 6:-6] = True
    clean = np.exp(log_amp).astype(np.complex64)
    assert np.abs(F.smooth_excess_log_amplitude(clean, region)).max() < 1e-6
    smooth = np.array([ndimage.gaussian_filter(rng.standard_normal((ny, nx)), 8) for _ in range(n_e)])
    smooth *= 0.003 / smooth[:, region].std()
    found = F.smooth_excess_log_amplitude(np.exp(log_amp + smooth).astype(np.complex64), region)
    error = float(np.sqrt(np.mean((found - smooth)[:, region] ** 2)))
    print(f"recovered smooth log-amplitude: rms error {error / 0.003:.2f}× the modulation")
    assert error <= 0.8 * 0.003, error
    assert np.all(found[:, ~region] == 0)
