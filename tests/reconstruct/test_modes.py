"""Mixed-state probe: ``reconstruct(probe_modes=K)`` (issue 12 point 2, Thibault & Menzel 2013)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft as sfft
from checkpoint_runs import assert_resume_equals, full_and_checkpoint  # this folder is on sys.path
from test_reconstruct import _drift_corrected_nrmse

from ptyxr import schema as S
from ptyxr.reconstruct import epie, modes
from ptyxr.reconstruct.api import reconstruct

NUMBA = epie._numba is not None
FUSED = NUMBA and epie._load_fftw() is not None


# ---------------------------------------------------------------- synthetic exact data
def _exact_problem(n_e=2, k_modes=3, n=16, seed=0):
    """Random object, orthogonal modes and the exact incoherent-sum amplitudes of a 4×4 raster."""
    rng = np.random.default_rng(seed)
    side = n + 3 * 5
    obj = 1 + 0.3 * (rng.standard_normal((n_e, side, side)) + 1j * rng.standard_normal((n_e, side, side)))
    obj = obj.astype(np.complex64)
    c = np.arange(n) - n // 2
    g = np.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / 18.0)
    base = np.stack([g * np.exp(1j * 0.1 * e * c[None, :]) for e in range(n_e)]) * 30
    probe = modes.initial_modes(base.astype(np.complex64), k_modes, fraction=0.15)
    offsets = np.array([(5 * i, 5 * j) for i in range(4) for j in range(4)], dtype=np.int64)
    offsets = np.broadcast_to(offsets, (n_e, *offsets.shape)).copy()
    intensity = np.zeros((n_e, offsets.shape[1], n, n))
    for e in range(n_e):
        for k, (oy, ox) in enumerate(offsets[e]):
            psi = sfft.fftshift(sfft.fft2(probe[e] * obj[e, oy : oy + n, ox : ox + n], norm="ortho"), axes=(-2, -1))
            intensity[e, k] = np.sum(np.abs(psi) ** 2, axis=0)
    amplitudes = epie.prepare_amplitudes(intensity)
    norm = intensity.sum(axis=(1, 2, 3))
    return obj, probe, offsets, amplitudes, norm


def _engines():
    out = [("numpy", "scipy")]
    if NUMBA:
        out.append(("numba", "scipy"))
    if FUSED:
        out.append(("numba", "pyfftw"))
    return out


@pytest.mark.parametrize(("engine", "fft_backend"), _engines())
def test_exact_model_is_a_fixed_point(engine, fft_backend):
    """True object and modes fit the incoherent sum exactly: no update, Fourier error ≈ 0."""
    obj, probe, offsets, amplitudes, norm = _exact_problem()
    solver = modes.ModeEPIE(amplitudes, offsets, norm, 3, 1.0, 1.0, engine=engine, fft_backend=fft_backend)
    o, p = obj.copy(), probe.copy()
    err = solver.iteration(o, p, np.arange(offsets.shape[1]), True)
    assert np.all(err < 1e-9), err  # float32 round-off of an exact model (a wrong sum gives ~1e-1)
    np.testing.assert_allclose(o, obj, atol=2e-4)
    np.testing.assert_allclose(p, probe, atol=2e-4 * np.abs(probe).max())


@pytest.mark.skipif(not NUMBA, reason="numba not installed")
def test_engines_agree_from_a_wrong_start():
    """numpy reference, step-wise numba and the per-energy numba+FFTW kernel: the same iteration."""
    obj, probe, offsets, amplitudes, norm = _exact_problem(seed=1)
    start_p = modes.initial_modes(probe[:, 0].copy(), 3)  # wrong extra modes and powers
    results = []
    for engine, backend in _engines():
        solver = modes.ModeEPIE(amplitudes, offsets, norm, 3, 1.0, 0.5, engine=engine, fft_backend=backend)
        o, p = np.ones_like(obj), start_p.copy()
        errs = [solver.iteration(o, p, np.random.default_rng(it).permutation(16), True) for it in range(1)]
        results.append((o, p, errs[-1], backend))
    ref_o, ref_p, ref_err, _ = results[0]
    for o, p, err, backend in results[1:]:
        # same FFT: float32 sums in another order (~1e-6); FFTW instead of pocketfft: where
        # Σ|Ψ|² ≈ 0 the kept phase is rounding noise, single pixels differ by ~1e-4 (measured
        # 1.3e-4), as between the coherent engines (tests/reconstruct/test_reconstruct.py::test_engines_agree)
        tol = 1e-5 if backend == "scipy" else 1e-3
        np.testing.assert_allclose(o, ref_o, atol=tol)
        np.testing.assert_allclose(p, ref_p, atol=tol * np.abs(ref_p).max())
        np.testing.assert_allclose(err, ref_err, rtol=tol)


def test_one_mode_is_coherent_epie():
    """K = 1 in the mixed-state engine is ePIE: same result as the coherent numpy engine."""
    obj, probe, offsets, _, _ = _exact_problem(k_modes=1, seed=2)
    _, probe3, _, amplitudes, norm = _exact_problem(k_modes=3, seed=2)  # data a single mode cannot fit
    order = np.random.default_rng(0).permutation(16)
    one = modes.ModeEPIE(amplitudes, offsets, norm, 1, 1.0, 0.25, engine="numpy", fft_backend="scipy")
    ref = epie.BatchedEPIE(amplitudes, offsets, norm, 1.0, 0.25, engine="numpy", fft_backend="scipy")
    o1, p1 = np.ones_like(obj), probe.copy()
    o2, p2 = np.ones_like(obj), probe[:, 0].copy()
    for _ in range(2):
        e1 = one.iteration(o1, p1, order, True)
        e2 = ref.iteration(o2, p2, order, True)
    np.testing.assert_allclose(o1, o2, atol=1e-5)
    np.testing.assert_allclose(p1[:, 0], p2, atol=1e-5 * np.abs(p2).max())
    np.testing.assert_allclose(e1, e2, rtol=1e-5)


def test_orthogonalise_keeps_the_incoherent_sum():
    rng = np.random.default_rng(3)
    p = (rng.standard_normal((2, 4, 8, 8)) + 1j * rng.standard_normal((2, 4, 8, 8))).astype(np.complex64)
    p[:, 2] *= 3  # the strongest mode is not first
    before = np.sum(np.abs(p.astype(np.complex128)) ** 2, axis=1)
    powers = modes.orthogonalise(p)
    q = p.reshape(2, 4, -1).astype(np.complex128)
    gram = np.einsum("eki,eli->ekl", q, q.conj())
    diag = np.real(np.einsum("ekk->ek", gram))
    off = np.abs(gram - np.einsum("ek,kl->ekl", diag, np.eye(4)))
    assert off.max() < 1e-5 * diag.max()
    assert np.all(np.diff(diag, axis=1) <= 0)  # ordered by power
    np.testing.assert_allclose(diag, powers, rtol=1e-5)
    np.testing.assert_allclose(np.sum(np.abs(q) ** 2, axis=1).reshape(before.shape), before, rtol=1e-5)


def test_initial_modes_split_the_power():
    base = modes.initial_modes(np.ones((1, 16, 16), np.complex64) * np.hanning(16)[:, None], 1)[:, 0]
    stack = modes.initial_modes(base, 4, fraction=0.1)
    np.testing.assert_allclose(modes.power_fractions(stack)[0], [0.7, 0.1, 0.1, 0.1], atol=1e-6)
    q = stack[0].reshape(4, -1).astype(np.complex128)
    gram = q @ q.conj().T
    assert np.abs(gram - np.diag(np.diag(gram))).max() < 1e-5 * np.abs(gram).max()
    assert np.isclose(np.sum(np.abs(q) ** 2), np.sum(np.abs(base) ** 2), rtol=1e-5)


# ---------------------------------------------------------------------- the stage
@pytest.fixture(scope="module")
def tiny_modes():
    """tiny preset with three modes 0.75/0.17/0.08, last 4 energies (16 scan points)."""
    sim = pytest.importorskip("ptyxr.simulate")
    raw, truth = sim.demo_dataset("tiny", seed=0, progress=False, **sim.REALISM["probe_modes"])
    sel = {S.ENERGY: slice(-4, None)}
    return raw.isel(sel), truth.isel(sel)


@pytest.fixture(scope="module")
def tiny_runs(tiny_modes):
    raw, _ = tiny_modes
    kw = dict(iterations=100, kkr=False, progress=False)
    return reconstruct(raw, **kw), reconstruct(raw, **kw, probe_modes=3)


def _nrmse(out, truth):
    """Mean over energies of the object NRMSE inside coverage after undoing the simulator's drift
    and the best global phase, normalised by the object's deviation from vacuum (as
    tests/reconstruct/test_reconstruct.py)."""
    return float(np.mean(_drift_corrected_nrmse(out, truth)))


def test_modes_fit_partially_coherent_data(tiny_modes, tiny_runs):
    """tiny (16 points): three modes explain the data; one coherent probe cannot.

    Measured (100 iterations): object NRMSE 0.146 with 3 modes vs 0.53 with 1 (coherent twin
    0.094), final Fourier error 1.7e-5 vs 9.2e-5. On 16 scan points the split among the modes is not well determined
    (it stays near the start); the power fractions are tested on the small preset.
    """
    raw, truth = tiny_modes
    one, three = tiny_runs
    assert S.PROBE_MODE not in one[S.PROBE].dims and S.PROBE_MODE_FRACTION not in one
    assert three[S.PROBE].dims == (S.PROBE_MODE, S.ENERGY, S.PROBE_Y, S.PROBE_X)
    assert three[S.PROBE].sizes[S.PROBE_MODE] == 3
    assert _nrmse(three, truth) < 0.5 * _nrmse(one, truth)
    assert np.all(three[S.FOURIER_ERROR][:, -1] < 0.5 * one[S.FOURIER_ERROR][:, -1])
    frac = three[S.PROBE_MODE_FRACTION]
    assert frac.dims == (S.ENERGY, S.PROBE_MODE) and frac.attrs[S.ATTR_UNITS] == "1"
    np.testing.assert_allclose(frac.sum(S.PROBE_MODE), 1.0, rtol=1e-9)
    assert np.all(frac.diff(S.PROBE_MODE) <= 0)
    # the output modes are orthogonal (orthogonalised on the native grid, then resampled:
    # the highest energy is on the common pixel, so it is exactly as the engine left it)
    q = three[S.PROBE].isel({S.ENERGY: -1}).values.reshape(3, -1).astype(np.complex128)
    gram = q @ q.conj().T
    assert np.abs(gram - np.diag(np.diag(gram))).max() < 1e-4 * np.abs(gram).max()
    assert not S.check_attrs(three)


def test_probe_modes_one_is_the_default_run(tiny_modes, tiny_runs):
    raw, _ = tiny_modes
    explicit = reconstruct(raw, iterations=100, kkr=False, progress=False, probe_modes=1)
    for name in (S.OBJECT, S.PROBE, S.FOURIER_ERROR, S.COVERAGE):
        np.testing.assert_array_equal(explicit[name].values, tiny_runs[0][name].values)


def test_resume_with_modes_is_exact(tiny_modes, tmp_path):
    raw, _ = tiny_modes
    raw = raw.isel({S.ENERGY: [0, 1, 2]})
    kw = dict(iterations=6, kkr=False, progress=False, seed=3, checkpoint_every=3, probe_modes=3)
    full, ck = full_and_checkpoint(raw, tmp_path, 3, kw)
    assert_resume_equals(raw, ck, full, (S.OBJECT, S.PROBE, S.FOURIER_ERROR, S.PROBE_MODE_FRACTION), kw)
    with pytest.raises(S.SchemaError, match="probe_modes"):
        reconstruct(raw, **{**kw, "probe_modes": 2}, resume_from=ck)
    with pytest.raises(S.SchemaError, match="probe mode"):
        reconstruct(raw, **{**kw, "probe_modes": 1}, resume_from=ck)


def test_resume_with_two_modes_pins_the_scale_on_the_initial_region(tmp_path):
    """A resumed two-mode run equals the uninterrupted one bit for bit (issue 12/15 report).

    The scale-pinning region is the coverage of the INITIAL probes; a resume used to take it
    from the checkpoint's probes. On six tiny energies (coverage ANDed over energies) the
    two regions differ by pixels and the resumed run drifted (max |ΔO| 6.5e-5, |ΔP| 0.04);
    with three energies they happen to agree, so the test above did not see it.
    """
    sim = pytest.importorskip("ptyxr.simulate")
    raw, _ = sim.demo_dataset("tiny", seed=0, progress=False)
    raw = raw.isel({S.ENERGY: slice(0, 6)})
    kw = dict(iterations=6, kkr=False, progress=False, seed=3, checkpoint_every=3, probe_modes=2)
    full = reconstruct(raw, **kw)
    ck = tmp_path / "state.nc"
    reconstruct(raw, **{**kw, "iterations": 3}, checkpoint=ck)
    resumed = reconstruct(raw, **kw, resume_from=ck)
    for name in (S.OBJECT, S.PROBE, S.FOURIER_ERROR, S.PROBE_MODE_FRACTION, S.COVERAGE):
        np.testing.assert_array_equal(resumed[name].values, full[name].values)


def _pinned_levels(monkeypatch, raw, **kw) -> np.ndarray:
    """Each pin_scale call's |O| level over its region afterwards (the quantile it pins), per energy."""
    levels = []
    original = epie.pin_scale

    def spy(obj, probe, region, field, **options):
        factors = original(obj, probe, region, field, **options)
        flat = np.flatnonzero(region)
        flat = flat[:: max(1, flat.size // epie.PIN_SAMPLES)]
        k = int(round(epie.VACUUM_QUANTILE * (flat.size - 1)))
        levels.append([np.partition(np.abs(o.ravel()[flat]), k)[k] for o in obj])
        return factors

    monkeypatch.setattr(epie, "pin_scale", spy)
    reconstruct(raw, iterations=8, kkr=False, progress=False, seed=1, **kw)
    return np.asarray(levels)


def test_mode_runs_pin_the_scale_exactly(monkeypatch):
    """With K > 1 every pin leaves the pinned |O| level at 1 to float32 rounding (modes.PIN_TOLERANCE
    = 0: on weak objects pin_scale's 0.1 % band is 10–20 % of the object error, s13-modes2);
    the coherent run keeps that band (levels off 1 by more than rounding: the test sees the
    difference, so it fails when the mode runs lose the exact pin)."""
    sim = pytest.importorskip("ptyxr.simulate")
    raw, _ = sim.demo_dataset("tiny", seed=0, progress=False)
    raw = raw.isel({S.ENERGY: slice(0, 3)})
    mixed = _pinned_levels(monkeypatch, raw, probe_modes=2)
    coherent = _pinned_levels(monkeypatch, raw)
    assert mixed.size and np.max(np.abs(mixed - 1)) < 1e-6, np.max(np.abs(mixed - 1))
    assert np.max(np.abs(coherent - 1)) <= 1e-3 + 1e-6  # the coherent band
    assert np.max(np.abs(coherent - 1)) > 1e-5  # … which it uses (else this test could not tell)


_COMPILE_ORDER_SCRIPT = """
import hashlib, sys
import numpy as np
from ptyxr.reconstruct import epie, modes
rng = np.random.default_rng(0)
n_e, n_s, n = 2, 6, 16
amps = epie.prepare_amplitudes(rng.random((n_e, n_s, n, n)) * 100)
offs = rng.integers(0, 9, (n_e, n_s, 2)).astype(np.int64)
obj = (1 + 0.2 * rng.standard_normal((n_e, n + 8, n + 8))).astype(np.complex64)
probe = (rng.standard_normal((n_e, n, n)) + 1j * rng.standard_normal((n_e, n, n))).astype(np.complex64)
if sys.argv[1] == "stepwise-first":  # compile (and run) the step-wise fastmath=False kernels first
    ref = epie.BatchedEPIE(amps, offs, np.ones(n_e), engine="numba", fft_backend="scipy")
    ref.iteration(obj.copy(), probe.copy(), np.arange(n_s), True)
solver = modes.ModeEPIE(amps, offs, np.ones(n_e), 2, engine="numba", fft_backend="pyfftw")
assert solver.fused
o, p = obj.copy(), modes.initial_modes(probe, 2)
for it in range(3):
    err = solver.iteration(o, p, np.arange(n_s), True)
print(hashlib.sha1(o.tobytes() + p.tobytes() + err.tobytes()).hexdigest())
"""


@pytest.mark.slow
@pytest.mark.skipif(not FUSED, reason="needs numba and pyFFTW")
def test_mode_kernel_compiles_the_same_whatever_was_compiled_before(tmp_path):
    """The fused mode kernel gives the same bits whether or not the step-wise kernels were compiled first.

    Two fresh processes, each with an empty numba cache: one compiles only the mode kernel,
    the other the step-wise (fastmath=False) ePIE kernels first. With complex64 arithmetic the
    mode kernel inherited shared complex helpers compiled without ``contract`` in the second
    (57 instead of 163 fused multiply-adds) and its results differed in the last bits; the
    disk cache then kept whichever came first. ≈ 30–60 s: two cold compiles.
    """
    import os
    import subprocess
    import sys
    from pathlib import Path

    import ptyxr

    root = str(Path(ptyxr.__file__).resolve().parents[1])
    digests = []
    for case in ("alone", "stepwise-first"):
        env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / case), "PYTHONPATH": root}
        run = subprocess.run(
            [sys.executable, "-c", _COMPILE_ORDER_SCRIPT, case], env=env, capture_output=True, text=True, timeout=600
        )
        assert run.returncode == 0, run.stderr
        digests.append(run.stdout.strip().splitlines()[-1])
    assert digests[0] == digests[1]


