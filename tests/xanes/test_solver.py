"""XANES model (paper eq. 1), batch solver vs lmfit, XDI reader and real V oxide spectra."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

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
    cov, redchi, _ = xs._covariance(prob, p, lower, upper, cost)
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


# ------------------------------------------------------------------ acceptance: global optimum, calibrated b2
def foreign_spectra(n: int, seed: int = 0, sigma: float = SIGMA, mixed: float = 0.3):
    """Spectra from a model that is not eq. (1): erf, arctan or logistic edges (point-symmetric
    steps: the true edge energy is their centre = half-height energy), asymmetric white lines
    (split Lorentzian), Gaussian pre-edge peaks, a pre-edge slope; a fraction ``mixed`` of the
    pixels mixes two such spectra with edges 3–6 eV apart (truth: the fraction-weighted mean,
    not single-domain). Returns energy, μt (n, n_E), true edge energy (n,), single-domain (n,),
    and the noise-free μt."""
    from scipy.special import erf

    rng = np.random.default_rng(seed)
    energy = paper_energy_grid()
    b1 = rng.uniform(0.05, 0.5, n)
    centre = rng.uniform(5474.0, 5484.0, n)
    width = rng.uniform(1.0, 3.5, n)
    form = rng.integers(0, 3, n)[:, None]

    def one(edge):
        z = (energy - edge[:, None]) / width[:, None]
        arctan = 0.5 + np.arctan(1.6 * z) / np.pi
        step = np.where(form == 0, 0.5 * (1 + erf(z)), np.where(form == 1, arctan, 1 / (1 + np.exp(-2.2 * z))))
        wl_at = edge + rng.uniform(3, 8, n)
        d = energy - wl_at[:, None]
        hw = np.where(d < 0, rng.uniform(1.5, 4, n)[:, None], rng.uniform(2, 7, n)[:, None])
        white = (rng.uniform(0.2, 0.8, n) * b1)[:, None] / (1 + (d / hw) ** 2)
        pre_at, pre_w = rng.uniform(5467, 5470, n)[:, None], rng.uniform(0.6, 1.4, n)[:, None]
        pre = (rng.uniform(0.5, 3.0, n) * b1 / (np.pi * 1.2))[:, None] * np.exp(-0.5 * ((energy - pre_at) / pre_w) ** 2)
        return b1[:, None] * step + white + pre

    mix = rng.random(n) < mixed
    frac = np.where(mix, rng.uniform(0.2, 0.8, n), 1.0)
    other = centre + rng.choice([-1.0, 1.0], n) * rng.uniform(3, 6, n)
    slope = rng.uniform(-1e-4, 1e-4, n)[:, None] * (energy - energy.mean())
    mu = rng.uniform(0, 0.3, n)[:, None] + slope + frac[:, None] * one(centre) + (1 - frac)[:, None] * one(other)
    clean = mu.copy()
    mu += rng.normal(0.0, sigma, mu.shape)
    return energy, mu, frac * centre + (1 - frac) * other, ~mix, clean


def dense_b2_profile(energy, mu, step: float):
    """Reference: min over b2 of χ² with all other parameters optimised, b2 on a ``step`` grid
    over each pixel's b2 box, white line not behind the edge (c22 ≥ b2, the physical solutions).

    At each grid value: b2 held (its box collapsed), three starts (edge width / white-line offset
    1/3, 2.5/5, 4/8 eV) each refined by a full scan of both Lorentzian centres over the energies
    and Levenberg–Marquardt to tight tolerances (200 iterations, ftol 1e-12); the lowest χ² wins.
    Far more starts per b2 than fit_batch's global search (one start, 3 steps, every 2 eV)."""
    start, lower, upper = xm.initial_estimates(energy, mu, PRE_EDGE_LIMIT)
    n = mu.shape[0]
    best, best_b2 = np.full(n, np.inf), np.full(n, np.nan)
    n_grid = int(np.ceil((upper[:, 2] - lower[:, 2]).max() / step)) + 1
    for j in range(n_grid):
        b2 = np.minimum(lower[:, 2] + j * step, upper[:, 2])
        cost = held_b2_cost(energy, mu, b2, (start, lower, upper))
        better = cost < best
        best[better], best_b2[better] = cost[better], b2[better]
    return best, best_b2


