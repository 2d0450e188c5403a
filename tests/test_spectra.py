"""Tests of ptyxr.spectra: align (registration) and spectra (vacuum normalisation).

Synthetic ground truth: a particle (ellipse, two chemical halves with different edge
energies, plus a thick smooth bump whose phase reaches ≈ −7 rad so it wraps twice) with
known μt(E, y, x) and φ(E, y, x). Each energy is corrupted the way a reconstruction is:
amplitude scale, global phase offset, linear phase ramp, optional complex Gaussian noise,
optional sub-pixel drift; outside the circular coverage the object is 1+0j.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.special import erf

from ptyxr import schema
from ptyxr.schema import (
    ABSORPTION,
    BACKGROUND,
    COVERAGE,
    ENERGY,
    MATERIAL,
    OBJECT,
    PARTICLE,
    PHASE,
    SHIFT_X,
    SHIFT_Y,
    SchemaError,
    X,
    Y,
)
from ptyxr.spectra import align, detect_background, normalise_image, shift_object, spectra

N = 64
PIXEL = 20e-9  # m
ENERGIES = np.array([5420.0, 5460.0, 5468.0, 5472.0, 5480.0, 5540.0])
CENTRE = (1.0, 2.0)  # particle centre, pixels from the grid centre (row, col)
SEMI_AXES = (17.0, 13.0)
COVER_RADIUS = 29.0


def _truth_maps(drift=(0.0, 0.0), edge_width=0.0, domain_contrast=0.1):
    """True μt, φ (energy, y, x) and the true particle mask, content moved by ``drift`` pixels."""
    rows, cols = np.indices((N, N), dtype=float)
    rows -= (N - 1) / 2 + CENTRE[0] + drift[0]
    cols -= (N - 1) / 2 + CENTRE[1] + drift[1]
    r_ell = np.sqrt((rows / SEMI_AXES[0]) ** 2 + (cols / SEMI_AXES[1]) ** 2)
    if edge_width > 0:  # smooth edge (band-limited enough for sub-pixel shifts)
        shell = 0.5 * (1 - np.tanh((r_ell - 1) * SEMI_AXES[1] / edge_width))
    else:
        shell = (r_ell < 1).astype(float)
    thickness = shell * (1.0 + 5.0 * np.exp(-(rows**2 + cols**2) / (2 * 5.0**2)))
    # two chemical domains (left/right); a smooth boundary when shifted by sub-pixels
    left = 0.5 * (1 - np.tanh(cols / edge_width)) if edge_width > 0 else (cols < 0).astype(float)
    edge = 5470.0 - 5.0 * left
    step = 0.5 * (1 + erf((ENERGIES[:, None, None] - edge) / 2.0))
    mu_t = thickness * (0.03 + 0.35 * step)
    phase = -thickness * (1.2 - domain_contrast * step)  # down to ≈ −7.2 rad in the bump: wraps
    return mu_t, phase, r_ell < 1


def _coverage():
    rows, cols = np.indices((N, N), dtype=float) - (N - 1) / 2
    return np.hypot(rows, cols) < COVER_RADIUS


def make_dataset(noise=0.0, seed=0, drifts=None, edge_width=0.0, nan_pixel=True, domain_contrast=0.1):
    """A DESIGN §1b Dataset plus its truth (mu_t, phase, particle mask of the reference frame)."""
    rng = np.random.default_rng(seed)
    n_e = ENERGIES.size
    drifts = np.zeros((n_e, 2)) if drifts is None else np.asarray(drifts)
    rows, cols = np.indices((N, N), dtype=float) - (N - 1) / 2
    coverage = _coverage()
    obj = np.empty((n_e, N, N), dtype=np.complex64)
    for i in range(n_e):
        mu_t, phase, _ = _truth_maps(drifts[i], edge_width, domain_contrast)
        amplitude = rng.uniform(0.7, 1.3)
        offset = rng.uniform(-np.pi, np.pi)
        gy, gx = rng.uniform(-0.04, 0.04, 2)  # up to ±2.5 rad across the field: vacuum wraps too
        o = amplitude * np.exp(-mu_t[i] + 1j * (phase[i] + offset + gy * rows + gx * cols))
        o = o + noise * (rng.standard_normal((N, N)) + 1j * rng.standard_normal((N, N)))
        obj[i] = np.where(coverage, o, 1.0)
    if nan_pixel:
        obj[:, 8, N // 2] = np.nan  # inside coverage, in vacuum
    mu_t, phase, particle = _truth_maps((0.0, 0.0), edge_width, domain_contrast)
    coords = {
        ENERGY: schema.energy_coord(ENERGIES),
        Y: schema.length_coord(Y, (np.arange(N) - N / 2) * PIXEL, PIXEL),
        X: schema.length_coord(X, (np.arange(N) - N / 2) * PIXEL, PIXEL),
    }
    ds = xr.Dataset(
        {OBJECT: schema.variable(OBJECT, obj), COVERAGE: schema.variable(COVERAGE, coverage)},
        coords=coords,
        attrs={schema.ATTR_PARTICLE: "synthetic"},
    )
    return ds, mu_t, phase, particle


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


# ------------------------------------------------------------------------- spectra
def test_spectra_noise_free_exact():
    """Scale, phase offset, ramp and 2π wrapping are all undone to float32 precision."""
    ds, mu_t, phase, particle = make_dataset(noise=0.0)
    out = spectra(ds)
    valid = _coverage() & np.isfinite(ds[OBJECT].values[0])
    # complex64 input: relative precision 6e-8; 1e-5 leaves room for the thick bump's |O| ≈ 0.1
    np.testing.assert_allclose(out[ABSORPTION].values[:, valid], mu_t[:, valid], atol=1e-5)
    np.testing.assert_allclose(out[PHASE].values[:, valid], phase[:, valid], atol=1e-5)
    assert phase.min() < -2 * np.pi  # the test really exercises unwrapping
    # material = the particle exactly (hard edge, no noise)
    assert _iou(out[MATERIAL].values, particle & valid) == 1.0


def test_spectra_noisy_recovers_truth_and_masks():
    sigma = 0.01
    ds, mu_t, phase, particle = make_dataset(noise=sigma, seed=1)
    out = spectra(ds)
    cov = _coverage()
    valid = cov & np.isfinite(ds[OBJECT].values[0])
    mat = out[MATERIAL].values
    # per-pixel noise of μt and φ is σ/|O_measured| (radial/tangential noise component);
    # normalised residuals must then be ~N(0, 1): allow 1.3 (normalisation from >1000
    # vacuum pixels adds < 1 %, log/angle nonlinearity at |O| ≈ 0.1 a few %)
    o_abs = np.abs(ds[OBJECT].values)
    for name, truth in ((ABSORPTION, mu_t), (PHASE, phase)):
        z = (out[name].values - truth) * o_abs / sigma
        z_in = z[:, particle & valid]
        assert np.sqrt(np.mean(z_in**2)) < 1.3, name
        assert abs(np.mean(z_in)) < 0.1, name
        assert np.abs(z_in).max() < 6, name  # no 2π slips (a slip is > 60 σ here)
    # background: (nearly) all vacuum, and most of the vacuum
    bg = out[BACKGROUND].values
    true_vacuum = valid & ~particle
    assert (bg & ~true_vacuum).sum() == 0
    assert bg.sum() > 0.9 * true_vacuum.sum()
    assert _iou(mat, particle & valid) > 0.9
    assert not (mat & bg).any()
    # uncovered pixels are NaN, covered finite
    for name in (ABSORPTION, PHASE):
        assert np.isnan(out[name].values[:, ~cov]).all()
        assert np.isfinite(out[name].values[:, valid]).all()
    assert not out[BACKGROUND].values[~cov].any() and not mat[~cov].any()


def test_spectra_is_additive_with_attrs_and_provenance():
    ds, *_ = make_dataset(noise=0.005, seed=2)
    out = spectra(ds)
    for name in ds.variables:
        xr.testing.assert_identical(out[name], ds[name])
    assert schema.check_attrs(out) == []
    for name in (ABSORPTION, PHASE, BACKGROUND, MATERIAL):
        assert out[name].attrs == schema.attrs_of(name)
    assert out[ABSORPTION].dims == (ENERGY, Y, X) and out[BACKGROUND].dims == (Y, X)
    assert out[ABSORPTION].dtype == np.float64 and out[MATERIAL].dtype == bool
    assert "spectra(" in out.attrs[schema.ATTR_HISTORY]
    # accessor binding goes to the same function
    xr.testing.assert_identical(ds.ptyxr.spectra().drop_attrs(), out.drop_attrs())


def test_spectra_given_background_and_material_and_no_unwrap():
    sigma = 0.005
    ds, mu_t, phase, particle = make_dataset(noise=sigma, seed=3)
    cov = _coverage()
    rows, cols = np.indices((N, N)) - (N - 1) / 2
    ring = cov & (np.hypot(rows, cols) > 24)  # vacuum ring at the edge of the field
    out = spectra(ds, background=ring, material=particle, unwrap=False)
    assert (out[BACKGROUND].values == (ring & cov)).all()
    assert (out[MATERIAL].values == (particle & cov)).all()
    valid = cov & np.isfinite(ds[OBJECT].values[0])
    # wrapped phase: equal to the truth modulo 2π, within noise (σ/|O| ≤ 0.005/0.05 = 0.1)
    wrapped_err = np.angle(np.exp(1j * (out[PHASE].values - phase)))[:, valid]
    assert np.abs(wrapped_err).max() < 0.6
    assert np.nanmin(out[PHASE].values) >= -np.pi - 1e-12
    # a DataArray mask works too
    out2 = spectra(ds, background=xr.DataArray(ring, dims=(Y, X)))
    np.testing.assert_array_equal(out2[BACKGROUND].values, ring & cov)


def test_spectra_reference_energy_changes_material_definition_only():
    ds, *_ = make_dataset(noise=0.005, seed=4)
    low = spectra(ds)
    high = spectra(ds, reference_energy=5540.0)
    assert _iou(low[MATERIAL].values, high[MATERIAL].values) > 0.95
    with pytest.raises(SchemaError, match="not on the energy grid"):
        spectra(ds, reference_energy=6000.0)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda ds: ds.drop_vars(OBJECT), "object"),
        (lambda ds: ds.drop_vars(ENERGY), "energy"),
        (lambda ds: ds.assign({OBJECT: np.abs(ds[OBJECT])}), "complex"),
        (lambda ds: ds.assign({COVERAGE: ds[COVERAGE] & False}), "background="),
        (lambda ds: ds.assign({OBJECT: ds[OBJECT].transpose(Y, ENERGY, X)}), "dims"),
    ],
)
def test_spectra_schema_errors(mutate, match):
    ds, *_ = make_dataset()
    with pytest.raises(SchemaError, match=match):
        spectra(mutate(ds))


def test_spectra_bad_masks():
    ds, *_ = make_dataset()
    with pytest.raises(SchemaError, match="shape"):
        spectra(ds, background=np.ones((3, 3), bool))
    with pytest.raises(SchemaError, match="boolean"):
        spectra(ds, background=np.ones((N, N)))
    with pytest.raises(SchemaError, match="background="):
        spectra(ds, background=np.zeros((N, N), bool))


def test_detect_background_raises_without_vacuum():
    obj = np.full((N, N), np.nan, dtype=np.complex64)
    obj[:3, :3] = 1
    with pytest.raises(SchemaError, match="background="):
        detect_background(obj)


def test_normalise_image_pure_vacuum_is_zero():
    """A ramped, scaled vacuum (no particle at all) normalises to μt = φ = 0."""
    rows, cols = np.indices((N, N)) - (N - 1) / 2
    obj = 0.8 * np.exp(1j * (2.5 + 0.07 * rows - 0.05 * cols))  # ramp wraps ~3 times
    bg = detect_background(obj)
    assert bg.all()
    mu, phi = normalise_image(obj, None, bg)
    np.testing.assert_allclose(mu, 0, atol=1e-12)
    np.testing.assert_allclose(phi, 0, atol=1e-12)


def test_spectra_particle_dim_and_lazy_on_dask(no_compute):
    ds1, mu1, *_ = make_dataset(noise=0.005, seed=5)
    ds2, *_ = make_dataset(noise=0.005, seed=6)
    stacked = xr.concat([ds1, ds2], dim=PARTICLE)
    eager = spectra(stacked)
    assert eager[ABSORPTION].dims == (PARTICLE, ENERGY, Y, X)
    assert eager[BACKGROUND].dims == (PARTICLE, Y, X)
    xr.testing.assert_allclose(eager[ABSORPTION].isel({PARTICLE: 0}), spectra(ds1)[ABSORPTION])

    lazy_in = stacked.chunk({PARTICLE: 1, ENERGY: 2})
    with no_compute("spectra computed a dask array"):
        lazy = spectra(lazy_in)
    assert lazy[PHASE].chunks is not None and lazy[MATERIAL].chunks is not None
    xr.testing.assert_allclose(lazy.compute()[PHASE], eager[PHASE])
    xr.testing.assert_equal(lazy[MATERIAL].compute(), eager[MATERIAL])


# --------------------------------------------------------------------------- align
DRIFTS = np.array([[1.37, -2.61], [-0.42, 0.83], [2.95, 1.18], [-1.71, -0.26], [0.55, 2.07], [0.0, 0.0]])


def test_align_recovers_drifts_with_sign():
    """Content drifted by d must get shift −d (positive shift moves content toward +y/+x)."""
    ds, *_ = make_dataset(noise=0.01, seed=7, drifts=DRIFTS, edge_width=1.0)
    out = align(ds, progress=False)
    shift_px = np.column_stack([out[SHIFT_Y].values, out[SHIFT_X].values]) / PIXEL
    # edge images (σ = 1.5 px) with 100× upsampling: measured max 0.13 px here; brief asks 0.2
    np.testing.assert_array_less(np.abs(shift_px + DRIFTS), 0.2)
    assert out[SHIFT_Y].values[-1] == 0.0 and out[SHIFT_X].values[-1] == 0.0
    assert out[SHIFT_Y].attrs[schema.ATTR_UNITS] == schema.METRE
    assert schema.check_attrs(out) == []
    assert out[OBJECT].dtype == np.complex64
    # coverage shrinks to pixels covered at every energy
    cov = out[COVERAGE].values
    assert cov.sum() < ds[COVERAGE].values.sum() and not (cov & ~ds[COVERAGE].values).any()
    for name in ds.data_vars:
        if name not in (OBJECT, COVERAGE):
            xr.testing.assert_identical(out[name], ds[name])


def test_align_whole_images_biased_by_domains_edges_not():
    """Registering whole phase images is pulled by domain contrast; the default edge images are not."""
    strong, *_ = make_dataset(noise=0.01, seed=7, drifts=DRIFTS, edge_width=1.0)
    weak, *_ = make_dataset(noise=0.01, seed=7, drifts=DRIFTS, edge_width=1.0, domain_contrast=0.02)

    def error(ds, **kw):
        out = align(ds, progress=False, **kw)
        return np.abs(np.column_stack([out[SHIFT_Y].values, out[SHIFT_X].values]) / PIXEL + DRIFTS).max()

    # half-and-half domains with 0.6 rad of phase contrast between them at 5468 eV: measured
    # 0.24 px (whole) vs 0.13 px (edges); with 5x weaker contrast whole images work too
    assert error(strong, edges=False) > 0.2
    assert error(weak, edges=False) < 0.1
    assert error(strong) < 0.2


def test_align_then_spectra_matches_undrifted_truth():
    """After registration the spectra agree with the reference frame's truth (interior pixels)."""
    ds, mu_t, phase, _ = make_dataset(noise=0.002, seed=8, drifts=DRIFTS, edge_width=1.0)
    out = spectra(align(ds, progress=False))
    inner = out[COVERAGE].values & np.isfinite(out[PHASE].values).all(axis=0)
    # bound: misregistration ≤ 0.2 px (the align tolerance) × the map's steepest gradient,
    # plus 5 σ of noise (σ/|O| with |O| ≥ 0.7·e^(−μt))
    for name, truth in ((PHASE, phase), (ABSORPTION, mu_t)):
        steepest = max(np.abs(np.gradient(t)).max() for t in truth)
        noise = 5 * 0.002 / (0.7 * np.exp(-mu_t.max()))
        assert np.abs(out[name].values[:, inner] - truth[:, inner]).max() < 0.2 * steepest + noise, name
    # without alignment the same comparison is far off (drifts up to 3 px)
    raw = spectra(ds)
    assert np.nanmax(np.abs(raw[PHASE].values[:, inner] - phase[:, inner])) > 1.0


