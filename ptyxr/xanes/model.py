"""The XANES model of paper eq. (1): its lmfit form, starting values and derived quantities.

The line shapes and eq. (1) itself are defined in :mod:`ptyxr.xanes.lineshapes`, the
vectorised starting values and bounds in :mod:`ptyxr.xanes.starts`; both are re-exported
here. This module sits above the batch solver (:func:`guess` refines its starts with
:func:`ptyxr.xanes.solver.scan_starts`); the solver imports only those two modules, so
the two no longer import each other.

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

from ptyxr.xanes.lineshapes import eq1, eq1_array, eq1_terms, lorentzian, step  # noqa: F401  (re-exported)
from ptyxr.xanes.starts import (  # noqa: F401  (re-exported: the model's starting values and bounds)
    EDGE_RANGE,
    LINEAR,
    NONLINEAR,
    PARAMETERS,
    START_WIDTHS,
    WIDTH_BOUNDS,
    initial_estimates,
)

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


class ParamGuess(NamedTuple):
    """Starting value and bounds of one parameter."""

    value: float
    min: float
    max: float


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
