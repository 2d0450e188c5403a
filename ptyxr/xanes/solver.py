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
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptyxr.xanes import uncertainty as _uncertainty

# The solver's pieces live in three modules (_linalg, _varpro, globalsearch); the names that
# fit.py and the tests use stay importable from here (re-exported).
from ptyxr.xanes._linalg import _chol_factor, _chol_solve, _chol_subst, _nnls4, _nnls4_factor  # noqa: F401
from ptyxr.xanes._varpro import (  # noqa: F401
    _B2,
    _C12,
    _C22,
    _ENGINE,
    ENGINES,
    GIVE_UP_AFTER,
    N_PARAMETERS,
    _centre_candidates,
    _compiled,
    _covariance,
    _determined,
    _levenberg_marquardt,
    _params,
    _Problem,
    _resolve_engine,
    _suspicious,
    _theta,
    pre_edge_collapsed,
    scan_starts,
    success_flags,
)
from ptyxr.xanes.globalsearch import (  # noqa: F401
    PROFILE_COVERAGE,
    PROFILE_DELTA_CHI2,
    PROFILE_ITERATIONS,
    PROFILE_MIN_DISTANCE,
    PROFILE_REFINE_RISE,
    PROFILE_STEP,
    PROFILE_WL_OFFSETS,
    edge_profile,
    global_starts,
    keep_best,
    physical_refits,
    profile_edge_stderr,
    white_line_behind,
    widen_edge_stderr,
)
from ptyxr.xanes.starts import initial_estimates


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
    edge_model_error : ndarray (P,) or None
        b2 shift [eV] that eq. (1)'s likely model errors cause
        (:func:`ptyxr.xanes.uncertainty.edge_model_error`).
    edge_uncertainty : ndarray (P,) or None
        √(stderr_b2² + edge_model_error²) [eV]: b2's error bar on spectra that eq. (1)
        does not describe exactly.
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
    edge_model_error: np.ndarray | None = None
    edge_uncertainty: np.ndarray | None = None


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
) -> list[tuple[np.ndarray, ...]]:
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
    model = np.full(n_pix, np.nan)
    if idx.size == 0:
        return params, stderr, redchi, np.zeros(n_pix, bool), cost, iterations, lower, upper, cov, model
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
            sub = prob.subset(rows)
            lo_r, hi_r = _theta(lo_p[rows], sub.e0), _theta(hi_p[rows], sub.e0)
            th_r, coef_r, c_r, it_r, conv_r = _levenberg_marquardt(
                sub, np.clip(_theta(alt, sub.e0), lo_r, hi_r), lo_r, hi_r, max_iter, ftol, xtol
            )
            p_r = _params(th_r, coef_r, sub.e0)
            p, c, it, conv, min_b2, min_cost = keep_best(p, c, it, conv, rows, p_r, c_r, it_r, conv_r)
            alt_b2, alt_cost = np.concatenate([prof_b2, min_b2], axis=1), np.concatenate([prof_cost, min_cost], axis=1)
            # still behind its white line: the refits slid back there; fit b2 held near the
            # physical profile points instead (issue 11 point 4; only these pixels change)
            sel = np.flatnonzero(white_line_behind(p)[rows])
            if sel.size:
                r_s = rows[sel]
                p_h, c_h, it_h, conv_h = physical_refits(
                    energy, yv[r_s], alt[sel], lo_p[r_s], hi_p[r_s], wv[r_s], max_iter, ftol, xtol
                )
                p, c, it, conv, min_b2, min_cost = keep_best(p, c, it, conv, r_s, p_h, c_h, it_h, conv_h)
                alt_b2 = np.concatenate([alt_b2, min_b2], axis=1)
                alt_cost = np.concatenate([alt_cost, min_cost], axis=1)
    cov_v, redchi_v, model_shifts = _covariance(prob, p, lo_p, hi_p, c)
    # eq. (1)'s model error of b2 per pixel: from the covariance's factor (compiled engine), or
    # numpy (the fit's points: NaN values were left out of each spectrum's fit)
    determined = _determined(p, lo_p, hi_p)
    if model_shifts is not None:
        model[idx] = _uncertainty.combine_shifts(p, determined, model_shifts)
    else:
        model[idx] = _uncertainty.edge_model_error(energy, p, determined, np.where(np.isfinite(yv), wv, 0.0))
    params[idx], cost[idx], iterations[idx], converged[idx] = p, c, it, conv
    redchi[idx] = redchi_v
    stderr[idx] = np.sqrt(np.einsum("pii->pi", cov_v))
    if alt_b2 is not None:
        # a second minimum close in χ² widens the edge's error (bimodal fits are not located)
        assert alt_cost is not None  # set with alt_b2
        stderr[idx, _B2] = widen_edge_stderr(p, stderr[idx, _B2], c, redchi_v, alt_b2, alt_cost)
    if want_cov:
        assert cov is not None  # allocated when wanted
        cov[idx] = cov_v
    success = np.zeros(n_pix, bool)
    success[idx] = success_flags(p, lo_p, hi_p, conv) & np.isfinite(c)
    return params, stderr, redchi, success, cost, iterations, lower, upper, cov, model


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
        importable. Same algorithm; results agree to rounding (tests/xanes/test_solver.py).

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
    out: dict[str, list[Any]] = {
        key: []
        for key in (
            "params", "stderr", "redchi", "success", "cost", "iterations", "lower", "upper", "covariance", "model"
        )
    }  # fmt: skip

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

        pool: cf.Executor
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
            edge_model_error=np.zeros(0),
            edge_uncertainty=np.zeros(0),
        )
    cat: dict[str, Any] = {key: (np.concatenate(v) if v[0] is not None else None) for key, v in out.items()}
    model = cat.pop("model")
    edge = _uncertainty.edge_uncertainty(cat["stderr"][:, _B2], model)
    return BatchResult(**cat, cpu_time=cpu_time, edge_model_error=model, edge_uncertainty=edge)
