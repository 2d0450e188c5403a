"""XANES model (paper eq. 1), batch solver vs lmfit, XDI reader and real V oxide spectra."""

from __future__ import annotations

import math
from importlib import resources

import numpy as np
import pytest

from ptyxr.io.xdi import read_xdi
from ptyxr.schema import SchemaError
from ptyxr.simulate.energies import paper_energy_grid
from ptyxr.xanes import REFERENCE_OXIDES, fit_batch, fit_xanes, reference_spectra
from ptyxr.xanes import model as xm
from ptyxr.xanes import solver as xs
from ptyxr.xanes.fit import _fit_lmfit_rows

PRE_EDGE_LIMIT = 5466.0
SIGMA = 0.01  # absorption noise: b1 ∈ [0.05, 0.5] gives edge SNR 5–50, as in the paper's maps


def synthetic(n: int, seed: int = 0, sigma: float = SIGMA):
    """eq. (1) spectra on the paper grid with known parameters over realistic ranges + noise."""
    rng = np.random.default_rng(seed)
    energy = paper_energy_grid()
    b1 = rng.uniform(0.05, 0.5, n)
    b2 = rng.uniform(5474.0, 5484.0, n)
    c13 = rng.uniform(0.8, 1.6, n)
    ratio = rng.uniform(0.5, 3.0, n)  # PE/Δμt [eV]
    truth = np.stack(
        [
            rng.uniform(0.0, 0.3, n),  # a
            b1,
            b2,
            rng.uniform(1.5, 4.0, n),  # b3
            ratio * b1 / (np.pi * c13),  # c11
            rng.uniform(5467.0, 5470.0, n),  # c12
            c13,
            rng.uniform(0.2, 0.8, n) * b1,  # c21
            b2 + rng.uniform(3.0, 8.0, n),  # c22
            rng.uniform(2.0, 5.0, n),  # c23
        ],
        axis=1,
    )
    mu = xm.eq1_array(energy, truth) + rng.normal(0.0, sigma, (n, energy.size))
    return energy, mu, truth


def eq1_by_hand(e, a, b1, b2, b3, c11, c12, c13, c21, c22, c23):
    """Paper eq. (1) typed from the paper, scalar math only (independent of the code under test)."""
    return (
        a
        + b1 / 2 * (1 + math.erf((e - b2) / b3))
        + c11 / (1 + ((e - c12) / c13) ** 2)
        + c21 / (1 + ((e - c22) / c23) ** 2)
    )


# ------------------------------------------------------------------ model
def test_eq1_numpy_and_lmfit_model_equal_the_paper_formula():
    rng = np.random.default_rng(1)
    energy = paper_energy_grid()
    for _ in range(5):
        p = dict(zip(xm.PARAMETERS, synthetic(1, seed=int(rng.integers(1000)), sigma=0)[2][0], strict=True))
        hand = np.array([eq1_by_hand(e, **p) for e in energy])
        np.testing.assert_allclose(xm.eq1(energy, **p), hand, rtol=1e-13, atol=1e-15)
        start = {k: xm.ParamGuess(v, -np.inf, np.inf) for k, v in p.items()}
        model = xm.xanes_model()
        params = xm.lmfit_parameters(model, start)
        # lmfit's amplitude = π·height·σ: its Lorentzian then has height c11 (mapping check)
        np.testing.assert_allclose(model.eval(params, x=energy), hand, rtol=1e-12, atol=1e-14)


def test_paper_params_maps_lmfit_names_and_propagates_errors():
    energy, mu, truth = synthetic(1, seed=5)
    result = xm.fit_spectrum(energy, mu[0], pre_edge_limit=PRE_EDGE_LIMIT)
    pp = xm.paper_params(result, covariance=True)
    v = result.params
    assert pp["b2"] == v["edge_center"].value and pp["b3"] == v["edge_sigma"].value
    np.testing.assert_allclose(pp["c11"], v["pre_amplitude"].value / (np.pi * v["pre_sigma"].value), rtol=1e-12)
    np.testing.assert_allclose(pp["pe"], np.pi * pp["c11"] * pp["c13"], rtol=1e-12)
    np.testing.assert_allclose(pp["pe_ratio"], pp["pe"] / pp["b1"], rtol=1e-12)
    # stderr of a directly mapped parameter is lmfit's own
    np.testing.assert_allclose(pp["b2_stderr"], v["edge_center"].stderr, rtol=1e-10)
    # c11's error by numerical propagation through lmfit's covariance (independent of the code's analytic one)
    names = result.var_names
    grad = np.zeros(len(names))
    for name in ("pre_amplitude", "pre_sigma"):
        h = 1e-6 * abs(v[name].value)
        up = {n: v[n].value for n in names}
        dn = dict(up)
        up[name] += h
        dn[name] -= h
        grad[names.index(name)] = (
            up["pre_amplitude"] / (np.pi * up["pre_sigma"]) - dn["pre_amplitude"] / (np.pi * dn["pre_sigma"])
        ) / (2 * h)
    np.testing.assert_allclose(pp["c11_stderr"], np.sqrt(grad @ result.covar @ grad), rtol=1e-5)