def held_b2_cost(energy, mu, b2, estimates=None):
    """χ² (unweighted Σ r²) of eq. (1) with b2 held at ``b2`` (P,) [eV] and every other parameter
    optimised, white line not behind the edge: one point of :func:`dense_b2_profile` per pixel
    (its three starts, centre scans and tight Levenberg–Marquardt). ``estimates``: the
    ``initial_estimates`` (start, lower, upper) if already computed; b2 is clipped to its box."""
    start, lower, upper = estimates if estimates is not None else xm.initial_estimates(energy, mu, PRE_EDGE_LIMIT)
    w = np.ones_like(mu)
    prob = xs._Problem(energy, mu, w)
    best = np.full(mu.shape[0], np.inf)
    b2 = np.clip(b2, lower[:, 2], upper[:, 2])
    lo, hi = lower.copy(), upper.copy()
    lo[:, 2] = hi[:, 2] = b2
    lo[:, 8] = np.minimum(np.maximum(lo[:, 8], b2), hi[:, 8])
    with np.errstate(all="ignore"):
        for b3, wl in ((1.0, 3.0), (2.5, 5.0), (4.0, 8.0)):
            s = start.copy()
            s[:, 2], s[:, 3], s[:, 8] = b2, b3, b2 + wl
            s = xs.scan_starts(
                energy, mu, np.clip(s, lo, hi), lo, hi, w, edge_offsets=(), width_factors=(), centres=energy
            )
            tlo, thi = xs._theta(lo, prob.e0), xs._theta(hi, prob.e0)
            _, _, cost, _, _ = xs._levenberg_marquardt(
                prob, np.clip(xs._theta(s, prob.e0), tlo, thi), tlo, thi, 200, 1e-12, 1e-9
            )
            best = np.fmin(best, cost)  # a NaN start never wins (as dense_b2_profile's strict <)
    return best


def _check_global(energy, mu, step: float, strict: float, engine: str = "auto"):
    res = fit_batch(energy, mu, pre_edge_limit=PRE_EDGE_LIMIT, engine=engine)
    ref, ref_b2 = dense_b2_profile(energy, mu, step)
    # compared on converged fits with the white line at or above the edge, the solutions the
    # reference spans (fits with it behind keep an edge error ≥ b2 − c22: never "located")
    ok = res.success & ~xs.white_line_behind(res.params)
    assert ok.mean() > 0.9
    # Tolerance Δχ² ≤ 4 redchi: minima within a 2-σ profile-likelihood difference are ones the
    # data cannot tell apart (the reference's own LM stops at ftol 1e-12: no slack needed there)
    tol = 4.0 * res.redchi
    no_worse = res.cost <= ref + tol
    # where not, the b2 is the reference's (within its grid step): a local minimum of the
    # pre-edge / white-line parameters, not a false edge
    same_edge = np.abs(res.params[:, 2] - ref_b2) <= step
    miss = np.flatnonzero(ok & ~(no_worse | same_edge))
    report = [
        (int(i), round(res.params[i, 2], 2), round(ref_b2[i], 2), round((res.cost[i] - ref[i]) / res.redchi[i], 1))
        for i in miss
    ]
    assert miss.size == 0, report  # (pixel, b2, reference b2, Δχ²/redchi)
    assert np.mean(no_worse[ok]) >= strict
    # the false edges of issue 11: a detected edge reported located (b2 stderr < 0.5 eV) away
    # from the physical optimum, e.g. an erf behind the white line (main's solver: 19 of 1000
    # foreign-model pixels of seed 32, 1–5 eV off; three of them among the 100 used below)
    from ptyxr.xanes.fit import LOCATED_EDGE_STDERR

    detected = res.success & (res.params[:, 1] >= 3 * res.stderr[:, 1])
    located = detected & (res.stderr[:, 2] < LOCATED_EDGE_STDERR)
    behind = xs.white_line_behind(res.params)  # unphysical, even where its χ² is lower
    assert not (located & ~same_edge & (behind | ~no_worse)).any()
    # strictly lower than the reference anywhere is impossible beyond rounding (the reference
    # spans the solver's physical solutions) except by the grid: the solver's b2 lies between grid points
    return res, ref_b2


