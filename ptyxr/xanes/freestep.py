"""eq. (1) with an edge step of free shape: (1 − η)·erf step + η·arctan step (optional, numpy only).

``fit_xanes(edge_step="erf+arctan")`` fits::

    μt(E) = a + b1·[(1 − η)·½(1 + erf(z)) + η·(½ + arctan(√π·z)/π)] + two Lorentzians,
    z = (E − b2)/b3,

η ∈ [0, 1] the arctan fraction. The arctan step's √π makes both steps share b2 (half height
and inflection) and the slope 1/(√π·b3) there, so b2 and b3 keep their meaning and width
(:func:`ptyxr.xanes.lineshapes.arctan_step_reduced`). A Gaussian-broadened edge is η = 0,
a Lorentzian-broadened (core-hole lifetime) edge η = 1; eq. (1)'s erf step biases b2 of the
latter high by up to ~1 eV on sparse grids (docs/design-notes/s12-fituncert.md §3).

The fit (:func:`refine_free_step`) starts from the eq. (1) fit of the batch solver (its
multi-start and global search over b2 have chosen the basin) and runs a batched projected
Levenberg–Marquardt on the 11 parameters (a, h_e, h_a, b2, b3, c11, c12, c13, c21, c22,
c23) with the step heights h_e = b1·(1 − η), h_a = b1·η ≥ 0 (the model is linear in them,
so η at 0 or 1 is an ordinary bound of a non-negative height), from two starts (η = 0 and
η = 1), lowest χ² kept. b1 = h_e + h_a, η = h_a/b1; errors σ² = redchi·diag((JᵀJ)⁻¹) of the
11-parameter Jacobian, propagated to (b1, η), redchi = χ²/(N − 11).
"""

from __future__ import annotations

import numpy as np

from ptyxr.checks import EDGE_STEPS  # noqa: F401  (re-exported: fit.EDGE_STEPS)
from ptyxr.xanes import lineshapes as _ls
from ptyxr.xanes._varpro import _determined

N_FREE = 11  # a, h_e, h_a, b2, b3, c11, c12, c13, c21, c22, c23
_NONLINEAR = [3, 4, 6, 7, 9, 10]  # b2, b3, c12, c13, c22, c23 [eV]
#: Levenberg–Marquardt iterations per start. On sparse grids (16 energies) weak rim pixels
#: crawl along a near-degenerate direction (a narrow white line in a gap of the grid): at 200
#: iterations 85 % of such pixels had not converged (their χ² 1.6 % above the 1000-iteration
#: value), at 1000 12 %. Only unconverged pixels keep iterating, so the cost is theirs.
MAX_ITER = 1000
_SQRT_PI = float(np.sqrt(np.pi))


