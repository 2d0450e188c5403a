"""Compiled per-pixel kernels of the batch XANES solver (numba, optional).

The same arithmetic as the numpy path of :mod:`ptyxr.xanes._varpro` (variable projection
with the exact non-negative heights, the Golub–Pereyra normal equations, the projected
Levenberg–Marquardt iteration), written per pixel: one compiled loop over the pixels of a
block instead of ~30 numpy calls per iteration over all of them. Per pixel it is the same
algorithm step by step (same Cholesky with dropped pivots, same active-set search, same
damping and stopping rules); sums run in another order than numpy's BLAS, so results agree
to rounding, not bit for bit (tests/xanes/test_solver.py compares both paths).

The kernels release the GIL (``nogil``): :func:`ptyxr.xanes.solver.fit_batch` runs blocks in
threads, and every core works. They are compiled on first use and cached on disk
(``cache=True``). Without numba (``pip install ptyxr[fast]``), :data:`AVAILABLE` is False
and the solver runs its numpy path.
"""

from __future__ import annotations

import math
import types
from typing import Any

import numpy as np

from ptyxr.xanes import lineshapes as _ls

try:  # optional fast path
    import numba as _numba
except ImportError:  # pragma: no cover - exercised only without numba
    _numba = None  # type: ignore[assignment]  # the fast path tests `_numba is not None`

#: Whether the compiled kernels can be used.
AVAILABLE = _numba is not None

_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)
#: Pivot tolerance of the Cholesky factor (as solver._chol_factor's default).
_RTOL = 1e-12
#: Free heights of each active set ``sub`` of :func:`_nnls4` (bits 4, 2, 1: b1, c11, c21 held
#: at 0; ``a`` always free), in index order, padded with −1; and how many.
_FREE_SETS = np.full((8, 4), -1, np.int64)
_N_FREE = np.zeros(8, np.int64)
for _sub in range(8):
    _free = [j for j in range(4) if j == 0 or not (_sub >> (3 - j)) & 1]
    _FREE_SETS[_sub, : len(_free)] = _free
    _N_FREE[_sub] = len(_free)
del _sub, _free

