"""The ``fit_xanes`` stage: paper eq. (1) fitted to every pixel's absorption spectrum (DESIGN §1d)."""

from __future__ import annotations

import numbers
from typing import Any, Literal

import numpy as np
import xarray as xr

from ptyxr import schema
from ptyxr.schema import (
    ABSORPTION,
    ABSORPTION_FIT,
    EDGE_ARCTAN_FRACTION,
    EDGE_UNCERTAINTY,
    ENERGY,
    FIT_PARAMETERS,
    FIT_VALID,
    MATERIAL,
    NOISE,
    PRE_EDGE_VALID,
    REDCHI,
    STDERR_SUFFIX,
    SUCCESS,
    SchemaError,
    X,
    Y,
)
from ptyxr.stage import stage
from ptyxr.xanes import freestep as _freestep
from ptyxr.xanes import model as _model
from ptyxr.xanes import solver as _solver
from ptyxr.xanes import uncertainty as _uncertainty
from ptyxr.xanes.lineshapes import mixed_step

STAGE = "fit_xanes"
METHODS = ("batch", "lmfit")
EDGE_STEPS = _freestep.EDGE_STEPS
NOISE_METHODS = ("paper", "detrended")
#: At least this many pre-edge points for the noise σ (paper: four).
MIN_PRE_EDGE_POINTS = 3
#: Smallest edge jump b1 counted as an edge, relative to the pixel's largest |μt| (far below any
#: measurable edge; above float64 round-off of the solver, ~1e-16).
MIN_RELATIVE_EDGE = 1e-6
#: Default ``min_edge_significance``: an edge counts only when its jump b1 stands this many
#: standard errors clear of zero (the paper's b1 ≥ σ alone passes pure-noise pixels whose
#: erf sits on the last few points, b1 ± 100 × b1).
EDGE_SIGNIFICANCE = 3.0
#: Default ``max_edge_stderr`` of fit_xanes, the demo and presets [eV]:
#: an edge energy located to 0.5 eV, the accuracy the maps are read at (adjacent domain types'
#: edges lie ~3 eV apart). Bulk pixels of the simulated particles get ~0.05 eV; the ones it
#: drops are mostly thin-rim pixels whose edges reconstruction artefacts bias high by 2–5 eV
#: while their stderr says ~0.8 eV, and bistable mixed pixels (docs/paper-preset.md).
LOCATED_EDGE_STDERR = 0.5
_N_OUT = 2 * len(FIT_PARAMETERS) + 3  # parameters, stderr, redchi, success, b2 uncertainty
#: lmfit's minimiser for the reference fits: ``least_squares`` (trust-region reflective) keeps
#: bounds exactly, as the batch solver does. lmfit's default ``leastsq`` maps bounded
#: parameters through sin/sqrt transforms whose gradient vanishes at a bound, so it stalls
#: short of minima with a width on its bound (a collapsed pre-edge, ~10 % of pixels) and,
#: from the same start, ends elsewhere than an exact-bounds solver.
LMFIT_METHOD = "least_squares"


# ------------------------------------------------------------------ kernels (numpy)
def _pack(params: np.ndarray, stderr: np.ndarray, redchi: np.ndarray, success: np.ndarray) -> np.ndarray:
    return np.concatenate([params, stderr, redchi[:, None], success[:, None].astype(float)], axis=1)


def _lmfit_one(energy: np.ndarray, y: np.ndarray, start: np.ndarray, lower: np.ndarray, upper: np.ndarray):
    """One lmfit fit of eq. (1) from ``start`` (10,) within the bounds; (params, stderr, χ², converged)."""
    guess = {name: _model.ParamGuess(start[i], lower[i], upper[i]) for i, name in enumerate(FIT_PARAMETERS)}
    # a degenerate fit (e.g. vacuum) can give lmfit a covariance with a negative diagonal: lmfit
    # then takes its sqrt (NaN, reported as an undetermined error by paper_params)
    with np.errstate(invalid="ignore"):
        result = _model.fit_spectrum(energy, y, start=guess, method=LMFIT_METHOD)
    values = _model.paper_params(result)
    params = np.array([values[name] for name in FIT_PARAMETERS])
    stderr = np.array([values[name + STDERR_SUFFIX] for name in FIT_PARAMETERS])
    return params, stderr, float(result.chisqr), bool(result.success)


