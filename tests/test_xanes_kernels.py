"""The specialised numba kernels of the batch XANES fit give the very numbers of the full ones.

Session 12 made the solver faster by recomputing less: a trial's χ² before its normal
equations, only the moved rows in the start scans and the b2 profile, the NNLS active sets on
their free heights only. Each shortcut claims the same floating-point numbers as the full
computation (tests/xanes/test_solver.py checks the fits themselves); these tests compare them bit for
bit against the full kernels on eq. (1) spectra, so a formula changed in one place only fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from ptyxr.simulate.energies import paper_energy_grid
from ptyxr.xanes import _kernels
from ptyxr.xanes import solver as xs
from ptyxr.xanes.lineshapes import eq1_array

pytestmark = pytest.mark.skipif(not _kernels.AVAILABLE, reason="numba not installed")


def _pixels(n: int, seed: int, weighted: bool):
    """Noisy eq. (1) spectra (some with no peaks: NNLS active sets), a perturbed θ, bounds."""
    rng = np.random.default_rng(seed)
    energy = paper_energy_grid()
    b2 = rng.uniform(5474.0, 5484.0, n)
    params = np.stack(
        [
            rng.uniform(0.0, 0.3, n),
            rng.uniform(0.0, 0.5, n),
            b2,
            rng.uniform(1.5, 4.0, n),
            rng.uniform(0.0, 0.1, n) * (rng.random(n) < 0.7),
            rng.uniform(5467.0, 5470.0, n),
            rng.uniform(0.8, 1.6, n),
            rng.uniform(0.0, 0.3, n) * (rng.random(n) < 0.7),
            b2 + rng.uniform(3.0, 8.0, n),
            rng.uniform(2.0, 5.0, n),
        ],
        axis=1,
    )
    mu = eq1_array(energy, params) + rng.normal(0.0, 0.01, (n, energy.size))
    w = rng.uniform(0.5, 2.0, mu.shape) if weighted else np.ones_like(mu)
    prob = xs._Problem(energy, mu, w)
    theta = xs._theta(params, prob.e0) + rng.normal(0.0, 0.5, (n, 6)) * [1, 0.1, 1, 0.05, 1, 0.1]
    lo = np.tile([-25.0, 0.5, -40.0, 0.3, -20.0, 0.5], (n, 1))
    hi = np.tile([25.0, 8.0, 0.0, 4.0, 30.0, 10.0], (n, 1))
    theta = np.ascontiguousarray(np.clip(theta, lo, hi))
    w_k = prob.w if not prob.unit else prob.w[:1]
    return prob, w_k, theta, lo, hi


def _project(prob, w_k, theta, rows):
    """The full per-row projection (project_many) of trials ``theta`` for pixels ``rows``."""
    coef, free, cost = np.empty((4, rows.size)), np.empty((4, rows.size), bool), np.empty(rows.size)
    w = w_k if prob.unit else w_k[rows]
    _kernels.project_many(prob.x, w, prob.yw[rows], prob.unit, np.ascontiguousarray(theta), coef, free, cost)
    return coef, cost


def _first_strictly_lower(cost0, costs):
    """Index of the first candidate with the lowest χ² if strictly below cost0, else −1 (per pixel)."""
    c = np.where(costs < np.inf, costs, np.inf)
    pick = np.argmin(c, axis=1)
    return np.where(c[np.arange(c.shape[0]), pick] < cost0, pick, -1)


@pytest.mark.parametrize("weighted", [False, True])
def test_centre_scan_and_profile_kernels_equal_full_projections(weighted):
    prob, w_k, theta, lo, hi = _pixels(150, seed=3 if weighted else 4, weighted=weighted)
    n = theta.shape[0]
    rows = np.arange(n)
    coef0, cost0 = _project(prob, w_k, theta, rows)
    values = np.linspace(-30.0, 35.0, 27)
    for column in (2, 4):
        th, coef, cost = theta.copy(), coef0.copy(), cost0.copy()
        _kernels.scan_column(prob.x, w_k, prob.yw, prob.unit, th, lo, hi, column, values, coef, cost)
        trials = np.repeat(theta[:, None], values.size, axis=1)
        trials[:, :, column] = values
        trials = np.clip(trials, lo[:, None], hi[:, None])
        c_all, cost_all = _project(prob, w_k, trials.reshape(-1, 6), np.repeat(rows, values.size))
        pick = _first_strictly_lower(cost0, cost_all.reshape(n, -1))
        took = pick >= 0
        assert took.any() and (~took).any()
        np.testing.assert_array_equal(cost[took], cost_all.reshape(n, -1)[took, pick[took]])
        np.testing.assert_array_equal(th[took], trials[took, pick[took]])
        np.testing.assert_array_equal(coef[:, took], c_all.reshape(4, n, -1)[:, took, pick[took]])
        np.testing.assert_array_equal(cost[~took], cost0[~took])
        np.testing.assert_array_equal(th[~took], theta[~took])
    # the b2 profile: edge at each grid point, white line moved along (offset ≥ 0)
    grid = np.ascontiguousarray(lo[:, :1] + 2.0 * np.arange(17))
    offset = np.ascontiguousarray(theta[:, 4] - theta[:, 0])
    cost = np.full(grid.shape, np.inf)
    best = np.zeros((*grid.shape, 6))
    coef = np.zeros((4, *grid.shape))
    _kernels.profile_many(prob.x, w_k, prob.yw, prob.unit, theta, lo, hi, grid, offset, cost, best, coef)
    trials = np.repeat(theta[:, None], grid.shape[1], axis=1)
    trials[:, :, 0] = grid
    trials[:, :, 4] = grid + np.maximum(offset, 0.0)[:, None]
    trials = np.clip(trials, lo[:, None], hi[:, None])
    c_all, cost_all = _project(prob, w_k, trials.reshape(-1, 6), np.repeat(rows, grid.shape[1]))
    np.testing.assert_array_equal(cost, np.where(cost_all < np.inf, cost_all, np.inf).reshape(grid.shape))
    np.testing.assert_array_equal(best, trials)
    np.testing.assert_array_equal(coef, c_all.reshape(4, *grid.shape))


@pytest.mark.parametrize("weighted", [False, True])
def test_edge_scan_kernel_equals_sequential_full_projections(weighted):
    prob, w_k, theta, lo, hi = _pixels(150, seed=5 if weighted else 6, weighted=weighted)
    rows = np.arange(theta.shape[0])
    coef, cost = _project(prob, w_k, theta, rows)
    offsets, factors = np.array([-4.0, -2.0, 2.0, 4.0]), np.array([0.5, 2.0])
    th_k, coef_k, cost_k = theta.copy(), coef.copy(), cost.copy()
    _kernels.scan_edge(prob.x, w_k, prob.yw, prob.unit, th_k, lo, hi, offsets, factors, coef_k, cost_k)
    th = theta.copy()
    for column, values in ((0, offsets), (1, factors)):  # the numpy path's sequential scans
        for v in values:
            trial = th.copy()
            trial[:, column] = trial[:, column] + v if column == 0 else trial[:, column] * v
            trial = np.clip(trial, lo, hi)
            c_t, cost_t = _project(prob, w_k, trial, rows)
            better = cost_t < cost
            th[better], coef[:, better], cost[better] = trial[better], c_t[:, better], cost_t[better]
    assert not np.array_equal(th, theta)
    np.testing.assert_array_equal(th_k, th)
    np.testing.assert_array_equal(coef_k, coef)
    np.testing.assert_array_equal(cost_k, cost)


@pytest.mark.parametrize("weighted", [False, True])
def test_trial_cost_then_derivatives_equals_full_projection(weighted):
    """The LM's accepted step: rows 0–4 + 5×5 Gram, then derivative rows + the rest of the Gram."""
    prob, w_k, theta, _, _ = _pixels(40, seed=7 if weighted else 8, weighted=weighted)
    n_e = prob.x.size
    active = 0
    for p in range(theta.shape[0]):
        wp = w_k[0 if prob.unit else p]
        full = _kernels._workspace(n_e)
        cost_full = _kernels._project(prob.x, wp, prob.yw[p], prob.unit, theta[p], True, *full)
        m, g, coef, free, low, good, hess, grad, ws, bk = _kernels._workspace(n_e)
        _kernels._rows(prob.x, wp, prob.yw[p], prob.unit, theta[p], False, m)
        _kernels._gram(m, 0, 5, n_e, g)
        cost = _kernels._heights_cost(g, coef, free, low, good, ws, bk)
        _kernels._derivative_rows(prob.x, wp, prob.unit, theta[p], m)
        _kernels._gram(m, 5, 11, n_e, g)
        _kernels._normal_equations(g, coef, free, low, good, hess, grad, ws, bk)
        assert cost == cost_full
        reference = (full[0], full[1], full[2], full[3], full[6], full[7])
        for got, ref in zip((m, g, coef, free, hess, grad), reference, strict=True):
            np.testing.assert_array_equal(got, ref)
        active += not free.all()
    assert active > 0  # some pixels exercise the NNLS active sets


