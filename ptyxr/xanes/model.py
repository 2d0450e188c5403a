"""The XANES model of paper eq. (1), its lmfit form, starting values and bounds.

Uematsu et al. (PCCP 2023) eq. (1)::

    μt(E) = a + b1/2·[1 + erf((E − b2)/b3)] + Σ_{i=1,2} c_i1 / (1 + ((E − c_i2)/c_i3)²)

a constant background, an error-function edge step (height b1 = Δμt, centre b2 = edge
energy, width b3) and two Lorentzians: the pre-edge peak (i = 1) and the white line
(i = 2), each with height c_i1, centre c_i2 and half width at half maximum c_i3. The
pre-edge intensity is PE = π·c11·c13 (the Lorentzian's area).

lmfit form (:func:`xanes_model`): ``ConstantModel() + StepModel(form="erf",
prefix="edge_") + LorentzianModel(prefix="pre_") + LorentzianModel(prefix="wl_")``.
lmfit's line shapes (``lmfit.lineshapes``, checked against lmfit 1.3 source):

- ``constant(x, c) = c``  →  a = ``c``
- ``step(x, amplitude, center, sigma, form="erf") = amplitude·½(1 + erf((x − center)/sigma))``
  →  b1 = ``edge_amplitude``, b2 = ``edge_center``, b3 = ``edge_sigma`` (no √2: the paper's
  b3 is lmfit's sigma)
- ``lorentzian(x, amplitude, center, sigma) = amplitude/(π·sigma) / (1 + ((x − center)/sigma)²)``
  →  c11 = ``pre_amplitude/(π·pre_sigma)`` (the height), c12 = ``pre_center``,
  c13 = ``pre_sigma``; so PE = π·c11·c13 = ``pre_amplitude``. Likewise c21/c22/c23 from ``wl_``.

The paper names are added to the lmfit Parameters as derived (``expr``) parameters, so
lmfit propagates their standard errors with correlations; ``pe`` (= PE) and
``pe_ratio`` (= PE/Δμt) are derived too.

Everything here except :func:`xanes_model`, :func:`fit_spectrum` and
:func:`paper_params` is numpy only and vectorised over pixels (rows).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy.special import erf

from ptyxr.schema import FIT_PARAMETERS

#: Paper parameter names in eq. (1) order.
PARAMETERS: tuple[str, ...] = FIT_PARAMETERS
#: Parameters entering eq. (1) linearly (solved exactly by the batch solver).
LINEAR: tuple[str, ...] = ("a", "b1", "c11", "c21")
#: Parameters entering eq. (1) nonlinearly (iterated by Levenberg–Marquardt).
NONLINEAR: tuple[str, ...] = ("b2", "b3", "c12", "c13", "c22", "c23")
#: Derived quantities also reported by :func:`paper_params`.
DERIVED: tuple[str, ...] = ("pe", "pe_ratio")

#: lmfit parameter name (or expression) of each paper parameter and derived quantity.
LMFIT_EXPRESSIONS: dict[str, str] = {
    "a": "c",
    "b1": "edge_amplitude",
    "b2": "edge_center",
    "b3": "edge_sigma",
    "c11": "pre_amplitude/(pi*pre_sigma)",
    "c12": "pre_center",
    "c13": "pre_sigma",
    "c21": "wl_amplitude/(pi*wl_sigma)",
    "c22": "wl_center",
    "c23": "wl_sigma",
    "pe": "pre_amplitude",
    "pe_ratio": "pre_amplitude/edge_amplitude",
}
#: lmfit's own derived parameters, dropped before fitting (asteval re-evaluates every
#: expression at each function call: with them a fit is ≈ 5× slower, DESIGN §2b).
_LMFIT_DERIVED = ("pre_fwhm", "pre_height", "wl_fwhm", "wl_height")

#: Bounds of the widths [eV] (b3: erf edge width; c13/c23: Lorentzian half widths). The
#: lower bounds stop the pre-edge Lorentzian collapsing onto one noisy point (the paper
#: grid has 1 eV steps over the pre-edge peak); the upper ones stop a Lorentzian or the
#: edge from degenerating into a slope across the window.
WIDTH_BOUNDS: dict[str, tuple[float, float]] = {"b3": (0.5, 10.0), "c13": (0.5, 4.0), "c23": (0.5, 15.0)}
#: How far [eV] the edge energy b2 may move from its starting estimate.
EDGE_RANGE: float = 8.0
#: Default starting widths [eV] of the pre-edge and white-line Lorentzians.
START_WIDTHS: dict[str, float] = {"c13": 1.0, "c23": 3.0}

_SQRT_PI = np.sqrt(np.pi)


class ParamGuess(NamedTuple):
    """Starting value and bounds of one parameter."""

    value: float
    min: float
    max: float


# ------------------------------------------------------------------ eq. (1)
def step(energy: np.ndarray, b2: Any, b3: Any) -> np.ndarray:
    """Unit erf step ½[1 + erf((E − b2)/b3)] (dimensionless)."""
    return 0.5 * (1.0 + erf((energy - b2) / b3))


def lorentzian(energy: np.ndarray, center: Any, hwhm: Any) -> np.ndarray:
    """Unit-height Lorentzian 1/(1 + ((E − center)/hwhm)²) (dimensionless)."""
    u = (energy - center) / hwhm
    return 1.0 / (1.0 + u * u)


def eq1(
    energy: Any, a: Any, b1: Any, b2: Any, b3: Any, c11: Any, c12: Any, c13: Any, c21: Any, c22: Any, c23: Any
) -> np.ndarray:
    """Paper eq. (1): μt(E) from the ten paper parameters (numpy, broadcasting).

    Parameters
    ----------
    energy : array_like
        Photon energy [eV].
    a, b1, c11, c21 : array_like
        Background, edge jump and Lorentzian heights (dimensionless, μt units).
    b2, b3, c12, c13, c22, c23 : array_like
        Edge centre/width and Lorentzian centres/half widths [eV].

    Returns
    -------
    numpy.ndarray
        μt at ``energy`` (dimensionless).
    """
    energy = np.asarray(energy, dtype=float)
    return a + b1 * step(energy, b2, b3) + c11 * lorentzian(energy, c12, c13) + c21 * lorentzian(energy, c22, c23)


def eq1_array(energy: np.ndarray, params: np.ndarray) -> np.ndarray:
    """eq. (1) for parameter rows ``params`` (..., 10) in :data:`PARAMETERS` order → (..., n_E)."""
    p = np.moveaxis(np.asarray(params, dtype=float), -1, 0)[..., None]
    return eq1(np.asarray(energy, dtype=float), *p)


def pre_edge_ratio(params: np.ndarray) -> np.ndarray:
    """PE/Δμt = π·c11·c13/b1 [eV] from parameter rows (..., 10)."""
    p = np.asarray(params, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.pi * p[..., 4] * p[..., 6] / p[..., 1]


def pre_edge_ratio_stderr(params: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """Standard error [eV] of PE/Δμt by linear propagation through the full covariance.

    Parameters
    ----------
    params : ndarray (..., 10)
    covariance : ndarray (..., 10, 10)
    """
    p = np.asarray(params, dtype=float)
    grad = np.zeros(p.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = pre_edge_ratio(p)
        grad[..., 1] = -ratio / p[..., 1]
        grad[..., 4] = np.pi * p[..., 6] / p[..., 1]
        grad[..., 6] = np.pi * p[..., 4] / p[..., 1]
    cov = np.nan_to_num(np.asarray(covariance, dtype=float), nan=0.0)
    var = np.einsum("...i,...ij,...j->...", grad, cov, grad)
    return np.sqrt(np.where(var >= 0, var, np.nan))


# ------------------------------------------------------- starting values
def _rows(energy: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    energy = np.asarray(energy, dtype=float)
    mu = np.asarray(mu, dtype=float)
    if energy.ndim != 1 or mu.shape[-1] != energy.size:
        raise ValueError(f"mu's last axis ({mu.shape}) must match energy ({energy.shape})")
    return energy, mu.reshape(-1, energy.size)


def _interp_rows(energy: np.ndarray, values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Linear interpolation of each row of ``values`` at its own point ``x`` (clamped)."""
    x = np.clip(x, energy[0], energy[-1])
    j = np.clip(np.searchsorted(energy, x) - 1, 0, energy.size - 2)
    t = (x - energy[j]) / (energy[j + 1] - energy[j])
    rows = np.arange(values.shape[0])
    return values[rows, j] * (1 - t) + values[rows, j + 1] * t


