"""Starting values and bounds of eq. (1) for many spectra at once (numpy only).

Used by the batch solver (:mod:`ptyxr.xanes.solver`) and by :func:`ptyxr.xanes.model.guess`
(the lmfit front end); both import them from here, so the solver does not depend on the
lmfit side and the lmfit side may use the solver (``scan_starts``) without an import cycle.
"""

from __future__ import annotations

import numpy as np

from ptyxr.schema import FIT_PARAMETERS
from ptyxr.xanes.lineshapes import step

__all__ = ["EDGE_RANGE", "LINEAR", "NONLINEAR", "PARAMETERS", "START_WIDTHS", "WIDTH_BOUNDS", "initial_estimates"]

#: Paper parameter names in eq. (1) order.
PARAMETERS: tuple[str, ...] = FIT_PARAMETERS
#: Parameters entering eq. (1) linearly (solved exactly by the batch solver).
LINEAR: tuple[str, ...] = ("a", "b1", "c11", "c21")
#: Parameters entering eq. (1) nonlinearly (iterated by Levenberg–Marquardt).
NONLINEAR: tuple[str, ...] = ("b2", "b3", "c12", "c13", "c22", "c23")
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
