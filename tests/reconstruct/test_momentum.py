"""mPIE (issue 12 point 5): rPIE object step in both engines, momentum, options, resume."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from checkpoint_runs import assert_resume_equals, full_and_checkpoint
from test_reconstruct import _solver_inputs, nrmse_after_phase, simulate, truth_object

import ptyxr
from ptyxr import schema as S
from ptyxr.reconstruct import epie, reconstruct
from ptyxr.reconstruct.momentum import ObjectMomentum
from ptyxr.schema import SchemaError


@pytest.fixture(scope="module")
def scan():
    """3 energies, 5 × 5 raster, 32² frames, Poisson noise at 1e7 photons (tests/reconstruct/test_reconstruct.py)."""
    return simulate([5420.0, 5480.0, 5540.0], seed=1)


def _object_nrmse(out: xr.Dataset) -> float:
    yy, xx = np.meshgrid(out[S.Y].values, out[S.X].values, indexing="ij")
    cov = out[S.COVERAGE].values
    return float(
        np.mean(
            [
                nrmse_after_phase(out[S.OBJECT].values[e], truth_object(yy, xx, energy), cov)
                for e, energy in enumerate(out[S.ENERGY].values)
            ]
        )
    )


def test_rpie_step_matches_its_formula(scan):
    """One fused rPIE step equals O + α P*Δψ/((1 − a)|P|² + a·max|P|²) computed here with numpy.fft."""
    g, amps, norm, probe0 = _solver_inputs(scan)
    n, k, a, alpha = amps.shape[-1], 7, 0.2, 0.8
    obj = np.ones((3, *g.shape), np.complex64)
    obj += (0.05 * np.exp(1j * np.arange(obj.size).reshape(obj.shape) * 0.01)).astype(np.complex64)
    expected = obj.astype(np.complex128)
    for e in range(3):
        oy, ox = g.offsets[e, k]
        p = probe0[e].astype(np.complex128)
        patch = expected[e, oy : oy + n, ox : ox + n]
        f = np.fft.fft2(p * patch)
        amp = amps[e, k].astype(np.float64)
        df = np.where(amp >= 0, f * (amp / np.abs(f) - 1), 0)
        dpsi = np.fft.ifft2(df)
        pw = np.abs(p) ** 2
        patch += alpha * np.conj(p) * dpsi / ((1 - a) * pw + a * pw.max())
    for engine, backend in [("numba", "pyfftw"), ("numpy", "scipy")]:
        o = obj.copy()
        solver = epie.BatchedEPIE(
            amps, g.offsets, norm, alpha=alpha, engine=engine, fft_backend=backend, regularization=a
        )
        solver.pmax2[:] = epie.max_abs2(probe0)
        solver.step(o, probe0.copy(), k, update_probe=False)
        # float32 FFTs against float64: where |F| ≈ 0 the kept phase is rounding noise, which the
        # large rPIE step under the probe's tails carries into the object. Measured 0.006 of the
        # update's norm in both engines; the ePIE step (a = 1) in place of rPIE's misses by 0.56
        rel = np.linalg.norm(o - expected) / np.linalg.norm(expected - obj)
        assert rel < 0.02, (engine, rel)


def test_rpie_engines_agree():
    """numpy reference, step-wise numba and the fused kernel agree on 3 rPIE iterations.

    The bounds of tests/reconstruct/test_reconstruct.py::test_engines_agree for ePIE (the step-wise one
    scaled by 1/a: rPIE's step, and with it the rounding, is up to 1/a larger); rPIE itself moves
    the object by far more than them (checked), so a kernel that ignored a would fail.
    """
    g, amps, norm, probe0 = _solver_inputs(simulate([5420.0, 5480.0, 5540.0]))  # noise-free, as there
    results, errors = {}, {}
    for reg in (0.1, 1.0):
        for engine, backend in [("numpy", "scipy"), ("numba", "scipy"), ("numba", "pyfftw")]:
            obj, probe = np.ones((3, *g.shape), np.complex64), probe0.copy()
            solver = epie.BatchedEPIE(
                amps, g.offsets, norm, alpha=0.9, beta=0.8, engine=engine, fft_backend=backend, regularization=reg
            )
            for i in range(3):
                err = solver.iteration(obj, probe, np.random.default_rng(i).permutation(amps.shape[1]), True)
            results[reg, engine, backend], errors[reg, engine, backend] = obj, err
    ref = results[0.1, "numpy", "scipy"]
    # ePIE's 5e-5 scaled by rPIE's up-to-1/a larger step at weak-probe pixels (a = 0.1)
    np.testing.assert_allclose(results[0.1, "numba", "scipy"], ref, atol=5e-5 / 0.1)
    np.testing.assert_allclose(results[0.1, "numba", "pyfftw"], ref, atol=1e-2)
    np.testing.assert_allclose(errors[0.1, "numba", "pyfftw"], errors[0.1, "numpy", "scipy"], rtol=0.05)
    assert np.max(np.abs(results[1.0, "numpy", "scipy"] - ref)) > 0.05


def test_epie_is_unchanged_and_near_unit_regularisation_is_epie(scan):
    """algorithm='epie' is the default bit for bit; rPIE with a → 1 and no momentum tends to ePIE."""
    kw = dict(iterations=8, kkr=False, progress=False)
    default = reconstruct(scan, **kw)
    explicit = reconstruct(scan, algorithm="epie", **kw)
    for name in (S.OBJECT, S.PROBE, S.FOURIER_ERROR):
        np.testing.assert_array_equal(explicit[name].values, default[name].values)
    near = reconstruct(scan, algorithm="mpie", object_regularization=1 - 1e-6, momentum=0.0, **kw)
    np.testing.assert_allclose(near[S.OBJECT].values, default[S.OBJECT].values, atol=1e-3)
    params = ptyxr.provenance.parameters(near, "reconstruct")
    assert params["algorithm_name"] == "mpie" and "mPIE" in params["algorithm"]
    assert params["momentum"] == 0.0 and params["object_regularization"] == pytest.approx(1 - 1e-6)
    assert "ePIE" in ptyxr.provenance.parameters(default, "reconstruct")["algorithm"]


def test_mpie_reaches_a_fixed_error_in_fewer_iterations(scan):
    """Iterations to reach object NRMSE 0.05 against the truth, no KKR, each count a full run.

    Measured on this scan (5/10/20/40/80 iterations): ePIE 0.124/0.078/0.054/0.045/0.040,
    mPIE (defaults) 0.069/0.041/0.035/0.035/0.032 — ePIE needs 40, mPIE 10. Asserted: mPIE needs
    at most half of ePIE's iterations, and both get there.
    """
    counts = (5, 10, 20, 40)
    first = {}
    for algorithm in ("epie", "mpie"):
        errs = [
            _object_nrmse(reconstruct(scan, iterations=it, kkr=False, progress=False, algorithm=algorithm))
            for it in counts
        ]
        reached = [it for it, e in zip(counts, errs, strict=True) if e <= 0.05]
        assert reached, (algorithm, errs)
        first[algorithm] = reached[0]
    assert 2 * first["mpie"] <= first["epie"], first


def test_mpie_resume_is_exact(scan, tmp_path):
    """The momentum velocity is checkpointed: an interrupted mPIE run resumes bit for bit."""
    kw = dict(iterations=10, kkr=False, progress=False, seed=7, checkpoint_every=4, algorithm="mpie")
    full, ck = full_and_checkpoint(scan, tmp_path, 6, kw)
    assert_resume_equals(scan, ck, full, (S.OBJECT, S.PROBE, S.FOURIER_ERROR), kw)
    with pytest.raises(ValueError, match="algorithm"):
        reconstruct(scan, **{**kw, "algorithm": "epie"}, resume_from=ck)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"algorithm": "mpie2"}, "algorithm='mpie2' is not one of"),
        ({"algorithm": 3}, "algorithm"),
        ({"momentum": 0.5}, "applies to algorithm='mpie' only"),
        ({"object_regularization": 0.5}, "applies to algorithm='mpie' only"),
        ({"algorithm": "mpie", "object_regularization": 0.0}, "must be positive"),
        ({"algorithm": "mpie", "object_regularization": 1.5}, "must be ≤ 1"),
        ({"algorithm": "mpie", "momentum": 1.0}, "must be ≤ 0.99"),
        ({"algorithm": "mpie", "momentum": "0.5"}, "must be a number"),
    ],
)
def test_bad_algorithm_options_are_refused(scan, kwargs, match):
    with pytest.raises(SchemaError, match=match):
        reconstruct(scan, iterations=1, progress=False, **kwargs)


def test_momentum_follows_the_gauge_steps():
    """Velocity moves with the object: pin_scale's O → O/c gives v/c, recentre's shift moves v alike."""
    field = np.zeros((2, 16, 16), bool)
    field[:, 2:14, 2:14] = True
    mom = ObjectMomentum((2, 16, 16), field, 0.5)
    obj = np.ones((2, 16, 16), np.complex64)
    mom.before(obj)
    obj[:, 8, 8] += 0.1  # one sweep's change
    mom.after(obj)
    np.testing.assert_allclose(mom.velocity[:, 8, 8], 0.1, rtol=1e-6)
    np.testing.assert_allclose(obj[:, 8, 8], 1.15, rtol=1e-6)  # O + η v
    mom.scale(np.array([2.0, 1.0]))
    np.testing.assert_allclose(mom.velocity[:, 8, 8], [0.05, 0.1], rtol=1e-6)
    mom.shift(np.array([[0.0, 0.0], [1.0, -2.0]]))
    np.testing.assert_allclose(mom.velocity[1, 9, 6], 0.1, atol=1e-6)
    assert abs(mom.velocity[1, 8, 8]) < 1e-6
    mom.reset()
    assert not mom.velocity.any()


def test_mpie_hands_over_to_epie_at_the_first_kkr_projection(scan, monkeypatch):
    """mPIE steps (momentum, rPIE) run up to the first KKR projection; the KKR phase takes ePIE steps."""
    from ptyxr.reconstruct import momentum

    assert momentum.mpie_end("mpie", [5, 8], 8) == 5
    assert momentum.mpie_end("mpie", [], 8) == 8
    assert momentum.mpie_end("epie", [5, 8], 8) == 0
    calls = []
    real_after = momentum.ObjectMomentum.after
    monkeypatch.setattr(momentum.ObjectMomentum, "after", lambda self, obj: (calls.append(1), real_after(self, obj)))
    reconstruct(scan, iterations=6, kkr_start=3, kkr_every=2, progress=False, algorithm="mpie")
    assert len(calls) == 3
