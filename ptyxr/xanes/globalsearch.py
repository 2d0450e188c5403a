"""Global search over the edge energy b2 of the batch XANES fit (no false edges).

After the local fits, a coarse χ² profile over b2 across its whole box (:func:`edge_profile`)
seeds local fits in the other basins (:func:`global_starts`); the best physical fit is kept
(:func:`keep_best`: white line not behind its edge, then the lowest χ²), and b2's error is
widened to cover the profile's 5-σ interval (:func:`widen_edge_stderr`). Shared by the batch
solver (:mod:`ptyxr.xanes.solver`) and the lmfit reference (:mod:`ptyxr.xanes.fit`).
"""

from __future__ import annotations

import numpy as np

from ptyxr.xanes import _kernels
from ptyxr.xanes._varpro import (
    _B1,
    _B2,
    _C11,
    _C21,
    _C22,
    _SCAN_ROWS,
    N_PARAMETERS,
    _compiled,
    _levenberg_marquardt,
    _params,
    _Problem,
    _theta,
)
from ptyxr.xanes.starts import EDGE_RANGE

# ------------------------------------------------------------------ global search over b2
#: Step [eV] of the coarse χ² profile over the edge energy b2 across its whole box
#: (±EDGE_RANGE around the start, inside the window): 17 points for the default box.
PROFILE_STEP = 2.0
#: White-line centres tried at each profile point, relative to the edge [eV], besides the
#: fitted white line moved along with the edge (the white line follows its edge).
PROFILE_WL_OFFSETS: tuple[float, ...] = ()
#: A physical fit whose white line sits less than this [eV] above its edge (not behind it) …
PROFILE_WL_NEAR = 1.0
#: … is profiled also with the white line this far [eV] above the edge: moved along with
#: the edge it would stay on the edge, and the profile would never see the branch where the
#: erf makes the rise and the white line sits above it (issue 11: a pixel whose optimum,
#: 1.6 eV away with the white line 3.7 eV above, the 3 LM steps did not reach from there).
PROFILE_WL_APART = 4.0
#: A profile point counts as another basin when it lies this far [eV] from the fitted edge:
#: closer points are the fit's own basin (erf widths b3 ≥ 0.5 eV; half the 1 eV grid beyond it).
PROFILE_MIN_DISTANCE = 1.5
#: … and its χ² (other nonlinear parameters only moved along, not re-optimised: an upper
#: bound on the profile) is within this many redchi of the fit's: a local fit is run from it.
PROFILE_DELTA_CHI2 = 9.0
#: Profile points are refined only where their χ² before refinement lies less than this many
#: redchi above the fit's (the others stay far outside any interval that widens the error).
PROFILE_REFINE_RISE = 400.0
#: Rows (pixel × profile point) per refinement call: ≈ 6 kB each at 40 energies (memory).
_PROFILE_ROWS = 16384
#: The b2 error covers the profile-likelihood interval of this many σ (:func:`profile_edge_stderr`).
PROFILE_COVERAGE = 5.0
#: Levenberg–Marquardt iterations at each profile point, b2 held (0: projection only).
PROFILE_ITERATIONS = 3