def test_nnls_subset_solve_equals_masked_full_factor():
    """Active set solved on its free heights = the 4×4 factor with unit rows for the held ones."""
    rng = np.random.default_rng(11)
    low, good = np.zeros((4, 4)), np.zeros(4, bool)
    ls, gd = np.zeros((4, 4)), np.zeros(4, bool)
    x, z, xr, zr = np.empty(4), np.empty(4), np.empty(4), np.empty(4)
    g_sub, rhs_sub = np.empty((4, 4)), np.empty(4)  # workspaces of the gathered system
    for _ in range(200):
        b = rng.normal(size=(4, 40))
        b[3] = b[2] + 1e-9 * rng.normal(size=40) if rng.random() < 0.2 else b[3]  # near-singular pivots too
        g = b @ b.T
        rhs = rng.normal(size=4)
        for sub in range(1, 8):
            mask = np.array([True] + [not (sub >> (3 - j)) & 1 for j in (1, 2, 3)])
            gs = np.where(mask[:, None] & mask[None, :], g, np.eye(4))
            _kernels._chol_factor(gs, 4, low, good)
            _kernels._chol_subst(low, good, 4, np.where(mask, rhs, 0.0), x, z)
            nf = int(mask.sum())
            _kernels._subset_solve(g, rhs, sub, nf, g_sub, rhs_sub, ls, gd, zr, xr)
            np.testing.assert_array_equal(xr[:nf], x[mask])