def _lmfit_free_one(energy: np.ndarray, y: np.ndarray, params: np.ndarray, lower: np.ndarray, upper: np.ndarray):
    """lmfit fit of the free-step model from an eq. (1) fit (starts η = 0 and 1, lower χ² kept).

    Returns (params (10,), stderr (10,), η, η stderr, χ², success); parameters as
    :func:`ptyxr.xanes.freestep.refine_free_step`'s (paper heights, η ∈ [0, 1]).
    """
    import lmfit

    keep = np.isfinite(y)
    names = (*FIT_PARAMETERS, "eta")

    def model(x, a, b1, b2, b3, c11, c12, c13, c21, c22, c23, eta):
        row = np.array([[a, b1, b2, b3, c11, c12, c13, c21, c22, c23]])
        return _freestep.free_step_curve(x, row, np.array([eta]))[0]

    best: Any = None
    for eta0 in (0.0, 1.0):
        pars = lmfit.Parameters()
        for i, name in enumerate(FIT_PARAMETERS):
            pars.add(name, value=float(np.clip(params[i], lower[i], upper[i])), min=lower[i], max=upper[i])
        pars.add("eta", value=eta0, min=0.0, max=1.0)
        with np.errstate(invalid="ignore"):
            res = lmfit.Model(model).fit(y[keep], pars, x=energy[keep], method=LMFIT_METHOD)
        if best is None or res.chisqr < best.chisqr * (1.0 - 1e-12):
            best = res

    def err(name: str) -> float:
        e = best.params[name].stderr
        return float(e) if e is not None and np.isfinite(e) else float("nan")

    values = np.array([best.params[n].value for n in names])
    errors = np.array([err(n) for n in names])
    return values[:10], errors[:10], values[10], errors[10], float(best.chisqr), bool(best.success)