def edge_profile(
    energy: np.ndarray,
    y: np.ndarray,
    params: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    weights: np.ndarray | None = None,
    refine_below: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coarse χ² profile over b2 around fitted parameters (linear parameters solved exactly).

    At each b2 of a :data:`PROFILE_STEP` grid over each pixel's b2 box the white line is
    moved with the edge (same offset as fitted) or put :data:`PROFILE_WL_OFFSETS` above
    it, the other nonlinear parameters stay as fitted, and the best of these is kept.
    For a fit whose white line sits less than :data:`PROFILE_WL_NEAR` above its edge (not
    behind it) the profile is also computed with the white line :data:`PROFILE_WL_APART`
    above the edge, refined on its own; each point keeps the lower χ² of the two.
    Per pixel the arithmetic does not depend on the other pixels of the batch.

    Parameters
    ----------
    energy : ndarray (n_E,)
    y : ndarray (P, n_E)
    params, lower, upper : ndarray (P, 10)
        Fitted parameters (finite rows) and their bounds.
    weights : ndarray (P, n_E), optional
    refine_below : ndarray (P,), optional
        Refine (:data:`PROFILE_ITERATIONS` LM steps, b2 held) only the points whose χ²
        before refinement is below this; default all.

    Returns
    -------
    grid : ndarray (P, G)
        The b2 values [eV].
    cost : ndarray (P, G)
        χ² at each (∞ where not finite).
    start : ndarray (P, G, 10)
        The parameters of each profile point (heights exact, made slightly positive).
    """
    energy = np.asarray(energy, dtype=float)
    y = np.asarray(y, dtype=float).reshape(-1, energy.size)
    w = np.ones_like(y) if weights is None else np.broadcast_to(weights, y.shape)
    n_pix = y.shape[0]
    n_grid = int(np.ceil(2.0 * EDGE_RANGE / PROFILE_STEP)) + 1
    grid = np.minimum(lower[:, _B2, None] + PROFILE_STEP * np.arange(n_grid), upper[:, _B2, None])
    prob = _Problem(energy, y, w)
    lo, hi = _theta(lower, prob.e0), _theta(upper, prob.e0)
    theta = _theta(params, prob.e0)
    g = grid - prob.e0
    fitted = params[:, _C22] - params[:, _B2]
    passes = [fitted] + [np.full(n_pix, o) for o in PROFILE_WL_OFFSETS]
    cost, best, coef = _refined_profile(prob, theta, lo, hi, g, passes, refine_below)
    # a white line on or near its edge stays there when moved along with it: profile those
    # fits also with it apart (own projection and refinement; a point keeps the lower). Not
    # fits with it behind: they are refit from the profile anyway (global_starts), and a lower
    # point elsewhere on a side can seed a refit that ends behind again, where the old one did not.
    near = np.flatnonzero((fitted < PROFILE_WL_NEAR) & ~white_line_behind(params))
    if near.size:
        sub = prob.subset(near)
        apart = [np.full(near.size, PROFILE_WL_APART)]
        below = None if refine_below is None else refine_below[near]
        c_n, b_n, f_n = _refined_profile(sub, theta[near], lo[near], hi[near], g[near], apart, below)
        c_s, b_s, f_s = cost[near], best[near], coef[:, near]
        lower_cost = c_n < c_s
        c_s[lower_cost], b_s[lower_cost], f_s[:, lower_cost] = c_n[lower_cost], b_n[lower_cost], f_n[:, lower_cost]
        cost[near], best[near], coef[:, near] = c_s, b_s, f_s
    start = _params(best.reshape(-1, 6), coef.reshape(4, -1), prob.e0).reshape(n_pix, n_grid, N_PARAMETERS)
    floor = 1e-3 * np.maximum(start[:, :, _B1], 1e-9)
    for k in (_B1, _C11, _C21):
        start[:, :, k] = np.maximum(start[:, :, k], floor if k != _B1 else 1e-9)
    return grid, cost, start


def _refined_profile(prob, theta, lo, hi, g, passes, refine_below):
    """The projection passes of :func:`edge_profile` (one white-line offset (P,) each),
    then :data:`PROFILE_ITERATIONS` LM steps with b2 held at the points below ``refine_below``.
    Returns cost (P, G), best θ (P, G, 6) and heights (4, P, G)."""
    n_pix, n_grid = g.shape
    cost = np.full((n_pix, n_grid), np.inf)
    best = np.empty((n_pix, n_grid, 6))
    coef = np.zeros((4, n_pix, n_grid))
    for off in passes:
        _profile_pass(prob, theta, lo, hi, g, off, cost, best, coef)
    if not PROFILE_ITERATIONS:
        return cost, best, coef
    # the other basins need other widths and white lines than the fit's: a few LM steps
    # with b2 held at the grid value (its box collapsed) let them adapt. Only points whose
    # χ² could matter (below ``refine_below``) are refined, in chunks (memory).
    flat_cost = cost.reshape(-1)
    todo = np.flatnonzero(flat_cost < np.repeat(refine_below, n_grid)) if refine_below is not None else None
    todo = np.arange(flat_cost.size) if todo is None else todo
    flat_best, flat_coef = best.reshape(-1, 6), coef.reshape(4, -1)
    for first in range(0, todo.size, _PROFILE_ROWS):
        sel = todo[first : first + _PROFILE_ROWS]
        rows = sel // n_grid
        lo_r, hi_r = lo[rows], hi[rows]
        fixed = flat_best[sel, 0]
        lo_r[:, 0] = hi_r[:, 0] = fixed
        lo_r[:, 4] = np.minimum(np.maximum(lo_r[:, 4], fixed), hi_r[:, 4])  # white line not behind its edge
        sub = prob.subset(rows)
        th0 = np.clip(flat_best[sel], lo_r, hi_r)
        th, cf, ct, _, _ = _levenberg_marquardt(sub, th0, lo_r, hi_r, PROFILE_ITERATIONS, 1e-6, 1e-3)
        flat_best[sel], flat_coef[:, sel] = th, cf
        flat_cost[sel] = np.where(ct < np.inf, ct, np.inf)
    return flat_cost.reshape(n_pix, n_grid), flat_best.reshape(n_pix, n_grid, 6), flat_coef.reshape(4, n_pix, n_grid)


def _profile_pass(prob, theta, lo, hi, g, off, cost, best, coef) -> None:
    """One projection pass of :func:`edge_profile`: b2 at each grid value, white line at
    b2 + max(``off``, 0), the rest as fitted; kept in ``cost``/``best``/``coef`` where
    strictly lower (in place)."""
    n_pix, n_grid = g.shape
    if _compiled():  # per pixel, compiled: the same numbers, no (pixel × grid) copies
        lo_c, hi_c = np.ascontiguousarray(lo, float), np.ascontiguousarray(hi, float)
        w_k = prob.w if not prob.unit else prob.w[:1]
        _kernels.profile_many(
            prob.x, w_k, prob.yw, prob.unit, np.ascontiguousarray(theta), lo_c, hi_c, g, off, cost, best, coef
        )
        return
    trial = np.repeat(theta[:, None, :], n_grid, axis=1)  # (P, G, 6)
    trial[:, :, 0] = g
    trial[:, :, 4] = g + np.maximum(off[:, None], 0.0)  # white line not behind its edge
    trial = np.clip(trial, lo[:, None], hi[:, None]).reshape(-1, 6)
    rows = np.repeat(np.arange(n_pix), n_grid)
    c_t = np.empty((4, rows.size))
    cost_t: np.ndarray = np.empty(rows.size)  # 1-D here, (n_pix, n_grid) after the scan
    for first in range(0, rows.size, _SCAN_ROWS):
        sl = slice(first, first + _SCAN_ROWS)
        sub = prob.subset(rows[sl])
        c_t[:, sl], _, cost_t[sl] = sub.project(trial[sl], np.arange(rows[sl].size))
    cost_t = np.where(cost_t < np.inf, cost_t, np.inf).reshape(n_pix, n_grid)  # NaN never wins
    better = cost_t < cost
    cost[better] = cost_t[better]
    best[better] = trial.reshape(n_pix, n_grid, 6)[better]
    coef[:, better] = c_t.reshape(4, n_pix, n_grid)[:, better]


def global_starts(
    energy: np.ndarray,
    y: np.ndarray,
    params: np.ndarray,
    cost: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    n_valid: np.ndarray,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Starts for local fits in the other basins of the b2 profile (:func:`edge_profile`).

    For each pixel with a clear edge (b1 ≥ 3 rms residual), the lowest profile point below
    and the lowest above the fitted edge (at least :data:`PROFILE_MIN_DISTANCE` away) become
    starts when their χ² is within :data:`PROFILE_DELTA_CHI2` × redchi of the fit's; for a
    fit with its white line behind its edge, always and at any distance. Profile points
    are refined (b2 held) where within :data:`PROFILE_REFINE_RISE` × redchi. Shared by the
    batch solver and the lmfit reference: both run the same global search.

    Returns
    -------
    rows : ndarray (K,) int
        Pixel of each start (a pixel appears at most twice, below before above).
    starts : ndarray (K, 10)
    profile_b2, profile_cost : ndarray (P, G)
        The profile (NaN / ∞ for pixels without a clear edge), for :func:`widen_edge_stderr`.
    """
    dof_all = np.maximum(np.asarray(n_valid) - N_PARAMETERS, 1)
    with np.errstate(invalid="ignore"):
        rms = np.sqrt(cost / dof_all)
    # only clear edges (b1 ≥ 3 rms residual, as the restarts): a noise-level b2 means nothing
    ok = np.isfinite(params).all(axis=1) & np.isfinite(cost) & (params[:, _B1] >= 3.0 * rms) & (params[:, _B1] > 0)
    idx = np.flatnonzero(ok)
    n_grid = int(np.ceil(2.0 * EDGE_RANGE / PROFILE_STEP)) + 1
    prof_b2 = np.full((params.shape[0], n_grid), np.nan)
    prof_cost = np.full((params.shape[0], n_grid), np.inf)
    if idx.size == 0:
        return np.zeros(0, int), np.zeros((0, N_PARAMETERS)), prof_b2, prof_cost
    dof = np.maximum(np.asarray(n_valid)[idx] - N_PARAMETERS, 1)
    refine = cost[idx] * (1.0 + PROFILE_REFINE_RISE / dof)
    grid, prof, start = edge_profile(energy, y[idx], params[idx], lower[idx], upper[idx], _take(weights, idx), refine)
    limit = cost[idx] + PROFILE_DELTA_CHI2 * cost[idx] / dof
    # a fit with its white line behind its edge is not an answer (see keep_best): always
    # refit it from the best physical profile point on each side, however close
    behind = white_line_behind(params[idx])
    limit = np.where(behind, np.inf, limit)
    near = np.where(behind, 0.0, PROFILE_MIN_DISTANCE)[:, None]
    dist = grid - params[idx, _B2, None]
    rows, starts = [], []
    for side in (dist <= -near, (dist >= near) & (dist > 0)):
        c = np.where(side, prof, np.inf)
        k = np.argmin(c, axis=1)
        pick = np.flatnonzero(c[np.arange(idx.size), k] < limit)
        rows.append(idx[pick])
        starts.append(start[pick, k[pick]])
    order = np.argsort(np.concatenate(rows), kind="stable")
    prof_b2[idx], prof_cost[idx] = grid, prof
    return np.concatenate(rows)[order], np.concatenate(starts)[order], prof_b2, prof_cost


def _take(weights: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    return None if weights is None else np.asarray(weights)[idx]


def white_line_behind(params: np.ndarray) -> np.ndarray:
    """(P,) True where a white line is present (c21 > 0) with its centre below the edge (c22 < b2)."""
    params = np.asarray(params, dtype=float)
    return (params[:, _C21] > 0) & (params[:, _C22] < params[:, _B2])


def widen_edge_stderr(
    params: np.ndarray,
    stderr_b2: np.ndarray,
    cost: np.ndarray,
    redchi: np.ndarray,
    alt_b2: np.ndarray,
    alt_cost: np.ndarray,
) -> np.ndarray:
    """b2's error [eV] no smaller than what the χ² profile and the fit's geometry allow.

    The curvature error is widened (a) by :func:`profile_edge_stderr` over the other
    local minima and profile points ``alt_b2``/``alt_cost`` (P, K), and (b) for a fit whose
    white line sits behind its edge (:func:`white_line_behind`) to the distance b2 − c22:
    there the erf sits on the plateau after the peak and the rise is the Lorentzian's, so
    the edge is not located better than that. NaN errors (undetermined) stay NaN.
    """
    widened = profile_edge_stderr(params[:, _B2], cost, redchi, alt_b2, alt_cost)
    behind = white_line_behind(params)
    widened = np.where(behind, np.maximum(widened, params[:, _B2] - params[:, _C22]), widened)
    return np.where(np.isfinite(stderr_b2), np.maximum(stderr_b2, widened), stderr_b2)


def profile_edge_stderr(
    b2: np.ndarray, cost: np.ndarray, redchi: np.ndarray, alt_b2: np.ndarray, alt_cost: np.ndarray
) -> np.ndarray:
    """Edge-energy error implied by the χ² profile over b2 [eV]: its K-σ interval inside ±K·σ.

    A point of the profile (another local minimum, or a profile point) |Δb2| away whose χ²
    is only Δχ² < K²·redchi above the fit's lies inside the profile-likelihood K-σ interval
    (Δχ² = K² in units of the noise; K = :data:`PROFILE_COVERAGE`). The error is then at
    least |Δb2|/K, so that ±K·σ covers it: near-equal minima of a bimodal fit give an
    error of a fifth of their separation, and a profile that flattens far from the minimum
    (a non-quadratic χ²) widens the tails, while points the data exclude (Δχ² ≥ K²·redchi)
    leave the curvature error alone. Profile points are upper bounds of the profile (other
    parameters refined a few steps only), so this never widens more than the true profile
    would. NaN alternatives are ignored; returns 0 where there are none.

    Parameters
    ----------
    b2, cost, redchi : ndarray (P,)
        The kept fit.
    alt_b2, alt_cost : ndarray (P, K)
        Edge energies and χ² of the other local fits and profile points (NaN / ∞ = none).
    """
    k = PROFILE_COVERAGE
    with np.errstate(invalid="ignore", divide="ignore"):
        rise = (alt_cost - cost[:, None]) / redchi[:, None]
        sigma = np.where(rise < k * k, np.abs(alt_b2 - b2[:, None]) / k, 0.0)
    sigma = np.where(np.isfinite(sigma), sigma, 0.0)
    return sigma.max(axis=1, initial=0.0)


def keep_best(p, c, it, conv, rows, p_r, c_r, it_r, conv_r, extra=None, extra_r=None):
    """Per pixel, the lowest χ² of its fit and its global-search refits (``rows``: their pixels).

    Also returns every pixel's other local minima, (P, 2) edge energies and χ² (NaN = none),
    for :func:`profile_edge_stderr`. Refits that lost the edge (b1 = 0) do not count as minima.
    ``extra`` (P, m) / ``extra_r`` (K, m): more per-fit arrays (e.g. lmfit's errors) to pick
    along, returned last.
    """
    n_pix = p.shape[0]
    cand_p = np.concatenate([p[None], np.full((2, n_pix, N_PARAMETERS), np.nan)])
    cand_c = np.concatenate([c[None], np.full((2, n_pix), np.inf)])
    cand_it = np.concatenate([it[None], np.zeros((2, n_pix), int)])
    cand_conv = np.concatenate([conv[None], np.zeros((2, n_pix), bool)])
    slot = np.ones(rows.size, int)
    slot[1:][rows[1:] == rows[:-1]] = 2  # a pixel's second start (rows are sorted)
    cand_p[slot, rows], cand_c[slot, rows] = p_r, np.where(np.isfinite(c_r), c_r, np.inf)
    cand_it[slot, rows], cand_conv[slot, rows] = it_r, conv_r
    # strictly lower (relative 1e-9, as the restarts): ties keep the first fit
    # a fit with the white line behind its edge (the erf on the plateau after the peak, the
    # Lorentzian making the rise) loses to any physical fit; among equals the lower χ² wins
    behind = np.stack([white_line_behind(cp) for cp in cand_p])  # NaN rows: False
    pick = np.zeros(n_pix, int)
    cols = np.arange(n_pix)
    for k in (1, 2):
        lower_cost = cand_c[k] < cand_c[pick, cols] * (1.0 - 1e-9)
        better = (behind[pick, cols] & ~behind[k] & np.isfinite(cand_c[k])) | (
            (behind[pick, cols] == behind[k]) & lower_cost
        )
        pick[better] = k
    cols = np.arange(n_pix)
    others = np.array([[k for k in range(3) if k != j] for j in range(3)])[pick]  # (P, 2)
    alt_b2 = cand_p[others.T, cols, _B2].T
    alt_cost = cand_c[others.T, cols].T
    lost = ~(cand_p[others.T, cols, _B1].T > 0)
    alt_b2 = np.where(lost | ~np.isfinite(alt_cost), np.nan, alt_b2)
    out = [cand_p[pick, cols], cand_c[pick, cols], cand_it[pick, cols], cand_conv[pick, cols], alt_b2, alt_cost]
    if extra is not None:
        cand_x = np.concatenate([extra[None], np.full((2, *extra.shape), np.nan)])
        cand_x[slot, rows] = extra_r
        out.append(cand_x[pick, cols])
    return tuple(out)


#: Edge energies [eV] around a physical start at which :func:`physical_refits` fits with b2
#: held (± the profile grid's 2 eV step, every 0.5 eV), before a parabolic step to the minimum.
PHYSICAL_OFFSETS: tuple[float, ...] = (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)


def physical_refits(
    energy: np.ndarray,
    y: np.ndarray,
    starts: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    weights: np.ndarray | None,
    max_iter: int,
    ftol: float,
    xtol: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Physical fits (white line not behind its edge) near physical profile points.

    A free local fit started at a physical profile point can slide back behind the white
    line (the erf on the plateau after the peak: issue 11 point 4, 1–2 % of noise-free
    foreign spectra), where :func:`keep_best` does not take it. Here b2 is held at the
    start's b2 + :data:`PHYSICAL_OFFSETS` with the white line bounded at or above it
    (c22 ≥ b2) and every other parameter fitted; a parabola through the lowest point and
    its neighbours gives one more held fit. The lowest is returned: the physical χ²
    minimum over b2 near the start, as the dense profile of the tests defines it.

    Parameters
    ----------
    energy : ndarray (n_E,)
    y : ndarray (K, n_E)
        The spectra of the starts' pixels.
    starts, lower, upper : ndarray (K, 10)
        Starts (physical profile points) and their pixels' bounds.
    weights : ndarray (K, n_E), optional
    max_iter, ftol, xtol
        Levenberg–Marquardt settings of each held fit.

    Returns
    -------
    params : ndarray (K, 10)
    cost : ndarray (K,)
        χ² (∞ where not finite).
    iterations : ndarray (K,) int
    converged : ndarray (K,) bool
    """
    y = np.asarray(y, dtype=float).reshape(-1, np.asarray(energy).size)
    w = np.ones_like(y) if weights is None else np.broadcast_to(weights, y.shape)
    n = y.shape[0]
    offs = np.asarray(PHYSICAL_OFFSETS, dtype=float)

    def held(rows: np.ndarray, b2: np.ndarray):
        sub = _Problem(energy, y[rows], w[rows])
        lo, hi = _theta(lower[rows], sub.e0), _theta(upper[rows], sub.e0)
        b = np.clip(b2 - sub.e0, lo[:, 0], hi[:, 0])
        lo[:, 0] = hi[:, 0] = b
        lo[:, 4] = np.minimum(np.maximum(lo[:, 4], b), hi[:, 4])  # white line not behind its edge
        th0 = _theta(starts[rows], sub.e0)
        th0[:, 4] = th0[:, 4] + (b - th0[:, 0])  # the white line moved along with the edge
        th0[:, 0] = b
        th, cf, ct, it, conv = _levenberg_marquardt(sub, np.clip(th0, lo, hi), lo, hi, max_iter, ftol, xtol)
        return _params(th, cf, sub.e0), np.where(ct < np.inf, ct, np.inf), it, conv

    k = offs.size
    rows = np.repeat(np.arange(n), k)
    b2 = (starts[:, _B2, None] + offs).reshape(-1)
    p, c, it, conv = held(rows, b2)
    c2 = c.reshape(n, k)
    j = np.argmin(c2, axis=1)
    # parabolic step through the lowest point and its neighbours (interior minima only)
    jm, jp = np.clip(j - 1, 0, k - 1), np.clip(j + 1, 0, k - 1)
    r = np.arange(n)
    cm, c0, cp = c2[r, jm], c2[r, j], c2[r, jp]
    h = offs[1] - offs[0] if k > 1 else 1.0
    curv = cm - 2.0 * c0 + cp
    with np.errstate(invalid="ignore", divide="ignore"):
        step = np.where((jm < j) & (jp > j) & (curv > 0), 0.5 * h * (cm - cp) / curv, 0.0)
    step = np.where(np.isfinite(step), np.clip(step, -h, h), 0.0)
    pv, cv, itv, convv = held(np.arange(n), starts[:, _B2] + offs[j] + step)
    flat = r * k + j
    take = cv < c[flat]
    out_p = np.where(take[:, None], pv, p[flat])
    out_c = np.where(take, cv, c[flat])
    return out_p, out_c, np.where(take, itv, it[flat]), np.where(take, convv, conv[flat])