def test_downstream_stages_take_a_mode_dim(tiny_runs, tmp_path):
    """align, spectra, PRTF and the netCDF round trip work on a result with probe modes."""
    from ptyxr import resolution
    from ptyxr.io import open_dataset, to_netcdf

    three = tiny_runs[1]
    spectra = three.ptyxr.align(progress=False).ptyxr.spectra()
    assert np.isfinite(spectra[S.ABSORPTION].values).any()
    path = tmp_path / "modes.nc"
    to_netcdf(three, path)
    back = open_dataset(path, load=True)
    np.testing.assert_array_equal(back[S.PROBE].values, three[S.PROBE].values)
    assert back[S.PROBE].dims == three[S.PROBE].dims
    curve = resolution.prtf(three)[S.PRTF].values
    # the model of the incoherent sum explains the low frequencies (PRTF ≈ 1 there)
    assert np.all(np.abs(curve[:, 1:4] - 1) < 0.1), curve[:, :4]


def test_particles_with_modes(tiny_modes):
    import xarray as xr

    raw, _ = tiny_modes
    two = xr.concat([raw.isel({S.ENERGY: [0, 1]})] * 2, dim=S.PARTICLE)
    out = reconstruct(two, iterations=2, kkr=False, progress=False, probe_modes=2)
    assert out[S.PROBE].dims == (S.PARTICLE, S.PROBE_MODE, S.ENERGY, S.PROBE_Y, S.PROBE_X)
    assert out[S.PROBE_MODE_FRACTION].dims == (S.PARTICLE, S.ENERGY, S.PROBE_MODE)