def test_no_false_edges_against_a_dense_b2_profile():
    # 40 eq. (1) + 100 foreign-model spectra, 1 eV reference grid (~15 s idle, 70 s loaded)
    e, mu_a, _ = synthetic(40, seed=31)
    _, mu_b, _, _, _ = foreign_spectra(100, seed=32)
    _check_global(e, np.concatenate([mu_a, mu_b]), step=1.0, strict=0.98)


@pytest.mark.slow
def test_no_false_edges_against_a_dense_b2_profile_2000_pixels():
    e, mu_a, _ = synthetic(1000, seed=33)
    _, mu_b, _, _, _ = foreign_spectra(1000, seed=34)
    # measured: 0.99 of the converged physical fits no worse than the 0.5 eV reference (step 0.5 eV)
    _check_global(e, np.concatenate([mu_a, mu_b]), step=0.5, strict=0.98)


@pytest.mark.parametrize("engine", ["auto", "numpy"])
def test_white_line_on_its_edge_is_profiled_apart_too(engine):
    """Pixel 1900 of the 2000-pixel test above (foreign model seed 34, pixel 900): the local
    fits end with the white line 0.2 eV above the edge at b2 = 5477.1 eV; the physical optimum
    (reference profile 5475.45 eV, truth 5475.47 eV) has it 3.7 eV above, 5.8 redchi lower.
    The coarse profile moved the white line along with the edge, so it stayed on the edge and
    3 LM steps did not reach that branch (the point 2 eV below stayed 62 redchi up): no start
    there. Profiling such fits also with the white line apart finds it."""
    _, mu, truth, single, _ = foreign_spectra(1000, seed=34)
    e = paper_energy_grid()
    pixel = mu[900:901]
    assert single[900]
    res, ref_b2 = _check_global(e, pixel, step=0.5, strict=1.0, engine=engine)  # no worse than the reference
    # the reference's edge (within its grid step) and the truth within 5 stderr, located
    assert abs(res.params[0, 2] - ref_b2[0]) <= 0.5
    assert res.stderr[0, 2] < 0.5
    assert abs(res.params[0, 2] - truth[900]) < 5 * res.stderr[0, 2]
    assert res.params[0, 8] - res.params[0, 2] >= 1.0  # white line apart from its edge


def test_edge_stderr_calibrated_no_pixel_beyond_5_stderr():
    """Issue 11: |b2 − truth| > 5 stderr on < 0.2 % of valid single-domain pixels, and the
    foreign-model edge RMSE ≤ 0.3 eV on located edges (≥ 2000 pixels each).

    Truth: eq. (1)'s b2 for eq. (1) spectra; for the point-symmetric non-erf steps of
    :func:`foreign_spectra` their centre, the half-height energy of the step.
    """
    from ptyxr.xanes.fit import LOCATED_EDGE_STDERR

    e, mu_a, truth = synthetic(2000, seed=35)
    _, mu_b, centre, single, _ = foreign_spectra(2400, seed=36, mixed=0.0)
    assert single.all()
    # eq. (1): measured 0.05 % (1 of 1992; a Gaussian would give 6e-7, the tail is the
    # nonlinearity at SNR 5). Foreign model: measured 0.25 % here (6 of 2383), 0.07 % at another
    # seed: at SNR > 30 the erf-vs-arctan/asymmetric-white-line model error (0.5–0.8 eV) exceeds
    # 5 statistical errors (~0.1 eV). The 0.2 % holds on eq. (1) spectra only; the
    # foreign bound states what is measured (a model error is not noise: no stderr covers it).
    # The edge uncertainty (stderr ⊕ the b2 shift of an arctan admixture 0.1 and a white-line
    # asymmetry 0.1, ptyxr.xanes.uncertainty) covers that model error: the 0.2 % on
    # both. Measured beyond 5 uncertainties: eq. (1) 0.05 % (seeds 13, 35), foreign 0.04 % here
    # (1 of 2383), 0.08 / 0.04 / 0.04 % at seeds 7 / 5 / 11 (stderr alone: 0.38 / 0.17 / 0.17 %).
    _, mu_c, centre_c, _, _ = foreign_spectra(2400, seed=7, mixed=0.0)
    cases = ((mu_a, truth[:, 2], 0.002), (mu_b, centre, 0.004), (mu_c, centre_c, None))
    for mu, true_b2, tail in cases:
        res = fit_batch(e, mu, pre_edge_limit=PRE_EDGE_LIMIT)
        valid = res.success & (res.params[:, 1] >= 3 * res.stderr[:, 1])  # fit_xanes' detected edge
        err = res.params[:, 2] - true_b2
        assert valid.sum() > 1900
        if tail is not None:
            z = np.abs(err) / res.stderr[:, 2]
            assert np.mean(z[valid] > 5) < tail
            located = valid & (res.stderr[:, 2] < LOCATED_EDGE_STDERR)
            assert located.mean() > 0.75  # measured 0.82 (eq. 1), 0.80 (foreign)
            assert np.sqrt(np.mean(err[located] ** 2)) <= 0.3  # measured 0.21 / 0.285 eV
        unc = res.edge_uncertainty
        assert np.all(unc[valid] >= res.stderr[valid, 2])
        assert np.mean(np.abs(err[valid]) > 5 * unc[valid]) < 0.002
        # located by the uncertainty: measured 0.85 (eq. 1), 0.84 / 0.83 (foreign), -0.01 vs stderr
        assert np.mean(unc[valid] < LOCATED_EDGE_STDERR) > 0.75