def test_guess_orders_features_and_bounds_contain_start_and_truth():
    energy, mu, truth = synthetic(400, seed=2)
    start, lower, upper = xm.initial_estimates(energy, mu, PRE_EDGE_LIMIT)
    assert np.all((start >= lower) & (start <= upper))
    # pre-edge centre before the edge, white line after (by construction of the bounds)
    assert np.all(upper[:, 5] <= start[:, 2]) and np.all(lower[:, 8] < start[:, 2])
    # the truth lies inside the bounds for nearly every spectrum (the edge start is within ±8 eV)
    inside = ((truth >= lower) & (truth <= upper)).all(axis=1)
    assert inside.mean() > 0.97
    # half-height crossing: the edge start is within 3 eV of the truth for most spectra
    assert np.mean(np.abs(start[:, 2] - truth[:, 2]) < 3.0) > 0.9
    g = xm.guess(energy, mu[0], PRE_EDGE_LIMIT)
    assert set(g) == set(xm.PARAMETERS) and all(p.min <= p.value <= p.max for p in g.values())
    assert g["c11"].value > 0 and g["c21"].value > 0  # strictly inside the height bounds


# ------------------------------------------------------------------ solver internals
def test_batched_nnls_equals_scipy_bounded_least_squares():
    from scipy.optimize import lsq_linear

    rng = np.random.default_rng(3)
    basis = rng.standard_normal((64, 30, 4))
    y = rng.standard_normal((64, 30))
    gram = np.einsum("pnk,pnl->klp", basis, basis)
    rhs = np.einsum("pnk,pn->kp", basis, y)
    coef, free = xs._nnls4(gram, rhs)
    assert (~free).any()  # random data exercises the active-set branch
    for p in range(64):
        ref = lsq_linear(basis[p], y[p], bounds=([-np.inf, 0, 0, 0], np.inf), tol=1e-14, method="bvls").x
        # both exact solvers of a well-conditioned 4-parameter problem: agree to rounding
        np.testing.assert_allclose(coef[:, p], ref, atol=1e-10)


def test_batch_recovers_noise_free_parameters_exactly():
    energy, mu, truth = synthetic(300, seed=4, sigma=0.0)
    res = fit_batch(energy, mu, pre_edge_limit=PRE_EDGE_LIMIT)
    assert res.success.all()
    # noise-free: the least-squares solution is the truth; 1e-5 eV / relative 1e-5 is convergence precision
    np.testing.assert_allclose(res.params[:, [2, 3, 5, 6, 8, 9]], truth[:, [2, 3, 5, 6, 8, 9]], atol=1e-5)
    np.testing.assert_allclose(res.params[:, [1, 4, 7]], truth[:, [1, 4, 7]], rtol=1e-5)


def test_zero_height_lorentzian_has_undetermined_centre_and_width():
    energy = paper_energy_grid()
    p = synthetic(1, seed=6, sigma=0.0)[2]
    p[0, 4] = 0.0  # no pre-edge peak: its centre and width do not change the model at all
    mu = xm.eq1_array(energy, p) + np.random.default_rng(0).normal(0, SIGMA, energy.size)
    _, lower, upper = xm.initial_estimates(energy, mu, PRE_EDGE_LIMIT)
    prob = xs._Problem(energy, mu, np.ones_like(mu))
    cost = ((mu - xm.eq1_array(energy, p)) ** 2).sum(axis=1)
    cov, redchi = xs._covariance(prob, p, lower, upper, cost)
    err = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))[0]
    assert np.isnan(err[5]) and np.isnan(err[6])  # c12, c13 undetermined → NaN, not a huge number
    assert np.isfinite(err[[0, 1, 2, 3, 4, 7, 8, 9]]).all()
    np.testing.assert_allclose(redchi, cost / (energy.size - 10))