@pytest.mark.parametrize("bad", [0, 9, 2.5, "3", True, None])
def test_bad_probe_modes_is_refused(tiny_modes, bad):
    with pytest.raises(S.SchemaError, match="probe_modes"):
        reconstruct(tiny_modes[0], iterations=1, progress=False, probe_modes=bad)


def test_three_modes_recover_the_power_fractions_and_the_object():
    """Issue 12's acceptance case on the small preset (72 points, 64² frames), 2 energies, 200 iterations.

    Data made with modes 0.75/0.17/0.08 and its coherent twin (same preset, one mode).
    Measured: fractions 0.762/0.155/0.083 (bound 0.03); object NRMSE 0.0221 with 3 modes,
    0.0193 for the twin (ratio 1.15), 0.168 with one mode (8.7× the twin). The issue asks
    for ≤ 1.10× the twin; that lies below what these frames allow: against a twin whose probe is
    also known, the known-modes ratio is 1.16–1.22× (docs/design-notes/s13-modes2.md), and the
    Cramér–Rao bound of the object with known probes is 2.17× the coherent one at the last
    energy (s13-modes.md). The bound here is 1.25× (measured 1.116 with the exact pin of
    modes.PIN_TOLERANCE: 0.0214 vs 0.0192). Runtime 5 s on an idle machine (42 s with the 2
    cores shared by several runs).
    """
    sim = pytest.importorskip("ptyxr.simulate")
    sel = {S.ENERGY: slice(-2, None)}
    kw = dict(iterations=200, kkr=False, progress=False)
    raw, truth = (d.isel(sel) for d in sim.demo_dataset("small", seed=0, progress=False, **sim.REALISM["probe_modes"]))
    twin_raw, twin_truth = (d.isel(sel) for d in sim.demo_dataset("small", seed=0, progress=False))
    three = reconstruct(raw, **kw, probe_modes=3)
    one = reconstruct(raw, **kw)
    twin = _nrmse(reconstruct(twin_raw, **kw), twin_truth)
    fractions = three[S.PROBE_MODE_FRACTION].values
    np.testing.assert_allclose(fractions, np.broadcast_to([0.75, 0.17, 0.08], fractions.shape), atol=0.03)
    err3, err1 = _nrmse(three, truth), _nrmse(one, truth)
    assert err3 <= 1.25 * twin, (err3, twin)
    assert err1 >= 4 * twin, (err1, twin)