@functools.lru_cache(maxsize=2)
def _estimator_and_projection(seed: int):
    """Single-domain :func:`foreign_spectra` (2400 px) fitted with noise and without: the
    estimator and the projected truth (eq. (1)'s b2 on the pixel's noise-free spectrum, what the
    paper's model means there). Returns energy, noise-free μt, physical centre, both fits and the
    pixels compared (fit_xanes' detected edge, the noise-free fit converged)."""
    e, mu, centre, _, clean = foreign_spectra(2400, seed=seed, mixed=0.0)
    res = fit_batch(e, mu, pre_edge_limit=PRE_EDGE_LIMIT)
    ideal = fit_batch(e, clean, pre_edge_limit=PRE_EDGE_LIMIT)
    valid = res.success & (res.params[:, 1] >= 3 * res.stderr[:, 1]) & ideal.success
    return e, clean, centre, res, ideal, valid


def _excess_over_projection(energy, clean, ideal, rows, b2):
    """Noise-free Δχ² [σ² = SIGMA²] of eq. (1) with b2 held at ``b2`` over the projection's
    (``ideal``: the noise-free fit of all pixels; ``rows``: the pixels of ``clean``)."""
    estimates = xm.initial_estimates(energy, clean, PRE_EDGE_LIMIT)
    projection = np.fmin(ideal.cost[rows], held_b2_cost(energy, clean, ideal.params[rows, 2], estimates))
    return (held_b2_cost(energy, clean, b2, estimates) - projection) / SIGMA**2