if _numba is not None:
    # error_model="numpy": a division by zero gives inf/NaN (as numpy), never an exception
    _OPTIONS: dict[str, Any] = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}
    _njit = _numba.njit(**_OPTIONS)

    def _scalar(func):
        """A :mod:`ptyxr.xanes.lineshapes` formula compiled for floats: its own code, with
        ``math.erf``/``math.exp`` for scipy's/numpy's ufuncs (eq. (1) is defined once).

        Cached callers do not see edits of lineshapes.py (numba keys its cache on the caller's
        file): clear ``ptyxr/xanes/__pycache__`` after changing a formula there.
        """
        glob = dict(func.__globals__, erf=math.erf, exp=math.exp)
        return _numba.njit(inline="always", **_OPTIONS)(types.FunctionType(func.__code__, glob, func.__name__))

    _step = _scalar(_ls.step_reduced)
    _step_slope = _scalar(_ls.step_slope)
    _lorentzian = _scalar(_ls.lorentzian_reduced)
    _lorentzian_slope = _scalar(_ls.lorentzian_slope)

    @_njit
    def _workspace(n):  # pragma: no cover - compiled
        """Per-pixel buffers of :func:`_project`: rows, Gram, heights, free set, 4×4 factor, JᵀJ, Jᵀr, scratch."""
        return (
            np.empty((11, n)),
            np.empty((11, 11)),
            np.empty(4),
            np.empty(4, np.bool_),
            np.zeros((4, 4)),
            np.empty(4, np.bool_),
            np.empty((6, 6)),
            np.empty(6),
            np.zeros((26, 12)),
            np.zeros(8, np.bool_),
        )

    @_njit
    def _chol_factor(a, k, low, good):  # pragma: no cover - compiled
        """Cholesky of a[:k, :k] into low, dropped pivots marked in good (solver._chol_factor)."""
        for j in range(k):
            ajj = a[j, j]
            if j:
                s = low[j, 0] * low[j, 0]
                for i in range(1, j):
                    s += low[j, i] * low[j, i]
                d = ajj - s
            else:
                d = ajj
            g = (ajj > 0) and (d > _RTOL * ajj)
            good[j] = g
            if g:
                ljj = math.sqrt(d)
            else:
                ljj = 1.0
                for i in range(j):
                    low[j, i] = low[j, i] * 0.0
            low[j, j] = ljj
            for i in range(j + 1, k):
                if j:
                    s = low[i, 0] * low[j, 0]
                    for m in range(1, j):
                        s += low[i, m] * low[j, m]
                    off = a[i, j] - s
                else:
                    off = a[i, j]
                low[i, j] = off / ljj if g else 0.0

    @_njit
    def _chol_subst(low, good, k, b, x, z):  # pragma: no cover - compiled
        """Solve L Lᵀ x = b (vectors of length k) with a factor of :func:`_chol_factor`."""
        for j in range(k):
            bj = b[j] if good[j] else b[j] * 0.0
            if j:
                s = low[j, 0] * z[0]
                for i in range(1, j):
                    s += low[j, i] * z[i]
                bj = bj - s
            z[j] = bj / low[j, j]
        for j in range(k - 1, -1, -1):
            zj = z[j]
            if j + 1 < k:
                s = low[j + 1, j] * x[j + 1]
                for i in range(j + 2, k):
                    s += low[i, j] * x[i]
                zj = zj - s
            x[j] = zj / low[j, j]

    @_numba.njit(inline="always", **_OPTIONS)
    def _derivative_row(m, i, z, u1, u2, l1, l2, ce, f1, f2, unit, wi):  # pragma: no cover - compiled
        """Rows 5–10 of :func:`_rows` at energy index ``i`` (inlined: one formula for :func:`_rows`
        and :func:`_derivative_rows`, the same operations in each)."""
        e = _step_slope(z) * ce
        d1 = _lorentzian_slope(l1, u1) * f1
        d2 = _lorentzian_slope(l2, u2) * f2
        if not unit:
            e *= wi
            d1 *= wi
            d2 *= wi
        m[5, i] = -e
        m[6, i] = -e * z
        m[7, i] = d1
        m[8, i] = d1 * u1
        m[9, i] = d2
        m[10, i] = d2 * u2

    @_njit
    def _rows(x, w, yw, unit, th, derivatives, m):  # pragma: no cover - compiled
        """Weighted rows [1, s, L1, L2, y, ∂s/∂b2, ∂s/∂b3, ∂L1/∂c12, ∂L1/∂c13, ∂L2/∂c22, ∂L2/∂c23]."""
        n = x.size
        b2, b3 = th[0], th[1]
        ce = _INV_SQRT_PI / b3
        c1, s1 = th[2], th[3]
        c2, s2 = th[4], th[5]
        f1, f2 = 2.0 / s1, 2.0 / s2
        r0, r1, r2 = 1.0 / b3, 1.0 / s1, 1.0 / s2  # multiply, not divide, per energy
        for i in range(n):
            wi = 1.0 if unit else w[i]
            z = (x[i] - b2) * r0
            s = _step(z)
            u1 = (x[i] - c1) * r1
            l1 = _lorentzian(u1)
            u2 = (x[i] - c2) * r2
            l2 = _lorentzian(u2)
            if derivatives:
                _derivative_row(m, i, z, u1, u2, l1, l2, ce, f1, f2, unit, wi)
            if unit:
                m[0, i] = 1.0
                m[1, i] = s
                m[2, i] = l1
                m[3, i] = l2
            else:
                m[0, i] = wi
                m[1, i] = s * wi
                m[2, i] = l1 * wi
                m[3, i] = l2 * wi
            m[4, i] = yw[i]

    @_njit
    def _derivative_rows(x, w, unit, th, m):  # pragma: no cover - compiled
        """Rows 5–10 of :func:`_rows` alone (same arithmetic, same bits): an accepted trial point.

        Rows 0–4 must hold :func:`_rows` at the same θ (the unit-weight Lorentzians are read back).
        """
        n = x.size
        b2, b3 = th[0], th[1]
        ce = _INV_SQRT_PI / b3
        c1, s1 = th[2], th[3]
        c2, s2 = th[4], th[5]
        f1, f2 = 2.0 / s1, 2.0 / s2
        r0, r1, r2 = 1.0 / b3, 1.0 / s1, 1.0 / s2
        for i in range(n):
            z = (x[i] - b2) * r0
            u1 = (x[i] - c1) * r1
            u2 = (x[i] - c2) * r2
            if unit:  # rows 2, 3 hold the unit Lorentzians at this θ already (same bits)
                l1 = m[2, i]
                l2 = m[3, i]
            else:
                l1 = _lorentzian(u1)
                l2 = _lorentzian(u2)
            _derivative_row(m, i, z, u1, u2, l1, l2, ce, f1, f2, unit, 1.0 if unit else w[i])

    # Four dot products per pass share the loads of row a and run as independent chains, with
    # reassociation allowed (one sequential sum is latency-bound: the Gram matrix took ~2/3 of
    # an LM iteration; now ~1/5). Rounding differs from numpy's BLAS, the algorithm does not.
    @_numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
    def _gram(m, k0, k, n, g):  # pragma: no cover - compiled
        """Rows/columns k0…k−1 of the Gram matrix of m[:k] (entry (a, b) summed the same way for any k0)."""
        for a in range(k0, k):
            ma = m[a]
            b = 0
            while b + 3 <= a:
                m0, m1, m2, m3 = m[b], m[b + 1], m[b + 2], m[b + 3]
                s0 = s1 = s2 = s3 = 0.0
                for i in range(n):
                    v = ma[i]
                    s0 += v * m0[i]
                    s1 += v * m1[i]
                    s2 += v * m2[i]
                    s3 += v * m3[i]
                g[a, b] = g[b, a] = s0
                g[a, b + 1] = g[b + 1, a] = s1
                g[a, b + 2] = g[b + 2, a] = s2
                g[a, b + 3] = g[b + 3, a] = s3
                b += 4
            while b <= a:
                mb = m[b]
                s0 = s1 = 0.0
                for i in range(0, n - 1, 2):
                    s0 += ma[i] * mb[i]
                    s1 += ma[i + 1] * mb[i + 1]
                if n % 2:
                    s0 += ma[n - 1] * mb[n - 1]
                g[a, b] = g[b, a] = s0 + s1
                b += 1

    @_njit
    def _subset_solve(g, rhs, sub, nf, gs, rs, ls, gd, zr, xr):  # pragma: no cover - compiled
        """Solve g[F, F] x = rhs[F] for the free set F of active set ``sub``: the principal
        submatrix and right side gathered into gs[:nf, :nf], rs[:nf] (plain copies), then
        :func:`_chol_factor` and :func:`_chol_subst` on them (same operations in the same order)."""
        for jj in range(nf):
            j = _FREE_SETS[sub, jj]
            rs[jj] = rhs[j]
            for kk in range(nf):
                gs[kk, jj] = g[_FREE_SETS[sub, kk], j]
        _chol_factor(gs, nf, ls, gd)
        _chol_subst(ls, gd, nf, rs, xr, zr)

    @_njit
    def _nnls4(g, coef, free, low, good, ws, bk):  # pragma: no cover - compiled
        """Non-negative heights (solver._nnls4_factor) from the Gram g; low/good: factor of g[:4, :4]."""
        rhs = ws[0, :4]
        z = ws[1, :4]
        for j in range(4):
            rhs[j] = g[j, 4]
        _chol_factor(g, 4, low, good)
        _chol_subst(low, good, 4, rhs, coef, z)
        for j in range(4):
            free[j] = True
        if coef[1] < 0 or coef[2] < 0 or coef[3] < 0:
            ls = ws[22:26, 4:8]
            gs = ws[22:26, :4]
            rs = ws[21, :4]
            gd = bk[:4]
            xr = ws[2, :4]
            c = ws[3, :4]
            best = ws[4, :4]
            best_obj = np.inf
            pick = -1
            for sub in range(1, 8):  # active sets (b1, c11, c21) free: T/F in solver._SUBSETS order
                # The free heights' system alone. solver._nnls4_factor (and this kernel until
                # s12) factor the 4×4 matrix with unit rows/columns for the held heights: their
                # entries only add exact zeros, so for a finite Gram every number is the same.
                nf = _N_FREE[sub]
                _subset_solve(g, rhs, sub, nf, gs, rs, ls, gd, z, xr)
                for a in range(4):
                    c[a] = 0.0
                for jj in range(nf):
                    c[_FREE_SETS[sub, jj]] = xr[jj]
                feasible = c[1] >= 0 and c[2] >= 0 and c[3] >= 0
                obj = -(rhs[0] * c[0] + rhs[1] * c[1] + rhs[2] * c[2] + rhs[3] * c[3])
                if feasible and obj < np.inf and obj < best_obj:
                    best_obj = obj
                    pick = sub
                    for a in range(4):
                        best[a] = c[a]
            if pick >= 0:
                for a in range(4):
                    coef[a] = best[a]
                free[0] = True
                free[1] = (pick & 4) == 0
                free[2] = (pick & 2) == 0
                free[3] = (pick & 1) == 0
            else:
                for a in range(4):
                    coef[a] = 0.0

    @_njit
    def _project(x, w, yw, unit, th, derivatives, m, g, coef, free, low, good, hess, grad, ws, bk):  # pragma: no cover
        """Heights, χ² and (optionally) the LM normal equations at θ of one pixel (solver._Problem._solve)."""
        n = x.size
        k = 11 if derivatives else 5
        _rows(x, w, yw, unit, th, derivatives, m)
        _gram(m, 0, k, n, g)
        cost = _heights_cost(g, coef, free, low, good, ws, bk)
        if derivatives:
            _normal_equations(g, coef, free, low, good, hess, grad, ws, bk)
        return cost

    @_njit
    def _heights_cost(g, coef, free, low, good, ws, bk):  # pragma: no cover - compiled
        """Exact non-negative heights and χ² from the Gram matrix g[:5, :5]."""
        _nnls4(g, coef, free, low, good, ws, bk)
        yy = g[4, 4]
        t1 = 0.0
        t2 = 0.0
        for i in range(4):
            t1 += g[i, 4] * coef[i]
            for j in range(4):
                t2 += coef[i] * g[i, j] * coef[j]
        cost = yy - 2.0 * t1 + t2
        if cost < 0.0:
            cost = 0.0
        return cost

    @_njit
    def _normal_equations(g, coef, free, low, good, hess, grad, ws, bk):  # pragma: no cover - compiled
        """Golub–Pereyra JᵀJ and Jᵀr of the projected residual from the full Gram g and the heights."""
        # owner of nonlinear parameter l: linear coefficient 1, 1, 2, 2, 3, 3
        q = ws[8:12, :6]
        dr = ws[16, :6]
        for lp in range(6):
            own = 1 + lp // 2
            sc = coef[own]
            sq = 0.0
            sd = 0.0
            for a in range(4):
                q[a, lp] = g[a, 5 + lp] * sc
                sq += q[a, lp] * coef[a]
                sd += g[a, 5 + lp] * coef[a]
            grad[lp] = g[5 + lp, 4] * sc - sq
            dr[lp] = g[5 + lp, 4] - sd
        # G⁻¹ on the free set (zero rows/columns off it), then G⁻¹q: as solver's G⁻¹[q, owner]
        allfree = free[0] and free[1] and free[2] and free[3]
        gi = ws[12:16, :4]
        xs = ws[12:16, 4:10]
        b = ws[5, :4]
        z = ws[6, :4]
        xcol = ws[7, :4]
        if allfree:
            fl, fg = low, good
        else:
            gb = ws[17:21, :4]
            fl = ws[17:21, 4:8]
            fg = bk[4:8]
            for a in range(4):
                for c in range(4):
                    gb[a, c] = g[a, c] if (free[a] and free[c]) else (1.0 if a == c else 0.0)
            _chol_factor(gb, 4, fl, fg)
        for col in range(4):
            for a in range(4):
                b[a] = 1.0 if (a == col and (allfree or free[a])) else 0.0
            _chol_subst(fl, fg, 4, b, xcol, z)
            for a in range(4):
                gi[a, col] = xcol[a]
        for j in range(6):
            for a in range(4):
                xs[a, j] = gi[a, 0] * q[0, j] + gi[a, 1] * q[1, j] + gi[a, 2] * q[2, j] + gi[a, 3] * q[3, j]
        for i in range(6):
            oi = 1 + i // 2
            for j in range(i + 1):
                oj = 1 + j // 2
                jj = g[5 + i, 5 + j] * coef[oi] * coef[oj]
                s = q[0, i] * xs[0, j] + q[1, i] * xs[1, j] + q[2, i] * xs[2, j] + q[3, i] * xs[3, j]
                hess[i, j] = hess[j, i] = jj - s + dr[i] * dr[j] * gi[oj, oi]

    @_njit
    def project_many(x, w, yw, unit, theta, coef_out, free_out, cost_out):  # pragma: no cover - compiled
        """:meth:`solver._Problem.project` without derivatives for P pixels (rows of w, yw, theta)."""
        n = x.size
        m, g, coef, free, low, good, hess, grad, ws, bk = _workspace(n)
        for p in range(theta.shape[0]):
            cost_out[p] = _project(
                x, w[0 if unit else p], yw[p], unit, theta[p], False, m, g, coef, free, low, good, hess, grad, ws, bk
            )
            for a in range(4):
                coef_out[a, p] = coef[a]
                free_out[a, p] = free[a]

    @_njit
    def _damped_step(h, g, lam, diag, use, step, a, low, good, z, rhs):  # pragma: no cover - compiled
        for i in range(6):
            for j in range(6):
                if use[i] and use[j]:
                    a[i, j] = h[i, j] + (lam * diag[i] if i == j else 0.0)
                else:
                    a[i, j] = 1.0 if i == j else 0.0
        for i in range(6):
            rhs[i] = g[i] if use[i] else 0.0
        _chol_factor(a, 6, low, good)
        _chol_subst(low, good, 6, rhs, step, z)

    @_njit
    def levenberg_marquardt(
        x, w, yw, unit, n_valid, theta, lo, hi, max_iter, ftol, xtol, give_up, coef_out, cost_out, it_out, conv_out
    ):  # pragma: no cover - compiled
        """solver._levenberg_marquardt per pixel; theta (P, 6) is updated in place."""
        n = x.size
        m, g, coef, free, low, good, hess, grad, ws, bk = _workspace(n)
        c_t = np.empty(4)
        f_t = np.empty(4, np.bool_)
        diag = np.empty(6)
        det = np.empty(6, np.bool_)
        use = np.empty(6, np.bool_)
        step = np.empty(6)
        trial = np.empty(6)
        a6 = np.empty((6, 6))
        l6 = np.zeros((6, 6))
        gd6 = np.empty(6, np.bool_)
        z6 = np.empty(6)
        r6 = np.empty(6)
        for p in range(theta.shape[0]):
            th = theta[p]
            lop, hip = lo[p], hi[p]
            wp, ywp = w[0 if unit else p], yw[p]
            cost = _project(x, wp, ywp, unit, th, True, m, g, coef, free, low, good, hess, grad, ws, bk)
            lam = 1e-3
            nu = 2.0
            iterations = 0
            converged = False
            dof = n_valid[p] - 10
            if dof < 1:
                dof = 1
            for _ in range(max_iter):
                scale = 0.0
                for i in range(6):
                    diag[i] = hess[i, i]
                    if i == 0 or diag[i] > scale or diag[i] != diag[i]:
                        scale = diag[i]
                    if scale != scale:  # NaN: the max is NaN (as numpy's)
                        break
                for i in range(6):
                    diag[i] = hess[i, i]
                if not (scale > 1e-300):  # np.maximum(max, 1e-300); NaN propagates
                    scale = 1e-300 if scale == scale else scale
                for i in range(6):
                    det[i] = diag[i] > 1e-12 * scale
                _damped_step(hess, grad, lam, diag, det, step, a6, l6, gd6, z6, r6)
                pushed = False
                for i in range(6):
                    pi = (th[i] <= lop[i] and step[i] < 0) or (th[i] >= hip[i] and step[i] > 0)
                    use[i] = det[i] and not pi
                    pushed = pushed or pi
                if pushed:
                    _damped_step(hess, grad, lam, diag, use, step, a6, l6, gd6, z6, r6)
                moved = 0.0
                for i in range(6):
                    t = th[i] + step[i]
                    t = min(max(t, lop[i]), hip[i])
                    trial[i] = t
                    step[i] = t - th[i]
                    am = abs(step[i])
                    if i == 0 or am > moved or am != am:
                        moved = am
                predicted = 0.0
                for i in range(6):
                    hs = hess[i, 0] * step[0]
                    for j in range(1, 6):
                        hs += hess[i, j] * step[j]
                    h_i = step[i] * (2.0 * grad[i] - hs)
                    predicted = h_i if i == 0 else predicted + h_i
                # χ² of the trial first; its normal equations only if it is accepted (a rejected
                # step costs rows 0–4 and a 5×5 Gram; the same bits as computing everything)
                _rows(x, wp, ywp, unit, trial, False, m)
                _gram(m, 0, 5, n, g)
                cost_t = _heights_cost(g, c_t, f_t, low, good, ws, bk)
                actual = cost - cost_t
                accept = math.isfinite(cost_t) and actual > 0
                iterations += 1
                if predicted > 0:
                    rho = actual / predicted
                else:
                    rho = 0.0
                if accept:
                    for i in range(6):
                        th[i] = trial[i]
                    for a in range(4):
                        coef[a] = c_t[a]
                        free[a] = f_t[a]
                    cost = cost_t
                    r3 = 1.0 - (2.0 * rho - 1.0) ** 3
                    lam = lam * (r3 if (r3 > 1.0 / 3.0 or r3 != r3) else 1.0 / 3.0)
                    nu = 2.0
                else:
                    lam = lam * nu
                    nu *= 2.0
                tol = ftol * (cost if cost > 1e-300 else (1e-300 if cost == cost else cost))
                small = abs(actual) <= tol and predicted <= tol
                done = small or moved <= xtol or lam > 1e12
                if done:
                    converged = True
                rms = math.sqrt(cost / dof)
                hopeless = iterations >= give_up and coef[1] < rms
                if done or hopeless:
                    break
                if accept and iterations < max_iter:
                    # the accepted point's normal equations, only where another iteration
                    # uses them (not after the last one: nothing reads them; same bits)
                    _derivative_rows(x, wp, unit, th, m)
                    _gram(m, 5, 11, n, g)
                    _normal_equations(g, coef, free, low, good, hess, grad, ws, bk)
            cost_out[p] = cost
            it_out[p] = iterations
            conv_out[p] = converged
            for a in range(4):
                coef_out[a, p] = coef[a]

    @_njit
    def inverse_normal_matrix(x, w, unit, theta, heights, use, inv_out, shift_out):  # pragma: no cover - compiled
        """(JᵀJ)⁻¹ of the full 10-parameter eq. (1) Jacobian per pixel (solver._covariance), and
        the b2 shifts of the two model-error directions of :mod:`ptyxr.xanes.uncertainty`.

        ``theta`` (P, 6) nonlinear parameters (energies shifted), ``heights`` (P, 3) b1, c11,
        c21, ``use`` (P, 10) the determined parameters: the others get a unit row/column
        (their entries of the inverse are discarded by the caller). ``shift_out`` (P, 2): the
        b2 component of (JᵀJ)⁻¹Jᵀδ for δ = the arctan-minus-erf step and the white-line
        asymmetry direction (uncertainty.edge_model_error, per unit η and α), from the same
        factor (held parameters' rows of Jᵀδ zeroed, as there).
        """
        n = x.size
        m = np.empty((12, n))
        g = np.empty((12, 12))
        a = np.empty((10, 10))
        low = np.zeros((10, 10))
        good = np.empty(10, np.bool_)
        e = np.zeros(10)
        col = np.empty(10)
        z10 = np.empty(10)
        for p in range(theta.shape[0]):
            th = theta[p]
            b2, b3, c1, s1, c2, s2 = th[0], th[1], th[2], th[3], th[4], th[5]
            b1, c11, c21 = heights[p, 0], heights[p, 1], heights[p, 2]
            wp = w[0 if unit else p]
            for i in range(n):
                wi = wp[i]
                z = (x[i] - b2) / b3
                u1 = (x[i] - c1) / s1
                u2 = (x[i] - c2) / s2
                l1 = _lorentzian(u1)
                l2 = _lorentzian(u2)
                ez = _step_slope(z) * _INV_SQRT_PI
                d1 = 2.0 * _lorentzian_slope(l1, u1) / s1
                d2 = 2.0 * _lorentzian_slope(l2, u2) / s2
                st = _step(z)
                m[0, i] = wi
                m[1, i] = wi * st
                m[2, i] = -wi * b1 * ez / b3
                m[3, i] = -wi * b1 * ez * z / b3
                m[4, i] = wi * l1
                m[5, i] = wi * c11 * d1
                m[6, i] = wi * c11 * d1 * u1
                m[7, i] = wi * l2
                m[8, i] = wi * c21 * d2
                m[9, i] = wi * c21 * d2 * u2
                # model-error directions: arctan step − erf step; white-line asymmetry
                m[10, i] = wi * b1 * (0.5 + math.atan(z) / math.pi - st)
                m[11, i] = m[9, i] * s2 * (1.0 if x[i] > c2 else (-1.0 if x[i] < c2 else 0.0))
            _gram(m, 0, 12, n, g)
            up = use[p]
            for i in range(10):
                for j in range(10):
                    a[i, j] = g[i, j] if (up[i] and up[j]) else (1.0 if i == j else 0.0)
            _chol_factor(a, 10, low, good)
            for c in range(10):
                e[c] = 1.0
                _chol_subst(low, good, 10, e, col, z10)
                e[c] = 0.0
                for i in range(10):
                    inv_out[p, i, c] = col[i]
            for k in range(2):
                for i in range(10):
                    e[i] = g[i, 10 + k] if up[i] else 0.0
                _chol_subst(low, good, 10, e, col, z10)
                shift_out[p, k] = col[2]
            for i in range(10):
                e[i] = 0.0

    @_njit
    def scan_column(x, w, yw, unit, theta, lo, hi, column, values, coef, cost):  # pragma: no cover - compiled
        """solver._scan_column per pixel: θ[column] = each value (clipped), lowest χ² kept in place.

        Only the scanned Lorentzian's row (column 2: pre-edge, 4: white line) and the Gram
        entries that involve it are recomputed per candidate; every number is the one that
        :func:`project_many` gives for the full trial, and candidates are taken in order with
        a strict ``<`` (the first lowest, as the batched argmin).
        """
        n = x.size
        m, g, c_t, f_t, low, good, _, _, ws, bk = _workspace(n)
        th = np.empty(6)
        row = 2 if column == 2 else 3
        for p in range(theta.shape[0]):
            wp, ywp = w[0 if unit else p], yw[p]
            for i in range(6):
                th[i] = theta[p, i]
            _rows(x, wp, ywp, unit, th, False, m)
            _gram(m, 0, 5, n, g)
            best = cost[p]
            pick = -1
            width = th[column + 1]
            r = 1.0 / width
            prev = np.nan
            for v in range(values.size):
                c = min(max(values[v], lo[p, column]), hi[p, column])
                if c == prev:
                    # a candidate clipped to the bound again: the same trial, the same χ²,
                    # which cannot be strictly below the best (it was tried just before)
                    continue
                prev = c
                for i in range(n):
                    li = _lorentzian((x[i] - c) * r)
                    m[row, i] = li if unit else li * wp[i]
                _gram(m, row, 5, n, g)
                cost_t = _heights_cost(g, c_t, f_t, low, good, ws, bk)
                if cost_t < best:
                    best = cost_t
                    pick = v
                    th[column] = c
                    for a in range(4):
                        coef[a, p] = c_t[a]
            if pick >= 0:
                cost[p] = best
                theta[p, column] = th[column]

    @_njit
    def profile_many(x, w, yw, unit, theta, lo, hi, grid, wl_offset, cost, best, coef):  # pragma: no cover
        """The projections of solver.edge_profile per pixel: b2 = each grid value, white line at
        b2 + max(offset, 0), θ clipped; kept in ``cost``/``best``/``coef`` (P, G, …) where strictly
        lower (NaN never). Only the rows that move (the step and the white line) are recomputed
        per grid point; every number is the one :func:`project_many` gives for the full trial.
        """
        n = x.size
        m, g, c_t, f_t, low, good, _, _, ws, bk = _workspace(n)
        th = np.empty(6)
        for p in range(theta.shape[0]):
            wp, ywp = w[0 if unit else p], yw[p]
            for i in range(6):
                th[i] = min(max(theta[p, i], lo[p, i]), hi[p, i])
            _rows(x, wp, ywp, unit, th, False, m)
            _gram(m, 0, 5, n, g)
            off = max(wl_offset[p], 0.0)
            r0 = 1.0 / th[1]
            r2 = 1.0 / th[5]
            for j in range(grid.shape[1]):
                b2 = min(max(grid[p, j], lo[p, 0]), hi[p, 0])
                c2 = min(max(grid[p, j] + off, lo[p, 4]), hi[p, 4])
                for i in range(n):
                    s = _step((x[i] - b2) * r0)
                    l2 = _lorentzian((x[i] - c2) * r2)
                    if unit:
                        m[1, i] = s
                        m[3, i] = l2
                    else:
                        m[1, i] = s * wp[i]
                        m[3, i] = l2 * wp[i]
                _gram(m, 1, 5, n, g)
                cost_t = _heights_cost(g, c_t, f_t, low, good, ws, bk)
                if cost_t < cost[p, j]:
                    cost[p, j] = cost_t
                    for i in range(6):
                        best[p, j, i] = th[i]
                    best[p, j, 0] = b2
                    best[p, j, 4] = c2
                    for a in range(4):
                        coef[a, p, j] = c_t[a]

    @_njit
    def scan_edge(x, w, yw, unit, theta, lo, hi, offsets, factors, coef, cost):  # pragma: no cover - compiled
        """The edge scans of solver.scan_starts per pixel: b2 + each offset, then b3 × each
        factor, each applied to the best so far (clipped), kept where χ² is strictly lower.

        The start θ is projected first (``coef``/``cost`` are outputs only: the numbers of
        :func:`project_many` at θ). Only the step's row and the Gram entries that involve it
        are recomputed per candidate; every number is the one :func:`project_many` gives for
        the full trial.
        """
        n = x.size
        m, g, c_t, f_t, low, good, _, _, ws, bk = _workspace(n)
        for p in range(theta.shape[0]):
            wp, ywp = w[0 if unit else p], yw[p]
            th = theta[p]
            _rows(x, wp, ywp, unit, th, False, m)
            _gram(m, 0, 5, n, g)
            cost[p] = _heights_cost(g, c_t, f_t, low, good, ws, bk)
            for a in range(4):
                coef[a, p] = c_t[a]
            for column in range(2):
                values = offsets if column == 0 else factors
                for v in range(values.size):
                    b2, b3 = th[0], th[1]
                    if column == 0:
                        b2 = min(max(b2 + values[v], lo[p, 0]), hi[p, 0])
                    else:
                        b3 = min(max(b3 * values[v], lo[p, 1]), hi[p, 1])
                    r0 = 1.0 / b3
                    for i in range(n):
                        s = _step((x[i] - b2) * r0)
                        m[1, i] = s if unit else s * wp[i]
                    _gram(m, 1, 5, n, g)
                    cost_t = _heights_cost(g, c_t, f_t, low, good, ws, bk)
                    if cost_t < cost[p]:
                        cost[p] = cost_t
                        th[0] = b2
                        th[1] = b3
                        for a in range(4):
                            coef[a, p] = c_t[a]