@pytest.mark.slow
def test_refining_three_modes_costs_no_more_than_refining_one_probe(monkeypatch):
    """The issue's 1.10× bound against what the data allow (docs/design-notes/s13-modes2.md).

    small preset, last 2 energies, 200 iterations. Reference runs hold the TRUE probe (twin) or
    the TRUE three modes (partially coherent data) fixed (``update_probe=False``): the best
    object these frames give without refinement. Measured (seeds 0 / 1): known modes 0.0176 /
    0.0149, known coherent probe 0.0145 / 0.0123, so with everything known the three-mode data
    already give 1.22× / 1.21× the coherent object error (4 energies: 1.16×); refined: 0.0218 /
    0.0204 vs 0.0192 / 0.0169 (0.0214 / 0.0186 with the exact pin). What refinement adds is the
    engine's business: refined / known = 1.21 / 1.25 with three modes vs 1.33 / 1.37 for the coherent
    twin (ratio 0.91 / 0.91; 0.93 / 1.00 with the coherent 0.1 % pin tolerance).
    Asserted: the three-mode refinement cost ≤ 1.10 × the coherent one (the seed spread is
    ≈ 0.07), and the known-modes ratio itself above 1.10 (the reason the issue's bound on
    refined runs is not asserted: it lies below what the frames allow even with the modes known).
    """
    sim = pytest.importorskip("ptyxr.simulate")
    from ptyxr.reconstruct import particle

    sel = {S.ENERGY: slice(-2, None)}
    kw = dict(iterations=200, kkr=False, progress=False)
    raw, truth = (d.isel(sel) for d in sim.demo_dataset("small", seed=0, progress=False, **sim.REALISM["probe_modes"]))
    twin_raw, twin_truth = (d.isel(sel) for d in sim.demo_dataset("small", seed=0, progress=False))
    refined3 = _nrmse(reconstruct(raw, **kw, probe_modes=3), truth)
    refined1 = _nrmse(reconstruct(twin_raw, **kw), twin_truth)
    true_modes = np.ascontiguousarray(truth[S.TRUE_PROBE_MODES].transpose(S.ENERGY, ...).values, dtype=np.complex64)
    true_probe = twin_truth[S.PROBE]
    monkeypatch.setattr(modes, "initial_modes", lambda probe, k, fraction=None: true_modes.copy())
    monkeypatch.setattr(
        particle,
        "setup_probes",
        lambda energy, *args: np.stack([true_probe.sel({S.ENERGY: e}).values for e in np.atleast_1d(energy)]),
    )
    known3 = _nrmse(reconstruct(raw, **kw, probe_modes=3, update_probe=False), truth)
    known1 = _nrmse(reconstruct(twin_raw, **kw, update_probe=False), twin_truth)
    assert known3 < refined3 and known1 < refined1, (known3, refined3, known1, refined1)  # the truth helps
    assert known3 >= 1.10 * known1, (known3, known1)
    assert refined3 / known3 <= 1.10 * refined1 / known1, (refined3, known3, refined1, known1)


