"""Position refinement (issue 12 point 1): ``reconstruct(position_correction=True)``."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from checkpoint_runs import assert_resume_equals, full_and_checkpoint  # this folder is on sys.path

import ptyxr
from ptyxr import schema as S
from ptyxr.optics import far_field, real_space_pixel_size
from ptyxr.reconstruct import epie, positions, reconstruct
from ptyxr.reconstruct.positions import ESTIMATE_X, ESTIMATE_Y, EVERY, measure_shifts
from ptyxr.schema import SchemaError

#: The three energies of the cut-down "small" scan (below, at and above the V K edge).
ENERGIES = (5420.0, 5480.0, 5540.0)
ITERATIONS = 100
#: rms rounding error of an integer patch placement, 1/√12 px: the engine's own quantisation.
QUANTISATION = 1 / np.sqrt(12)


# --------------------------------------------------------------------- the estimator
def _smooth_object(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A band-limited random complex object around 1 (no content near Nyquist)."""
    spec = np.fft.fft2(rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    ky, kx = np.meshgrid(np.fft.fftfreq(shape[0]), np.fft.fftfreq(shape[1]), indexing="ij")
    spec *= np.exp(-((ky**2 + kx**2) / (2 * 0.06**2)))
    dev = np.fft.ifft2(spec)
    dev *= 0.3 / np.abs(dev).max()
    return 1 + dev


def test_measure_shifts_recovers_known_subpixel_shifts(monkeypatch):
    """Noise-free frames taken at offset + s for known sub-pixel s.

    Measured at the integer offset (linearisation about s = 0) the Gauss–Newton step is
    first-order exact: its error is second order in s (≤ 0.05 px for |s| ≤ 0.4 px on this
    smooth object). Measured at the true sub-pixel estimate (probe moved by s) the data are
    exactly consistent, so the residual is 0 to float32 rounding (≤ 0.005 px): this pins the
    sign conventions of both the shift and the sub-pixel probe move.
    """
    rng = np.random.default_rng(3)
    n, n_scan = 32, 9
    obj = _smooth_object((96, 96), rng)
    yy, xx = np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2, indexing="ij")
    probe = (1e3 * np.exp(-(yy**2 + xx**2) / (2 * 4.0**2)) * np.exp(0.02j * (yy**2 + xx**2))).astype(np.complex64)
    offsets = np.stack(np.meshgrid([20, 32, 44], [20, 32, 44], indexing="ij"), -1).reshape(1, n_scan, 2)
    true = rng.uniform(-0.4, 0.4, (1, n_scan, 2))
    frames = np.empty((1, n_scan, n, n))
    for k in range(n_scan):
        moved = epie.fourier_shift(obj - 1, (-true[0, k, 0], -true[0, k, 1])) + 1  # O(r + s)
        oy, ox = offsets[0, k]
        frames[0, k] = np.abs(far_field(probe * moved[oy : oy + n, ox : ox + n])) ** 2
    amplitudes = epie.prepare_amplitudes(frames)
    active = np.ones((1, n_scan), bool)
    obj32 = obj.astype(np.complex64)[None]
    linear = measure_shifts(obj32, probe[None], amplitudes, offsets, active)
    assert np.max(np.abs(linear - true)) < 0.05, np.abs(linear - true).max()
    at_truth = measure_shifts(obj32, probe[None], amplitudes, offsets, active, fraction=true)
    assert np.max(np.abs(at_truth)) < 0.005, np.abs(at_truth).max()
    # blocks of 2 scan points (a large scan's memory bound) give the same estimates
    monkeypatch.setattr(positions, "CHUNK_BYTES", 2 * 8 * n * n)
    blocked = measure_shifts(obj32, probe[None], amplitudes, offsets, active, fraction=true)
    np.testing.assert_allclose(blocked, at_truth, rtol=0, atol=1e-9)