def test_align_reference_absorption_region_and_particle_dim():
    ds1, *_ = make_dataset(noise=0.005, seed=9, drifts=DRIFTS, edge_width=1.0)
    ds2, *_ = make_dataset(noise=0.005, seed=10, drifts=-DRIFTS[::-1], edge_width=1.0)
    stacked = xr.concat([ds1, ds2], dim=PARTICLE)
    out = align(stacked, reference=5420.0, progress=False)
    assert out[SHIFT_Y].dims == (PARTICLE, ENERGY)
    assert out[OBJECT].dims == (PARTICLE, ENERGY, Y, X)
    for p, drifts in enumerate((DRIFTS, -DRIFTS[::-1])):
        expected = -(drifts - drifts[0])  # registered onto the first energy now
        got = np.column_stack([out[SHIFT_Y].values[p], out[SHIFT_X].values[p]]) / PIXEL
        np.testing.assert_array_less(np.abs(got - expected), 0.2)
        assert (got[0] == 0).all()
    # absorption images and a region (metres) around the particle
    half = 25 * PIXEL
    out_abs = align(ds1, image="absorption", region={Y: slice(-half, half), X: slice(-half, half)}, progress=False)
    got = np.column_stack([out_abs[SHIFT_Y].values, out_abs[SHIFT_X].values]) / PIXEL
    # at 5468 eV (index 2) only the left domain has crossed its edge, so the absorption
    # image shows half a particle and cannot register on the reference (why phase is the
    # default); everywhere else μt registers as well as phase
    others = [0, 1, 3, 4, 5]
    np.testing.assert_array_less(np.abs(got + DRIFTS)[others], 0.2)