def test_write_reconstruction_keeps_the_modes_per_energy(tiny_runs, tmp_path):
    h5py = pytest.importorskip("h5py")
    from ptyxr.io import write_reconstruction

    three = tiny_runs[1]
    path = write_reconstruction(three, tmp_path / "modes.cxi")
    with h5py.File(path, "r") as f:
        for i in range(three.sizes[S.ENERGY]):
            np.testing.assert_array_equal(f[f"entry_{i + 1}/probe/data"][()], three[S.PROBE].isel({S.ENERGY: i}).values)


@pytest.mark.slow
def test_siemens_star_two_modes_fit_better_than_one():
    """Real data (bundled Siemens star, 516 points, 128²), 100 iterations, defaults.

    Measured final Fourier error: 0.01403 with one probe, 0.01007 with 2 modes (fractions
    0.80/0.20), 0.00970 with 3; asserted: 2 modes ≤ 0.85 × one probe, and still at their minimum.
    """
    from ptyxr.io.real_data import siemens_star

    star = siemens_star()
    one = reconstruct(star, iterations=100, kkr=False, progress=False)
    two = reconstruct(star, iterations=100, kkr=False, progress=False, probe_modes=2)
    e1, e2 = one[S.FOURIER_ERROR].values[0], two[S.FOURIER_ERROR].values[0]
    assert e2[-1] <= 0.85 * e1[-1], (e2[-1], e1[-1])
    assert e2[-1] <= 1.02 * np.nanmin(e2)


