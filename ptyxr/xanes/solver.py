"""Vectorised batch fit of paper eq. (1) to many spectra at once (numpy only).

Variable projection (Golub & Pereyra 1973; Kaufman 1975): the four parameters that enter
eq. (1) linearly — a, b1, c11, c21 — are, for given nonlinear parameters θ = (b2, b3,
c12, c13, c22, c23), the solution of a 4-parameter least-squares problem with b1, c11,
c21 ≥ 0. That problem is solved exactly for every pixel at every trial θ (batched 4×4
normal equations; when a height would go negative, all 8 active sets of the three
constrained heights are solved and the best feasible one kept, which is the exact
non-negative solution). Levenberg–Marquardt then iterates on the 6 nonlinear parameters
of all pixels at once with the Kaufman Jacobian of the projected residual (analytic
derivatives; one batched Gram matrix per iteration gives JᵀJ, Jᵀr and the projection),
per-pixel damping, projection onto box bounds, and parameters that a step pushes
outward through a bound frozen for that step. Converged pixels leave the active set.

Starting values come from :func:`ptyxr.xanes.model.initial_estimates`, refined by a
short scan over edge positions and widths (:func:`scan_starts`). Pixels whose fit looks
wrong (edge behind the white line, edge or widths stuck on a bound) are refit from a few
alternative starts and the lowest χ² kept. A global search over the edge energy follows
(:func:`global_starts`): a coarse χ² profile over b2 across its whole box, local fits from
the other basins, a physical fit (white line not behind its edge) preferred, then the
lowest χ²; b2's error is widened to cover the profile's 5-σ interval
(:func:`widen_edge_stderr`), so a bimodal fit does not report a located edge.

Standard errors come from the full 10-parameter Jacobian at the solution:
σ² = redchi · diag((JᵀJ)⁻¹), as lmfit does (``scale_covar=True``). Parameters that are
undetermined there are reported NaN: centre and width of a Lorentzian whose height is
zero, edge centre/width when b1 = 0, and nonlinear parameters pinned on a bound.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from ptyxr.xanes import _kernels
from ptyxr.xanes.lineshapes import lorentzian_reduced, lorentzian_slope, step_reduced, step_slope
from ptyxr.xanes.starts import EDGE_RANGE, PARAMETERS, WIDTH_BOUNDS, initial_estimates

N_PARAMETERS = len(PARAMETERS)
# Column indices into the paper-ordered parameter vector.
_A, _B1, _B2, _B3, _C11, _C12, _C13, _C21, _C22, _C23 = range(N_PARAMETERS)
_LIN = np.array([_A, _B1, _C11, _C21])
_NL = np.array([_B2, _B3, _C12, _C13, _C22, _C23])
# Which linear coefficient (index into _LIN) scales each nonlinear parameter's derivative.
_NL_OWNER = np.array([1, 1, 2, 2, 3, 3])
_INV_SQRT_PI = 1.0 / np.sqrt(np.pi)
# The 8 active sets of the constrained heights (b1, c11, c21): True = free. ``a`` is always free.
# owner[j, l] = 1 where linear coefficient j scales nonlinear parameter l.
_OWNER = (np.arange(4)[:, None] == _NL_OWNER[None, :]).astype(float)[:, :, None]
_SUBSETS = np.array([[True, b, c, d] for b in (True, False) for c in (True, False) for d in (True, False)])

#: Solver engines: ``"numba"`` runs the projection and Levenberg–Marquardt per pixel in
#: compiled kernels (:mod:`ptyxr.xanes._kernels`, GIL released), ``"numpy"`` vectorised over
#: the pixels of a block; ``"auto"`` = numba where importable. Same algorithm, results equal
#: to rounding (summation order).
ENGINES = ("auto", "numba", "numpy")
_ENGINE = threading.local()  # the engine of the fit running in this thread (fit_batch sets it)


def _resolve_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"fit_batch: engine must be one of {ENGINES}, got {engine!r}")
    if engine == "numba" and not _kernels.AVAILABLE:
        raise ImportError("fit_batch(engine='numba') needs numba (pip install ptyxr[fast])")
    return "numba" if engine == "auto" and _kernels.AVAILABLE else ("numpy" if engine == "auto" else engine)


def _compiled() -> bool:
    """Whether this thread's fit uses the compiled kernels (default: where numba is importable)."""
    engine = getattr(_ENGINE, "name", None)
    return _kernels.AVAILABLE if engine is None else engine == "numba"


@dataclass
class BatchResult:
    """Results of :func:`fit_batch` for P spectra.

    Attributes
    ----------
    params, stderr : ndarray (P, 10)
        Paper parameters (:data:`ptyxr.xanes.model.PARAMETERS` order) and standard errors.
    redchi : ndarray (P,)
        Σ(w·r)² / (N_valid − 10).
    success : ndarray (P,) bool
        Converged, finite, and not stuck on a bound absurdly (see :func:`success_flags`).
    cost : ndarray (P,)
        Σ(w·r)² at the solution.
    iterations : ndarray (P,) int
        Levenberg–Marquardt iterations of the kept start.
    lower, upper : ndarray (P, 10)
        The bounds used.
    covariance : ndarray (P, 10, 10) or None
        Full covariance (NaN rows/cols for undetermined parameters) if requested.
    cpu_time : float
        CPU time spent fitting, summed over the worker threads/processes [s].
    """

    params: np.ndarray
    stderr: np.ndarray
    redchi: np.ndarray
    success: np.ndarray
    cost: np.ndarray
    iterations: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    covariance: np.ndarray | None = None
    cpu_time: float = float("nan")


# ------------------------------------------------------------ small batched linear algebra
def _dot(xs: list[np.ndarray], ys: list[np.ndarray]) -> np.ndarray:
    """Σ xᵢ·yᵢ, summed in order (as numpy's reduction over a leading axis: same rounding)."""
    s = xs[0] * ys[0]
    for x, y in zip(xs[1:], ys[1:], strict=True):
        s += x * y
    return s


#: Batched Cholesky factor: rows of length-P vectors (lower triangle) and, per pivot,
#: the mask of kept pixels (None: all kept).
_Factor = tuple[list[list[np.ndarray]], list[np.ndarray | None]]


def _chol_factor(a: np.ndarray, rtol: float = 1e-12) -> _Factor:
    """Batched Cholesky factor of SPD matrices a (k, k, P), numerically singular directions dropped.

    Fully unrolled over the k×k entries: every operation is on contiguous length-P
    vectors (no strided reductions, no (k, k, P) temporaries), 3–4× faster than a
    vectorised-over-rows factorisation at large P and never slower at small P.
    A pivot that is not positive (relative to its diagonal) marks a variable that the
    others already determine; it gets pivot 1 and zero couplings, so its solution is 0,
    never NaN. The masked path runs only where some pixel drops a pivot; per pixel it
    is the same arithmetic as the fast path.
    """
    k = a.shape[0]
    low: list[list[np.ndarray]] = [[] for _ in range(k)]
    goods: list[np.ndarray | None] = [None] * k
    for j in range(k):
        ajj = a[j, j]
        d = ajj - _dot(low[j][:j], low[j][:j]) if j else ajj
        good = (ajj > 0) & (d > rtol * ajj)
        if good.all():
            ljj = np.sqrt(d)
        else:
            goods[j] = good
            ljj = np.where(good, np.sqrt(np.where(good, d, 1.0)), 1.0)
            low[j] = [lji * good for lji in low[j]]  # a dropped variable is decoupled entirely
        low[j].append(ljj)
        for i in range(j + 1, k):
            off = a[i, j] - _dot(low[i][:j], low[j][:j]) if j else a[i, j]
            low[i].append(off / ljj if goods[j] is None else np.where(good, off / ljj, 0.0))
    return low, goods


