"""Chemical-state maps from XANES fit parameters and phase images (DESIGN §1e).

Per pixel (paper eqs. 2–4; Uematsu et al., PCCP 2023, §2.3):

* edge energy b2 [eV] and edge jump Δμt = b1;
* pre-edge intensity PE = π·c11·c13 [eV] and its normalised value PE/Δμt [eV];
* projected V density N_V = Δμt / (r_e λ Δf″_V) [m⁻²], λ = hc/b2 at the pixel's own edge;
* effective projected electron density Re[N_e^eff] = −φ(E_ref)/(r_e λ_ref) [m⁻²];
* electrons per vanadium Re[N_e^eff]/N_V [1].

The measured ratio uses no f′: it is whatever the sample's physical f′ make it. f′ enters
only the *theoretical* ratio of a composition (paper eq. 5,
:func:`theoretical_electrons_per_vanadium`), used to interpret the maps.

Everything here is elementwise xarray arithmetic, so dask-backed input stays lazy.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ptyxr import physics
from ptyxr.schema import (
    EDGE_ENERGY,
    EDGE_JUMP,
    ELECTRON_DENSITY,
    ELECTRONS_PER_VANADIUM,
    ENERGY,
    FIT_PARAMETERS,
    FIT_VALID,
    PHASE,
    PRE_EDGE_INTENSITY,
    PRE_EDGE_RATIO,
    VANADIUM_DENSITY,
    SchemaError,
    require_dims,
    require_energy,
    require_variables,
    spec,
    validate_fit,
    with_attrs,
)
from ptyxr.stage import Recorded, stage

STAGE = "chemical_state"
# Names of the eq. (1) parameters used here (order of schema.FIT_PARAMETERS).
_A, _B1, _B2, _B3, _C11, _C12, _C13, *_ = FIT_PARAMETERS

#: Where each table's Δf″_V comes from (recorded in the output attrs).
_DELTA_F2_SOURCES = {
    "paper": "Uematsu et al., PCCP 2023, sec. 2.3 (Henke tables): delta f'' of V across the K edge",
    "henke": "Henke, Gullikson & Davis 1993 (periodictable.xsf): f''_V(5540 eV) - f''_V(5420 eV)",
    "chantler": "Chantler 2000 (xraydb): f''_V(5540 eV) - f''_V(5420 eV)",
}
_F1_SOURCES = {
    "paper": "Uematsu et al., PCCP 2023: f'_Li 0.00278, f'_V -7.14, f'_O 0.0757",
    "henke": "Henke, Gullikson & Davis 1993 (periodictable.xsf)",
    "chantler": "Chantler 2000 (xraydb)",
}


def theoretical_electrons_per_vanadium(
    table: physics.Table = "paper", energy: float = physics.PAPER_REFERENCE_ENERGY
) -> dict[str, float]:
    """Theoretical Re[N_e^eff]/N_V of the paper's three compositions (paper eq. 5).

    Parameters
    ----------
    table : {"paper", "henke", "chantler"}
        Source of f′ (see :func:`ptyxr.physics.electrons_per_vanadium`); ``"paper"`` gives
        39.7, 35.0 and 43.1 for Li10/7V6/7O2, LiVO2 and LiVO3.
    energy : float
        Energy of the phase image [eV] (the paper's 5420 eV); ignored by ``"paper"``.

    Returns
    -------
    dict
        ``{composition: electrons per V [1]}`` for the keys of :data:`ptyxr.physics.COMPOSITIONS`.
    """
    return {
        name: physics.electrons_per_vanadium(comp, table=table, energy=energy)
        for name, comp in physics.COMPOSITIONS.items()
    }


#: Relative finite-difference step of the eq. (1) Jacobian (central differences).
_JACOBIAN_STEP = 1e-6
#: Largest relative edge-jump correction trusted (the physical one is 1–2 %).
_MAX_RELATIVE_CORRECTION = 0.1
#: Pixels per block of the edge-jump correction (bounds the (P, n_E, 10) Jacobian in memory).
_CORRECTION_BLOCK = 4096


def _eq1_jacobian(energy: np.ndarray, params: np.ndarray) -> np.ndarray:
    """∂eq.(1)/∂p at parameter rows ``params`` (P, 10) → (P, n_E, 10), central differences."""
    from ptyxr.xanes.model import eq1_array

    h = _JACOBIAN_STEP * np.maximum(np.abs(params), 1e-3 * np.abs(params[:, [1]]) + 1e-12)
    jac = np.empty((params.shape[0], energy.size, params.shape[1]))
    for k in range(params.shape[1]):
        up, down = params.copy(), params.copy()
        up[:, k] += h[:, k]
        down[:, k] -= h[:, k]
        jac[:, :, k] = (eq1_array(energy, up) - eq1_array(energy, down)) / (2.0 * h[:, [k]])
    return jac


def corrected_edge_jump(
    energy: np.ndarray, params: np.ndarray, background_f2: np.ndarray, delta_f2: float
) -> np.ndarray:
    """Edge jump b1 corrected for what eq. (1) cannot represent, to first order.

    μt = r_e λ(E) Σ N f″ carries λ(E) = hc/E on every feature, and under the V K edge lies
    the smooth, decaying L-shell f″_V(E) (``background_f2``). Eq. (1) has constant heights
    and a constant background, so the fitted b1 reads ≈ 1–2 % below r_e λ(b2) N_V Δf″
    (paper window, 5420–5540 eV). With the fitted parameters p, the part of the spectrum
    eq. (1) lacks is δμ(E) = (λ(E)/λ(b2) − 1)·[eq1(E; p) − a] + b1·λ(E)/λ(b2)·f″_B(E)/Δf″
    (the second term is r_e λ(E) N_V f″_B with N_V from b1); the least-squares fit moves the
    parameters by J⁺δμ (J the Jacobian of eq. 1 at p, unweighted as the fit), and the
    returned jump is b1 − (J⁺δμ)_b1. A constant in δμ only moves ``a``. The matrix
    (Li, O) f″ slope is not included (its composition is unknown; ≈ 0.2 % for LiVO2).
    Where the correction would exceed 10 % of b1 (a fit the linearisation cannot describe,
    e.g. b1 within its own error of zero) the fitted b1 is returned unchanged.

    Parameters
    ----------
    energy : ndarray (n_E,)
        Photon energies of the fitted spectra [eV].
    params : ndarray (..., 10)
        Eq. (1) parameters in :data:`ptyxr.schema.FIT_PARAMETERS` order; NaN rows give NaN.
    background_f2 : ndarray (n_E,)
        Smooth below-edge f″_V at ``energy`` [electrons]
        (:func:`ptyxr.physics.below_edge_f2`).
    delta_f2 : float
        Δf″_V across the edge [electrons].

    Returns
    -------
    ndarray (...)
        Corrected edge jump (μt units, dimensionless).
    """
    energy = np.asarray(energy, dtype=float)
    params = np.asarray(params, dtype=float)
    lead = params.shape[:-1]
    rows = params.reshape(-1, params.shape[-1])
    out = np.full(rows.shape[0], np.nan)
    good = np.flatnonzero(np.isfinite(rows).all(axis=1) & (rows[:, 2] > 0))
    for first in range(0, good.size, _CORRECTION_BLOCK):
        idx = good[first : first + _CORRECTION_BLOCK]
        p = rows[idx]
        # λ(E)/λ(b2) = b2/E
        lam_ratio = p[:, [2]] / energy[None, :]
        near_edge = eq1_array_minus_background(energy, p)
        delta_mu = (lam_ratio - 1.0) * near_edge + p[:, [1]] * lam_ratio * background_f2[None, :] / delta_f2
        jac = _eq1_jacobian(energy, p)
        # scale columns to unit norm so pinv's cut-off treats eV and μt parameters alike
        # (zero-height Lorentzians leave their centre/width columns zero: min-norm solution)
        norm = np.linalg.norm(jac, axis=1, keepdims=True)
        norm = np.where(norm > 0, norm, 1.0)
        step = np.matmul(np.linalg.pinv(jac / norm, rcond=1e-10), delta_mu[:, :, None])[:, :, 0] / norm[:, 0, :]
        corrected = p[:, 1] - step[:, 1]
        # a first-order correction is only meaningful where it is small (the physical one is
        # 1–2 %); beyond _MAX_RELATIVE_CORRECTION the fit is one the linearisation cannot
        # describe (e.g. b1 within its own error of zero): keep the fitted b1 there
        trusted = np.abs(step[:, 1]) <= _MAX_RELATIVE_CORRECTION * np.abs(p[:, 1])
        out[idx] = np.where(trusted, corrected, p[:, 1])
    return out.reshape(lead)


def eq1_array_minus_background(energy: np.ndarray, params: np.ndarray) -> np.ndarray:
    """eq. (1) without its constant a (edge step and Lorentzians) for rows (P, 10) → (P, n_E)."""
    from ptyxr.xanes.model import eq1_array

    return eq1_array(energy, params) - params[:, [0]]


_CORRECTION_NOTE = (
    "first order, for lambda(E) and the smooth below-edge f''_V of the table under eq. (1) "
    "(ptyxr.chemistry.corrected_edge_jump); matrix (Li, O) slope not included"
)
#: Name of the temporary core dim holding the ten eq. (1) parameters.
_PARAMETER_DIM = "eq1_parameter"


def _corrected_jump(ds: xr.Dataset, energy: np.ndarray, background: np.ndarray, df2: float) -> xr.DataArray:
    """:func:`corrected_edge_jump` over the map (lazy on dask: one task per chunk)."""
    stacked = xr.concat(
        [ds[name] for name in FIT_PARAMETERS], dim=_PARAMETER_DIM, coords="minimal", compat="override", join="exact"
    )
    if stacked.chunks is not None:
        stacked = stacked.chunk({_PARAMETER_DIM: -1})
    return xr.apply_ufunc(
        lambda params: corrected_edge_jump(energy, params, background, df2),
        stacked,
        input_core_dims=[[_PARAMETER_DIM]],
        dask="parallelized",
        output_dtypes=[float],
    )


def _reference_index(energy: np.ndarray, reference_energy: float | None) -> int:
    """Index of E_ref: the lowest energy by default, else the energy nearest to the request."""
    if reference_energy is None:
        return 0
    reference_energy = float(reference_energy)
    if not np.isfinite(reference_energy) or reference_energy <= 0:
        raise SchemaError(
            f"{STAGE}: reference_energy must be a positive photon energy in eV, got {reference_energy!r}."
        )
    return int(np.argmin(np.abs(energy - reference_energy)))


def validate_input(ds: object, where: str = STAGE) -> xr.Dataset:
    """The input of :func:`chemical_state`: a XANES fit (DESIGN §1d) that still holds the phase (§1c)."""
    ds = validate_fit(ds, where)
    require_variables(ds, (PHASE,), where, "Keep the phase stack from ds.ptyxr.spectra() (DESIGN §1c).")
    require_dims(ds[PHASE], spec(PHASE).dims, where)
    require_energy(ds, where)
    for name in (_B1, _B2, _C11, _C13, FIT_VALID):
        require_dims(ds[name], spec(name).dims, where)
    if ds[FIT_VALID].dtype != bool:
        raise SchemaError(f"{where}: {FIT_VALID!r} must be boolean (True = valid fit), got {ds[FIT_VALID].dtype}.")
    return ds


@stage(STAGE, validate=validate_input)
def chemical_state(
    ds: xr.Dataset,
    table: physics.Table = "paper",
    reference_energy: float | None = None,
    delta_f2: float | None = None,
    edge_jump_correction: bool = True,
) -> Recorded:
    """Chemical-state maps from a XANES fit and the phase images (DESIGN §1e).

    Parameters
    ----------
    ds : xarray.Dataset
        Output of ``fit_xanes`` (DESIGN §1d: ``a … c23``, ``fit_valid`` on (y, x), optionally
        behind a leading ``particle`` dim) that still holds ``phase`` (energy, y, x) [rad]
        from ``spectra`` (DESIGN §1c).
    table : {"paper", "henke", "chantler"}
        Source of Δf″_V: ``"paper"`` = 3.53 (the paper's value), ``"henke"``/``"chantler"``
        = f″_V(5540 eV) − f″_V(5420 eV) from that table (:func:`ptyxr.physics.delta_f2`).
        Also the f′ table of the theoretical ratios recorded in the attrs.
    reference_energy : float, optional
        Energy of the phase image used for Re[N_e^eff] [eV]; the nearest available energy
        is taken. Default: the lowest energy (pre-edge; the paper's 5420 eV).
    delta_f2 : float, optional
        Override Δf″_V [electrons] (e.g. the simulator's own value); ``table`` then only
        selects the f′ of the theoretical ratios.
    edge_jump_correction : bool
        N_V from the edge jump corrected to first order for λ(E) and the table's smooth
        below-edge f″_V, which eq. (1)'s constant heights and background cannot follow
        (:func:`corrected_edge_jump`; raises N_V by ≈ 1.5–2 % on the paper's window).
        False: the paper's formula with the fitted b1 as it is. ``edge_jump`` and
        PE/Δμt always use the fitted b1 (the paper's definition).

    Returns
    -------
    xarray.Dataset
        ``ds`` plus ``edge_energy`` [eV], ``edge_jump`` [1], ``pre_edge_intensity`` [eV],
        ``pre_edge_ratio`` [eV], ``vanadium_density`` [m⁻²], ``electron_density`` [m⁻²] and
        ``electrons_per_vanadium`` [1]; NaN wherever ``fit_valid`` is False. Constants and
        their sources are in each variable's attrs and in the JSON attr ``ptyxr_chemical_state``.

    Raises
    ------
    SchemaError
        If fit parameters, ``fit_valid`` or ``phase`` are missing or misshapen, or ``table``
        is unknown.

    Notes
    -----
    N_V uses λ at each pixel's own edge energy b2 (DESIGN §1e). Re[N_e^eff] is computed
    from the phase at E_ref alone: the measured Re[N_e^eff]/N_V uses no f′. The two ratios
    (PE/Δμt, Re[N_e^eff]/N_V) are NaN also where b1 ≤ 0.
    """
    energy = np.asarray(ds[ENERGY].values, dtype=float)  # checked by validate_input
    if table not in physics.TABLES:
        raise SchemaError(f"{STAGE}: table must be one of {physics.TABLES}, got {table!r}.")

    if delta_f2 is None:
        df2 = float(physics.delta_f2("V", table=table))
        df2_source = _DELTA_F2_SOURCES[table]
    else:
        df2 = float(delta_f2)
        df2_source = "given by the caller (delta_f2=...)"
    if not (np.isfinite(df2) and df2 > 0):
        raise SchemaError(f"{STAGE}: delta f''_V must be a positive number of electrons, got {df2!r}.")
    i_ref = _reference_index(energy, reference_energy)
    e_ref = float(energy[i_ref])
    r_e = physics.CLASSICAL_ELECTRON_RADIUS
    lambda_ref = float(physics.wavelength(e_ref))

    # Invalid fits → NaN everywhere in §1e (a mask, not a computation: stays lazy on dask).
    valid = ds[FIT_VALID]
    edge_energy = ds[_B2].where(valid)
    edge_jump = ds[_B1].where(valid)
    # A ratio over a zero edge jump is undefined (fit_valid's b1 ≥ σ passes b1 = 0 when σ = 0,
    # e.g. noise-free simulations): NaN rather than ±inf.
    positive_jump = edge_jump.where(edge_jump > 0)
    pre_edge = (np.pi * ds[_C11] * ds[_C13]).where(valid)
    # λ(b2) = hc/b2 written out (physics.wavelength checks its input eagerly, which would
    # compute a dask array); b2 ≤ 0 is unphysical and is masked.
    lam = physics.HC_EV_M / edge_energy.where(edge_energy > 0)
    if edge_jump_correction:
        background = physics.below_edge_f2(energy, "V", table)
        jump_for_nv = _corrected_jump(ds, energy, background, df2).where(valid)
        nv_formula = "b1_corrected/(r_e*lambda(b2)*delta_f2)"
    else:
        jump_for_nv, nv_formula = edge_jump, "b1/(r_e*lambda(b2)*delta_f2)"
    n_v = jump_for_nv / (r_e * lam * df2)
    phase_ref = ds[PHASE].isel({ENERGY: i_ref}, drop=True)
    n_e = (-phase_ref / (r_e * lambda_ref)).where(valid)

    common = {"table": table, "classical_electron_radius": r_e, "classical_electron_radius_source": "scipy.constants"}
    ref_attrs = {
        "reference_energy": e_ref,
        "reference_wavelength": lambda_ref,
        "reference_energy_rule": "lowest energy"
        if reference_energy is None
        else f"nearest available energy to {float(reference_energy)} eV",
    }
    nv_attrs = {
        "delta_f2": df2,
        "delta_f2_source": df2_source,
        "wavelength": "hc/edge_energy per pixel",
        "edge_jump_correction": _CORRECTION_NOTE if edge_jump_correction else "none (fitted b1)",
    }
    theory = theoretical_electrons_per_vanadium(table, e_ref)
    out = ds.assign(
        {
            EDGE_ENERGY: with_attrs(edge_energy, EDGE_ENERGY, formula="b2"),
            EDGE_JUMP: with_attrs(edge_jump, EDGE_JUMP, formula="b1"),
            PRE_EDGE_INTENSITY: with_attrs(pre_edge, PRE_EDGE_INTENSITY, formula="pi*c11*c13"),
            PRE_EDGE_RATIO: with_attrs(pre_edge / positive_jump, PRE_EDGE_RATIO, formula="pi*c11*c13/b1"),
            VANADIUM_DENSITY: with_attrs(n_v, VANADIUM_DENSITY, formula=nv_formula, **nv_attrs, **common),
            ELECTRON_DENSITY: with_attrs(
                n_e, ELECTRON_DENSITY, formula="-phase(E_ref)/(r_e*lambda(E_ref))", **ref_attrs, **common
            ),
            ELECTRONS_PER_VANADIUM: with_attrs(
                n_e / n_v.where(positive_jump > 0),
                ELECTRONS_PER_VANADIUM,
                formula="electron_density/vanadium_density (no f')",
                **nv_attrs,
                **ref_attrs,
                **common,
                theoretical_compositions=", ".join(theory),
                theoretical_values=list(theory.values()),
                theoretical_f1_source=_F1_SOURCES[table],
            ),
        }
    )
    # recorded next to the call's parameters: the values used and the constants' sources
    facts = {
        "reference_energy_used": e_ref,
        "delta_f2": df2,
        "delta_f2_source": df2_source,
        "classical_electron_radius": r_e,
        "theoretical_electrons_per_vanadium": theory,
        "theoretical_f1_source": _F1_SOURCES[table],
    }
    return Recorded(out, facts)