@pytest.mark.slow
def test_default_chain_with_three_modes_meets_the_accuracy_bounds(monkeypatch):
    """Issue 12's probe-modes realism on the plain foreign geometry, the default chain + ``probe_modes=3``.

    The same bounds as tests/test_foreign_accuracy.py (object, alignment, edges, stability).
    Measured: μt NRMSE 0.073, φ 0.023, alignment 0.068 px, single-domain edge RMSE 0.19 eV,
    all valid 0.32 eV, bias −0.07 eV, N_V 2.9 %, Fourier final/min 1.005, probe/frames 1.02;
    807 valid pixels; with one probe the same chain (same code, same day) gives μt 0.72,
    φ 0.19, alignment 0.46 px, single-domain edge RMSE 0.84 eV, 27 valid pixels, Fourier
    final/min 1.07. ≈ 40 s (15 s with one probe).
    """
    import test_foreign_accuracy as foreign

    sim = pytest.importorskip("ptyxr.simulate")
    raw, truth = sim.demo_dataset(foreign.PLAIN_FOREIGN, seed=0, progress=False, **sim.REALISM["probe_modes"])

    def chain(raw):  # the default chain, with three probe modes
        return (
            raw.ptyxr.reconstruct(progress=False, probe_modes=3)
            .ptyxr.align(progress=False)
            .ptyxr.spectra()
            .ptyxr.fit_xanes(progress=False)
            .ptyxr.chemical_state()
        )

    monkeypatch.setattr(foreign, "_default_chain", chain)
    row = foreign._accuracy(raw, truth)
    foreign._assert_object_and_alignment(row)
    foreign._assert_edges(row)
    foreign._assert_stable(row)
