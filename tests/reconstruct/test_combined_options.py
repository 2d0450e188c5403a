"""Issue 12's options together: flux and position refinement with a mixed-state probe.

``reconstruct(refine_flux=True)`` and ``reconstruct(position_correction=True)`` estimate
from the model of the frames; with ``probe_modes=K`` that model is the incoherent sum
``I = Σ_m |F(P_m·O_k)|²``. The estimators are checked on frames made exactly by that model
(the exact answer is known), and the three options run together through checkpoint/resume.
"""

from __future__ import annotations

import numpy as np
import pytest
from checkpoint_runs import assert_resume_equals, killed_run
from test_positions import _smooth_object  # tests/ is on sys.path (conftest)

import ptyxr
from ptyxr import schema as S
from ptyxr.optics import far_field
from ptyxr.reconstruct import epie, flux, modes, positions, reconstruct
from ptyxr.reconstruct.positions import measure_shifts


def _three_modes(n: int) -> np.ndarray:
    """(1, 3, N, N) orthogonal modes with power 0.75/0.17/0.08 of a focused Gaussian probe."""
    yy, xx = np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2, indexing="ij")
    base = (1e3 * np.exp(-(yy**2 + xx**2) / (2 * 4.0**2)) * np.exp(0.02j * (yy**2 + xx**2))).astype(np.complex64)
    stack = modes.initial_modes(base[None], 3)
    power = np.sum(np.abs(stack) ** 2, axis=(-2, -1))
    want = np.array([0.75, 0.17, 0.08]) * power.sum()
    return (stack * np.sqrt(want / power)[..., None, None]).astype(np.complex64)


def test_frame_scales_with_modes_use_the_incoherent_sum():
    """Frames f_k·Σ_m|F(P_m·O_k)|² (some with masked pixels): the estimate is f_k; the first mode
    alone (what a coherent estimator would model) misses by the other modes' share (25 %)."""
    rng = np.random.default_rng(7)
    n, n_scan = 16, 6
    probe = _three_modes(n)
    obj = np.exp(0.3j * rng.standard_normal((1, 24, 24)) - 0.1 * rng.random((1, 24, 24))).astype(np.complex64)
    offsets = rng.integers(0, 24 - n, size=(1, n_scan, 2))
    truth = 1 + 0.2 * rng.standard_normal((1, n_scan))
    amplitudes = np.empty((1, n_scan, n, n), dtype=np.float32)
    for k, (oy, ox) in enumerate(offsets[0]):
        far = np.fft.fft2(probe[0].astype(np.complex128) * obj[0, oy : oy + n, ox : ox + n])
        amplitudes[0, k] = np.sqrt(truth[0, k] * np.sum(np.abs(far) ** 2, axis=0))
    amplitudes[:, 3:, 5, :] = -1  # frames 0-2 complete (Parseval), the others masked (FFT)
    active = np.ones((1, n_scan), dtype=bool)
    got = flux.frame_scales(amplitudes, obj, probe, offsets, active)
    np.testing.assert_allclose(got, truth, rtol=1e-5)
    first = flux.frame_scales(amplitudes, obj, probe[:, 0], offsets, active)
    assert np.all(first / truth > 1.2)