def test_shift_object_keeps_vacuum_and_moves_content():
    """Integer shift of a ramped object: content moves exactly, the vacuum phasor stays."""
    rows, cols = np.indices((N, N)) - (N - 1) / 2
    vac = 0.9 * np.exp(1j * (0.3 + 0.02 * rows))
    blob = np.exp(-((rows - 2) ** 2 + cols**2) / 20.0)
    obj = (vac * np.exp(-0.5 * blob - 1j * blob)).astype(np.complex64)
    moved = shift_object(obj, None, 0.9, np.array([0.3, 0.02, 0.0]), np.array([3.0, -2.0]))
    expected = vac * np.exp(-0.5 * np.roll(blob, (3, -2), (0, 1)) - 1j * np.roll(blob, (3, -2), (0, 1)))
    np.testing.assert_allclose(moved, expected, atol=1e-5)


def test_align_errors():
    ds, *_ = make_dataset()
    with pytest.raises(ValueError, match="image"):
        align(ds, image="amplitude", progress=False)
    with pytest.raises(SchemaError, match="complex"):
        align(ds.assign({OBJECT: np.abs(ds[OBJECT])}), progress=False)
    with pytest.raises(SchemaError, match="region"):
        align(ds, region={"z": slice(0, 1)}, progress=False)