def test_nan_pixels_skipped_and_partial_spectra_fitted():
    energy, mu, truth = synthetic(6, seed=7)
    mu[1] = np.nan
    mu[2, [0, 10, 30]] = np.nan  # three missing energies: still 37 points for 10 parameters
    mu[3, 5:] = np.nan  # only 5 points: cannot determine 10 parameters
    res = fit_batch(energy, mu, pre_edge_limit=PRE_EDGE_LIMIT)
    assert np.isnan(res.params[[1, 3]]).all() and not res.success[[1, 3]].any()
    assert res.success[[0, 2, 4, 5]].all()
    assert abs(res.params[2, 2] - truth[2, 2]) < 5 * res.stderr[2, 2]


def test_batch_is_deterministic_and_independent_of_blocking():
    energy, mu, _ = synthetic(200, seed=8)
    a = fit_batch(energy, mu, pre_edge_limit=PRE_EDGE_LIMIT)
    b = fit_batch(energy, mu, pre_edge_limit=PRE_EDGE_LIMIT)
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.stderr, b.stderr)
    c = fit_batch(energy, mu, pre_edge_limit=PRE_EDGE_LIMIT, block_size=37)
    # per-pixel arithmetic does not depend on which other pixels share a block
    np.testing.assert_allclose(c.params, a.params, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------ acceptance: batch vs lmfit
def _agreement(n: int, seed: int):
    energy, mu, truth = synthetic(n, seed=seed)
    batch = fit_batch(energy, mu, pre_edge_limit=PRE_EDGE_LIMIT, return_covariance=True)
    rows = _fit_lmfit_rows(energy, mu, PRE_EDGE_LIMIT)
    lm_params, lm_err = rows[:, :10], rows[:, 10:20]
    lm_ok = rows[:, 21] > 0.5
    lm_cost = rows[:, 20] * (energy.size - 10)  # redchi × dof = χ²
    both = batch.success & lm_ok
    ratio_b = xm.pre_edge_ratio(batch.params)
    ratio_b_err = xm.pre_edge_ratio_stderr(batch.params, batch.covariance)
    ratio_l = xm.pre_edge_ratio(lm_params)
    # PE/Δμt is compared where the pre-edge width is resolved in both (else it is flagged, not used)
    resolved = ~xs.pre_edge_collapsed(batch.params) & ~xs.pre_edge_collapsed(lm_params)
    same = (
        (np.abs(batch.params[:, 2] - lm_params[:, 2]) < 0.05)
        & (np.abs(batch.params[:, 1] / lm_params[:, 1] - 1) < 0.01)
        & (~resolved | (np.abs(ratio_b - ratio_l) <= 0.25 * ratio_b_err))
    )
    # DESIGN §2b: where lmfit itself is multimodal, "equal" = a χ² no higher than lmfit's
    # (1e-7 relative: both χ² agree to ~1e-9 when they reach the same minimum)
    not_worse = batch.cost <= lm_cost * (1 + 1e-7)
    return energy, truth, batch, ratio_b, ratio_b_err, lm_params, lm_err, lm_ok, both, same, not_worse


def _check_agreement(n: int, seed: int, strict: float):
    energy, truth, batch, ratio_b, ratio_b_err, lm_params, lm_err, lm_ok, both, same, not_worse = _agreement(n, seed)
    assert both.mean() > 0.95  # both converge on ≥ 95 %
    # Same edge, jump and PE/Δμt on the strict criteria alone. Both follow one multi-start
    # protocol (scan, restarts of suspicious fits, lowest χ²); what is left are pixels where
    # eq. (1) has near-equal minima and the two local optimisers (projected LM on 6 nonlinear
    # parameters vs lmfit's trust-region on 10) part ways from the same start, and one's
    # first fit looks wrong (restarts) while the other's does not. Measured: 98.99 % (587 of
    # 593) at n = 600 seed 12, 99.33 % at seed 21, 98.99 % at n = 2000 seed 21, 98.5 % at n = 200 seed 11.
    assert np.mean(same[both]) >= strict
    # … and where not, batch mostly found a χ² no higher than lmfit's
    assert np.mean((same | not_worse)[both]) >= 0.99
    # ground truth within 3 stderr on ≥ 95 % of valid pixels (Gaussian: 99.7 %; nonlinear fits at
    # SNR 5 have heavier tails, hence the margin)
    true_ratio = xm.pre_edge_ratio(truth)
    for params, err, ok in ((batch.params, batch.stderr, batch.success), (lm_params, lm_err, lm_ok)):
        for k in (1, 2):  # b1, b2
            assert np.mean(np.abs(params[ok, k] - truth[ok, k]) < 3 * err[ok, k]) >= 0.95
    ok = batch.success & ~xs.pre_edge_collapsed(batch.params)
    assert np.mean(np.abs(ratio_b[ok] - true_ratio[ok]) < 3 * ratio_b_err[ok]) >= 0.95


def test_batch_agrees_with_lmfit_600_pixels():
    _check_agreement(600, seed=12, strict=0.985)  # ≈ 10 s of lmfit on an idle core


@pytest.mark.slow
def test_batch_agrees_with_lmfit_2000_pixels():
    _check_agreement(2000, seed=21, strict=0.985)


def test_batch_stderr_is_calibrated_on_many_pixels():
    energy, mu, truth = synthetic(2000, seed=13)
    res = fit_batch(energy, mu, pre_edge_limit=PRE_EDGE_LIMIT)
    ok = res.success
    assert ok.mean() > 0.95
    z = (res.params[ok] - truth[ok]) / res.stderr[ok]
    for k in (1, 2, 3):  # b1, b2, b3: well determined, z should be ~N(0, 1)
        zk = z[:, k]
        assert np.mean(np.abs(zk) < 3) >= 0.97
        # fraction within 1 σ: 0.683 for a Gaussian; ±0.05 allows the nonlinearity at low SNR
        assert abs(np.mean(np.abs(zk) < 1) - 0.683) < 0.05


# ------------------------------------------------------------------ XDI and real spectra
def _xdi_path(name: str):
    return resources.files("ptyxr") / "data" / "xanes" / f"{name}.xdi"


def test_read_xdi_columns_mu_and_header():
    with resources.as_file(_xdi_path("V2O5")) as path:
        ds = read_xdi(path)
        table = np.loadtxt(path)  # independent parse of the numeric block
    np.testing.assert_array_equal(ds["energy"].values, table[:, 0])
    np.testing.assert_allclose(ds["mu"].values, np.log(table[:, 2] / table[:, 3]), rtol=1e-14)
    assert ds.attrs["xdi_Sample.name"] == "V2O5" and ds.attrs["xdi_Element.symbol"] == "V"
    assert ds["energy"].attrs["units"] == "eV" and ds["mu"].attrs["units"] == "1"
    assert "13BMD" not in ds.attrs["xdi_Beamline.I0_sensitivity_value"]  # EPICS PV names stripped
    assert ";" in ds.attrs["xdi_Beamline.I0_sensitivity_value"]  # repeated key kept, not lost


def test_read_xdi_rejects_non_xdi(tmp_path):
    bad = tmp_path / "bad.xdi"
    bad.write_text("energy i0\n1 2\n")
    with pytest.raises(SchemaError, match="not an XDI file"):
        read_xdi(bad)
    noenergy = tmp_path / "noenergy.xdi"
    noenergy.write_text("# XDI/1.0\n# Column.1: angle deg\n# Column.2: i0\n#---\n1 2\n2 3\n")
    with pytest.raises(SchemaError, match="no column named 'energy'"):
        read_xdi(noenergy)


@pytest.mark.parametrize("method", ["batch", "lmfit"])
def test_real_oxides_edge_and_pre_edge_order(method):
    ds = reference_spectra()
    assert ds.sizes["energy"] == 40 and list(ds["particle"].values) == list(REFERENCE_OXIDES)
    out = fit_xanes(ds, method=method, progress=False).isel(y=0, x=0)
    assert out["success"].all() and out["fit_valid"].all()
    b2 = dict(zip(REFERENCE_OXIDES, out["b2"].values, strict=True))
    ratio = dict(zip(REFERENCE_OXIDES, (np.pi * out["c11"] * out["c13"] / out["b1"]).values, strict=True))
    # measured facts (data README): edge VO ≈ 5475.0 < V2O3 ≈ 5478.5 < VO2 ≈ 5481.0 < V2O5 ≈ 5481.5 eV
    assert b2["VO"] < b2["V2O3"] < b2["VO2"] < b2["V2O5"]
    for name, ref in (("VO", 5475.0), ("V2O3", 5478.5), ("VO2", 5481.0), ("V2O5", 5481.5)):
        assert abs(b2[name] - ref) < 1.0  # README edges are half-height estimates with crude normalisation
    # pre-edge height rises V2O3 < VO2 < V2O5 (VO's thick-sample pre-edge is distorted: excluded)
    assert ratio["V2O3"] < ratio["VO2"] < ratio["V2O5"]