def _model_jac(energy: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model (P, n_E) and its Jacobian (P, n_E, 11) at internal parameters x (P, 11)."""
    e = energy[None, :]
    a, he, ha, b2, b3, c11, c12, c13, c21, c22, c23 = (x[:, k : k + 1] for k in range(N_FREE))
    z = (e - b2) / b3
    se, sa = _ls.step_reduced(z), _ls.arctan_step_reduced(z)
    d_b2 = -(he * _ls.step_slope(z) + ha * _ls.arctan_step_slope(z)) / (_SQRT_PI * b3)
    jac = np.empty((*z.shape, N_FREE))
    jac[..., 0] = 1.0
    jac[..., 1], jac[..., 2], jac[..., 3], jac[..., 4] = se, sa, d_b2, z * d_b2
    f = a + he * se + ha * sa
    for k, (h, c, w) in zip((5, 8), ((c11, c12, c13), (c21, c22, c23)), strict=True):
        u = (e - c) / w
        lor = _ls.lorentzian_reduced(u)
        d_c = 2.0 * h * _ls.lorentzian_slope(lor, u) / w
        jac[..., k], jac[..., k + 1], jac[..., k + 2] = lor, d_c, u * d_c
        f = f + h * lor
    return f, jac


def _solve_frozen(m: np.ndarray, g: np.ndarray, frozen: np.ndarray) -> np.ndarray:
    """Steps −m⁻¹g (P, 11) with the ``frozen`` parameters held (their step 0)."""
    m = np.where(frozen[:, :, None] | frozen[:, None, :], 0.0, m)
    m[:, np.arange(N_FREE), np.arange(N_FREE)] = np.where(frozen, 1.0, np.einsum("pii->pi", m))
    rhs = np.where(frozen, 0.0, -g)
    try:
        return np.linalg.solve(m, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return np.einsum("pij,pj->pi", np.linalg.pinv(m), rhs)


def _internal(params: np.ndarray, eta: float) -> np.ndarray:
    """Paper parameters (P, 10) and a fraction η → internal x (P, 11)."""
    b1 = params[:, 1:2]
    return np.concatenate([params[:, :1], b1 * (1.0 - eta), b1 * eta, params[:, 2:]], axis=1)


def _internal_bounds(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo = np.concatenate([lower[:, :1], np.zeros((len(lower), 2)), lower[:, 2:]], axis=1)
    hi = np.concatenate([upper[:, :1], upper[:, 1:2], upper[:, 1:2], upper[:, 2:]], axis=1)
    return lo, hi


def _lm(
    energy: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    x: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    max_iter: int,
    ftol: float,
    xtol: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched projected Levenberg–Marquardt (Marquardt scaling); (x, χ², converged)."""
    x = np.clip(x, lo, hi)
    f, jac = _model_jac(energy, x)
    r = w * (f - y)
    cost = (r * r).sum(axis=1)
    lam = np.full(len(x), 1e-3)
    converged = np.zeros(len(x), bool)
    active = np.flatnonzero(np.isfinite(cost))
    for _ in range(max_iter):
        if active.size == 0:
            break
        xa, ja, ra = x[active], jac[active] * w[active, :, None], r[active]
        jt = ja.swapaxes(1, 2)
        g = np.matmul(jt, ra[..., None])[..., 0]
        a_mat = np.matmul(jt, ja)
        diag = np.einsum("pii->pi", a_mat)
        # a parameter on a bound that the gradient, or then the step, pushes outward stays
        # there this step (clipping the step instead would move the others as if it moved)
        at_lo, at_hi = xa <= lo[active], xa >= hi[active]
        frozen = (at_lo & (g > 0)) | (at_hi & (g < 0))
        scale = diag + 1e-12 * diag.max(axis=1, keepdims=True) + 1e-300
        damped = a_mat + (lam[active, None] * scale)[:, :, None] * np.eye(N_FREE)
        for _pass in range(2):
            step = _solve_frozen(damped, g, frozen)
            out = (at_lo & (step < 0)) | (at_hi & (step > 0))
            if not out.any():
                break
            frozen = frozen | out
        trial = np.clip(xa + step, lo[active], hi[active])
        f_t, jac_t = _model_jac(energy, trial)
        r_t = w[active] * (f_t - y[active])
        cost_t = (r_t * r_t).sum(axis=1)
        better = np.isfinite(cost_t) & (cost_t < cost[active])
        acc = active[better]
        moved = np.abs(trial - xa)[:, _NONLINEAR].max(axis=1)
        small = better & ((cost[active] - cost_t <= ftol * cost[active]) | (moved <= xtol))
        x[acc], jac[acc], r[acc], cost[acc] = trial[better], jac_t[better], r_t[better], cost_t[better]
        lam[acc] = np.maximum(lam[acc] / 3.0, 1e-12)
        lam[active[~better]] *= 4.0
        # done: a negligible accepted decrease, or no decrease even at a tiny step
        done = small | (~better & (lam[active] > 1e10))
        converged[active[done]] = True
        active = active[~done]
    return x, cost, converged


def refine_free_step(
    energy: np.ndarray,
    y: np.ndarray,
    params: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    weights: np.ndarray | None = None,
    max_iter: int = MAX_ITER,
    ftol: float = 1e-10,
    xtol: float = 1e-7,
) -> dict[str, np.ndarray]:
    """Refit eq. (1) fits with the free step shape (module docstring).

    Parameters
    ----------
    energy : ndarray (n_E,)
        Photon energies [eV].
    y : ndarray (P, n_E)
        Spectra μt; NaN values are left out.
    params, lower, upper : ndarray (P, 10)
        eq. (1) fits (paper order, e.g. :func:`ptyxr.xanes.solver.fit_batch`) and their bounds.
    weights : ndarray (P, n_E), optional
        Least-squares weights (1/σ); None = unweighted.
    max_iter : int
        Levenberg–Marquardt iterations per start.
    ftol : float
        Stop when an accepted step lowers χ² by less than this fraction.
    xtol : float
        Or when it moves no centre or width by more than this [eV] (the batch solver's rule).

    Returns
    -------
    dict
        ``params`` (P, 10) with b1 the total jump, ``stderr`` (P, 10), ``eta`` and
        ``eta_stderr`` (P,) (dimensionless), ``cost`` (χ²), ``redchi`` (χ²/(N − 11)),
        ``converged`` (P,) bool. Rows with non-finite ``params`` give NaN.
    """
    energy = np.asarray(energy, dtype=float)
    y = np.asarray(y, dtype=float)
    finite = np.isfinite(y)
    w = np.where(finite, 1.0 if weights is None else np.asarray(weights, float), 0.0)
    y0 = np.where(finite, y, 0.0)
    n_pix = len(y)
    out_p = np.full((n_pix, 10), np.nan)
    out_e = np.full((n_pix, 10), np.nan)
    eta = np.full(n_pix, np.nan)
    eta_e = np.full(n_pix, np.nan)
    cost = np.full(n_pix, np.nan)
    redchi = np.full(n_pix, np.nan)
    converged = np.zeros(n_pix, bool)
    n_valid = (w > 0).sum(axis=1)
    ok = np.flatnonzero(np.isfinite(params).all(axis=1) & ~np.isnan(lower).any(axis=1) & (n_valid > N_FREE))

    def result() -> dict[str, np.ndarray]:
        return {
            "params": out_p,
            "stderr": out_e,
            "eta": eta,
            "eta_stderr": eta_e,
            "cost": cost,
            "redchi": redchi,
            "converged": converged,
        }

    if ok.size == 0:
        return result()
    lo, hi = _internal_bounds(lower[ok], upper[ok])
    # starts η = 0 (the eq. (1) optimum itself) and η = 1; the lower χ² is kept
    x, c, best_conv = _lm(energy, y0[ok], w[ok], _internal(params[ok], 0.0), lo, hi, max_iter, ftol, xtol)
    x1, c1, conv1 = _lm(energy, y0[ok], w[ok], _internal(params[ok], 1.0), lo, hi, max_iter, ftol, xtol)
    take = c1 < c * (1.0 - 1e-12)
    x[take], c[take], best_conv[take] = x1[take], c1[take], conv1[take]
    b1 = x[:, 1] + x[:, 2]
    p10 = np.concatenate([x[:, :1], b1[:, None], x[:, 3:]], axis=1)
    # errors: the 11-parameter covariance, undetermined parameters (zero-height peaks, pinned
    # centres/widths: the eq. (1) rules) left out, propagated to (b1, η)
    use10 = _determined(p10, lower[ok], upper[ok])
    use = np.concatenate([use10[:, :1], np.repeat(use10[:, 1:2], 2, axis=1), use10[:, 2:]], axis=1)
    use[:, 1:3] = (b1 > 0)[:, None]
    _, jac = _model_jac(energy, x)
    jw = jac * w[ok][:, :, None]
    a_mat = np.matmul(jw.swapaxes(1, 2), jw)
    a_mat = np.where(use[:, :, None] & use[:, None, :], a_mat, 0.0)
    a_mat[:, np.arange(N_FREE), np.arange(N_FREE)] = np.where(use, np.einsum("pii->pi", a_mat), 1.0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        cov = np.linalg.pinv(a_mat)
        cov = np.where(use[:, :, None] & use[:, None, :], cov, np.nan)
        dof = n_valid[ok] - N_FREE
        rc = c / dof
        # (a, b1, b2, ..., c23, η) from (a, h_e, h_a, b2, ..., c23)
        t = np.zeros((ok.size, N_FREE, N_FREE))
        t[:, 0, 0] = 1.0
        t[:, 1, 1] = t[:, 1, 2] = 1.0
        t[:, 2:10, 3:11] = np.eye(8)
        t[:, 10, 1] = -x[:, 2] / b1**2
        t[:, 10, 2] = x[:, 1] / b1**2
        cov_out = np.einsum("pij,pjk,plk->pil", t, np.nan_to_num(cov, nan=0.0), t)
        var = np.einsum("pii->pi", cov_out) * rc[:, None]
        undetermined = np.einsum("pij,pj->pi", np.abs(t), (~use).astype(float)) > 0
        err = np.where(undetermined | (var < 0), np.nan, np.sqrt(np.abs(var)))
        eta_ok = np.where(b1 > 0, x[:, 2] / b1, np.nan)
    out_p[ok], out_e[ok] = p10, err[:, :10]
    eta[ok], eta_e[ok] = eta_ok, err[:, 10]
    cost[ok], redchi[ok], converged[ok] = c, rc, best_conv & np.isfinite(c)
    return result()


def free_step_curve(energy: np.ndarray, params: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """The free-step model at parameter rows (P, 10) and fractions η (P,) → (P, n_E)."""
    p = np.asarray(params, float)
    x = np.concatenate([p[:, :1], (p[:, 1] * (1 - eta))[:, None], (p[:, 1] * eta)[:, None], p[:, 2:]], axis=1)
    return _model_jac(np.asarray(energy, float), x)[0]