def test_edge_stderr_against_the_projected_truth():
    """Like with like (issue 11, docs/design-notes/s13-modeltruth.md): on spectra eq. (1) does not
    describe, b2_stderr is the error of the *estimator* around the projected truth (b2 fitted to
    the noise-free spectrum), not around the physical edge, whose distance to the projection is
    the model's bias (0.5–0.6 eV rms here, up to 6 eV where the noise-free fit puts its edge on
    the white line).

    1σ: the share within one stderr of the projected truth is ≥ 0.683 (measured 0.745 / 0.755,
    0.758 / 0.756 at seeds 7 / 5; binomial sd 0.009); against the arctan centre < 0.6 (measured
    0.53 / 0.52: the model bias adds).

    5σ: beyond 5 stderr of the projection lie 0.42–0.76 % (xfail below). Where the projection is
    well defined (noise-free fit located, b2 stderr < 0.5 eV, and physical) 0.22 / 0.26 %
    (0.04 % at seeds 7, 5), and each of those estimates sits below the projection, inside its
    5σ profile-likelihood region: the noise-free χ² at the estimate exceeds the projection's by
    1.7–13.8 σ² (< 25), where shifting the projection by −5 stderr costs ≥ 25 σ² on 86–93 % of
    ordinary pixels (median 55–63 σ²). The χ² profile of eq. (1) over b2 on these edges has a
    flat shoulder below its minimum (towards the physical edge): the curvature error does not
    see it. Asserted: that likelihood statement and its contrast.
    """
    from ptyxr.xanes.fit import LOCATED_EDGE_STDERR

    for seed in (36, 11):
        e, clean, centre, res, ideal, valid = _estimator_and_projection(seed)
        assert valid.sum() > 2300  # measured 2383 / 2387 of 2400
        b2, b2_ideal, se = res.params[:, 2], ideal.params[:, 2], res.stderr[:, 2]
        z = np.abs(b2 - b2_ideal) / se
        assert 0.683 <= np.mean(z[valid] < 1) <= 0.80, np.mean(z[valid] < 1)
        assert np.mean(np.abs(b2 - centre)[valid] / se[valid] < 1) < 0.6
        unique = valid & (ideal.stderr[:, 2] < LOCATED_EDGE_STDERR) & ~xs.white_line_behind(ideal.params)
        assert unique.sum() > 0.95 * valid.sum()  # measured 2310 / 2322

        tail = np.flatnonzero(unique & (z > 5))
        assert 0 < tail.size < 0.005 * unique.sum()  # measured 5 / 6
        # inside the projection's 5σ profile-likelihood region: measured at most 8.8 / 13.8 σ²
        assert np.all(_excess_over_projection(e, clean[tail], ideal, tail, b2[tail]) < 25.0)
        # the contrast: on ordinary pixels the same displacement (5 stderr below) leaves that region
        ordinary = np.random.default_rng(seed).choice(np.flatnonzero(unique & (z < 1)), 200, replace=False)
        shifted = _excess_over_projection(e, clean[ordinary], ideal, ordinary, b2_ideal[ordinary] - 5 * se[ordinary])
        assert np.mean(shifted > 25.0) > 0.75  # measured 0.92 / 0.91


@pytest.mark.xfail(
    strict=True,
    reason="issue 11's < 0.2 % beyond 5 b2_stderr, against the projected truth on foreign spectra: measured "
    "0.76 % (18 of 2383; 0.42-0.76 % at four seeds; 0.04-0.26 % where the noise-free fit is itself located "
    "and physical). Not an estimator error: eq. (1)'s chi2 profile over b2 on non-erf edges is flat or "
    "bimodal at the noise level, so the projection is not unique (test_edge_stderr_against_the_projected_truth; "
    "docs/design-notes/s13-modeltruth.md)",
)
def test_edge_stderr_5_sigma_tail_against_the_projected_truth():
    _, _, _, res, ideal, valid = _estimator_and_projection(36)
    z = np.abs(res.params[:, 2] - ideal.params[:, 2])[valid] / res.stderr[valid, 2]
    assert np.mean(z > 5) < 0.002


def test_edge_uncertainty_coverage_on_eq1_spectra():
    """b2_uncertainty (stderr ⊕ model error) on spectra eq. (1) describes exactly: it may not
    under-cover, and it over-covers by a bounded margin (its model-error term is there for
    spectra eq. (1) does not describe). Measured within 1 uncertainty: 0.755 (0.763 / 0.763 at
    seeds 13 / 6; stderr 0.706); the 0.683-quantile of |err| / uncertainty 0.84 (stderr 0.95);
    median uncertainty / stderr 1.07."""
    e, mu, truth = synthetic(2000, seed=35)
    res = fit_batch(e, mu, pre_edge_limit=PRE_EDGE_LIMIT)
    valid = res.success & (res.params[:, 1] >= 3 * res.stderr[:, 1])
    zu = np.abs(res.params[valid, 2] - truth[valid, 2]) / res.edge_uncertainty[valid]
    assert 0.683 - 0.03 <= np.mean(zu < 1) <= 0.80  # binomial sd 0.010
    assert np.median(res.edge_uncertainty[valid] / res.stderr[valid, 2]) < 1.15


