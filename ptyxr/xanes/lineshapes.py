"""Line shapes of paper eq. (1) and the model built from them (numpy only; lmfit's layout).

Uematsu et al. (PCCP 2023) eq. (1)::

    μt(E) = a + b1/2·[1 + erf((E − b2)/b3)] + Σ_{i=1,2} c_i1 / (1 + ((E − c_i2)/c_i3)²)

As ``lmfit.lineshapes`` does, the unit shapes (:func:`step`, :func:`lorentzian`) are
defined once and the model composed from them (:func:`eq1_terms` → :func:`eq1`). Every
user of eq. (1) evaluates it here: the lmfit front end (:mod:`ptyxr.xanes.model`), the
``fit_xanes`` fit curve, the pixel explorer's component plot and the simulator's near-edge
f″ model (:mod:`ptyxr.simulate.scattering`, same step and Lorentzian, other prefactors).
The batch solver (:mod:`ptyxr.xanes.solver`) and its compiled kernels
(:mod:`ptyxr.xanes._kernels`) evaluate the same shapes and their derivatives through the
elementwise forms at the reduced energy (:func:`step_reduced`, :func:`step_slope`,
:func:`lorentzian_reduced`, :func:`lorentzian_slope`): plain arithmetic on floats or arrays,
which the kernels compile for scalars (``erf``/``exp`` taken from :mod:`math` there).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy import exp
from scipy.special import erf

__all__ = [
    "ARCTAN_SLOPE",
    "COMPONENTS",
    "arctan_step_reduced",
    "arctan_step_slope",
    "eq1",
    "eq1_array",
    "eq1_terms",
    "lorentzian",
    "lorentzian_reduced",
    "lorentzian_slope",
    "mixed_step",
    "step",
    "step_reduced",
    "step_slope",
]

#: Names of eq. (1)'s additive terms, in :func:`eq1_terms` order.
COMPONENTS: tuple[str, ...] = ("constant", "edge step", "pre-edge peak", "white line")


# Elementwise forms at the reduced energy (floats or arrays; the solver's kernels compile
# these very functions for scalars, so keep them to plain arithmetic, ``erf`` and ``exp``).
def step_reduced(z: Any) -> Any:
    """Unit erf step at the reduced energy z = (E − b2)/b3: ½[1 + erf(z)] (dimensionless)."""
    return (erf(z) + 1.0) * 0.5


def step_slope(z: Any) -> Any:
    """exp(−z²) = √π · d :func:`step_reduced`/dz (dimensionless).

    So ∂step/∂b2 = −exp(−z²)/(√π·b3) [1/eV] and ∂step/∂b3 = z·∂step/∂b2 [1/eV].
    """
    return exp(-(z * z))


def lorentzian_reduced(u: Any) -> Any:
    """Unit-height Lorentzian at the reduced energy u = (E − center)/hwhm: 1/(1 + u²)."""
    return 1.0 / (u * u + 1.0)


def lorentzian_slope(lor: Any, u: Any) -> Any:
    """l²·u = −½ dl/du for l = :func:`lorentzian_reduced` (u) (dimensionless).

    So ∂L/∂center = 2·l²u/hwhm [1/eV] and ∂L/∂hwhm = u·∂L/∂center [1/eV].
    """
    return lor * lor * u


def step(energy: np.ndarray, b2: Any, b3: Any) -> np.ndarray:
    """Unit erf step ½[1 + erf((E − b2)/b3)] (dimensionless)."""
    return step_reduced((energy - b2) / b3)


def lorentzian(energy: np.ndarray, center: Any, hwhm: Any) -> np.ndarray:
    """Unit-height Lorentzian 1/(1 + ((E − center)/hwhm)²) (dimensionless)."""
    return lorentzian_reduced((energy - center) / hwhm)


def eq1_terms(
    energy: Any, a: Any, b1: Any, b2: Any, b3: Any, c11: Any, c12: Any, c13: Any, c21: Any, c22: Any, c23: Any
) -> tuple[Any, Any, Any, Any]:
    """The four additive terms of eq. (1), in :data:`COMPONENTS` order; their sum is :func:`eq1`.

    ``a``, ``b1·step(E; b2, b3)``, ``c11·lorentzian(E; c12, c13)``, ``c21·lorentzian(E; c22, c23)``.
    No conversion of the inputs: numpy arrays and (lazy) xarray objects broadcast alike.
    Units as :func:`eq1`.
    """
    return a, b1 * step(energy, b2, b3), c11 * lorentzian(energy, c12, c13), c21 * lorentzian(energy, c22, c23)


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
    constant, edge, pre_edge, white_line = eq1_terms(energy, a, b1, b2, b3, c11, c12, c13, c21, c22, c23)
    return constant + edge + pre_edge + white_line


def eq1_array(energy: np.ndarray, params: np.ndarray) -> np.ndarray:
    """eq. (1) for parameter rows ``params`` (..., 10) in ``FIT_PARAMETERS`` order → (..., n_E)."""
    p = np.moveaxis(np.asarray(params, dtype=float), -1, 0)[..., None]
    return eq1(np.asarray(energy, dtype=float), *p)


#: Slope factor of the arctan step: ½ + arctan(√π·z)/π has the erf step's slope 1/√π at z = 0
#: (and both are ½ there), so b2 stays the half height and inflection and b3 the same width.
ARCTAN_SLOPE = float(np.sqrt(np.pi))


def arctan_step_reduced(z: Any) -> Any:
    """Unit arctan step at the reduced energy z = (E − b2)/b3: ½ + arctan(√π·z)/π (dimensionless).

    Same half height (z = 0) and slope there (1/√π) as :func:`step_reduced`; Lorentzian tails
    (a Lorentzian-broadened edge instead of a Gaussian one). The simulator's arctan edge
    (:func:`ptyxr.simulate.scattering.edge_step`).
    """
    return 0.5 + np.arctan(ARCTAN_SLOPE * z) / np.pi


def arctan_step_slope(z: Any) -> Any:
    """√π · d :func:`arctan_step_reduced`/dz = 1/(1 + π z²) (dimensionless; compare :func:`step_slope`)."""
    return 1.0 / (1.0 + np.pi * z * z)


def mixed_step(energy: Any, b2: Any, b3: Any, eta: Any) -> Any:
    """Edge step of free shape (1 − η)·½[1 + erf(z)] + η·(½ + arctan(√π z)/π), z = (E − b2)/b3.

    η ∈ [0, 1] (dimensionless); η = 0 is eq. (1)'s erf step (:func:`step`).
    """
    z = (energy - b2) / b3
    return (1.0 - eta) * step_reduced(z) + eta * arctan_step_reduced(z)
