"""fit_xanes(edge_step="erf+arctan"): eq. (1) with a step of free shape (issue 11, D2 model floor).

The spectra here are typed independently of :mod:`ptyxr.xanes.freestep`: the arctan step is
the simulator's (``scattering.edge_step(..., "arctan")``: ½ + arctan(√π z)/π, same half height
and slope at b2 as the erf step), eq. (1)'s other terms from ``eq1_array``.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import ptyxr  # noqa: F401  (registers the accessor)
from ptyxr import schema
from ptyxr.schema import SchemaError
from ptyxr.simulate.energies import paper_energy_grid
from ptyxr.simulate.scattering import edge_step
from ptyxr.xanes import fit_batch
from ptyxr.xanes import model as xm
from ptyxr.xanes.freestep import refine_free_step

SIGMA = 0.01
PRE_EDGE_LIMIT = 5466.0


def step_spectra(n: int, shape: str, seed: int = 0):
    """Spectra of eq. (1) with the step ``shape`` ("erf" or "arctan"); energy, μt (n, n_E), params (n, 10)."""
    rng = np.random.default_rng(seed)
    energy = paper_energy_grid()
    b1 = rng.uniform(0.3, 0.6, n)
    b2 = rng.uniform(5476.0, 5483.0, n)
    b3 = rng.uniform(1.5, 3.0, n)
    p = np.column_stack(
        [
            np.full(n, 0.1),
            b1,
            b2,
            b3,
            b1 * rng.uniform(0.2, 0.5, n),
            b2 - rng.uniform(8, 10, n),
            np.full(n, 1.0),
            b1 * rng.uniform(0.4, 0.7, n),
            b2 + rng.uniform(4, 6, n),
            np.full(n, 3.0),
        ]
    )
    no_step = p.copy()
    no_step[:, 1] = 0.0
    steps = np.array([edge_step(energy, c, w, shape) for c, w in zip(b2, b3, strict=True)])
    mu = xm.eq1_array(energy, no_step) + b1[:, None] * steps
    return energy, mu + rng.normal(0.0, SIGMA, mu.shape), p


@pytest.fixture(scope="module")
def arctan_fits():
    energy, mu, p = step_spectra(300, "arctan", seed=1)
    res = fit_batch(energy, mu, pre_edge_limit=PRE_EDGE_LIMIT, workers=1)
    return p, res, refine_free_step(energy, mu, res.params, res.lower, res.upper)


@pytest.fixture(scope="module")
def erf_fits():
    energy, mu, p = step_spectra(300, "erf", seed=2)
    res = fit_batch(energy, mu, pre_edge_limit=PRE_EDGE_LIMIT, workers=1)
    return p, res, refine_free_step(energy, mu, res.params, res.lower, res.upper)


def test_free_step_recovers_an_arctan_edge_where_eq1_is_biased(arctan_fits):
    """On arctan steps eq. (1) puts b2 high; the free shape recovers it within its noise, η ≈ 1."""
    p, res, free = arctan_fits
    ok = res.success & free["converged"]
    assert ok.mean() > 0.95
    err_eq1 = res.params[ok, 2] - p[ok, 2]
    err = free["params"][ok, 2] - p[ok, 2]
    sem = err.std() / np.sqrt(ok.sum())
    # eq. (1) is biased by many standard errors of the mean (its model floor, s12-fituncert §3)
    assert err_eq1.mean() > 10 * err_eq1.std() / np.sqrt(ok.sum())
    # the free shape: unbiased (within 3 standard errors of the mean) ...
    assert abs(err.mean()) < 3 * sem
    # ... and its stderr calibrated: the share within 1 σ is a Gaussian's 0.683 (± 0.07, the
    # binomial spread at n ≈ 300 is 0.027, the rest allows the nonlinearity)
    assert abs(np.mean(np.abs(err) < free["stderr"][ok, 2]) - 0.683) < 0.07
    assert np.median(free["eta"][ok]) > 0.8
    # every parameter of a converged fit has an error, η's included
    assert np.isfinite(free["eta_stderr"][ok]).mean() > 0.95


def test_free_step_on_erf_edges_gives_eta_zero_and_the_default_b2(erf_fits):
    """On eq. (1)'s own erf step: η ≈ 0 within its error, b2 as eq. (1)'s within b2's stderr."""
    p, res, free = erf_fits
    ok = res.success & free["converged"]
    assert ok.mean() > 0.95
    eta, eta_err = free["eta"][ok], free["eta_stderr"][ok]
    # η ≥ 0 is bounded: about half the fits sit on 0; the others within ~2 σ of it
    assert np.mean(eta < 2 * eta_err) > 0.9
    assert np.median(eta) < 0.1
    shift = np.abs(free["params"][ok, 2] - res.params[ok, 2])
    assert np.mean(shift < res.stderr[ok, 2]) > 0.9
    # and b2 unbiased against the truth
    err = free["params"][ok, 2] - p[ok, 2]
    assert abs(err.mean()) < 3 * err.std() / np.sqrt(ok.sum())