def _split_lorentzian(energy, height, centre, hw_low, hw_high):
    hw = np.where(energy < centre, hw_low, hw_high)
    return height / (1 + ((energy - centre) / hw) ** 2)


def test_edge_model_error_is_the_b2_shift_of_a_refit():
    """The model error is what a least-squares refit does: eq. (1) spectra (noise-free) with a
    small arctan admixture η in the edge step, or a split-Lorentzian white line (half-widths
    c23·(1 ∓ α)), typed here independently of the module; fit_batch's b2 moves by the
    propagated shift × η (or α) to first order."""
    from scipy.special import erf

    from ptyxr.xanes import uncertainty
    from ptyxr.xanes.solver import _determined

    energy, _, truth = synthetic(40, seed=41, sigma=0.0)
    truth = truth[truth[:, 1] > 0.2]  # clear edges: the refits stay in the truth's basin
    a, b1, b2, b3, c11, c12, c13, c21, c22, c23 = (truth[:, k, None] for k in range(10))
    e = energy[None, :]
    pre = c11 / (1 + ((e - c12) / c13) ** 2)
    erf_step = 0.5 * (1 + erf((e - b2) / b3))
    arctan_step = 0.5 + np.arctan((e - b2) / b3) / np.pi
    eta, alpha = 0.03, 0.03
    shape_mu = a + b1 * ((1 - eta) * erf_step + eta * arctan_step) + pre + _split_lorentzian(e, c21, c22, c23, c23)
    asym_mu = a + b1 * erf_step + pre + _split_lorentzian(e, c21, c22, c23 * (1 - alpha), c23 * (1 + alpha))
    for mu, kw, scale in (
        (shape_mu, {"asymmetry": 0.0, "edge_shape": 1.0}, eta),
        (asym_mu, {"edge_shape": 0.0, "asymmetry": 1.0}, alpha),
    ):
        res = fit_batch(energy, mu, pre_edge_limit=PRE_EDGE_LIMIT)
        ok = res.success & (np.abs(res.params[:, 2] - truth[:, 2]) < 1.0)
        assert ok.mean() > 0.9
        predicted = scale * uncertainty.edge_model_error(energy, truth, _determined(truth, res.lower, res.upper), **kw)
        shift = np.abs(res.params[ok, 2] - truth[ok, 2])
        # first order in η, α = 0.03: the second-order terms are a few % of the shift; a pixel
        # whose predicted shift is tiny (a white line far from the edge) is ruled by the
        # refit's convergence (xtol 1e-7 eV, ftol 1e-10): 2 meV absolute slack
        assert 0.9 < np.median(shift / predicted[ok]) < 1.15
        assert np.mean(np.abs(shift - predicted[ok]) <= 0.15 * predicted[ok] + 2e-3) >= 0.9
        assert np.median(predicted[ok]) > 0.004  # the directions move b2 measurably (×1/0.03 per unit)