def test_measure_shifts_with_modes():
    """Noise-free mixed-state frames at offset + s: the mode-aware Gauss–Newton step recovers s
    (as tests/reconstruct/test_positions.py's coherent test: ≤ 0.05 px linearised, ≤ 0.005 px at the truth);
    one mode with all the power gives the coherent estimate."""
    rng = np.random.default_rng(3)
    n, n_scan = 32, 9
    obj = _smooth_object((96, 96), rng)
    probe = _three_modes(n)
    offsets = np.stack(np.meshgrid([20, 32, 44], [20, 32, 44], indexing="ij"), -1).reshape(1, n_scan, 2)
    true = rng.uniform(-0.4, 0.4, (1, n_scan, 2))
    frames = np.zeros((1, n_scan, n, n))
    for k in range(n_scan):
        moved = epie.fourier_shift(obj - 1, (-true[0, k, 0], -true[0, k, 1])) + 1
        oy, ox = offsets[0, k]
        for m in range(3):
            frames[0, k] += np.abs(far_field(probe[0, m] * moved[oy : oy + n, ox : ox + n])) ** 2
    amplitudes = epie.prepare_amplitudes(frames)
    active = np.ones((1, n_scan), bool)
    obj32 = obj.astype(np.complex64)[None]
    linear = measure_shifts(obj32, probe, amplitudes, offsets, active)
    assert np.max(np.abs(linear - true)) < 0.05, np.abs(linear - true).max()
    at_truth = measure_shifts(obj32, probe, amplitudes, offsets, active, fraction=true)
    assert np.max(np.abs(at_truth)) < 0.005, np.abs(at_truth).max()
    # the coherent estimator on the same frames (first mode only) is biased: the incoherent sum matters
    coherent = measure_shifts(obj32, probe[:, 0], amplitudes, offsets, active, fraction=true)
    assert np.max(np.abs(coherent)) > 5 * np.max(np.abs(at_truth))
    # one mode carrying everything (the others zero) is the coherent step
    single = np.zeros_like(probe)
    single[:, 0] = probe[:, 0]
    np.testing.assert_allclose(
        measure_shifts(obj32, single, amplitudes, offsets, active, fraction=true),
        measure_shifts(obj32, probe[:, 0], amplitudes, offsets, active, fraction=true),
        rtol=1e-4,
        atol=1e-6,
    )


# ------------------------------------------------------------------ all three in one run
@pytest.fixture(scope="module")
def realistic_tiny():
    """tiny preset with every issue-12 realism (position errors, 3 modes, flux jitter + decay), 4 energies."""
    sim = pytest.importorskip("ptyxr.simulate")
    realism = {k: v for case in sim.REALISM.values() for k, v in case.items()}
    raw, _ = sim.demo_dataset("tiny", seed=1, placement="exact", progress=False, **realism)
    assert S.MONITOR in raw
    return raw.isel({S.ENERGY: [0, 5, 10, 15]})


def test_all_options_resume_after_a_crash_is_exact(realistic_tiny, tmp_path, monkeypatch):
    """refine_flux + position_correction + probe_modes=3 (object restarts after 12 and 24 of 60,
    position passes every 5 from 18): a run killed at 33 resumes from its checkpoint at 30 and
    equals the uninterrupted run bit for bit."""
    raw = realistic_tiny.drop_vars(S.MONITOR)
    kw = dict(
        iterations=60,
        kkr=False,
        progress=False,
        seed=2,
        checkpoint_every=10,
        refine_flux=True,
        position_correction=True,
        probe_modes=3,
    )
    assert flux.restarts(60) == [12, 24] and positions.default_start(60) == 18
    full = reconstruct(raw, **kw)
    facts = ptyxr.provenance.parameters(full, "reconstruct")
    assert facts["position_correction_passes"] == 9 and facts["flux_object_restarts"] == [12, 24]
    assert full[S.PROBE].sizes[S.PROBE_MODE] == 3
    for name in (S.OBJECT, S.PROBE, S.RELATIVE_FLUX):
        assert np.isfinite(full[name].values).all()
    # killed in the pass after iteration 33
    ck = killed_run(raw, tmp_path, monkeypatch, positions.PositionRefiner, lambda self, *args: self.passes == 3, kw)
    names = (S.OBJECT, S.PROBE, S.FOURIER_ERROR, S.RELATIVE_FLUX, S.PROBE_MODE_FRACTION)
    resumed = assert_resume_equals(raw, ck, full, (*names, S.POSITION_CORRECTION_Y, S.POSITION_CORRECTION_X), kw)
    assert ptyxr.provenance.parameters(resumed, "reconstruct")["resumed_at"] == 30


def test_monitor_with_modes_and_positions(realistic_tiny):
    """use_monitor (default) with the other two options: the monitor's flux is reported and the
    refinement runs on the normalised frames."""
    out = reconstruct(realistic_tiny, iterations=20, kkr=False, progress=False, position_correction=True, probe_modes=3)
    assert ptyxr.provenance.parameters(out, "reconstruct")["monitor_used"]
    assert S.RELATIVE_FLUX in out and S.POSITION_CORRECTION_Y in out
    assert np.isfinite(out[S.OBJECT].values).all()