# ------------------------------------------------------------- simulator's truth
def test_spectra_reproduces_simulated_truth():
    simulate = pytest.importorskip("ptyxr.simulate")
    if not hasattr(simulate, "demo_dataset"):
        pytest.skip("ptyxr.simulate.demo_dataset not available yet")
    _, truth = simulate.demo_dataset("tiny", seed=0)
    ds = truth[[OBJECT]]
    out = spectra(ds)
    material = truth[MATERIAL].values
    # the truth object is exp(−μt + iφ) with vacuum exactly 1: agreement to complex64 precision
    np.testing.assert_allclose(out[ABSORPTION].values[:, material], truth[ABSORPTION].values[:, material], atol=1e-4)
    np.testing.assert_allclose(out[PHASE].values[:, material], truth[PHASE].values[:, material], atol=1e-4)


@pytest.mark.slow
def test_align_on_simulated_reconstruction():
    """End to end: simulate (tiny) → reconstruct → align recovers the true drift (≈7 min on 2 cores)."""
    simulate = pytest.importorskip("ptyxr.simulate")
    api = pytest.importorskip("ptyxr.reconstruct.api")
    raw, truth = simulate.demo_dataset("tiny", seed=0)
    rec = api.reconstruct(raw, iterations=300, kkr=False, progress=False)
    out = align(rec, progress=False)
    pixel = float(rec[Y][1] - rec[Y][0])
    err = np.column_stack([out[SHIFT_Y] - truth[SHIFT_Y], out[SHIFT_X] - truth[SHIFT_X]]) / pixel
    # measured rms 0.15 px, max 0.38 px on this 13-px particle with φ ≈ −0.1 rad
    assert np.sqrt(np.mean(err**2)) < 0.25
    assert np.abs(err).max() < 0.6