def _pre_edge_mask(energy: np.ndarray, pre_edge_limit: float | None) -> np.ndarray:
    mask = energy < pre_edge_limit if pre_edge_limit is not None else np.zeros(energy.size, bool)
    if mask.sum() < 1:  # no pre-edge region given: the first tenth of the window (≥ 3 points)
        mask = np.arange(energy.size) < max(3, energy.size // 10)
    return mask


def initial_estimates(
    energy: np.ndarray, mu: np.ndarray, pre_edge_limit: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised per-spectrum starting values and bounds for eq. (1).

    Heuristics (each spectrum on its own): a = mean of the pre-edge points
    (E < ``pre_edge_limit``); b1 = mean of the last two points − a; the white line is the
    maximum after the pre-edge region; the edge b2 is the last upward crossing of half
    the edge jump before the white line (robust against a pre-edge peak taller than
    half the jump, as in V2O5, where the maximum derivative would pick the pre-edge);
    b3 from the slope there (erf slope at the centre = b1/(b3√π)); after removing that
    step, the pre-edge centre is the largest residual before the edge and the white line
    centre the largest one after it. Heights start strictly positive (lmfit cannot leave
    a bound it starts on).

    Bounds: a free; b1, c11, c21 ≥ 0; b2 within ±:data:`EDGE_RANGE` of its start and inside
    the window; widths in :data:`WIDTH_BOUNDS`; the pre-edge centre between the first
    energy at or above ``pre_edge_limit`` (minus half a step) and 1 eV below the edge
    start; the white-line centre from 3 eV below the edge start to the window's end.

    Parameters
    ----------
    energy : ndarray (n_E,)
        Photon energies [eV], strictly increasing.
    mu : ndarray (..., n_E)
        Absorption spectra μt; NaN values are ignored, all-NaN spectra give NaN rows.
    pre_edge_limit : float, optional
        Energies below it are pre-edge points [eV] (paper: 5466).

    Returns
    -------
    start, lower, upper : ndarray (P, 10)
        In :data:`PARAMETERS` order, P = number of spectra.
    """
    energy, y = _rows(energy, mu)
    n_pix, n_e = y.shape
    e_min, e_max = energy[0], energy[-1]
    finite = np.isfinite(y)
    valid_row = finite.sum(axis=1) >= 3
    y0 = np.where(finite, y, np.nan)
    pre = _pre_edge_mask(energy, pre_edge_limit)

    with np.errstate(invalid="ignore", divide="ignore"):
        a0 = _nanmean(y0[:, pre])
        last = _last_finite(y0, 2)
        b1_0 = last - a0
        tiny = 1e-6 * np.maximum(np.nanmax(np.abs(y0), axis=1, initial=0.0, where=finite), 1e-12)
        b1_0 = np.where(b1_0 > tiny, b1_0, tiny)
        yn = (y0 - a0[:, None]) / b1_0[:, None]

    after_pre = np.arange(n_e) >= pre.sum()
    search = np.where(finite & after_pre, yn, -np.inf)
    i_wl = np.argmax(search, axis=1)
    idx = np.arange(n_e)
    below = (yn < 0.5) & finite & (idx < i_wl[:, None]) & after_pre
    has = below.any(axis=1)
    j = n_e - 1 - np.argmax(below[:, ::-1], axis=1)  # last index below half height
    j = np.clip(np.where(has, j, i_wl - 1), 0, n_e - 2)
    rows = np.arange(n_pix)
    lo_v, hi_v = yn[rows, j], yn[rows, j + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.clip(np.where(hi_v > lo_v, (0.5 - lo_v) / (hi_v - lo_v), 0.5), 0.0, 1.0)
    b2_0 = energy[j] + t * (energy[j + 1] - energy[j])
    b2_0 = np.where(np.isfinite(b2_0), b2_0, 0.5 * (e_min + e_max))

    yn_filled = np.where(finite, yn, 0.0)
    delta = 1.5
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (_interp_rows(energy, yn_filled, b2_0 + delta) - _interp_rows(energy, yn_filled, b2_0 - delta)) / (
            2 * delta
        )
        b3_0 = np.clip(np.where(slope > 0, 1.0 / (_SQRT_PI * slope), 3.0), 1.0, 5.0)

    residual = yn - step(energy, b2_0[:, None], b3_0[:, None])
    if pre_edge_limit is not None and np.any(energy >= pre_edge_limit):
        k = int(np.argmax(energy >= pre_edge_limit))
        c12_lo = energy[k] - (0.5 * (energy[k] - energy[k - 1]) if k > 0 else 0.0)
    else:
        c12_lo = e_min
    c12_hi = np.maximum(b2_0 - 1.0, c12_lo + 1.0)
    pre_window = (energy >= c12_lo) & (energy[None, :] <= c12_hi[:, None]) & finite
    r_pre = np.where(pre_window, residual, -np.inf)
    i_pre = np.argmax(r_pre, axis=1)
    c12_0 = np.where(pre_window.any(axis=1), energy[i_pre], np.clip(b2_0 - 5.0, c12_lo, c12_hi))
    c11_0 = np.maximum(np.where(pre_window.any(axis=1), r_pre[rows, i_pre], 0.0), 0.05) * b1_0

    c22_lo = np.maximum(b2_0 - 3.0, e_min)
    wl_window = (energy[None, :] >= b2_0[:, None]) & finite
    r_wl = np.where(wl_window, residual, -np.inf)
    i_wl2 = np.argmax(r_wl, axis=1)
    c22_0 = np.where(wl_window.any(axis=1), energy[i_wl2], np.minimum(b2_0 + 5.0, e_max))
    c21_0 = np.maximum(np.where(wl_window.any(axis=1), r_wl[rows, i_wl2], 0.0), 0.05) * b1_0

    start = np.stack(
        [
            a0,
            b1_0,
            b2_0,
            b3_0,
            c11_0,
            c12_0,
            np.full(n_pix, START_WIDTHS["c13"]),
            c21_0,
            c22_0,
            np.full(n_pix, START_WIDTHS["c23"]),
        ],
        axis=1,
    )
    inf = np.full(n_pix, np.inf)
    zero = np.zeros(n_pix)
    full = np.full
    lower = np.stack(
        [
            -inf,
            zero,
            np.maximum(b2_0 - EDGE_RANGE, e_min),
            full(n_pix, WIDTH_BOUNDS["b3"][0]),
            zero,
            full(n_pix, c12_lo),
            full(n_pix, WIDTH_BOUNDS["c13"][0]),
            zero,
            c22_lo,
            full(n_pix, WIDTH_BOUNDS["c23"][0]),
        ],
        axis=1,
    )
    upper = np.stack(
        [
            inf,
            inf,
            np.minimum(b2_0 + EDGE_RANGE, e_max),
            full(n_pix, WIDTH_BOUNDS["b3"][1]),
            inf,
            c12_hi,
            full(n_pix, WIDTH_BOUNDS["c13"][1]),
            inf,
            full(n_pix, e_max),
            full(n_pix, WIDTH_BOUNDS["c23"][1]),
        ],
        axis=1,
    )
    start = np.clip(start, lower, upper)
    start[~valid_row] = lower[~valid_row] = upper[~valid_row] = np.nan
    return start, lower, upper


def _nanmean(values: np.ndarray) -> np.ndarray:
    finite = np.isfinite(values)
    count = finite.sum(axis=1)
    total = np.where(finite, values, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _last_finite(values: np.ndarray, k: int) -> np.ndarray:
    """Mean of the last ``k`` finite values of each row."""
    finite = np.isfinite(values)
    rank = np.cumsum(finite[:, ::-1], axis=1)[:, ::-1]  # 1 = last finite value
    take = finite & (rank <= k)
    count = take.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(take, values, 0.0).sum(axis=1) / count, np.nan)


def guess(energy: Any, mu: Any, pre_edge_limit: float | None = None, scan: bool = True) -> dict[str, ParamGuess]:
    """Starting values and bounds of eq. (1) for one spectrum, by paper name.

    Parameters
    ----------
    energy : array_like (n_E,)
        Photon energies [eV].
    mu : array_like (n_E,)
        Absorption μt.
    pre_edge_limit : float, optional
        Energies below it are pre-edge points [eV].
    scan : bool
        Refine the heuristic start by the batch solver's start scan (a few edge
        positions and widths, linear parameters solved exactly; see
        :func:`ptyxr.xanes.solver.scan_starts`), exactly as ``fit_xanes`` does.

    Returns
    -------
    dict
        ``{name: ParamGuess(value, min, max)}`` for the ten paper parameters.
    """
    energy = np.asarray(energy, dtype=float)
    start, lower, upper = initial_estimates(energy, np.asarray(mu, dtype=float)[None, :], pre_edge_limit)
    if scan:
        from ptyxr.xanes.solver import scan_starts

        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            start = scan_starts(energy, np.asarray(mu, dtype=float)[None, :], start, lower, upper)
    return {
        name: ParamGuess(float(start[0, i]), float(lower[0, i]), float(upper[0, i]))
        for i, name in enumerate(PARAMETERS)
    }


# ------------------------------------------------------------------ lmfit
def xanes_model():
    """The lmfit composite model of eq. (1) (see the module docstring for the names)."""
    from lmfit.models import ConstantModel, LorentzianModel, StepModel

    return (
        ConstantModel()
        + StepModel(form="erf", prefix="edge_")
        + LorentzianModel(prefix="pre_")
        + LorentzianModel(prefix="wl_")
    )


def lmfit_parameters(model: Any, start: dict[str, ParamGuess]):
    """lmfit Parameters for ``model`` from paper-named starts/bounds.

    The Lorentzian amplitudes start at π·height·width and stay ≥ 0 (heights ≥ 0). Only
    the 10 varying lmfit parameters are kept; :func:`paper_params` maps them back.
    """
    params = model.make_params()
    for name in _LMFIT_DERIVED:
        del params[name]

    def setp(name: str, value: float, lo: float, hi: float) -> None:
        params[name].set(value=value, min=lo, max=hi)

    g = start
    setp("c", g["a"].value, g["a"].min, g["a"].max)
    setp("edge_amplitude", g["b1"].value, g["b1"].min, g["b1"].max)
    setp("edge_center", g["b2"].value, g["b2"].min, g["b2"].max)
    setp("edge_sigma", g["b3"].value, g["b3"].min, g["b3"].max)
    for prefix, h, c, w in (("pre_", "c11", "c12", "c13"), ("wl_", "c21", "c22", "c23")):
        setp(prefix + "center", g[c].value, g[c].min, g[c].max)
        setp(prefix + "sigma", g[w].value, g[w].min, g[w].max)
        setp(prefix + "amplitude", np.pi * g[h].value * g[w].value, 0.0, np.inf)
    return params


def fit_spectrum(
    energy: Any,
    mu: Any,
    weights: Any = None,
    pre_edge_limit: float | None = None,
    start: dict[str, ParamGuess] | None = None,
    **kw: Any,
):
    """Fit eq. (1) to one spectrum with lmfit (the reference method).

    Parameters
    ----------
    energy : array_like (n_E,)
        Photon energies [eV].
    mu : array_like (n_E,)
        Absorption μt; NaN points are omitted.
    weights : array_like (n_E,), optional
        lmfit weights (1/σ per point); None = unweighted.
    pre_edge_limit : float, optional
        Pre-edge limit [eV] for the starting values (:func:`guess`).
    start : dict, optional
        Starting values and bounds as returned by :func:`guess` (default: ``guess(...)``).
    **kw
        Passed to ``lmfit.Model.fit`` (e.g. ``method``, ``max_nfev``).

    Returns
    -------
    lmfit.model.ModelResult
        Use :func:`paper_params` for the paper-named values and errors.
    """
    energy = np.asarray(energy, dtype=float)
    mu = np.asarray(mu, dtype=float)
    keep = np.isfinite(mu)
    if weights is not None:
        weights = np.broadcast_to(np.asarray(weights, dtype=float), mu.shape)
        keep &= np.isfinite(weights)
        weights = weights[keep]
    if start is None:
        start = guess(energy[keep], mu[keep], pre_edge_limit)
    model = xanes_model()
    params = lmfit_parameters(model, start)
    return model.fit(mu[keep], params, x=energy[keep], weights=weights, **kw)


_LMFIT_ORDER = (
    "c",
    "edge_amplitude",
    "edge_center",
    "edge_sigma",
    "pre_amplitude",
    "pre_center",
    "pre_sigma",
    "wl_amplitude",
    "wl_center",
    "wl_sigma",
)


def _paper_from_lmfit(v: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Paper parameters + (pe, pe_ratio) from lmfit values, and their Jacobian (12, 10)."""
    names = _LMFIT_ORDER
    x = np.array([v[n] for n in names])
    out = x.copy()
    jac = np.eye(len(names))
    for amp, sig in ((4, 6), (7, 9)):  # height = amplitude/(π σ)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[amp] = x[amp] / (np.pi * x[sig])
            jac[amp, amp] = 1.0 / (np.pi * x[sig])
            jac[amp, sig] = -x[amp] / (np.pi * x[sig] ** 2)
    pe = np.zeros(len(names))
    pe[4] = 1.0
    ratio = np.zeros(len(names))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio[4], ratio[1] = 1.0 / x[1], -x[4] / x[1] ** 2
        values = np.concatenate([out, [x[4], x[4] / x[1]]])
    return values, np.vstack([jac, pe, ratio])


def paper_params(result: Any, covariance: bool = False) -> dict[str, Any]:
    """Paper-named values and standard errors of an lmfit result.

    The errors are lmfit's covariance (``result.covar``, already scaled by redchi)
    propagated linearly to the paper parameters, e.g. c11 = amplitude/(π σ).

    Parameters
    ----------
    result : lmfit.model.ModelResult
        From :func:`fit_spectrum`.
    covariance : bool
        Also return ``"covariance"``: the (10, 10) covariance of the paper parameters.

    Returns
    -------
    dict
        ``{name: value, name + "_stderr": stderr}`` for the ten paper parameters plus
        ``pe`` and ``pe_ratio``; stderr is NaN where lmfit could not estimate it.
    """
    values, jac = _paper_from_lmfit({n: result.params[n].value for n in _LMFIT_ORDER})
    cov_full = np.full((len(values), len(values)), np.nan)
    if result.covar is not None:
        c = np.zeros((len(_LMFIT_ORDER), len(_LMFIT_ORDER)))
        pos = [_LMFIT_ORDER.index(n) for n in result.var_names]
        c[np.ix_(pos, pos)] = result.covar
        cov_full = jac @ c @ jac.T
    out: dict[str, Any] = {}
    for k, name in enumerate((*PARAMETERS, *DERIVED)):
        out[name] = float(values[k])
        var = cov_full[k, k]
        out[name + "_stderr"] = float(np.sqrt(var)) if np.isfinite(var) and var >= 0 else float("nan")
    if covariance:
        out["covariance"] = cov_full[:10, :10]
    return out