# --------------------------------------------------------- simulator, 1 px rms errors
@pytest.fixture(scope="module")
def scan_with_position_errors():
    """small's geometry (64² frames, 72 positions), 3 energies, 1 px rms errors at exact positions.

    ``placement="exact"``: each frame sees the object at its true sub-pixel position (with
    the default "nearest" the truth would be the rounded pixel and 0.2 px could not be asked).
    """
    sim = pytest.importorskip("ptyxr.simulate")
    raw, truth = sim.demo_dataset(
        "small", seed=0, energies=ENERGIES, placement="exact", progress=False, **sim.REALISM["position_errors"]
    )
    return raw, truth


def _pixels(raw: xr.Dataset) -> np.ndarray:
    n = raw.sizes[S.DET_Y]
    z, p = raw.attrs[S.ATTR_DETECTOR_DISTANCE], raw.attrs[S.ATTR_DETECTOR_PIXEL_SIZE]
    return np.atleast_1d(real_space_pixel_size(raw[S.ENERGY].values, z, p, n))[:, None]


def _position_error(raw, truth, corr_y, corr_x) -> float:
    """rms per axis [px of each energy] of recorded + correction − truth, each energy's mean removed."""
    dx = _pixels(raw)
    errs = []
    for pos, corr, name in ((S.POSITION_Y, corr_y, S.TRUE_POSITION_Y), (S.POSITION_X, corr_x, S.TRUE_POSITION_X)):
        err = (raw[pos].values + corr - truth[name].values) / dx
        errs.append(err - err.mean(axis=1, keepdims=True))
    return float(np.sqrt(np.mean(np.square(errs))))


def _object_nrmse(out: xr.Dataset, truth: xr.Dataset) -> float:
    """Mean over energies of ‖O·e^{iγ} − O_true‖/‖O_true − 1‖ inside coverage, each energy registered.

    The simulator's drift is undone from the truth; what remains (each energy's mean
    position error, which the refinement leaves in the object by design) is removed by a
    20×-upsampled phase registration, as ``align`` would.
    """
    from skimage.registration import phase_cross_correlation

    dx = out[S.Y].attrs[S.ATTR_PIXEL_SIZE]
    true = truth[S.OBJECT].interp({S.Y: out[S.Y], S.X: out[S.X]}).values
    cov = out[S.COVERAGE].values
    errors = []
    for e in range(out.sizes[S.ENERGY]):
        drift = (truth[S.SHIFT_Y].values[e] / dx, truth[S.SHIFT_X].values[e] / dx)
        rec = epie.fourier_shift(out[S.OBJECT].values[e] - 1, drift) + 1
        shift, _, _ = phase_cross_correlation(
            np.where(cov, np.nan_to_num(np.angle(true[e])), 0),
            np.where(cov, np.angle(rec), 0),
            upsample_factor=20,
            normalization=None,
        )
        rec = epie.fourier_shift(rec - 1, tuple(shift)) + 1
        a, b = rec[cov], true[e][cov]
        gamma = np.angle(np.vdot(a, b))
        errors.append(np.linalg.norm(a * np.exp(1j * gamma) - b) / np.linalg.norm(b - 1))
    return float(np.mean(errors))


@pytest.fixture(scope="module")
def three_runs(scan_with_position_errors):
    raw, truth = scan_with_position_errors
    kw = dict(iterations=ITERATIONS, kkr=False, progress=False)
    at_truth = raw.assign(
        {S.POSITION_Y: truth[S.TRUE_POSITION_Y].variable, S.POSITION_X: truth[S.TRUE_POSITION_X].variable}
    )
    return {
        "true": reconstruct(at_truth, **kw),
        "recorded": reconstruct(raw, **kw),
        "refined": reconstruct(raw, position_correction=True, **kw),
    }


