"""The fit_xanes stage (DESIGN §1d): contract, validation, NaN pixels, noise, dask laziness, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import ptyxr  # noqa: F401  (registers the accessor)
from ptyxr import schema
from ptyxr.schema import SchemaError
from ptyxr.simulate.energies import paper_energy_grid
from ptyxr.xanes import fit_xanes
from ptyxr.xanes import model as xm

SIGMA = 0.01


def spectra_dataset(ny: int = 4, nx: int = 5, seed: int = 0, sigma: float = SIGMA, slope: float = 0.0) -> xr.Dataset:
    """A §1c Dataset of eq. (1) spectra (known parameters) with one NaN pixel and a vacuum column."""
    rng = np.random.default_rng(seed)
    energy = paper_energy_grid()
    n = ny * nx
    b1 = rng.uniform(0.2, 0.5, n)
    p = np.stack(
        [
            np.full(n, 0.1),
            b1,
            rng.uniform(5476, 5482, n),
            np.full(n, 2.5),
            b1 * rng.uniform(0.2, 0.6, n),
            np.full(n, 5468.5),
            np.full(n, 1.2),
            0.5 * b1,
            rng.uniform(5486, 5488, n),
            np.full(n, 3.0),
        ],
        axis=1,
    )
    p[::nx, 1] = 0.0  # first column: vacuum (no edge)
    p[::nx, 4] = p[::nx, 7] = 0.0
    mu = xm.eq1_array(energy, p) + rng.normal(0, sigma, (n, energy.size)) + slope * (energy - energy[0])
    mu = mu.reshape(ny, nx, -1).transpose(2, 0, 1)
    mu[:, 1, min(2, nx - 1)] = np.nan  # a NaN pixel in every map fixture
    material = np.ones((ny, nx), bool)
    material[:, 0] = False
    ds = xr.Dataset(
        {
            schema.ABSORPTION: schema.variable(schema.ABSORPTION, mu),
            schema.PHASE: schema.variable(schema.PHASE, -0.1 * np.ones_like(mu)),
            schema.MATERIAL: schema.variable(schema.MATERIAL, material),
        },
        coords={
            schema.ENERGY: schema.energy_coord(energy),
            schema.Y: schema.length_coord(schema.Y, np.arange(ny) * 15e-9, 15e-9),
            schema.X: schema.length_coord(schema.X, np.arange(nx) * 15e-9, 15e-9),
        },
        attrs={"particle": "T1"},
    )
    return ds, p.reshape(ny, nx, -1)


@pytest.fixture(scope="module")
def fitted():
    ds, truth = spectra_dataset()
    return ds, truth, ds.ptyxr.fit_xanes(progress=False)


def test_outputs_follow_the_contract(fitted):
    ds, truth, out = fitted
    for name in (
        *schema.FIT_PARAMETERS,
        schema.REDCHI,
        schema.SUCCESS,
        schema.NOISE,
        schema.FIT_VALID,
        schema.PRE_EDGE_VALID,
        schema.EDGE_UNCERTAINTY,
    ):
        assert out[name].dims == ("y", "x"), name
        assert out[name].attrs == schema.attrs_of(name, **({} if name != schema.NOISE else out[name].attrs))
    for name in schema.FIT_PARAMETERS:
        assert out[name + "_stderr"].attrs["units"] == schema.spec(name).units
    assert out[schema.SUCCESS].dtype == bool and out[schema.FIT_VALID].dtype == bool
    # the edge uncertainty is the stderr combined with a model error ≥ 0 (NaN where b2 is undetermined)
    unc, err = out[schema.EDGE_UNCERTAINTY].values, out["b2_stderr"].values
    assert np.array_equal(np.isfinite(unc), np.isfinite(err)) and np.all(unc[np.isfinite(err)] >= err[np.isfinite(err)])
    assert not (out[schema.PRE_EDGE_VALID] & ~out[schema.FIT_VALID]).any()
    assert out[schema.NOISE].attrs["method"] == "paper"
    assert schema.check_attrs(out) == []
    # additive: the input is unchanged inside the output
    xr.testing.assert_identical(out[list(ds.data_vars)], ds[list(ds.data_vars)].assign_attrs(out.attrs))
    assert "fit_xanes(" in out.attrs["history"].splitlines()[0]
    assert ptyxr.provenance.parameters(out, "fit_xanes")["noise"] == "paper"


def test_fit_values_nan_pixel_and_validity(fitted):
    ds, truth, out = fitted
    assert np.isnan(out["b2"].values[1, 2]) and not out["success"].values[1, 2] and not out["fit_valid"].values[1, 2]
    edge = np.ones(truth.shape[:2], bool)
    edge[:, 0] = False
    edge[1, 2] = False
    # b1 ≥ 0.2 = 20 σ: the edge is determined to ≈ 0.1 eV; 0.5 eV is > 5 stderr
    np.testing.assert_allclose(out["b2"].values[edge], truth[..., 2][edge], atol=0.5)
    assert out["fit_valid"].values[edge].all()
    assert not out["fit_valid"].values[:, 0].any()  # outside material (and no edge)
    # fit_valid = material & (b1 >= noise) & success, exactly
    expect = ds["material"] & (out["b1"] >= out["noise"]) & out["success"]
    np.testing.assert_array_equal(out["fit_valid"].values, expect.values)


def test_noise_paper_and_detrended_on_an_analytic_pre_edge():
    ds, _ = spectra_dataset(sigma=0.0, slope=1e-3)  # noise-free, a linear pre-edge slope
    paper = fit_xanes(ds, noise="paper", progress=False)["noise"].values
    detr = fit_xanes(ds, noise="detrended", progress=False)["noise"].values
    e = paper_energy_grid()
    pre = e[e < 5466.0]
    # in the vacuum column the pre-edge is exactly a line of slope s (elsewhere Lorentzian tails add
    # curvature): paper σ = s·std(E_pre, ddof=1), detrended σ = 0
    np.testing.assert_allclose(paper[:, 0], 1e-3 * np.std(pre, ddof=1), rtol=1e-9)
    assert np.max(detr[:, 0]) < 1e-12
    assert np.all(detr[:, 1:][np.isfinite(detr[:, 1:])] < paper[:, 1:][np.isfinite(paper[:, 1:])])
    assert np.isnan(paper[1, 2])  # the NaN pixel


def test_keep_fit_curve_reproduces_noise_free_spectra():
    ds, _ = spectra_dataset(ny=2, nx=3, sigma=0.0)
    out = fit_xanes(ds, keep_fit_curve=True, progress=False)
    fit = out["absorption_fit"]
    assert fit.dims == ds["absorption"].dims and fit.attrs["units"] == "1"
    ok = out["success"].values
    # noise-free: the fitted curve is the data to convergence precision
    np.testing.assert_allclose(fit.values[:, ok], ds["absorption"].values[:, ok], atol=1e-6)


def test_bad_input_raises_schema_error():
    ds, _ = spectra_dataset(ny=2, nx=3)
    with pytest.raises(SchemaError, match="needs variable"):
        fit_xanes(ds.drop_vars("absorption"), progress=False)
    with pytest.raises(SchemaError, match="no 'energy' dim"):
        fit_xanes(ds.isel(energy=0), progress=False)
    with pytest.raises(SchemaError, match="at least 11 energies"):
        fit_xanes(ds.isel(energy=slice(0, 10)), progress=False)
    with pytest.raises(SchemaError, match="pre-edge energies"):
        fit_xanes(ds.isel(energy=slice(2, None)), progress=False)
    with pytest.raises(SchemaError, match="NaN everywhere"):
        fit_xanes(ds.assign(absorption=ds["absorption"] * np.nan), progress=False)
    with pytest.raises(SchemaError, match="must be boolean"):
        fit_xanes(ds.assign(material=ds["material"].astype(int)), progress=False)
    with pytest.raises(SchemaError, match="xarray.Dataset"):
        fit_xanes(ds["absorption"], progress=False)
    with pytest.raises(ValueError, match="method"):
        fit_xanes(ds, method="numba", progress=False)


def test_dask_input_stays_lazy_and_equals_eager(fitted, no_compute):
    ds, _, eager = fitted
    with no_compute("dask computed although the stage must stay lazy"):
        lazy = fit_xanes(ds, chunks={"y": 2, "x": 3}, keep_fit_curve=True, progress=False)
        for name in ("b2", "b2_stderr", "success", "noise", "fit_valid", "absorption_fit"):
            assert lazy[name].chunks is not None, name
    computed = lazy.compute(scheduler="synchronous")
    for name in (*schema.FIT_PARAMETERS, "b2_stderr", "redchi", "success", "noise", "fit_valid"):
        # same per-pixel arithmetic in other blocks: equal up to rounding
        np.testing.assert_allclose(computed[name].values, eager[name].values, rtol=1e-9, atol=1e-12, err_msg=name)


def test_leading_particle_dim_and_lmfit_method_agree():
    a, _ = spectra_dataset(ny=2, nx=3, seed=1)
    b, _ = spectra_dataset(ny=2, nx=3, seed=2)
    both = xr.concat([a, b], dim="particle").assign_coords(particle=["P1", "P2"])
    batch = fit_xanes(both, progress=False)
    assert batch["b2"].dims == ("particle", "y", "x")
    single = fit_xanes(b, progress=False)
    np.testing.assert_allclose(batch["b2"].sel(particle="P2").values, single["b2"].values, rtol=1e-12)
    ref = fit_xanes(both, method="lmfit", progress=False)
    ok = (batch["success"] & ref["success"] & (batch["b1"] > 0.1)).values
    assert ok.sum() >= 6
    # the acceptance tolerance of batch vs lmfit (DESIGN §2b)
    np.testing.assert_allclose(batch["b2"].values[ok], ref["b2"].values[ok], atol=0.05)
    np.testing.assert_allclose(batch["b1"].values[ok], ref["b1"].values[ok], rtol=0.01)
    # the model-error part is propagated from the parameters: same fits, same uncertainty
    # (to the stderr's own batch/lmfit agreement: both stderr differ by ~1e-3 relative)
    unc_b, unc_l = batch[schema.EDGE_UNCERTAINTY].values[ok], ref[schema.EDGE_UNCERTAINTY].values[ok]
    err_b, err_l = batch["b2_stderr"].values[ok], ref["b2_stderr"].values[ok]
    np.testing.assert_allclose(unc_b - err_b, unc_l - err_l, rtol=0.1, atol=0.01)


def test_same_input_gives_bit_identical_output(fitted):
    ds, _, out = fitted
    again = fit_xanes(ds, progress=False)
    for name in out.data_vars:
        np.testing.assert_array_equal(again[name].values, out[name].values, err_msg=name)


def test_material_argument_overrides_dataset_mask(fitted):
    ds, _, out = fitted
    none = xr.zeros_like(ds["material"])
    res = fit_xanes(ds, material=none, progress=False)
    assert not res["fit_valid"].any()
    np.testing.assert_array_equal(res["b2"].values, out["b2"].values)


def test_spectra_from_simulated_truth():
    simulate = pytest.importorskip("ptyxr.simulate")
    raw, truth = simulate.demo_dataset("tiny", seed=0, progress=False)
    # the tiny preset's edge jump is ≈ 0.01: noise 1e-4 keeps it well above σ
    spectra = simulate.spectra_from_truth(truth, noise=1e-4, seed=1)
    # the paper's validity: b1 ≥ σ and an edge located at all (not the default's 0.5 eV)
    out = fit_xanes(spectra, progress=False, min_edge_significance=0.0, max_edge_stderr=8.0)
    valid = out["fit_valid"].values
    mat = truth["material"].values
    assert valid[mat].mean() > 0.8 and not valid[~mat].any()
    # the default also asks b1 ≥ 3 × its error: it may drop only marginal edges, i.e. pixels on
    # the particle's thin rim (N_V a small fraction of the particle's median)
    strict = fit_xanes(spectra, progress=False, max_edge_stderr=8.0)["fit_valid"].values
    dropped = valid & ~strict
    n_v = truth["vanadium_density"].values
    assert not (strict & ~valid).any()
    assert (n_v[dropped] < 0.2 * np.median(n_v[mat])).all()
    # the simulator's absorption is eq. (1) per domain mixed along the beam, not one eq. (1):
    # compare the fitted edge with the truth's Δμt-weighted edge energy to within 1 eV
    diff = (out["b2"] - truth["edge_energy"]).values[valid]
    assert np.median(np.abs(diff)) < 1.0


def test_max_edge_stderr_tightens_fit_valid_only(fitted):
    ds, _, out = fitted
    err = out["b2_stderr"].values
    limit = float(np.median(err[out["fit_valid"].values]))  # halves the valid set: the cut bites
    tight = ds.ptyxr.fit_xanes(progress=False, max_edge_stderr=limit)
    valid, valid_tight = out["fit_valid"].values, tight["fit_valid"].values
    # the same fits; fit_valid is the default's minus exactly the pixels with b2 stderr ≥ limit
    np.testing.assert_array_equal(tight["b2"].values, out["b2"].values)
    np.testing.assert_array_equal(valid_tight, valid & (err < limit))
    assert 0 < valid_tight.sum() < valid.sum()
    assert tight.attrs["ptyxr_fit_xanes"].count('"max_edge_stderr"') == 1  # provenance
    for bad in (0.0, -1.0, np.nan, np.inf, "0.5", True):
        with pytest.raises(SchemaError, match="max_edge_stderr"):
            fit_xanes(ds, progress=False, max_edge_stderr=bad)
