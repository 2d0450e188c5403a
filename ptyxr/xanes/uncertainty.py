"""Edge-energy (b2) uncertainty that includes eq. (1)'s model error (issue 11 point 4).

The standard error of b2 (curvature √(redchi·[(JᵀJ)⁻¹]_b2b2), widened by the χ² profile:
:func:`ptyxr.xanes.solver.widen_edge_stderr`) measures noise. When the true spectrum is
not eq. (1) — an edge broadened by a Lorentzian (arctan step) rather than a Gaussian (erf),
a white line with a steeper low-energy side than high-energy side — the least-squares b2
moves by a model error that does not shrink with the noise and that the residuals do not
show (eq. (1) absorbs the difference into a shifted erf and a moved Lorentzian). At high
SNR it exceeds 5 standard errors on a few pixels per thousand
(docs/design-notes/s12-fituncert.md).

:func:`edge_model_error` estimates that shift per pixel by linear propagation: a small
model error δ(E) moves the least-squares parameters by (JᵀJ)⁻¹Jᵀδ, so b2 moves by
g·δ with g the b2 row of (JᵀJ)⁻¹Jᵀ at the fit. Two model-error directions are propagated:

- edge shape: δ = η·b1·[S_arctan(z) − S_erf(z)], z = (E − b2)/b3, an admixture η of a
  Lorentzian-broadened (arctan) step, S_arctan = ½ + arctan(z)/π, S_erf = ½(1 + erf z);
- white-line asymmetry: the white-line Lorentzian with half-widths c23·(1 ∓ α) below /
  above c22, to first order δ = α·c23·sign(E − c22)·∂L/∂c23.

``edge_uncertainty`` = √(stderr² + (η·g·δ_shape)² + (α·g·δ_asym)²), η = :data:`EDGE_SHAPE_ERROR`,
α = :data:`WHITE_LINE_ASYMMETRY_ERROR`, chosen by measurement on foreign-model spectra.
Per pixel it costs one 10×10 solve at the optimum: no refit. On the compiled engine the two
directions are solved with the covariance's factor, in the same kernel (GIL released); this
module's numpy version serves the numpy engine and the lmfit reference.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

#: η: the arctan-step admixture whose b2 shift enters the edge uncertainty (measured: s12-fituncert).
EDGE_SHAPE_ERROR = 0.1
#: α: the relative white-line half-width asymmetry whose b2 shift enters the edge uncertainty.
WHITE_LINE_ASYMMETRY_ERROR = 0.1
#: Pixels per vectorised chunk (memory: ≈ 100 × n_E floats per pixel).
_CHUNK = 4096

_B1, _B2, _B3, _C21, _C22, _C23 = 1, 2, 3, 7, 8, 9


def _jacobian(energy: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """∂μt/∂params (P, 10, n_E) of eq. (1) and the two model-error directions (P, n_E) each.

    The compiled engine builds the same rows in :func:`ptyxr.xanes._kernels.inverse_normal_matrix`
    (energies shifted to the window centre, its own operation order): results agree to rounding
    amplified by JᵀJ's condition (tests/xanes/test_solver.py).
    """
    e = energy[None, :]
    a, b1, b2, b3, c11, c12, c13, c21, c22, c23 = (p[:, k, None] for k in range(10))
    z = (e - b2) / b3
    gauss = np.exp(-z * z) / np.sqrt(np.pi)
    u1, u2 = (e - c12) / c13, (e - c22) / c23
    l1, l2 = 1.0 / (1.0 + u1 * u1), 1.0 / (1.0 + u2 * u2)
    step = 0.5 * (1.0 + erf(z))
    d_c23 = c21 * 2.0 * u2 * u2 / c23 * l2 * l2
    jac = np.stack(
        [
            np.ones_like(z),
            step,
            -b1 * gauss / b3,
            -b1 * gauss * z / b3,
            l1,
            c11 * 2.0 * u1 / c13 * l1 * l1,
            c11 * 2.0 * u1 * u1 / c13 * l1 * l1,
            l2,
            c21 * 2.0 * u2 / c23 * l2 * l2,
            d_c23,
        ],
        axis=1,
    )
    shape = b1 * (0.5 + np.arctan(z) / np.pi - step)
    asym = d_c23 * c23 * np.sign(e - c22)
    return jac, shape, asym


def edge_model_error(
    energy: np.ndarray,
    params: np.ndarray,
    determined: np.ndarray,
    weights: np.ndarray | None = None,
    edge_shape: float = EDGE_SHAPE_ERROR,
    asymmetry: float = WHITE_LINE_ASYMMETRY_ERROR,
) -> np.ndarray:
    """b2 shift [eV] that eq. (1)'s likely model errors cause, by linear propagation at the fit.

    Parameters
    ----------
    energy : ndarray (n_E,)
        Photon energies [eV].
    params : ndarray (P, 10)
        Fitted eq. (1) parameters (paper order).
    determined : ndarray (P, 10) bool
        Parameters free at the fit (the solver's: not on a bound, owner height > 0); the
        others are held, as in the covariance.
    weights : ndarray (P, n_E) or (n_E,), optional
        Least-squares weights of the fit (NaN spectra points: weight 0).
    edge_shape : float
        η, admixture of an arctan (Lorentzian-broadened) step.
    asymmetry : float
        α, relative asymmetry of the white line's half-widths.

    Returns
    -------
    ndarray (P,)
        √((η·Δb2_shape)² + (α·Δb2_asym)²) [eV]; NaN where b2 is undetermined.
    """
    energy = np.asarray(energy, dtype=float)
    params = np.asarray(params, dtype=float)
    n_pix = params.shape[0]
    shifts = np.full((n_pix, 2), np.nan)
    w_all = None if weights is None else np.broadcast_to(np.asarray(weights, float), (n_pix, energy.size))
    use_all = np.asarray(determined, bool)
    idx = np.flatnonzero(_defined(params, use_all))
    eye = np.eye(10)
    for first in range(0, idx.size, _CHUNK):
        sel = idx[first : first + _CHUNK]
        jac, shape, asym = _jacobian(energy, params[sel])
        if w_all is not None:
            w = np.where(np.isfinite(w_all[sel]), w_all[sel], 0.0)
            jac, shape, asym = jac * w[:, None, :], shape * w, asym * w
        use = use_all[sel]  # (P, 10)
        keep = use[:, :, None] & use[:, None, :]
        jtj = np.where(keep, np.einsum("pkn,pln->pkl", jac, jac), eye)
        rhs = np.einsum("pkn,pmn->pkm", jac, np.stack([shape, asym], axis=1))  # (P, 10, 2)
        rhs = np.where(use[:, :, None], rhs, 0.0)
        # singular pixels (an exact zero pivot: solve would raise for the whole chunk) get the
        # least-squares solution; the others their own solve (not the chunk's pinv: a pixel's
        # value does not depend on the other pixels of its chunk)
        singular = np.linalg.slogdet(jtj)[0] == 0
        sol = np.empty_like(rhs)
        sol[~singular] = np.linalg.solve(jtj[~singular], rhs[~singular])
        if singular.any():
            sol[singular] = np.linalg.pinv(jtj[singular]) @ rhs[singular]
        shifts[sel] = sol[:, _B2, :]  # (P, 2): Δb2 per unit η and α
    return combine_shifts(params, use_all, shifts, edge_shape, asymmetry)


def _defined(params: np.ndarray, determined: np.ndarray) -> np.ndarray:
    """(P,) pixels whose model error is defined: finite fit, b2 determined, widths b3, c23 > 0."""
    return np.isfinite(params).all(axis=1) & determined[:, _B2] & (params[:, _B3] > 0) & (params[:, _C23] > 0)


def combine_shifts(
    params: np.ndarray,
    determined: np.ndarray,
    shifts: np.ndarray,
    edge_shape: float = EDGE_SHAPE_ERROR,
    asymmetry: float = WHITE_LINE_ASYMMETRY_ERROR,
) -> np.ndarray:
    """√((η·Δb2_shape)² + (α·Δb2_asym)²) [eV] from the b2 shifts per unit η and α.

    Parameters
    ----------
    params : ndarray (P, 10)
        Fitted eq. (1) parameters.
    determined : ndarray (P, 10) bool
        Parameters free at the fit.
    shifts : ndarray (P, 2)
        b2 component of (JᵀJ)⁻¹Jᵀδ for the edge-shape and white-line-asymmetry directions [eV]:
        :func:`edge_model_error`'s, or the compiled kernel's
        (:func:`ptyxr.xanes._kernels.inverse_normal_matrix`, the same directions from the
        covariance's factor).
    edge_shape, asymmetry : float
        η and α.

    Returns
    -------
    ndarray (P,)
        The model error [eV]; NaN where it is not defined (:func:`_defined`).
    """
    ok = _defined(np.asarray(params, float), np.asarray(determined, bool))
    out = np.full(ok.size, np.nan)
    out[ok] = np.hypot(edge_shape * shifts[ok, 0], asymmetry * shifts[ok, 1])
    return out


def edge_uncertainty(stderr_b2: np.ndarray, model_error: np.ndarray) -> np.ndarray:
    """√(stderr² + model error²) [eV]; NaN where the stderr is NaN (undetermined b2)."""
    model = np.where(np.isfinite(model_error), model_error, 0.0)
    with np.errstate(over="ignore"):  # undetermined b2 (errors ≥ 1e154 eV): ∞, as meaningless
        return np.sqrt(np.asarray(stderr_b2, float) ** 2 + model**2)