# ------------------------------------------------------------- the default chain, all realism at once
@pytest.fixture(scope="module")
def all_realism_foreign():
    """The plain foreign geometry (tests/test_foreign_accuracy.py) with every issue-12 realism at once:
    1 px rms position errors (``placement="exact"``: each frame sees its true sub-pixel position),
    three probe modes 0.75/0.17/0.08, 5 % flux jitter + 10 % decay, with a monitor."""
    import test_foreign_accuracy as foreign

    sim = pytest.importorskip("ptyxr.simulate")
    realism = {k: v for case in sim.REALISM.values() for k, v in case.items()}
    return sim.demo_dataset(foreign.PLAIN_FOREIGN, seed=0, placement="exact", progress=False, **realism)


def _drift_the_frames_carry(raw, truth):
    """``truth`` whose ``shift_y``/``shift_x`` are the drift the frames carry: drift + mean position error.

    A common shift of every position at one energy trades freely against a shift of that
    energy's object: the frames cannot tell them apart. The engine fixes this gauge by
    keeping each energy's mean refined position at its mean recorded one
    (:mod:`ptyxr.reconstruct.positions`; the issue measures refined positions "after removing
    each energy's mean" for this reason). In that gauge the best possible object at energy E
    is the sample displaced by its drift d(E) *and* by m(E) = mean over the scan of
    (recorded − true) positions: frame k recorded at r_k was taken at t_k, so positions
    t_k + m(E) (mean r) put the object at d(E) + m(E). In the §1c convention (shift =
    −displacement, 0 at ``align``'s reference energy, the last, where the simulator's drift
    is 0) that is ``shift(E) − (m(E) − m(E_last))``. ``align`` can at best find this; the
    simulator's drift alone differs from it by the mean of 81 errors of 1 px rms per axis,
    relative to the reference energy's (0.24 px rms in 2-D here), an error no method can
    remove (docs/design-notes/s12-positions.md).
    """
    out = truth.copy()
    for shift, pos, true in (
        (S.SHIFT_Y, S.POSITION_Y, S.TRUE_POSITION_Y),
        (S.SHIFT_X, S.POSITION_X, S.TRUE_POSITION_X),
    ):
        mean_error = (raw[pos] - truth[true]).mean(S.SCAN).values  # m(E) [m]
        out[shift] = truth[shift].copy(data=truth[shift].values - (mean_error - mean_error[-1]))
    return out


def test_align_finds_the_drift_the_frames_carry():
    """:func:`_drift_the_frames_carry` is what ``align`` measures, with its sign.

    tiny preset, 4 energies, 16 positions with 1 px rms errors each (the mean error per energy
    is 0.25 px per axis, ≈ 0.5 px rms in 2-D against the reference energy's), position
    refinement on. ``align`` must find the frames' drift within the physical bound 0.2 px, be at
    least 2× closer to it than to the simulator's drift alone, and the opposite sign of the
    mean error must be ≥ 2× further off (measured 0.15 / 0.76 / 1.45 px).
    """
    sim = pytest.importorskip("ptyxr.simulate")
    raw, truth = sim.demo_dataset("tiny", seed=1, placement="exact", progress=False, **sim.REALISM["position_errors"])
    pick = {S.ENERGY: [0, 5, 10, 15]}  # the last (drift 0) stays align's reference
    raw, truth = raw.isel(pick), truth.isel(pick)
    out = raw.ptyxr.reconstruct(iterations=60, kkr=False, progress=False, position_correction=True).ptyxr.align(
        progress=False
    )
    carried = _drift_the_frames_carry(raw, truth)
    flipped = truth.copy()
    for name in (S.SHIFT_Y, S.SHIFT_X):
        flipped[name] = 2 * truth[name] - carried[name]

    def error(reference):  # rms over energies of the 2-D drift error [px]
        d = np.hypot(out[S.SHIFT_Y] - reference[S.SHIFT_Y], out[S.SHIFT_X] - reference[S.SHIFT_X]).values
        return float(np.sqrt(np.mean(d**2))) / out[S.Y].attrs[S.ATTR_PIXEL_SIZE]

    err = {"carried": error(carried), "simulator": error(truth), "flipped": error(flipped)}
    assert err["carried"] < 0.2, err
    assert 2 * err["carried"] < err["simulator"] and 2 * err["carried"] < err["flipped"], err