def test_refinement_recovers_positions_and_object(scan_with_position_errors, three_runs):
    """1 px rms position errors, 3 energies, 100 iterations (measured numbers: design note).

    Positions: the recorded ones are ~1 px rms off (the simulator's setting). Refined, they
    must beat the engine's own integer-placement quantisation (1/√12 = 0.29 px rms, the
    error of the true positions as the engine places them) and remove ≥ 2/3 of the error.
    Object: without refinement it must be clearly worse than from the true positions
    (≥ 1.5×, the premise of issue 12), and refinement must undo at least half of that damage.
    """
    raw, truth = scan_with_position_errors
    zero = np.zeros(raw[S.POSITION_Y].shape)
    before = _position_error(raw, truth, zero, zero)
    out = three_runs["refined"]
    after = _position_error(raw, truth, out[S.POSITION_CORRECTION_Y].values, out[S.POSITION_CORRECTION_X].values)
    assert 0.7 < before < 1.3, before
    assert after < QUANTISATION, (before, after)
    assert after < before / 3, (before, after)
    err = {name: _object_nrmse(run, truth) for name, run in three_runs.items()}
    assert err["recorded"] > 1.5 * err["true"], err
    assert err["refined"] < err["true"] + 0.5 * (err["recorded"] - err["true"]), err


def test_refinement_with_true_object_and_probe_reaches_the_truth(scan_with_position_errors, monkeypatch):
    """The refinement loop is not what limits the refined positions (design note s12-positions).

    Same scan and schedule as above, but every pass measures against the *true* object and
    probe (the simulator's, on each energy's native grid with its drift; the engine still
    iterates on its own): the pass, its sub-pixel probe move, the mean removal and the
    clipping must then bring the 1 px rms errors below half the issue's 0.2 px (measured
    0.085 px), where the reconstructed object and probe leave ≈ 0.25 px. With only one of
    the two true the refinement stays above 0.2 px (0.21 / 0.27 px measured): the joint
    object/probe uncertainty at weakly illuminated frames sets the floor.
    """
    raw, truth = scan_with_position_errors
    grids = []
    make_refiner = positions.make_refiner

    def capture(py, px, native, work, n, settings):
        grids.extend(native)
        return make_refiner(py, px, native, work, n, settings)

    refine = positions.PositionRefiner.refine
    true_probe = truth[S.PROBE].values.astype(np.complex64)

    def with_truth(self, obj, probe, amplitudes, offsets):
        true_obj = np.ones_like(obj)
        for e, g in enumerate(grids):
            y = (g.origin_y + np.arange(obj.shape[1])) * g.pixel_size + truth[S.SHIFT_Y].values[e]
            x = (g.origin_x + np.arange(obj.shape[2])) * g.pixel_size + truth[S.SHIFT_X].values[e]
            dev = (truth[S.OBJECT].isel({S.ENERGY: e}) - 1).interp({S.Y: y, S.X: x}, kwargs={"fill_value": 0.0})
            true_obj[e] = 1 + dev.values
        return refine(self, true_obj, true_probe, amplitudes, offsets)

    monkeypatch.setattr(positions, "make_refiner", capture)
    monkeypatch.setattr(positions.PositionRefiner, "refine", with_truth)
    out = reconstruct(raw, iterations=ITERATIONS, kkr=False, progress=False, position_correction=True)
    after = _position_error(raw, truth, out[S.POSITION_CORRECTION_Y].values, out[S.POSITION_CORRECTION_X].values)
    assert after < 0.1, after


def test_position_correction_outputs(three_runs):
    out = three_runs["refined"]
    for name in (S.POSITION_CORRECTION_Y, S.POSITION_CORRECTION_X):
        var = out[name]
        assert var.dims == (S.ENERGY, S.SCAN)
        assert var.attrs[S.ATTR_UNITS] == "m" and var.attrs[S.ATTR_LONG_NAME]
        # each energy's mean correction is removed: the drift stays in the object for align
        np.testing.assert_allclose(var.mean(S.SCAN).values, 0.0, atol=1e-12)
        # at most position_max_shift (4) pixels of each energy's own grid
        assert 0 < np.abs(var).max() and np.all(np.abs(var.values) <= 4.0 * _pixels(out) * (1 + 1e-9))
    params = ptyxr.provenance.parameters(out, "reconstruct")
    assert params["position_correction"] is True
    assert params["position_options"]["start"] == round(0.3 * ITERATIONS)
    assert params["position_correction_passes"] == len(range(30, ITERATIONS + 1, EVERY))
    assert S.POSITION_CORRECTION_Y not in three_runs["recorded"]
    assert not [m for m in S.check_attrs(out) if "position_correction" in m]
    S.validate_reconstruction(out)