def test_the_free_step_lowers_chi2_and_reduces_to_eq1():
    """The free shape never fits worse than eq. (1) (it contains it: η = 0 is eq. (1))."""
    energy, mu, _ = step_spectra(60, "arctan", seed=3)
    res = fit_batch(energy, mu, pre_edge_limit=PRE_EDGE_LIMIT, workers=1)
    free = refine_free_step(energy, mu, res.params, res.lower, res.upper)
    ok = res.success & free["converged"]
    assert np.all(free["cost"][ok] <= res.cost[ok] * (1 + 1e-9))
    # b1 is the total jump: the step's two heights add up to it, η inside [0, 1]
    assert np.all((free["eta"][ok] >= 0) & (free["eta"][ok] <= 1))


def _dataset(mu: np.ndarray, energy: np.ndarray, ny: int, nx: int) -> xr.Dataset:
    cube = mu.reshape(ny, nx, -1).transpose(2, 0, 1)
    return xr.Dataset(
        {schema.ABSORPTION: schema.variable(schema.ABSORPTION, cube)},
        coords={
            schema.ENERGY: schema.energy_coord(energy),
            schema.Y: schema.length_coord(schema.Y, np.arange(ny) * 15e-9, 15e-9),
            schema.X: schema.length_coord(schema.X, np.arange(nx) * 15e-9, 15e-9),
        },
    )


def test_fit_xanes_edge_step_option_lmfit_and_batch_agree():
    """The stage option: η and its stderr (units "1"), provenance, fit curve; lmfit = batch."""
    energy, mu, p = step_spectra(12, "arctan", seed=4)
    ds = _dataset(mu, energy, 3, 4)
    default = ds.ptyxr.fit_xanes(progress=False)
    assert schema.EDGE_ARCTAN_FRACTION not in default  # the default output is unchanged
    batch = ds.ptyxr.fit_xanes(progress=False, edge_step="erf+arctan", keep_fit_curve=True)
    lm = ds.ptyxr.fit_xanes(progress=False, edge_step="erf+arctan", method="lmfit")
    for name in (schema.EDGE_ARCTAN_FRACTION, schema.EDGE_ARCTAN_FRACTION + schema.STDERR_SUFFIX):
        assert batch[name].attrs["units"] == "1" and batch[name].attrs["long_name"]
        assert batch[name].dims == (schema.Y, schema.X)
    assert "erf+arctan" in str(batch.attrs["ptyxr_fit_xanes"])
    ok = (batch[schema.SUCCESS] & lm[schema.SUCCESS]).values
    assert ok.mean() > 0.9
    b2_b, b2_l = batch["b2"].values[ok], lm["b2"].values[ok]
    err_b = batch["b2_stderr"].values[ok]
    # the same minimum: b2 agrees far inside its error, η and the errors too
    assert np.all(np.abs(b2_b - b2_l) < 0.1 * err_b)
    assert np.all(np.abs(batch["eta"].values[ok] - lm["eta"].values[ok]) < 0.02)
    np.testing.assert_allclose(lm["b2_stderr"].values[ok], err_b, rtol=0.1)
    # the fit curve is the free-step model: residual at the noise level
    resid = (batch[schema.ABSORPTION_FIT] - ds[schema.ABSORPTION]).values
    assert np.sqrt(np.mean(resid[:, ok] ** 2)) < 1.2 * SIGMA
    # the recovered edge beats eq. (1)'s on these arctan steps
    truth = p[:, 2].reshape(3, 4)[ok]
    assert np.abs(b2_b - truth).mean() < np.abs(default["b2"].values[ok] - truth).mean()


def test_fit_xanes_edge_step_is_checked():
    energy, mu, _ = step_spectra(4, "erf", seed=5)
    with pytest.raises(SchemaError, match="edge_step"):
        _dataset(mu, energy, 2, 2).ptyxr.fit_xanes(progress=False, edge_step="arctan")
