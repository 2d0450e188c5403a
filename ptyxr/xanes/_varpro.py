"""Variable-projection Levenberg–Marquardt core of the batch XANES fit (numpy + optional kernels).

The projected problem of one block of pixels (:class:`_Problem`: the four linear parameters
of eq. (1) solved exactly, non-negative, at every trial of the six nonlinear ones), the
starting-value scans (:func:`scan_starts`), the batched projected LM
(:func:`_levenberg_marquardt`), the covariance at the solution and the success flags.
Each runs the compiled per-pixel kernels (:mod:`ptyxr.xanes._kernels`) where this thread's
engine is ``"numba"``, else vectorised numpy over the block. See :mod:`ptyxr.xanes.solver`
for the method and the driver.
"""

from __future__ import annotations

import threading

import numpy as np

from ptyxr.xanes import _kernels
from ptyxr.xanes._linalg import _chol_solve, _chol_subst, _nnls4_factor
from ptyxr.xanes.lineshapes import lorentzian_reduced, lorentzian_slope, step_reduced, step_slope
from ptyxr.xanes.starts import PARAMETERS, WIDTH_BOUNDS

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

    def subset(self, rows: np.ndarray) -> _Problem:
        """The problem of pixels ``rows`` (repeats allowed): the same arrays as
        ``_Problem(energy, y[rows], weights[rows])``, taken from this one's instead of recomputed."""
        sub = object.__new__(_Problem)
        sub.e0, sub.x = self.e0, self.x
        sub.w, sub.yw, sub.n_valid = self.w[rows], self.yw[rows], self.n_valid[rows]
        sub.unit = self.unit or bool(np.all(sub.w == 1.0))
        return sub

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
    scans: list[tuple[int, tuple[float, ...]]] = [(0, tuple(edge_offsets)), (1, tuple(width_factors))]
    if _compiled() and (edge_offsets or width_factors):  # per pixel, compiled: the same numbers
        # the kernel projects the start too (the rows it needs anyway): project()'s numbers
        coef, cost = np.empty((4, idx.size)), np.empty(idx.size)
        w_k = prob.w if not prob.unit else prob.w[:1]
        offs, facs = np.asarray(edge_offsets, float), np.asarray(width_factors, float)
        lo_c, hi_c = np.ascontiguousarray(lo, float), np.ascontiguousarray(hi, float)
        _kernels.scan_edge(prob.x, w_k, prob.yw, prob.unit, theta, lo_c, hi_c, offs, facs, coef, cost)
        scans = []
    else:
        coef, _, cost = prob.project(theta, local)
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
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Covariance (P, 10, 10) = redchi·(JᵀJ)⁻¹ over determined parameters, redchi, and the b2
    shifts (P, 2) of eq. (1)'s model-error directions per unit η and α
    (:func:`ptyxr.xanes.uncertainty.edge_model_error`) from the same factor where this thread's
    engine is compiled (None on the numpy path: the caller computes the model error there)."""
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
        shift = np.empty((n_pix, 2))
        _kernels.inverse_normal_matrix(
            prob.x,
            prob.w if not prob.unit else prob.w[:1],
            prob.unit,
            np.ascontiguousarray(theta),
            np.ascontiguousarray(params[:, [_B1, _C11, _C21]]),
            np.ascontiguousarray(use.T),
            inv_p,
            shift,
        )
        inv_p *= redchi[:, None, None]
        return np.where(keep.transpose(2, 0, 1), inv_p, np.nan), redchi, shift
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
    return cov, redchi, None


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