def _chol_subst(factor: _Factor, b: np.ndarray) -> np.ndarray:
    """Solve L Lᵀ x = b with a factor from :func:`_chol_factor`; b (k, m, P) → x (k, m, P)."""
    low, goods = factor
    k = len(low)
    z: list[np.ndarray] = []
    for j in range(k):
        bj = b[j] if goods[j] is None else b[j] * goods[j]
        if j:
            bj = bj - _dot([low[j][i][None] for i in range(j)], z)
        z.append(bj / low[j][j])
    x = np.empty((k, *b.shape[1:]))
    for j in range(k - 1, -1, -1):
        zj = z[j]
        if j + 1 < k:
            zj = zj - _dot([low[i][j][None] for i in range(j + 1, k)], list(x[j + 1 :]))
        np.divide(zj, low[j][j], out=x[j])
    return x


def _chol_solve(a: np.ndarray, b: np.ndarray, rtol: float = 1e-12) -> np.ndarray:
    """Solve SPD systems a x = b for a batch, dropping (x = 0) numerically singular directions.

    Parameters
    ----------
    a : ndarray (k, k, P)
        Symmetric positive semi-definite matrices.
    b : ndarray (k, m, P)
        Right-hand sides.

    Returns
    -------
    ndarray (k, m, P)
    """
    return _chol_subst(_chol_factor(a, rtol), b)