# ------------------------------------------------------------------ switches and resume
@pytest.fixture(scope="module")
def tiny_scan():
    sim = pytest.importorskip("ptyxr.simulate")
    raw, _ = sim.demo_dataset("tiny", seed=1, progress=False, **sim.REALISM["position_errors"])
    return raw.isel({S.ENERGY: [0, 8, 15]})


def test_option_off_is_unchanged(tiny_scan):
    """position_correction=False ignores the other position settings: identical results."""
    kw = dict(iterations=6, kkr=False, progress=False, seed=2)
    plain = reconstruct(tiny_scan, **kw)
    off = reconstruct(tiny_scan, **kw, position_correction=False, position_correction_start=2, position_max_shift=9.0)
    for name in (S.OBJECT, S.PROBE, S.FOURIER_ERROR):
        np.testing.assert_array_equal(off[name].values, plain[name].values)
    assert S.POSITION_CORRECTION_X not in off


@pytest.mark.parametrize(
    "bad",
    [
        {"position_correction": "yes"},
        {"position_correction_every": 0},
        {"position_correction_start": 0},
        {"position_correction_start": 2.5},
        {"position_max_shift": 0.0},
        {"position_max_shift": float("nan")},
        {"position_max_shift": 500.0},
    ],
)
def test_bad_position_arguments_are_refused(tiny_scan, bad):
    with pytest.raises(SchemaError, match=next(iter(bad))):
        reconstruct(tiny_scan, iterations=2, progress=False, **{"position_correction": True, **bad})


def test_start_after_the_last_iteration_warns(tiny_scan):
    with pytest.warns(UserWarning, match="no position refinement pass"):
        out = reconstruct(
            tiny_scan, iterations=2, kkr=False, progress=False, position_correction=True, position_correction_start=5
        )
    assert ptyxr.provenance.parameters(out, "reconstruct")["position_correction_passes"] == 0
    np.testing.assert_array_equal(out[S.POSITION_CORRECTION_Y].values, 0.0)


def test_resume_with_refinement_is_exact(tiny_scan, tmp_path):
    kw = dict(
        iterations=12,
        kkr=False,
        progress=False,
        seed=4,
        checkpoint_every=5,
        position_correction=True,
        position_correction_start=3,
        position_correction_every=2,
    )
    full, ck = full_and_checkpoint(tiny_scan, tmp_path, 8, kw)  # interrupted after 8 (passes at 3, 5, 7)
    with xr.open_dataset(ck) as state:
        assert ESTIMATE_Y in state and ESTIMATE_X in state
        assert np.abs(state[ESTIMATE_Y].values - np.round(state[ESTIMATE_Y].values)).max() > 0  # sub-pixel kept
    names = (S.OBJECT, S.PROBE, S.FOURIER_ERROR, S.POSITION_CORRECTION_Y, S.POSITION_CORRECTION_X)
    assert_resume_equals(tiny_scan, ck, full, names, kw)
    with pytest.raises(SchemaError, match="does not match"):
        reconstruct(tiny_scan, **{**kw, "position_correction_every": 3}, resume_from=ck)


def test_padding_scan_points_stay_nan(tiny_scan):
    """A scan point without a position (padding: NaN position and frame) gets no correction."""
    padded = tiny_scan.copy(deep=True)
    for name in (S.POSITION_Y, S.POSITION_X):
        padded[name][1, 3] = np.nan
    padded[S.INTENSITY][1, 3] = np.nan
    out = reconstruct(
        padded, iterations=6, kkr=False, progress=False, position_correction=True, position_correction_start=2
    )
    corr = out[S.POSITION_CORRECTION_Y].values
    assert np.isnan(corr[1, 3]) and np.isfinite(np.delete(corr.ravel(), 1 * corr.shape[1] + 3)).all()
    np.testing.assert_allclose(np.nanmean(corr, axis=1), 0.0, atol=1e-15)