def _fit_lmfit_rows(
    energy: np.ndarray, y: np.ndarray, pre_edge_limit: float | None, progress: bool = False
) -> np.ndarray:
    """lmfit per spectrum (the reference), with the batch solver's starts, bounds and restarts.

    The same protocol as :func:`ptyxr.xanes.solver.fit_batch`: a fit from the scanned start
    (:func:`~ptyxr.xanes.solver.scan_starts`); where that fit looks wrong
    (:func:`~ptyxr.xanes.solver.needs_restart`), refits from the alternative starts of
    :data:`~ptyxr.xanes.solver.RESTARTS` in order, keeping the lowest χ², until one
    looks right. Only the local optimiser differs (MINPACK on all 10 parameters here),
    so where eq. (1) has several minima both methods still end in the same one.
    """
    start, lower, upper = _model.initial_estimates(energy, y, pre_edge_limit)
    valid = np.isfinite(start).all(axis=1) & (np.isfinite(y).sum(axis=1) > len(FIT_PARAMETERS))
    if valid.any():
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            start[valid] = _solver.scan_starts(energy, y[valid], start[valid], lower[valid], upper[valid])
    n_pix = y.shape[0]
    params = np.full((n_pix, len(FIT_PARAMETERS)), np.nan)
    stderr = np.full_like(params, np.nan)
    chisqr = np.full(n_pix, np.nan)
    converged = np.zeros(n_pix, bool)
    n_valid = np.isfinite(y).sum(axis=1)
    rows = np.flatnonzero(valid)
    it = rows
    if progress:
        from ptyxr.progress import progress_bar

        it = progress_bar(rows, enabled=True, desc="fit_xanes (lmfit)", unit="px")
    for k in it:
        params[k], stderr[k], chisqr[k], converged[k] = _lmfit_one(energy, y[k], start[k], lower[k], upper[k])

    def suspicious(idx: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return idx[
                _solver.needs_restart(params[idx], lower[idx], upper[idx], converged[idx], chisqr[idx], n_valid[idx])
            ]

    redo = suspicious(rows)
    for shifts in _solver.RESTARTS if redo.size else ():
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            alt = _solver.restart_start(energy, y[redo], start[redo], lower[redo], upper[redo], shifts)
        for j, k in enumerate(redo):
            p_r, e_r, c_r, ok_r = _lmfit_one(energy, y[k], alt[j], lower[k], upper[k])
            if c_r < chisqr[k] * (1.0 - 1e-9):  # the lower χ² decides, as in the batch solver
                params[k], stderr[k], chisqr[k], converged[k] = p_r, e_r, c_r, ok_r
        redo = suspicious(redo)
        if redo.size == 0:
            break
    # the global search over b2 (the batch solver's): local fits from the other basins of the
    # χ² profile, lowest χ² kept, b2's error widened by the other minima
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        g_rows, g_starts, alt_b2, alt_cost = _solver.global_starts(energy, y, params, chisqr, lower, upper, n_valid)
    if g_rows.size:
        fits = [_lmfit_one(energy, y[k], g_starts[j], lower[k], upper[k]) for j, k in enumerate(g_rows)]
        p_r = np.array([f[0] for f in fits])
        e_r = np.array([f[1] for f in fits])
        c_r = np.array([f[2] for f in fits])
        ok_r = np.array([f[3] for f in fits])
        iters = np.zeros(n_pix, int)
        params, chisqr, _, converged, min_b2, min_cost, stderr = _solver.keep_best(
            params, chisqr, iters, converged, g_rows, p_r, c_r, np.zeros(g_rows.size, int), ok_r, stderr, e_r
        )
        alt_b2, alt_cost = np.concatenate([alt_b2, min_b2], axis=1), np.concatenate([alt_cost, min_cost], axis=1)
        # still behind its white line: the batch solver's physical refits (b2 held near the
        # physical profile points), errors from their curvature (the batch solver's)
        sel = np.flatnonzero(_solver.white_line_behind(params)[g_rows])
        if sel.size:
            r_s = g_rows[sel]
            ok_e = np.isfinite(y[r_s])
            y_s, w_s = np.where(ok_e, y[r_s], 0.0), ok_e.astype(float)  # missing energies: weight 0
            with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
                p_h, c_h, _, ok_h = _solver.physical_refits(
                    energy, y_s, g_starts[sel], lower[r_s], upper[r_s], w_s, 100, 1e-10, 1e-7
                )
                prob_h = _solver._Problem(energy, y_s, w_s)
                cov_h, _, _ = _solver._covariance(prob_h, p_h, lower[r_s], upper[r_s], c_h)
            e_h = np.sqrt(np.einsum("pii->pi", cov_h))
            params, chisqr, _, converged, min_b2, min_cost, stderr = _solver.keep_best(
                params,
                chisqr,
                np.zeros(n_pix, int),
                converged,
                r_s,
                p_h,
                c_h,
                np.zeros(sel.size, int),
                ok_h,
                stderr,
                e_h,
            )
            alt_b2, alt_cost = np.concatenate([alt_b2, min_b2], axis=1), np.concatenate([alt_cost, min_cost], axis=1)
    dof = n_valid - len(FIT_PARAMETERS)
    with np.errstate(invalid="ignore", divide="ignore"):
        redchi = np.where(dof > 0, chisqr / dof, np.nan)
    b2 = FIT_PARAMETERS.index("b2")
    with np.errstate(invalid="ignore"):
        stderr[:, b2] = _solver.widen_edge_stderr(params, stderr[:, b2], chisqr, redchi, alt_b2, alt_cost)
    success = _solver.success_flags(params, lower, upper, converged) & valid
    return _pack(params, stderr, redchi, success)


def _fit_kernel(
    y: np.ndarray,
    energy: np.ndarray,
    method: str,
    pre_edge_limit: float | None,
    progress: bool,
    workers: int | None,
    edge_step: str = "erf",
) -> tuple[np.ndarray, ...]:
    """apply_ufunc kernel: spectra (..., n_E) → 23 arrays (...) (params, stderr, redchi, success, b2 uncertainty).

    With ``edge_step="erf+arctan"`` two more: η and its stderr; the eq. (1) fit (its starts
    and global search) is then refined with the free step shape (:mod:`ptyxr.xanes.freestep`).
    """
    lead = y.shape[:-1]
    rows = np.asarray(y, dtype=float).reshape(-1, energy.size)
    n_par = len(FIT_PARAMETERS)
    if method == "batch":
        res = _solver.fit_batch(energy, rows, pre_edge_limit=pre_edge_limit, progress=progress, workers=workers)
        packed = _pack(res.params, res.stderr, res.redchi, res.success)
        lower, upper = res.lower, res.upper
    else:
        packed = _fit_lmfit_rows(energy, rows, pre_edge_limit, progress=progress)
        _, lower, upper = _model.initial_estimates(energy, rows, pre_edge_limit)
    extra: list[np.ndarray] = []
    if edge_step != "erf":
        packed, eta, eta_stderr = _free_step(energy, rows, packed, lower, upper, method)
        extra = [eta, eta_stderr]
    params = packed[:, :n_par]
    with np.errstate(invalid="ignore"):  # NaN rows (skipped spectra) compare False
        determined = _solver._determined(params, lower, upper)
    if method == "batch" and edge_step == "erf":
        edge = res.edge_uncertainty
        assert edge is not None, "fit_batch fills edge_uncertainty"  # BatchResult types it optional
    else:
        model = _uncertainty.edge_model_error(energy, params, determined, np.isfinite(rows).astype(float))
        edge = _uncertainty.edge_uncertainty(packed[:, n_par + 2], model)
    packed = np.concatenate([packed, edge[:, None], *(e[:, None] for e in extra)], axis=1)
    return tuple(packed[:, k].reshape(lead) for k in range(packed.shape[1]))


def _free_step(
    energy: np.ndarray, rows: np.ndarray, packed: np.ndarray, lower: np.ndarray, upper: np.ndarray, method: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refine packed eq. (1) fits with the free step shape; (packed, η, η stderr).

    b2's error keeps the eq. (1) fit's widening by other minima of the χ² profile (the
    larger of the two errors); ``success`` needs both fits to succeed.
    """
    n_par = len(FIT_PARAMETERS)
    eq1, eq1_err, eq1_ok = packed[:, :n_par], packed[:, n_par : 2 * n_par], packed[:, 2 * n_par + 1] > 0.5
    n_valid = np.isfinite(rows).sum(axis=1)
    if method == "batch":
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            fit = _freestep.refine_free_step(energy, rows, eq1, lower, upper)
        params, stderr, eta, eta_err = fit["params"], fit["stderr"], fit["eta"], fit["eta_stderr"]
        redchi, ok = fit["redchi"], fit["converged"]
    else:
        params, stderr = np.full_like(eq1, np.nan), np.full_like(eq1, np.nan)
        eta, eta_err, redchi = (np.full(len(rows), np.nan) for _ in range(3))
        ok = np.zeros(len(rows), bool)
        for k in np.flatnonzero(np.isfinite(eq1).all(axis=1)):
            params[k], stderr[k], eta[k], eta_err[k], chisqr, ok[k] = _lmfit_free_one(
                energy, rows[k], eq1[k], lower[k], upper[k]
            )
            dof = n_valid[k] - _freestep.N_FREE
            redchi[k] = chisqr / dof if dof > 0 else np.nan
        # η is undefined without a step (b1 = 0), as in the batch refinement
        no_step = ~(params[:, FIT_PARAMETERS.index("b1")] > 0)
        eta[no_step] = eta_err[no_step] = np.nan
    b2 = FIT_PARAMETERS.index("b2")
    with np.errstate(invalid="ignore"):
        stderr[:, b2] = np.fmax(stderr[:, b2], eq1_err[:, b2])
        success = eq1_ok & ok & _solver.success_flags(params, lower, upper, ok)
    return _pack(params, stderr, redchi, success), eta, eta_err


def _noise_kernel(y: np.ndarray, energy: np.ndarray, detrend: bool) -> np.ndarray:
    """σ of the pre-edge points (..., n_pre) → (...): sample std, or std about a fitted line."""
    y = np.asarray(y, dtype=float)
    finite = np.isfinite(y)
    n = finite.sum(axis=-1)
    x = np.broadcast_to(energy - energy.mean(), y.shape)
    yz = np.where(finite, y, 0.0)
    xz = np.where(finite, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_y = yz.sum(axis=-1) / n
        if not detrend:
            ss = (np.where(finite, y - mean_y[..., None], 0.0) ** 2).sum(axis=-1)
            return np.where(n >= 2, np.sqrt(ss / np.maximum(n - 1, 1)), np.nan)  # unbiased variance (ddof = 1)
        mean_x = xz.sum(axis=-1) / n
        dx = np.where(finite, x - mean_x[..., None], 0.0)
        dy = np.where(finite, y - mean_y[..., None], 0.0)
        slope = (dx * dy).sum(axis=-1) / (dx * dx).sum(axis=-1)
        res = dy - slope[..., None] * dx
        # two fitted parameters (ddof = 2)
        return np.where(n >= 3, np.sqrt((res * res).sum(axis=-1) / np.maximum(n - 2, 1)), np.nan)


# ------------------------------------------------------------------ stage
def validate_input(ds: Any, where: str = STAGE) -> xr.Dataset:
    """The input of :func:`fit_xanes` (DESIGN §1c): absorption spectra on > 10 energies, boolean material."""
    ds = schema.require_dataset(ds, where)
    schema.require_variables(ds, (ABSORPTION,), where, "Run ds.ptyxr.spectra() first, or build the stack by hand.")
    if ENERGY not in ds[ABSORPTION].dims:
        raise SchemaError(
            f"{where}: {ABSORPTION!r} has no {ENERGY!r} dim (dims {ds[ABSORPTION].dims}); a "
            f"spectrum per pixel is needed. Stack the energies along {ENERGY!r} (DESIGN §1c)."
        )
    energy = schema.require_energy(ds, where)
    n_par = len(FIT_PARAMETERS)
    if energy.size <= n_par:
        raise SchemaError(
            f"{where}: eq. (1) has {n_par} parameters, so at least {n_par + 1} energies are needed; got {energy.size}."
        )
    schema.validate_spectra(ds, where, minimum_energies=n_par + 1)
    if MATERIAL in ds:
        if ds[MATERIAL].dtype != bool:
            raise SchemaError(
                f"{where}: {MATERIAL!r} must be boolean (True inside a particle), got {ds[MATERIAL].dtype}."
            )
        schema.require_dims(ds[MATERIAL], (Y, X), where)
    return ds


def _check_options(ds: xr.Dataset, method: str, noise: str, pre_edge_limit: float) -> np.ndarray:
    """Check the fit options against the validated input; return its energies [eV]."""
    if method not in METHODS:
        raise ValueError(f"{STAGE}: method must be one of {METHODS}, got {method!r}.")
    if noise not in NOISE_METHODS:
        raise ValueError(f"{STAGE}: noise must be one of {NOISE_METHODS}, got {noise!r}.")
    energy = np.asarray(ds[ENERGY].values, dtype=float)
    n_pre = int(np.sum(energy < pre_edge_limit))
    if n_pre < MIN_PRE_EDGE_POINTS:
        raise SchemaError(
            f"{STAGE}: the noise σ needs at least {MIN_PRE_EDGE_POINTS} pre-edge energies below "
            f"pre_edge_limit={pre_edge_limit} eV, got {n_pre}; lower energies are missing or "
            "pre_edge_limit is too low (paper: 5466 eV, four points)."
        )
    return energy


def _is_real(value: Any) -> bool:
    """A finite real number (not bool, not text: np.isfinite would raise a TypeError on those)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and bool(np.isfinite(value))  # type: ignore[call-overload]


@stage(STAGE, validate=validate_input, exclude=("progress",))
def fit_xanes(
    ds: xr.Dataset,
    method: Literal["batch", "lmfit"] = "batch",
    noise: Literal["paper", "detrended"] = "paper",
    pre_edge_limit: float = 5466.0,
    material: xr.DataArray | None = None,
    progress: bool = True,
    chunks: Any = None,
    keep_fit_curve: bool = False,
    min_edge_significance: float = EDGE_SIGNIFICANCE,
    max_edge_stderr: float = LOCATED_EDGE_STDERR,
    edge_step: Literal["erf", "erf+arctan"] = "erf",
) -> xr.Dataset:
    """Fit paper eq. (1) to every pixel's absorption spectrum (DESIGN §1d).

    Parameters
    ----------
    ds : xarray.Dataset
        With ``absorption`` (energy, y, x) or (particle, energy, y, x) and coord
        ``energy`` [eV]; optional ``material`` (y, x) bool. NaN pixels are skipped; NaN
        values inside a spectrum are left out of its fit.
    method : {"batch", "lmfit"}
        ``"batch"``: the vectorised variable-projection solver
        (:func:`ptyxr.xanes.solver.fit_batch`); ``"lmfit"``: lmfit per pixel (the
        reference, ≈ 100× slower), same starting values and bounds.
    noise : {"paper", "detrended"}
        σ of the pre-edge points (E < ``pre_edge_limit``): ``"paper"`` = their sample
        standard deviation (ddof = 1), which also measures any pre-edge slope;
        ``"detrended"`` = the std about a straight-line fit of them (ddof = 2).
    pre_edge_limit : float
        Energies below it are pre-edge points [eV] (paper: 5466; at least 3 needed).
    material : xarray.DataArray, optional
        Boolean (y, x) mask overriding ``ds.material`` for ``fit_valid``.
    progress : bool
        Progress bar (eager input only; on dask input progress is dask's business).
    chunks : int or dict, optional
        Chunk the absorption over y/x (e.g. ``{"y": 64, "x": 64}``) and fit lazily with
        dask; on dask input, the existing chunks are used (energy merged into one chunk).
    keep_fit_curve : bool
        Also return ``absorption_fit`` (eq. (1) at the fitted parameters).
    min_edge_significance : float
        ``fit_valid`` also needs b1 ≥ this × its standard error: a detected edge. 0 keeps
        only the paper's b1 ≥ σ (with b2 located, ``max_edge_stderr``).
    max_edge_stderr : float
        ``fit_valid`` needs the edge energy's standard error below this [eV]. Default
        :data:`LOCATED_EDGE_STDERR` = 0.5 eV, as the demo and presets: an edge located well
        enough to read the maps (≈ 0.05 eV is typical in a particle's bulk). It drops the
        weak-edge pixels of a particle's thin rim, whose fitted edges reconstruction artefacts
        bias high (docs/paper-preset.md), and bimodal fits, whose b2 error the solver widens to
        cover the other minimum. ``EDGE_RANGE`` (8 eV, the box b2 may move in) only demands a
        located edge, as the paper's validity did.
    edge_step : {"erf", "erf+arctan"}
        The edge step's shape. ``"erf"`` (default): paper eq. (1), b1·½[1 + erf(z)],
        z = (E − b2)/b3. ``"erf+arctan"``: a step of free shape
        b1·[(1 − η)·½(1 + erf z) + η·(½ + arctan(√π z)/π)] with η ∈ [0, 1] fitted (both
        steps have their half height and inflection at b2 and the slope 1/(√π·b3) there):
        for edges with Lorentzian (core-hole) broadening, on which eq. (1) biases b2 high by
        up to ~1 eV (:mod:`ptyxr.xanes.freestep`). The eq. (1) fit is refined with it (both
        methods), and ``eta``/``eta_stderr`` are added; ``redchi`` is then Σr²/(N − 11).

    Returns
    -------
    xarray.Dataset
        ``ds`` plus ``a, b1, b2, b3, c11, c12, c13, c21, c22, c23`` and their
        ``<name>_stderr`` (σ² = redchi·diag((JᵀJ)⁻¹); NaN where undetermined, e.g. centre
        and width of a zero-height Lorentzian), ``redchi`` (Σr²/(N − 10), unweighted,
        so ≈ noise² for a noise-limited fit), ``success``, ``noise`` (attr ``method``)
        ``b2_uncertainty`` [eV] (√(b2_stderr² + model error²): the b2 shift that an
        arctan admixture of 0.1 in the edge step and a white-line half-width asymmetry of
        0.1 would cause, :mod:`ptyxr.xanes.uncertainty`; b2's error bar on spectra that
        eq. (1) does not describe exactly),
        ``fit_valid`` = material (if known) & (b1 ≥ noise) & (b1 > MIN_RELATIVE_EDGE·max|μt|) & success
        & (b1 ≥ ``min_edge_significance`` × b1_stderr) & (b2_stderr < ``max_edge_stderr``), and
        ``pre_edge_valid`` = fit_valid & the pre-edge width not collapsed onto its lower
        bound (where False, PE/Δμt is unreliable; DESIGN §2b); lazy (dask) when the
        input or ``chunks`` is.

    Raises
    ------
    SchemaError
        No ``absorption``/``energy`` dim, ≤ 10 energies, fewer than 3 pre-edge energies,
        all-NaN absorption, non-boolean ``material``, ``min_edge_significance`` < 0 or
        ``max_edge_stderr`` ≤ 0.
    """
    if not (_is_real(min_edge_significance) and min_edge_significance >= 0):
        raise SchemaError(f"{STAGE}: min_edge_significance must be a number ≥ 0, got {min_edge_significance!r}.")
    if not (_is_real(max_edge_stderr) and max_edge_stderr > 0):
        raise SchemaError(f"{STAGE}: max_edge_stderr must be a number > 0 [eV], got {max_edge_stderr!r}.")
    energy = _check_options(ds, method, noise, pre_edge_limit)
    if edge_step not in EDGE_STEPS:
        raise ValueError(f"{STAGE}: edge_step must be one of {EDGE_STEPS}, got {edge_step!r}.")
    n_out = _N_OUT + (2 if edge_step != "erf" else 0)
    absorption = ds[ABSORPTION]
    if chunks is not None:
        absorption = absorption.chunk(chunks if isinstance(chunks, dict) else {Y: chunks, X: chunks})
    lazy = absorption.chunks is not None
    if lazy:
        absorption = absorption.chunk({ENERGY: -1})  # a spectrum must sit in one block

    # Not the energy-dependent 1/σ weights: σ is one number per pixel, which does not
    # change the parameters or their (redchi-scaled) errors, only redchi's scale.
    outputs = xr.apply_ufunc(
        _fit_kernel,
        absorption,
        input_core_dims=[[ENERGY]],
        output_core_dims=[[]] * n_out,
        kwargs={
            "energy": energy,
            "method": method,
            "pre_edge_limit": pre_edge_limit,
            "progress": progress and not lazy,
            "workers": 1 if lazy else None,  # on dask input, dask's scheduler parallelises
            "edge_step": edge_step,
        },
        dask="parallelized",
        output_dtypes=[float] * n_out,
    )
    n_par = len(FIT_PARAMETERS)
    new: dict[str, xr.DataArray] = {}
    for k, name in enumerate(FIT_PARAMETERS):
        new[name] = schema.with_attrs(outputs[k], name)
        new[name + STDERR_SUFFIX] = schema.with_attrs(outputs[n_par + k], name + STDERR_SUFFIX)
    new[REDCHI] = schema.with_attrs(outputs[2 * n_par], REDCHI)
    new[SUCCESS] = schema.with_attrs(outputs[2 * n_par + 1] > 0.5, SUCCESS)
    new[EDGE_UNCERTAINTY] = schema.with_attrs(outputs[2 * n_par + 2], EDGE_UNCERTAINTY)
    if edge_step != "erf":
        new[EDGE_ARCTAN_FRACTION] = schema.with_attrs(outputs[_N_OUT], EDGE_ARCTAN_FRACTION)
        new[EDGE_ARCTAN_FRACTION + STDERR_SUFFIX] = schema.with_attrs(
            outputs[_N_OUT + 1], EDGE_ARCTAN_FRACTION + STDERR_SUFFIX
        )

    pre = absorption.isel({ENERGY: np.flatnonzero(energy < pre_edge_limit)})
    sigma = xr.apply_ufunc(
        _noise_kernel,
        pre,
        input_core_dims=[[ENERGY]],
        kwargs={"energy": energy[energy < pre_edge_limit], "detrend": noise == "detrended"},
        dask="parallelized",
        output_dtypes=[float],
    )
    new[NOISE] = schema.with_attrs(sigma, NOISE, method=noise, pre_edge_limit=float(pre_edge_limit))

    # b1 ≥ σ alone passes a flat noise-free spectrum (σ = 0, b1 ≈ 1e-16): also demand an edge
    # above the solver's round-off, MIN_RELATIVE_EDGE of the spectrum's largest |μt|
    floor = MIN_RELATIVE_EDGE * abs(absorption).max(ENERGY)
    valid = (new["b1"] >= new[NOISE]) & (new["b1"] > floor) & new[SUCCESS]
    # a detected and located edge: b1 clear of zero by its own error, b2 known to better than
    # max_edge_stderr (default: the box it may move in; NaN errors = undetermined compare False)
    valid = valid & (new["b1"] >= min_edge_significance * new["b1" + STDERR_SUFFIX])
    valid = valid & (new["b2" + STDERR_SUFFIX] < max_edge_stderr)
    mask = material if material is not None else ds.get(MATERIAL)
    if mask is not None:
        valid = valid & mask.astype(bool)
    new[FIT_VALID] = schema.with_attrs(valid.transpose(*new["b1"].dims), FIT_VALID)
    # DESIGN §2b: a pre-edge width pinned at its lower bound flags PE/Δμt, not the whole fit
    collapsed = (new["c11"] > 0) & (abs(new["c13"] - _model.WIDTH_BOUNDS["c13"][0]) <= 1e-7)
    new[PRE_EDGE_VALID] = schema.with_attrs(new[FIT_VALID] & ~collapsed, PRE_EDGE_VALID)

    if keep_fit_curve:
        e: Any = ds[ENERGY]  # the numpy kernels broadcast DataArrays too
        v: dict[str, Any] = {name: new[name] for name in FIT_PARAMETERS}  # xarray arithmetic: stays lazy on dask
        constant, edge, pre_edge, white_line = _model.eq1_terms(e, *(v[name] for name in FIT_PARAMETERS))
        if edge_step != "erf":
            edge = v["b1"] * mixed_step(e, v["b2"], v["b3"], new[EDGE_ARCTAN_FRACTION])
        curve = constant + edge + pre_edge + white_line
        new[ABSORPTION_FIT] = schema.with_attrs(curve.transpose(*absorption.dims), ABSORPTION_FIT)

    return ds.assign(new)