def _chain_row(raw, truth, monkeypatch, **options):
    """tests/test_foreign_accuracy.py's default chain and figures, ``reconstruct`` given ``options``.

    The alignment error is measured against :func:`_drift_the_frames_carry`; the row's
    ``alignment_rms_px_vs_simulator_drift`` keeps the error against the simulator's drift alone.
    """
    import test_foreign_accuracy as foreign

    results = []

    def chain(raw):
        results.append(
            raw.ptyxr.reconstruct(progress=False, **options)
            .ptyxr.align(progress=False)
            .ptyxr.spectra()
            .ptyxr.fit_xanes(progress=False)
            .ptyxr.chemical_state()
        )
        return results[-1]

    monkeypatch.setattr(foreign, "_default_chain", chain)
    row = foreign._accuracy(raw, _drift_the_frames_carry(raw, truth))
    from ptyxr.simulate.accuracy import particle_accuracy

    plain = particle_accuracy(results[-1], truth)
    row["alignment_rms_px_vs_simulator_drift"] = plain["alignment_rms_px"]
    print({"alignment_rms_px_vs_simulator_drift": round(plain["alignment_rms_px"], 4)})
    failures = []
    for check in (foreign._assert_object_and_alignment, foreign._assert_edges, foreign._assert_stable):
        try:
            check(row)
        except AssertionError as err:  # report every group, not only the first to fail
            failures.append(f"{check.__name__}: {err}")
    return row, failures


@pytest.fixture(scope="module")
def all_realism_row(all_realism_foreign):
    """The default chain with ``position_correction=True, probe_modes=3`` (and the monitor) on it."""
    raw, truth = all_realism_foreign
    with pytest.MonkeyPatch.context() as monkeypatch:
        return _chain_row(raw, truth, monkeypatch, position_correction=True, probe_modes=3)


@pytest.mark.slow
def test_all_realism_default_chain_chemical_state(all_realism_row):
    """Issue 12: all three realisms at once, the default chain with ``position_correction=True,
    probe_modes=3`` and the monitor: tests/test_foreign_accuracy.py's edge-energy / N_V / e⁻ per V
    bounds and its stability bounds hold, and so does the phase.

    Measured (docs/design-notes/s11-combined.md): single-domain edge RMSE 0.31 eV, all valid
    0.49 eV, bias −0.14 eV, median vs ideal 0.23 eV, N_V 4.6 %, e⁻/V 4.3 %, Fourier final/min
    1.02, probe/frames 1.02; φ NRMSE 0.028. Without the options the same chain gives 0.57 eV
    single-domain, 28 valid pixels, Fourier final/min 1.07 (fails). ≈ 5 min on a loaded core.
    """
    row, _ = all_realism_row
    import test_foreign_accuracy as foreign

    foreign._assert_edges(row)
    foreign._assert_stable(row)
    assert row["phase_nrmse"] < 0.04, row["phase_nrmse"]
    assert row["phase_nrmse_worst_energy"] < 0.06, row["phase_nrmse_worst_energy"]


@pytest.mark.slow
def test_all_realism_default_chain_alignment(all_realism_row):
    """``align``'s drift within 0.2 px (tests/test_foreign_accuracy.py's bound) of the drift the
    frames carry (:func:`_drift_the_frames_carry`: drift + each energy's mean position error,
    which no method can separate from the frames).

    Measured (docs/design-notes/s12-positions.md): 0.104 px; against the simulator's drift alone
    0.270 px, of which the inseparable mean position errors are 0.242 px rms (2-D, relative to the
    reference energy). The opposite sign of the mean error would give 0.50 px.
    """
    row, _ = all_realism_row
    assert row["alignment_rms_px"] < 0.2, row["alignment_rms_px"]


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="all three realisms at once: absorption NRMSE 0.106 (bound 0.10; 0.091 from the true positions): "
    "the refined positions' residual error (0.29 px per axis); docs/design-notes/s11-combined.md, s12-positions.md",
)
def test_all_realism_default_chain_object(all_realism_row):
    """The object bounds of tests/test_foreign_accuracy.py, which this case does not meet yet (μt)."""
    row, _ = all_realism_row
    assert row["absorption_nrmse"] < 0.10, row["absorption_nrmse"]
    assert row["phase_nrmse"] < 0.04, row["phase_nrmse"]
    assert row["absorption_nrmse_worst_energy"] < 0.2
    assert row["phase_nrmse_worst_energy"] < 0.06