def _nnls4(gram: np.ndarray, rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares for (a, b1, c11, c21) with b1, c11, c21 ≥ 0, for a batch.

    Parameters
    ----------
    gram : ndarray (4, 4, P)
        BᵀB of the weighted basis columns (1, step, pre-edge, white line).
    rhs : ndarray (4, P)
        Bᵀy.

    Returns
    -------
    coef : ndarray (4, P)
    free : ndarray (4, P) bool
        Coefficients not held at zero.
    """
    coef, free, _ = _nnls4_factor(gram, rhs)
    return coef, free


def _nnls4_factor(gram: np.ndarray, rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray, _Factor]:
    """:func:`_nnls4`, also returning the Cholesky factor of the full ``gram``.

    The factor is that of G_F wherever all heights are free (most pixels): the caller
    reuses it for more solves with G_F instead of factorising again.
    """
    n_pix = rhs.shape[1]
    factor = _chol_factor(gram)
    coef = _chol_subst(factor, rhs[:, None, :])[:, 0, :]
    free = np.ones((4, n_pix), bool)
    bad = np.flatnonzero((coef[1:] < 0).any(axis=0))
    if bad.size:
        # all 7 active sets of all offending pixels in one batched solve (call overhead);
        # per pixel and subset the same arithmetic as one solve per subset
        subsets = _SUBSETS[1:]  # (7, 4)
        n_sub, n_bad = len(subsets), bad.size
        g, h = gram[:, :, bad], rhs[:, bad]
        keep = (subsets[:, :, None] & subsets[:, None, :])[:, :, :, None]  # (7, 4, 4, 1)
        gs = np.where(keep, g[None], np.eye(4)[None, :, :, None]).transpose(1, 2, 0, 3).reshape(4, 4, -1)
        hs = np.where(subsets[:, :, None], h[None], 0.0).transpose(1, 0, 2).reshape(4, -1)
        c = _chol_subst(_chol_factor(gs), hs[:, None, :])[:, 0, :]
        c = np.where(subsets.T[:, :, None], c.reshape(4, n_sub, n_bad), 0.0).reshape(4, -1)
        feasible = (c[1:] >= 0).all(axis=0)
        obj = -np.einsum("kp,kp->p", np.tile(h, n_sub), c)  # ‖y−Bc‖² − ‖y‖² at a subset's LS solution
        obj = np.where(feasible & (obj < np.inf), obj, np.inf).reshape(n_sub, n_bad)
        # the first subset with the lowest objective, as a sequential strict-< scan keeps
        pick = np.argmin(obj, axis=0)
        cols = np.arange(n_bad)
        found = obj[pick, cols] < np.inf
        coef[:, bad] = np.where(found, c.reshape(4, n_sub, n_bad)[:, pick, cols], 0.0)
        free[:, bad] = np.where(found, subsets[pick].T, True)
    return coef, free, factor


# ------------------------------------------------------------------ model pieces
class _Problem:
    """Weighted data of one block of pixels, energies shifted to the window centre."""

    def __init__(self, energy: np.ndarray, y: np.ndarray, weights: np.ndarray) -> None:
        self.e0 = 0.5 * (energy[0] + energy[-1])  # shift: better-conditioned centres
        self.x = energy - self.e0
        finite = np.isfinite(y) & np.isfinite(weights) & (weights > 0)
        self.w = np.where(finite, weights, 0.0)
        self.yw = np.where(finite, y, 0.0) * self.w
        self.n_valid = finite.sum(axis=1)
        self.unit = bool(np.all(self.w == 1.0))  # skip the weight multiplications

    def basis(self, theta: np.ndarray, idx: np.ndarray):
        """Unit basis columns s, L1, L2 (P, n) at nonlinear parameters ``theta`` (P, 6)."""
        x = self.x
        z = (x - theta[:, 0, None]) / theta[:, 1, None]
        u1 = (x - theta[:, 2, None]) / theta[:, 3, None]
        u2 = (x - theta[:, 4, None]) / theta[:, 5, None]
        return step_reduced(z), lorentzian_reduced(u1), lorentzian_reduced(u2), z, u1, u2

    def _rows(self, theta: np.ndarray, idx: np.ndarray, derivatives: bool) -> np.ndarray:
        """Weighted rows [1, s, L1, L2, y, (∂s/∂b2, ∂s/∂b3, ∂L1/∂c12, ∂L1/∂c13, ∂L2/∂c22, ∂L2/∂c23)].

        Written in place into one (k, P, n) buffer: this is the hot loop, and memory
        passes, not arithmetic, dominate it. Row-major over k, every element operation
        is one contiguous P·n loop (a (P, k, n) buffer would make it P loops of n).
        """
        n_pix, x = idx.size, self.x
        m = np.empty((11 if derivatives else 5, n_pix, x.size))
        w = None if self.unit else self.w[idx]
        z = np.subtract(x, theta[:, 0, None])
        z /= theta[:, 1, None]
        s = m[1]
        s[...] = step_reduced(z)
        if derivatives:
            e = step_slope(z)
            e *= _INV_SQRT_PI / theta[:, 1, None]
            if w is not None:
                e *= w
            np.negative(e, out=m[5])
            np.multiply(m[5], z, out=m[6])
        for col, c in enumerate((2, 4)):
            d = m[7 + 2 * col : 9 + 2 * col] if derivatives else None
            self._lorentzian(theta[:, c], theta[:, c + 1], w, m[2 + col], d)
        if w is not None:
            s *= w
            m[0] = w
        else:
            m[0] = 1.0
        m[4] = self.yw[idx]
        return m

    def _lorentzian(
        self, centre: np.ndarray, width: np.ndarray, w: np.ndarray | None, out: np.ndarray, d: np.ndarray | None
    ) -> None:
        """Weighted unit Lorentzian (P, n) into ``out``; into ``d`` (2, P, n) its centre and width derivatives."""
        u = np.subtract(self.x, centre[:, None])
        u /= width[:, None]
        out[...] = lorentzian_reduced(u)
        if d is not None:
            d[0] = lorentzian_slope(out, u)
            d[0] *= 2.0 / width[:, None]
            if w is not None:
                d[0] *= w
            np.multiply(d[0], u, out=d[1])
        if w is not None:
            out *= w

    def project(self, theta: np.ndarray, idx: np.ndarray, derivatives: bool = False):
        """Exact constrained linear coefficients, cost and (optionally) the LM normal equations."""
        if not derivatives and _compiled():
            n_pix = idx.size
            coef, free, cost = np.empty((4, n_pix)), np.empty((4, n_pix), bool), np.empty(n_pix)
            w = self.w[idx] if not self.unit else self.w[:1]
            _kernels.project_many(
                self.x, w, self.yw[idx], self.unit, np.ascontiguousarray(theta, float), coef, free, cost
            )
            return coef, free, cost
        return self._solve(self._rows(theta, idx, derivatives), derivatives)

    def _solve(self, m: np.ndarray, derivatives: bool):
        """:meth:`project` from the rows (k, P, n) of :meth:`_rows`."""
        mt = m.transpose(1, 0, 2)  # (P, k, n) view: BLAS takes the row stride, no copy
        gram_all = np.matmul(mt, mt.transpose(0, 2, 1)).transpose(1, 2, 0)  # (k, k, P)
        last = 4
        gram, rhs, yy = gram_all[:4, :4], gram_all[:4, last], gram_all[last, last]
        coef, free, factor = _nnls4_factor(gram, rhs)
        cost = yy - 2.0 * np.einsum("kp,kp->p", rhs, coef) + np.einsum("ip,ijp,jp->p", coef, gram, coef)
        cost = np.maximum(cost, 0.0)
        if not derivatives:
            return coef, free, cost
        scale = coef[_NL_OWNER]  # (6, P): b1, b1, c11, c11, c21, c21
        q = gram_all[:4, 5:11] * scale[None]  # Bᵀ J_f
        jj = gram_all[5:11, 5:11] * scale[:, None] * scale[None, :]
        jy = gram_all[5:11, last] * scale
        grad = jy - np.einsum("kjp,kp->jp", q, coef)  # J_fᵀ r (r ⟂ free basis columns)
        # Golub–Pereyra JᵀJ of the projected residual: Kaufman's J_fᵀ(I − P)J_f plus the
        # term from the coefficients' response to the residual, (D_kᵀr)(D_lᵀr)(G⁻¹)_{j(k)j(l)}
        # (the cross terms vanish: (I − P)J_f ⟂ span B). Both need G⁻¹ on the free set only.
        dr = gram_all[5:11, last] - np.einsum("kjp,kp->jp", gram_all[:4, 5:11], coef)  # D_kᵀ r
        rhs_all = np.concatenate([q, np.broadcast_to(_OWNER, q.shape)], axis=1)
        x = _chol_subst(factor, rhs_all)  # G⁻¹[q, owner] where all heights are free
        bound = np.flatnonzero(~free.all(axis=0))
        if bound.size:  # the rest: on their free set (x = 0 off it)
            fb = free[:, bound]
            keep = fb[:, None, :] & fb[None, :, :]
            g_b = np.where(keep, gram[:, :, bound], np.eye(4)[:, :, None])
            x[:, :, bound] = _chol_solve(g_b, np.where(fb[:, None, :], rhs_all[:, :, bound], 0.0))
        ginv = x[_NL_OWNER, 6:]  # (G⁻¹)_{j(l), j(k)} as [l, k]
        hess = jj - np.einsum("kip,kjp->ijp", q, x[:, :6]) + dr[:, None, :] * dr[None, :, :] * ginv.transpose(1, 0, 2)
        return coef, free, cost, hess, grad


# ------------------------------------------------------------------ starts
def _theta(params: np.ndarray, e0: float) -> np.ndarray:
    theta = params[:, _NL].copy()
    theta[:, [0, 2, 4]] -= e0
    return theta


def _params(theta: np.ndarray, coef: np.ndarray, e0: float) -> np.ndarray:
    out = np.empty((theta.shape[0], N_PARAMETERS))
    out[:, _NL] = theta
    out[:, _NL[[0, 2, 4]]] += e0
    out[:, _LIN] = coef.T
    return out


def scan_starts(
    energy: np.ndarray,
    y: np.ndarray,
    start: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    weights: np.ndarray | None = None,
    edge_offsets: tuple[float, ...] = (-4.0, -2.0, 2.0, 4.0),
    width_factors: tuple[float, ...] = (0.5, 2.0),
    centres: np.ndarray | None = None,
) -> np.ndarray:
    """Refine starting values: try edge positions b2 + offsets [eV], then widths b3·factors,
    then (optionally) pre-edge centres c12 and white-line centres c22 at ``centres`` [eV].

    For each candidate the linear parameters are solved exactly and the candidate with
    the lowest χ² is kept (per pixel). Returns the refined ``start`` (P, 10) with the
    linear parameters replaced by their exact values (heights made slightly positive).
    """
    energy = np.asarray(energy, dtype=float)
    y = np.asarray(y, dtype=float).reshape(-1, energy.size)
    w = np.ones_like(y) if weights is None else np.broadcast_to(weights, y.shape)
    ok = np.isfinite(start).all(axis=1)
    out = start.copy()
    if not ok.any():
        return out
    idx = np.flatnonzero(ok)
    prob = _Problem(energy, y[idx], np.asarray(w)[idx])
    local = np.arange(idx.size)
    lo, hi = _theta(lower[idx], prob.e0), _theta(upper[idx], prob.e0)
    theta = np.clip(_theta(start[idx], prob.e0), lo, hi)
    coef, _, cost = prob.project(theta, local)
    scans: list[tuple[int, tuple[float, ...]]] = [(0, tuple(edge_offsets)), (1, tuple(width_factors))]
    if centres is not None:
        scans += _centre_candidates(np.asarray(centres, float) - prob.e0, lo, hi)
    for column, candidates in scans:
        if column >= 2:
            _scan_column(prob, theta, coef, cost, lo, hi, column, np.asarray(candidates, float))
            continue
        for value in candidates:  # sequential: each shift/factor applies to the best so far
            trial = theta.copy()
            if column == 0:
                trial[:, 0] += value
            else:
                trial[:, 1] *= value
            trial = np.clip(trial, lo, hi)
            c_t, _, cost_t = prob.project(trial, local)
            better = cost_t < cost
            theta[better], coef[:, better], cost[better] = trial[better], c_t[:, better], cost_t[better]
    refined = _params(theta, coef, prob.e0)
    # heights start strictly positive so that bounded optimisers (lmfit) can move them
    floor = 1e-3 * np.maximum(refined[:, _B1], 1e-9)
    for k in (_B1, _C11, _C21):
        refined[:, k] = np.maximum(refined[:, k], floor if k != _B1 else 1e-9)
    out[idx] = refined
    return out


def _centre_candidates(grid: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[tuple[int, tuple[float, ...]]]:
    """The centre scans of :func:`scan_starts`: (θ column, centres) for c12 and c22.

    Only centres inside some pixel's bounds (the others would clip: repeats). The set
    depends on the batch's bounds, so the restarts check it before reusing a batch.
    """
    out = []
    for column in (2, 4):
        inside = (grid >= lo[:, column].min()) & (grid <= hi[:, column].max())
        out.append((column, tuple(grid[inside])))
    return out


#: Rows (pixel × candidate) per batched call of the centre scan: ≈ 2 kB each.
_SCAN_ROWS = 16384


def _scan_column(
    prob: _Problem,
    theta: np.ndarray,
    coef: np.ndarray,
    cost: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    column: int,
    values: np.ndarray,
) -> None:
    """Try ``theta[:, column] = v`` for every v in ``values``; keep the lowest χ² (in place).

    The candidates do not depend on each other, so many are projected in one batched
    call (the restart scans try ~30 centres on a few hundred pixels: one call each was
    call overhead). Picks the first lowest candidate, strictly below the incumbent:
    the same choice as trying them one after the other.
    """
    n_pix = theta.shape[0]
    if n_pix == 0 or values.size == 0:
        return
    if _compiled() and theta.flags.c_contiguous and coef.flags.c_contiguous:  # per pixel, in place
        w = prob.w if not prob.unit else prob.w[:1]
        lo_c, hi_c = np.ascontiguousarray(lo, float), np.ascontiguousarray(hi, float)
        _kernels.scan_column(prob.x, w, prob.yw, prob.unit, theta, lo_c, hi_c, column, values, coef, cost)
        return
    cols = np.arange(n_pix)
    per_call = max(1, _SCAN_ROWS // n_pix)
    for first in range(0, values.size, per_call):
        vals = values[first : first + per_call]
        trial = np.repeat(theta[None], vals.size, axis=0)  # (n_v, P, 6)
        trial[:, :, column] = vals[:, None]
        trial = np.clip(trial, lo, hi)
        c_t, _, cost_t = prob.project(trial.reshape(-1, theta.shape[1]), np.tile(cols, vals.size))
        cost_t = np.where(cost_t < np.inf, cost_t, np.inf).reshape(vals.size, n_pix)  # NaN never wins
        pick = np.argmin(cost_t, axis=0)
        better = np.flatnonzero(cost_t[pick, cols] < cost)
        k = pick[better]
        theta[better] = trial[k, better]
        coef[:, better] = c_t.reshape(4, vals.size, n_pix)[:, k, better]
        cost[better] = cost_t[k, better]


# ------------------------------------------------------------------ LM
#: Iterations after which a pixel with no edge above the noise is abandoned.
GIVE_UP_AFTER = 10


def _levenberg_marquardt(
    prob: _Problem,
    theta: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    max_iter: int,
    ftol: float,
    xtol: float,
    give_up: int = GIVE_UP_AFTER,
):
    """Batched projected LM on the nonlinear parameters; returns theta, coef, cost, iterations, converged.

    Damping follows Nielsen (1999): on an accepted step λ ← λ·max(1/3, 1 − (2ρ − 1)³)
    with ρ = actual/predicted decrease of χ², else λ ← λ·ν, ν ← 2ν. A pixel stops when
    both the actual and the predicted relative decrease are ≤ ``ftol`` (MINPACK's test),
    when a step moves no parameter by more than ``xtol`` [eV], or when λ explodes.
    After ``give_up`` iterations a pixel whose edge jump b1 is below the rms
    residual is abandoned (not converged): noise-only spectra (vacuum) otherwise wander
    for a hundred iterations, and their fit means nothing (DESIGN §2b: tiny edge jumps
    are unfittable — mask, don't pretend).
    """
    n_pix = theta.shape[0]
    if _compiled():
        theta = np.ascontiguousarray(theta, float)
        coef, cost = np.empty((4, n_pix)), np.empty(n_pix)
        iterations, converged = np.empty(n_pix, np.int64), np.empty(n_pix, bool)
        w = prob.w if not prob.unit else prob.w[:1]
        _kernels.levenberg_marquardt(
            prob.x, w, prob.yw, prob.unit, prob.n_valid.astype(np.int64), theta,
            np.ascontiguousarray(lo, float), np.ascontiguousarray(hi, float),
            int(max_iter), float(ftol), float(xtol), int(give_up), coef, cost, iterations, converged,
        )  # fmt: skip
        return theta, coef, cost, iterations, converged
    everyone = np.arange(n_pix)
    coef, free, cost, hess, grad = prob.project(theta, everyone, derivatives=True)
    lam = np.full(n_pix, 1e-3)
    nu = np.full(n_pix, 2.0)
    iterations = np.zeros(n_pix, int)
    converged = np.zeros(n_pix, bool)
    active = everyone.copy()
    for _ in range(max_iter):
        if active.size == 0:
            break
        th, h, g, lm = theta[active], hess[:, :, active], grad[:, active], lam[active]
        diag = np.einsum("iip->ip", h).copy()
        scale = np.maximum(diag.max(axis=0), 1e-300)
        determined = diag > 1e-12 * scale
        step = _damped_step(h, g, lm, diag, determined)
        # freeze parameters that sit on a bound and are pushed through it, then re-solve
        push = ((th.T <= lo[active].T) & (step < 0)) | ((th.T >= hi[active].T) & (step > 0))
        pushed = np.flatnonzero(push.any(axis=0))
        if pushed.size:
            use = determined[:, pushed] & ~push[:, pushed]
            step[:, pushed] = _damped_step(h[:, :, pushed], g[:, pushed], lm[pushed], diag[:, pushed], use)
        trial = np.clip(th + step.T, lo[active], hi[active])
        step = (trial - th).T  # what was actually taken after the projection
        moved = np.abs(step).max(axis=0)
        predicted = np.einsum("ip,ip->p", step, 2.0 * g - np.einsum("ijp,jp->ip", h, step))
        c_t, f_t, cost_t, h_t, g_t = prob.project(trial, active, derivatives=True)
        old = cost[active]
        actual = old - cost_t
        accept = np.isfinite(cost_t) & (actual > 0)
        iterations[active] += 1
        acc = active[accept]
        theta[acc], cost[acc] = trial[accept], cost_t[accept]
        coef[:, acc], free[:, acc] = c_t[:, accept], f_t[:, accept]
        hess[:, :, acc], grad[:, acc] = h_t[:, :, accept], g_t[:, accept]
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.where(predicted > 0, actual / predicted, 0.0)
        lam[acc] = lm[accept] * np.maximum(1.0 / 3.0, 1.0 - (2.0 * rho[accept] - 1.0) ** 3)
        nu[acc] = 2.0
        rej = active[~accept]
        lam[rej] = lm[~accept] * nu[rej]
        nu[rej] *= 2.0
        tol = ftol * np.maximum(cost[active], 1e-300)
        small = (np.abs(actual) <= tol) & (predicted <= tol)
        done = small | (moved <= xtol) | (lam[active] > 1e12)
        converged[active[done]] = True
        with np.errstate(invalid="ignore", divide="ignore"):
            rms = np.sqrt(cost[active] / np.maximum(prob.n_valid[active] - N_PARAMETERS, 1))
        hopeless = (iterations[active] >= give_up) & (coef[1, active] < rms)
        active = active[~(done | hopeless)]
    return theta, coef, cost, iterations, converged


def _damped_step(h: np.ndarray, g: np.ndarray, lam: np.ndarray, diag: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Marquardt step (H + λ diag H) δ = g over the ``use`` parameters (δ = 0 elsewhere)."""
    eye = np.eye(h.shape[0])[:, :, None]
    keep = use[:, None, :] & use[None, :, :]
    damped = np.where(keep, h + eye * (lam * diag)[None], eye)
    rhs = np.where(use, g, 0.0)
    return _chol_solve(damped, rhs[:, None, :])[:, 0, :]


# ------------------------------------------------------------------ errors and flags
def _covariance(
    prob: _Problem, params: np.ndarray, lower: np.ndarray, upper: np.ndarray, cost: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Covariance (P, 10, 10) = redchi·(JᵀJ)⁻¹ over determined parameters, and redchi."""
    n_pix = params.shape[0]
    use = _determined(params, lower, upper).T  # (10, P)
    eye = np.eye(N_PARAMETERS)[:, :, None]
    keep = use[:, None, :] & use[None, :, :]
    dof = prob.n_valid - N_PARAMETERS
    with np.errstate(invalid="ignore", divide="ignore"):
        redchi = np.where(dof > 0, cost / dof, np.nan)
    theta = _theta(params, prob.e0)
    if _compiled():  # per pixel, compiled (GIL released): the same algebra, rounding aside
        inv_p = np.empty((n_pix, N_PARAMETERS, N_PARAMETERS))
        _kernels.inverse_normal_matrix(
            prob.x,
            prob.w if not prob.unit else prob.w[:1],
            prob.unit,
            np.ascontiguousarray(theta),
            np.ascontiguousarray(params[:, [_B1, _C11, _C21]]),
            np.ascontiguousarray(use.T),
            inv_p,
        )
        inv_p *= redchi[:, None, None]
        return np.where(keep.transpose(2, 0, 1), inv_p, np.nan), redchi
    idx = np.arange(n_pix)
    s, l1, l2, z, u1, u2 = prob.basis(theta, idx)
    w = prob.w
    ez = step_slope(z) * _INV_SQRT_PI
    b1, c11, c21 = params[:, _B1, None], params[:, _C11, None], params[:, _C21, None]
    d1 = 2.0 * lorentzian_slope(l1, u1) / theta[:, 3, None]
    d2 = 2.0 * lorentzian_slope(l2, u2) / theta[:, 5, None]
    jac = np.stack(
        [
            w,
            w * s,
            -w * b1 * ez / theta[:, 1, None],
            -w * b1 * ez * z / theta[:, 1, None],
            w * l1,
            w * c11 * d1,
            w * c11 * d1 * u1,
            w * l2,
            w * c21 * d2,
            w * c21 * d2 * u2,
        ],
        axis=1,
    )
    jtj = np.matmul(jac, jac.transpose(0, 2, 1)).transpose(1, 2, 0)
    inv = _chol_solve(np.where(keep, jtj, eye), np.broadcast_to(eye, jtj.shape).copy())
    cov = inv * redchi[None, None, :]
    cov = np.where(keep, cov, np.nan).transpose(2, 0, 1)
    return cov, redchi


def _determined(params: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """(P, 10) True where a parameter's error is defined: owner height > 0 and not on a bound."""
    use = np.ones(params.shape, bool)
    on_bound = _on_bound(params, lower, upper)
    for owner, members in ((_B1, (_B2, _B3)), (_C11, (_C12, _C13)), (_C21, (_C22, _C23))):
        zero = ~(params[:, owner] > 0)
        for m in members:
            use[:, m] = ~zero & ~on_bound[:, m]
    return use


def _on_bound(params: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    tol = 1e-7 * (1.0 + np.abs(params))
    on = (np.abs(params - lower) <= tol) | (np.abs(params - upper) <= tol)
    on[:, _LIN] = False  # linear heights at 0 are legitimate (no peak), handled by _determined
    return on


def success_flags(params: np.ndarray, lower: np.ndarray, upper: np.ndarray, converged: np.ndarray) -> np.ndarray:
    """Whether each fit succeeded: converged, finite, and not stuck on a bound absurdly.

    Absurd: the edge centre b2 or width b3 on a bound of its box while b1 > 0 (the edge
    was pushed out of where the data put it). A collapsed pre-edge width does not fail
    the fit (edge and jump are still good): see :func:`pre_edge_collapsed`.
    """
    params = np.asarray(params, dtype=float)
    on = _on_bound(params, lower, upper)
    ok = np.asarray(converged, bool) & np.isfinite(params).all(axis=1)
    edge = params[:, _B1] > 0
    ok &= ~(edge & (on[:, _B2] | on[:, _B3]))
    return ok


def pre_edge_collapsed(params: np.ndarray) -> np.ndarray:
    """Pre-edge Lorentzian pinned at its minimum width with a height > 0 (DESIGN §2b pitfall).

    It then fits one noisy point or sits in a sampling gap, or the grid cannot resolve
    its width: PE = π·c11·c13 (and PE/Δμt) is not trustworthy there.
    """
    params = np.asarray(params, dtype=float)
    return (params[:, _C11] > 0) & (np.abs(params[:, _C13] - WIDTH_BOUNDS["c13"][0]) <= 1e-7)


def _suspicious(
    params: np.ndarray, lower: np.ndarray, upper: np.ndarray, converged: np.ndarray, rms: np.ndarray
) -> np.ndarray:
    """Fits worth restarting: a clear edge (b1 ≥ 3 rms residual) whose fit failed the
    flags, slid behind the white line, lost a Lorentzian (height 0), or has a centre or
    width of a present feature pinned on a bound.

    Pinned features are where the two local optimisers (this one and lmfit's) most often
    part ways from the same start, so restarting them is what lets both end in the
    same minimum (measured: it removes ~40 % of the batch–lmfit disagreements).
    """
    behind = (params[:, _C21] > 0) & (params[:, _B2] > params[:, _C22])
    lost = (params[:, _C11] <= 0) | (params[:, _C21] <= 0)
    clear = params[:, _B1] >= 3.0 * rms
    bad = ~success_flags(params, lower, upper, converged) | pre_edge_collapsed(params)
    present = np.zeros(params.shape, bool)
    for owner, members in ((_B1, (_B2, _B3)), (_C11, (_C12, _C13)), (_C21, (_C22, _C23))):
        present[:, members] = (params[:, owner] > 0)[:, None]
    pinned = (_on_bound(params, lower, upper) & present).any(axis=1)
    return clear & (bad | behind | lost | pinned)


# ------------------------------------------------------------------ global search over b2
#: Step [eV] of the coarse χ² profile over the edge energy b2 across its whole box
#: (±EDGE_RANGE around the start, inside the window): 17 points for the default box.
PROFILE_STEP = 2.0
#: White-line centres tried at each profile point, relative to the edge [eV], besides the
#: fitted white line moved along with the edge (the white line follows its edge).
PROFILE_WL_OFFSETS: tuple[float, ...] = ()
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
    offsets = [params[:, _C22] - params[:, _B2]] + [np.full(n_pix, o) for o in PROFILE_WL_OFFSETS]
    cost = np.full((n_pix, n_grid), np.inf)
    best = np.empty((n_pix, n_grid, 6))
    coef = np.zeros((4, n_pix, n_grid))
    g = grid - prob.e0
    if _compiled():  # per pixel, compiled: the same numbers, no (pixel × grid) copies
        lo_c, hi_c = np.ascontiguousarray(lo, float), np.ascontiguousarray(hi, float)
        w_k = prob.w if not prob.unit else prob.w[:1]
        for off in offsets:
            _kernels.profile_many(
                prob.x, w_k, prob.yw, prob.unit, np.ascontiguousarray(theta), lo_c, hi_c, g, off, cost, best, coef
            )
        offsets = []
    for off in offsets:
        trial = np.repeat(theta[:, None, :], n_grid, axis=1)  # (P, G, 6)
        trial[:, :, 0] = g
        trial[:, :, 4] = g + np.maximum(off[:, None], 0.0)  # white line not behind its edge
        trial = np.clip(trial, lo[:, None], hi[:, None]).reshape(-1, 6)
        rows = np.repeat(np.arange(n_pix), n_grid)
        c_t = np.empty((4, rows.size))
        cost_t = np.empty(rows.size)
        for first in range(0, rows.size, _SCAN_ROWS):
            sl = slice(first, first + _SCAN_ROWS)
            sub = _Problem(energy, y[rows[sl]], w[rows[sl]])
            c_t[:, sl], _, cost_t[sl] = sub.project(trial[sl], np.arange(rows[sl].size))
        cost_t = np.where(cost_t < np.inf, cost_t, np.inf).reshape(n_pix, n_grid)  # NaN never wins
        better = cost_t < cost
        cost[better] = cost_t[better]
        best[better] = trial.reshape(n_pix, n_grid, 6)[better]
        coef[:, better] = c_t.reshape(4, n_pix, n_grid)[:, better]
    if PROFILE_ITERATIONS:
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
            sub = _Problem(energy, y[rows], w[rows])
            th0 = np.clip(flat_best[sel], lo_r, hi_r)
            th, cf, ct, _, _ = _levenberg_marquardt(sub, th0, lo_r, hi_r, PROFILE_ITERATIONS, 1e-6, 1e-3)
            flat_best[sel], flat_coef[:, sel] = th, cf
            flat_cost[sel] = np.where(ct < np.inf, ct, np.inf)
        best = flat_best.reshape(n_pix, n_grid, 6)
        coef = flat_coef.reshape(4, n_pix, n_grid)
        cost = flat_cost.reshape(n_pix, n_grid)
    start = _params(best.reshape(-1, 6), coef.reshape(4, -1), prob.e0).reshape(n_pix, n_grid, N_PARAMETERS)
    floor = 1e-3 * np.maximum(start[:, :, _B1], 1e-9)
    for k in (_B1, _C11, _C21):
        start[:, :, k] = np.maximum(start[:, :, k], floor if k != _B1 else 1e-9)
    return grid, cost, start


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


# ------------------------------------------------------------------ driver
#: Default pixels per block of :func:`fit_batch` (memory: ≈ 1 kB × n_E per pixel).
BLOCK_SIZE = 8192
#: Alternative starts of the restart scan: edge shift from its start, then white-line and
#: pre-edge centres relative to the shifted edge [eV] (clipped to their bounds).
RESTARTS: tuple[tuple[float, float, float], ...] = ((-3.0, 5.0, -9.0), (3.0, 5.0, -12.0), (0.0, 8.0, -6.0))


def restart_start(
    energy: np.ndarray,
    y: np.ndarray,
    start: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    shifts: tuple[float, float, float],
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """One alternative start of the restart scan (:data:`RESTARTS`).

    The edge is shifted and the peaks placed relative to it, then both peak centres are
    re-placed by a scan over the energies (:func:`scan_starts` with ``centres``): a peak
    put where the data have none would start at height 0, and at height 0 its centre
    has no gradient (it would stay lost). Shared by the batch solver and the lmfit
    reference (``fit_xanes(method="lmfit")``): both follow the same multi-start protocol.

    Parameters
    ----------
    energy : ndarray (n_E,)
    y : ndarray (P, n_E)
    start, lower, upper : ndarray (P, 10)
        The scanned start (:func:`scan_starts`) and the bounds.
    shifts : (float, float, float)
        Edge shift from its start, then white-line and pre-edge centres relative to the
        shifted edge [eV].
    weights : ndarray (P, n_E), optional

    Returns
    -------
    ndarray (P, 10)
        Inside the bounds, heights solved exactly (and made slightly positive).
    """
    alt = _shifted_start(start, lower, upper, shifts)
    return scan_starts(energy, y, alt, lower, upper, weights, edge_offsets=(), width_factors=(), centres=energy)


def _shifted_start(
    start: np.ndarray, lower: np.ndarray, upper: np.ndarray, shifts: tuple[float, float, float]
) -> np.ndarray:
    """The start of :func:`restart_start` before its centre scan."""
    edge_shift, wl_offset, pre_offset = shifts
    alt = start.copy()
    alt[:, _B2] = alt[:, _B2] + edge_shift
    alt[:, _C22] = alt[:, _B2] + wl_offset
    alt[:, _C12] = alt[:, _B2] + pre_offset
    return np.clip(alt, lower, upper)


def _restart_fits(
    energy: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    start: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    shifts_list: tuple[tuple[float, float, float], ...],
    max_iter: int,
    ftol: float,
    xtol: float,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Fits of P pixels from every start in ``shifts_list`` (:func:`restart_start`), in one batch.

    Per pixel and start the same arithmetic as one batch per start (the centre
    candidates too: the stacked batch has the same bounds). Returns, per start, the
    params (P, 10), cost, iterations and converged of the P pixels.
    """
    n_s, n_p = len(shifts_list), y.shape[0]
    rows = np.tile(np.arange(n_p), n_s)
    lo_p, hi_p = lower[rows], upper[rows]
    alt = np.concatenate([_shifted_start(start, lower, upper, s) for s in shifts_list])
    alt = scan_starts(energy, y[rows], alt, lo_p, hi_p, w[rows], edge_offsets=(), width_factors=(), centres=energy)
    sub = _Problem(energy, y[rows], w[rows])
    lo, hi = _theta(lo_p, sub.e0), _theta(hi_p, sub.e0)
    th, coef, c, it, conv = _levenberg_marquardt(
        sub, np.clip(_theta(alt, sub.e0), lo, hi), lo, hi, max_iter, ftol, xtol
    )
    p = _params(th, coef, sub.e0)
    return [tuple(a[k * n_p : (k + 1) * n_p] for a in (p, c, it, conv)) for k in range(n_s)]


def needs_restart(
    params: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    converged: np.ndarray,
    cost: np.ndarray,
    n_valid: np.ndarray,
) -> np.ndarray:
    """Which fits the restart scan refits: :func:`_suspicious` with rms = √(χ²/(N − 10))."""
    dof = np.maximum(np.asarray(n_valid) - N_PARAMETERS, 1)
    with np.errstate(invalid="ignore"):
        rms = np.sqrt(np.asarray(cost) / dof)
    return _suspicious(params, lower, upper, converged, rms)


def _same_centres(energy: np.ndarray, lo_a: np.ndarray, hi_a: np.ndarray, lo_b: np.ndarray, hi_b: np.ndarray) -> bool:
    """Whether two batches (paper-parameter bounds) get the same restart centre scans."""
    e0 = 0.5 * (energy[0] + energy[-1])
    grid = energy - e0
    a = _centre_candidates(grid, _theta(lo_a, e0), _theta(hi_a, e0))
    return a == _centre_candidates(grid, _theta(lo_b, e0), _theta(hi_b, e0))


def _fit_block(
    energy: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    pre_edge_limit: float | None,
    max_iter: int,
    ftol: float,
    xtol: float,
    restarts: bool,
    want_cov: bool,
    global_search: bool = True,
):
    n_pix = y.shape[0]
    params = np.full((n_pix, N_PARAMETERS), np.nan)
    cost = np.full(n_pix, np.nan)
    iterations = np.zeros(n_pix, int)
    converged = np.zeros(n_pix, bool)
    start, lower, upper = initial_estimates(energy, np.where(w > 0, y, np.nan), pre_edge_limit)
    valid = np.isfinite(start).all(axis=1) & ((np.isfinite(y) & (w > 0)).sum(axis=1) > N_PARAMETERS)
    idx = np.flatnonzero(valid)
    cov = np.full((n_pix, N_PARAMETERS, N_PARAMETERS), np.nan) if want_cov else None
    stderr = np.full((n_pix, N_PARAMETERS), np.nan)
    redchi = np.full(n_pix, np.nan)
    if idx.size == 0:
        return params, stderr, redchi, np.zeros(n_pix, bool), cost, iterations, lower, upper, cov
    yv, wv, lo_p, hi_p = y[idx], w[idx], lower[idx], upper[idx]
    start_v = scan_starts(energy, yv, start[idx], lo_p, hi_p, weights=wv)
    prob = _Problem(energy, yv, wv)
    lo, hi = _theta(lo_p, prob.e0), _theta(hi_p, prob.e0)
    theta, coef, c, it, conv = _levenberg_marquardt(
        prob, np.clip(_theta(start_v, prob.e0), lo, hi), lo, hi, max_iter, ftol, xtol
    )
    p = _params(theta, coef, prob.e0)
    if restarts:
        redo = np.flatnonzero(needs_restart(p, lo_p, hi_p, conv, c, prob.n_valid))
        first, spec = redo, None
        for k, shifts in enumerate(RESTARTS if redo.size else ()):
            args = (energy, yv[redo], wv[redo], start_v[redo], lo_p[redo], hi_p[redo])
            if spec is None:
                # All starts of all pixels flagged now in one batch: a pixel fixed by an
                # earlier start wastes its later fits, but one batch instead of three
                # saves two scans and two LM tails of ~100 small iterations (overhead).
                spec = _restart_fits(*args, RESTARTS, max_iter, ftol, xtol)
            if _same_centres(energy, lo_p[redo], hi_p[redo], lo_p[first], hi_p[first]):
                sel = np.searchsorted(first, redo)
                p_r, c_r, it_r, conv_r = (a[sel] for a in spec[k])
            else:  # another batch would scan other centres: fit as that batch
                p_r, c_r, it_r, conv_r = _restart_fits(*args, (shifts,), max_iter, ftol, xtol)[0]
            # keep the lower χ² (least squares decides, not the flags)
            better = c_r < c[redo] * (1.0 - 1e-9)
            take = redo[better]
            p[take], c[take], it[take], conv[take] = p_r[better], c_r[better], it_r[better], conv_r[better]
            redo = redo[needs_restart(p[redo], lo_p[redo], hi_p[redo], conv[redo], c[redo], prob.n_valid[redo])]
            if redo.size == 0:
                break
    alt_b2 = alt_cost = None
    if global_search:
        rows, alt, prof_b2, prof_cost = global_starts(energy, yv, p, c, lo_p, hi_p, prob.n_valid, wv)
        alt_b2, alt_cost = prof_b2, prof_cost
        if rows.size:
            sub = _Problem(energy, yv[rows], wv[rows])
            lo_r, hi_r = _theta(lo_p[rows], sub.e0), _theta(hi_p[rows], sub.e0)
            th_r, coef_r, c_r, it_r, conv_r = _levenberg_marquardt(
                sub, np.clip(_theta(alt, sub.e0), lo_r, hi_r), lo_r, hi_r, max_iter, ftol, xtol
            )
            p_r = _params(th_r, coef_r, sub.e0)
            p, c, it, conv, min_b2, min_cost = keep_best(p, c, it, conv, rows, p_r, c_r, it_r, conv_r)
            alt_b2, alt_cost = np.concatenate([prof_b2, min_b2], axis=1), np.concatenate([prof_cost, min_cost], axis=1)
    cov_v, redchi_v = _covariance(prob, p, lo_p, hi_p, c)
    params[idx], cost[idx], iterations[idx], converged[idx] = p, c, it, conv
    redchi[idx] = redchi_v
    stderr[idx] = np.sqrt(np.einsum("pii->pi", cov_v))
    if alt_b2 is not None:
        # a second minimum close in χ² widens the edge's error (bimodal fits are not located)
        stderr[idx, _B2] = widen_edge_stderr(p, stderr[idx, _B2], c, redchi_v, alt_b2, alt_cost)
    if want_cov:
        cov[idx] = cov_v
    success = np.zeros(n_pix, bool)
    success[idx] = success_flags(p, lo_p, hi_p, conv) & np.isfinite(c)
    return params, stderr, redchi, success, cost, iterations, lower, upper, cov


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


def _fit_block_job(args: tuple, engine: str | None = None):
    """One block of :func:`fit_batch` (module level: picklable for a process pool)."""
    _ENGINE.name = engine  # per thread: the kernels this block's helpers call
    # Degenerate pixels (vacuum, exact zeros) make some batched pivots tiny; their
    # overflow/NaN stays in that pixel (trial points must be finite to be accepted,
    # success needs finite results), so numpy's warnings are noise here. (errstate
    # is per thread: set inside the worker.)
    cpu = time.thread_time()
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            out = _fit_block(*args)
    finally:
        _ENGINE.name = None
    return out, time.thread_time() - cpu


def _process_context():
    """forkserver where available (no fork of a threaded parent), else spawn."""
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["ptyxr.xanes.solver"])
        return ctx
    return mp.get_context("spawn")


def fit_batch(
    energy: np.ndarray,
    mu: np.ndarray,
    weights: np.ndarray | None = None,
    pre_edge_limit: float | None = None,
    max_iter: int = 100,
    ftol: float = 1e-10,
    xtol: float = 1e-7,
    restarts: bool = True,
    return_covariance: bool = False,
    global_search: bool = True,
    block_size: int | None = None,
    workers: int | None = None,
    progress: bool = False,
    executor: str = "thread",
    engine: str = "auto",
) -> BatchResult:
    """Fit paper eq. (1) to every spectrum of ``mu`` at once (variable projection + batched LM).

    Parameters
    ----------
    energy : ndarray (n_E,)
        Photon energies [eV], strictly increasing.
    mu : ndarray (..., n_E)
        Absorption spectra μt. NaN values are left out of a spectrum's fit; spectra with
        ≤ 10 finite values are skipped (NaN results, ``success`` False).
    weights : ndarray broadcastable to ``mu``, optional
        Least-squares weights (1/σ); None = unweighted (as lmfit without weights).
    pre_edge_limit : float, optional
        Energies below it are pre-edge points for the starting values [eV].
    max_iter : int
        Maximum Levenberg–Marquardt iterations per start.
    ftol : float
        Stop when an accepted step lowers χ² by less than this fraction.
    xtol : float
        Stop when a step moves no nonlinear parameter by more than this [eV].
    restarts : bool
        Refit suspicious pixels from :data:`RESTARTS` and keep the best.
    global_search : bool
        Search the other basins of the χ² profile over b2 (:func:`global_starts`), refit
        from them, keep the lowest χ², and widen the b2 error by the other minima
        (:func:`profile_edge_stderr`).
    return_covariance : bool
        Also return the full (P, 10, 10) covariance.
    block_size : int, optional
        Pixels per block (bounds memory: ≈ 1 kB × n_E per pixel). Default
        :data:`BLOCK_SIZE`, made smaller where that leaves a worker idle: at least one
        block per worker.
    workers : int, optional
        Blocks fitted concurrently (default: one per CPU core, at most one per block).
        With a given ``block_size`` results do not depend on it (the blocks are the same).
    progress : bool
        Progress bar over blocks.
    executor : {"thread", "process"}
        Where concurrent blocks run: threads (default; numpy releases the GIL in its
        array loops, the solver's Python-level loop does not) or worker processes
        (forkserver: no GIL sharing, but a start-up cost per call, and a script that
        calls this must guard its entry point with ``if __name__ == "__main__":``).
    engine : {"auto", "numba", "numpy"}
        ``"numba"``: per-pixel compiled kernels (:mod:`ptyxr.xanes._kernels`) that release
        the GIL, so threads use every core; ``"numpy"``: vectorised over a block's pixels
        (the GIL is held between numpy calls); ``"auto"`` (default): numba where
        importable. Same algorithm; results agree to rounding (tests/test_xanes.py).

    Returns
    -------
    BatchResult
        Arrays with the leading shape of ``mu`` flattened to P.
    """
    energy = np.asarray(energy, dtype=float)
    y = np.asarray(mu, dtype=float).reshape(-1, energy.size)
    w = (
        np.ones_like(y)
        if weights is None
        else np.broadcast_to(np.asarray(weights, float), np.shape(mu)).reshape(y.shape)
    )
    n_pix = y.shape[0]
    engine = _resolve_engine(engine)
    n_cpu = os.cpu_count() or 1
    if block_size is None:
        per_worker = -(-n_pix // (n_cpu if workers is None else max(1, workers)))
        block_size = max(1, min(BLOCK_SIZE, per_worker))
    out = {
        key: []
        for key in ("params", "stderr", "redchi", "success", "cost", "iterations", "lower", "upper", "covariance")
    }

    def args(start: int) -> tuple:
        sl = slice(start, start + block_size)
        return energy, y[sl], w[sl], pre_edge_limit, max_iter, ftol, xtol, restarts, return_covariance, global_search

    starts = list(range(0, n_pix, block_size))
    workers = min(n_cpu, len(starts)) if workers is None else max(1, min(workers, len(starts)))
    if executor not in ("process", "thread"):
        raise ValueError(f"fit_batch: executor must be 'process' or 'thread', got {executor!r}")
    bar = None
    if progress:
        from ptyxr.progress import progress_bar

        bar = progress_bar(total=len(starts), enabled=True, desc="fit_xanes (batch)", unit="block")
    results = []
    if workers > 1:
        # Blocks in parallel: threads by default (safe in any caller); processes avoid the GIL
        # that the solver's Python-level loop holds between numpy calls (docs/design-notes).
        from concurrent import futures as cf

        if executor == "process":
            pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=_process_context())
        else:
            pool = cf.ThreadPoolExecutor(max_workers=workers)
        with pool:
            jobs = [pool.submit(_fit_block_job, args(start), engine) for start in starts]
            for job in jobs:  # in order: output independent of scheduling
                results.append(job.result())
                if bar is not None:
                    bar.update(1)
    else:
        for start in starts:
            results.append(_fit_block_job(args(start), engine))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    cpu_time = float(sum(c for _, c in results))
    for res, _ in results:
        for key, value in zip(out, res, strict=True):
            out[key].append(value)
    if n_pix == 0:
        empty = np.zeros((0, N_PARAMETERS))
        return BatchResult(
            empty,
            empty,
            np.zeros(0),
            np.zeros(0, bool),
            np.zeros(0),
            np.zeros(0, int),
            empty,
            empty,
            np.zeros((0, N_PARAMETERS, N_PARAMETERS)) if return_covariance else None,
        )
    cat = {key: (np.concatenate(v) if v[0] is not None else None) for key, v in out.items()}
    return BatchResult(**cat, cpu_time=cpu_time)