def test_results_do_not_depend_on_threads_or_blocks():
    e, mu, _ = synthetic(300, seed=37)
    one = fit_batch(e, mu, pre_edge_limit=PRE_EDGE_LIMIT, block_size=64, workers=1)
    two = fit_batch(e, mu, pre_edge_limit=PRE_EDGE_LIMIT, block_size=64, workers=2)
    # same blocks, other threads or processes: bit-identical
    procs = fit_batch(e, mu, pre_edge_limit=PRE_EDGE_LIMIT, block_size=64, workers=2, executor="process")
    for name in ("params", "stderr", "cost", "success"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
        np.testing.assert_array_equal(getattr(one, name), getattr(procs, name))
    # other blocks: per-pixel arithmetic does not depend on the block's other pixels (BLAS rounding)
    big = fit_batch(e, mu, pre_edge_limit=PRE_EDGE_LIMIT, block_size=8192, workers=1)
    np.testing.assert_allclose(big.params, one.params, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(big.stderr, one.stderr, rtol=1e-7, atol=1e-9)


def test_numba_and_numpy_engines_agree():
    """The compiled per-pixel kernels run the numpy path's algorithm: same fits to rounding."""
    from ptyxr.xanes import _kernels

    if not _kernels.AVAILABLE:
        pytest.skip("numba not installed")
    e, mu_a, _ = synthetic(300, seed=41)
    _, mu_b, _, _, _ = foreign_spectra(300, seed=42)
    mu = np.concatenate([mu_a, mu_b])
    fast = fit_batch(e, mu, pre_edge_limit=PRE_EDGE_LIMIT, engine="numba")
    ref = fit_batch(e, mu, pre_edge_limit=PRE_EDGE_LIMIT, engine="numpy")
    np.testing.assert_array_equal(fast.success, ref.success)
    det = ref.success & (ref.params[:, 1] >= 3 * ref.stderr[:, 1])
    assert det.sum() > 550
    # Sums run in another order (rounding ~1e-16 relative), so LM stops a few ulps-driven
    # steps apart inside its tolerances (ftol 1e-10 on χ², xtol 1e-7 eV per step): measured
    # max |Δb2| 8e-6 eV, |Δ| ≤ 3e-5 on any parameter, χ² 3e-10 relative, b2 error 9e-6 relative.
    np.testing.assert_allclose(fast.params[det], ref.params[det], rtol=0, atol=1e-3)
    assert np.max(np.abs(fast.params[det, 2] - ref.params[det, 2])) < 1e-4  # eV: 1e-4 of a 1 eV edge error
    np.testing.assert_allclose(fast.cost[det], ref.cost[det], rtol=1e-7)
    np.testing.assert_allclose(fast.stderr[det, 2], ref.stderr[det, 2], rtol=1e-3)
    # the vacuum / no-edge pixels fit equally (b2 there is undetermined: not compared)
    np.testing.assert_allclose(fast.cost, ref.cost, rtol=1e-6)


# ------------------------------------------------------------------ real spectra
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


def _check_physical_optimum(seed: int, n: int):
    """Noise-free foreign spectra: every fit physical (white line not behind its edge) and no
    worse than the dense physical b2 profile (0.5 eV grid) beyond 4 σ² at the maps' noise
    (σ = SIGMA: Δχ² ≤ 4 σ² is a 2-σ profile-likelihood difference, minima the maps' data
    cannot tell apart; noise-free the solver's minimum is continuous in b2, the reference's on
    its grid, so only a miss exceeds it), unless at the reference's edge (within the grid
    step): a local minimum of the pre-edge / white-line parameters, not a false edge."""
    e, _, _, single, clean = foreign_spectra(n, seed=seed, mixed=0.0)
    assert single.all()
    step = 0.5
    res = fit_batch(e, clean, pre_edge_limit=PRE_EDGE_LIMIT)
    ref, ref_b2 = dense_b2_profile(e, clean, step)
    behind = xs.white_line_behind(res.params)
    assert not behind.any(), np.flatnonzero(behind)  # main before s13-globalopt: 31 (seed 11), 42 (seed 36)
    no_worse = res.cost <= ref + 4.0 * SIGMA**2
    same_edge = np.abs(res.params[:, 2] - ref_b2) <= step
    miss = np.flatnonzero(res.success & ~(no_worse | same_edge))
    report = [
        (int(i), round(res.params[i, 2], 2), round(ref_b2[i], 2), round((res.cost[i] - ref[i]) / SIGMA**2, 1))
        for i in miss
    ]
    assert miss.size == 0, report  # (pixel, b2, reference b2, Δχ²/σ²)
    assert res.success.mean() >= 0.999


def test_noise_free_foreign_fits_are_the_physical_global_optimum():
    """Issue 11 point 4 on 2400 noise-free foreign pixels: no fit behind its white line (the
    refits of such fits slid back there; :func:`physical_refits` holds b2 near the physical
    profile points) and no false edge against the dense physical profile."""
    _check_physical_optimum(seed=11, n=2400)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="seed 36 pixel 253: a physical fit 1.8 eV above a physical minimum 8.2 σ² lower "
    "(no refit start reached that basin; not diagnosed further); not fixed",
)
def test_noise_free_foreign_fits_are_the_physical_global_optimum_seed_36():
    _check_physical_optimum(seed=36, n=2400)
