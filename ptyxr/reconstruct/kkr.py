"""Kramers–Kronig (KKR) constraint between the absorption and phase spectra of a pixel.

Array kernels only (numpy, no xarray). Physics (DESIGN §2): with the object
O = exp(−μt)·exp(iφ), μt = r_e λ N f″ and φ = −r_e λ N (Z + f′), λ = hc/E, the products

    g(E) = E·μt(E) = r_e hc N f″(E),    E·φ(E) = −r_e hc N Z − r_e hc N f′(E)

are linked by the KK relation f′(E) = (2/π) P∫ ε f″(ε)/(E² − ε²) dε, hence

    E·φ(E) = C − (2/π) P∫ ε g(ε)/(E² − ε²) dε = C − (K g)(E),

with C an energy-independent constant per pixel (non-resonant electrons, relativistic
term) and K :func:`ptyxr.physics.kramers_kronig_matrix` (exact for piecewise-linear g).
The measured window (5420–5540 eV) is far too narrow for the integral, so g is extended
outside it by the tabulated f″ of the resonant element, scaled by least squares to the
measured pre-edge and post-edge points (:func:`ptyxr.physics.extend_with_table`).
Extension and integral are linear in μt, so on a fixed energy grid the whole map
μt ↦ φ_KK is one (n_E × n_E) matrix, applied to all pixels at once. The constant C is
fitted per pixel by least squares against the current phase, which keeps the KK phase
linear in (μt, φ): φ_KK = A μt + P φ (:class:`KKOperator`).

The operator is ill-conditioned (condition number ≈3e3 on the paper's 40 energies,
1e4 and more on denser grids) but is only ever *applied*, never inverted, so it needs
no regularisation.

Accuracy (tests/reconstruct/test_kkr.py, exact-KK near-edge model, paper grid): ≈1.4e-3 rad rms for
a 1.5 µm particle, ≈0.05 e of f′_V, 3 % of the phase spectrum's energy-varying part;
without the tails 19× worse, with the E factors dropped (φ = C − K μt) 2.4× worse.
Sharp structure between sampled energies is interpolated linearly (a tabulated, step-
like edge inside the 5462–5466 eV gap errs by up to ≈0.6 e next to it).

Pitfalls handled here (DESIGN §2): apply K to g = E·μt and divide by E afterwards;
extend the tails; normalise every energy to vacuum (amplitude, phase constant and
linear ramp) and take phases as arg(O·conj(vacuum phasor)) before KK, choosing each
pixel's 2π branch from a spatially unwrapped (scikit-image) mean phase map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np

from ptyxr.physics import PAPER_PRE_EDGE_LIMIT, extend_with_table, kramers_kronig_matrix
from ptyxr.vacuum import VacuumFit, unwrap_anchored, vacuum_normalise

__all__ = [
    "KKOperator",
    "VacuumFit",
    "kk_phase_matrix",
    "kkr_project",
    "vacuum_normalise",
]

#: Default pixel chunk for the per-pixel matrix products (bounds temporaries to a few
#: tens of MiB for 40 energies).
DEFAULT_CHUNK = 65536


# --------------------------------------------------------------------------- operator
@dataclass(frozen=True)
class KKOperator:
    """Precomputed linear KK map on one energy grid.

    For absorption spectra μt and current phase spectra φ (last axis energy),
    the KK phase with the per-pixel constant fitted by least squares is

        φ_KK = μt @ A.T + φ @ P.T,

    where ``kk`` (M) gives the constant-free KK phase φ_KK,0 = M μt, P = u uᵀ/(uᵀu) with
    u = 1/E projects onto the constant term C/E, and A = (I − P) M.

    Attributes
    ----------
    energy : ndarray (n_E,)
        Energy grid [eV].
    kk : ndarray (n_E, n_E)
        M: φ_KK,0 [rad] from μt [1] (C = 0).
    fixed : ndarray (n_E, n_E)
        A = (I − P) M.
    constant : ndarray (n_E, n_E)
        P = u uᵀ/(uᵀu), u = 1/E.
    element, table : str
        Element whose tabulated f″ extends the tails, and its table.
    pre_edge_limit, post_edge_limit : float or None
        Energies [eV] below/above which points set the lower/upper tail scales.
    tails : bool
        Whether the tails were extended (False only for diagnostics).
    condition_number : float
        2-norm condition number of M (reported, never used to invert).
    """

    energy: np.ndarray
    kk: np.ndarray
    fixed: np.ndarray
    constant: np.ndarray
    element: str = "V"
    table: str = "chantler"
    pre_edge_limit: float | None = PAPER_PRE_EDGE_LIMIT
    post_edge_limit: float | None = None
    tails: bool = True
    condition_number: float = field(default=float("nan"))

    @property
    def n_energies(self) -> int:
        """Number of energies of the grid."""
        return int(self.energy.size)

    def phase(self, absorption: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """KK phase spectra [rad] from absorption spectra μt (last axis energy).

        Parameters
        ----------
        absorption : array (..., n_E)
            μt = −ln|O| (vacuum-normalised) [1].
        phase : array (..., n_E), optional
            Current phase spectra [rad]; the per-pixel constant C of E·φ is fitted to it
            by least squares. Without it C = 0 (φ_KK,0).

        Returns
        -------
        ndarray (..., n_E)
            φ_KK [rad].
        """
        absorption = np.asarray(absorption, dtype=float)
        if absorption.shape[-1] != self.n_energies:
            raise ValueError(f"spectra have {absorption.shape[-1]} energies, the operator {self.n_energies}")
        if phase is None:
            return absorption @ self.kk.T
        return absorption @ self.fixed.T + np.asarray(phase, dtype=float) @ self.constant.T

    def constant_term(self, absorption: np.ndarray, phase: np.ndarray) -> np.ndarray:
        """Least-squares per-pixel constant C of E·φ [rad·eV] (φ ≈ φ_KK,0 + C/E)."""
        u = 1.0 / self.energy
        resid = np.asarray(phase, dtype=float) - np.asarray(absorption, dtype=float) @ self.kk.T
        return resid @ u / (u @ u)


def kk_phase_matrix(
    energy: np.ndarray,
    element: str = "V",
    table: Literal["henke", "chantler"] = "chantler",
    pre_edge_limit: float | None = PAPER_PRE_EDGE_LIMIT,
    post_edge_limit: float | None = None,
    tails: bool = True,
) -> KKOperator:
    """Precompute the KK operator μt ↦ φ_KK on the energy grid ``energy``.

    Parameters
    ----------
    energy : array (n_E,)
        Measured energies [eV], strictly increasing (at least 3).
    element : str
        Resonant element whose tabulated f″ extends g = E·μt outside the window.
    table : {"chantler", "henke"}
        Table of that f″ (:func:`ptyxr.physics.tabulated_f2`).
    pre_edge_limit : float or None
        Points below this energy [eV] scale the lower tail (default: the paper's
        5466 eV, i.e. its four pre-edge points). None: the first quarter of the points.
    post_edge_limit : float or None
        Points above this energy [eV] scale the upper tail. None (default): the last
        quarter of the points (:func:`ptyxr.physics.extend_with_table`); on the paper's
        grid that is 5483–5540 eV, whose least-squares scale averages over the white
        line's wiggles better than the two far points alone.
    tails : bool
        False skips the tail extension (g = 0 outside the window). Only for
        diagnostics: the truncated transform is badly biased (DESIGN §2).

    Returns
    -------
    KKOperator

    Notes
    -----
    g_ext = X g with X the (linear) extension, so φ_KK,0 = −diag(1/E) K X diag(E) μt.
    """
    energy = np.array(energy, dtype=float)  # own copy: frozen below
    if energy.ndim != 1 or energy.size < 3:
        raise ValueError("energy must be a 1-D grid of at least 3 energies (eV)")
    if np.any(np.diff(energy) <= 0) or energy[0] <= 0:
        raise ValueError("energy must be positive and strictly increasing (eV)")
    n = energy.size
    if tails:
        for name, pts in (
            ("pre_edge_limit", None if pre_edge_limit is None else energy < pre_edge_limit),
            ("post_edge_limit", None if post_edge_limit is None else energy > post_edge_limit),
        ):
            if pts is not None and not np.any(pts):
                raise ValueError(f"no energy lies beyond {name}; the tail scale would be undetermined")
        # The extension is linear in g: extending the identity gives its matrix (rows = unit spectra).
        nodes, ext_t = extend_with_table(
            energy,
            np.eye(n),
            element=element,
            table=table,
            pre_edge_limit=pre_edge_limit,
            post_edge_limit=post_edge_limit,
        )
        extension = ext_t.T  # (m, n)
    else:
        nodes, extension = energy, np.eye(n)
    k = kramers_kronig_matrix(nodes, energy)  # (n, m): (K g)(E) = (2/π) P∫ ε g/(E²−ε²)
    m = -(k @ extension) * energy[None, :] / energy[:, None]  # φ = (C − K g)/E with g = E μt
    u = 1.0 / energy
    p = np.outer(u, u) / (u @ u)
    fixed = (np.eye(n) - p) @ m
    for array in (energy, m, fixed, p):  # shared through the operator cache: keep immutable
        array.flags.writeable = False
    return KKOperator(
        energy=energy,
        kk=m,
        fixed=fixed,
        constant=p,
        element=element,
        table=table,
        pre_edge_limit=pre_edge_limit,
        post_edge_limit=post_edge_limit,
        tails=tails,
        condition_number=float(np.linalg.cond(m)),
    )


def kkr_project(
    obj: np.ndarray,
    energy: np.ndarray,
    region: np.ndarray,
    weight: float = 1.0,
    element: str = "V",
    table: Literal["henke", "chantler"] = "chantler",
    background: np.ndarray | None = None,
    operator: KKOperator | None = None,
    *,
    vacuum: VacuumFit | None = None,
    n_sigma: float = 3.0,
    chunk: int = DEFAULT_CHUNK,
    skip_last: bool = False,
) -> np.ndarray:
    """Replace (or blend) each pixel's phase spectrum by its Kramers–Kronig phase.

    Inside ``region``, every energy is normalised to vacuum (amplitude, phase constant and
    linear ramp; :func:`vacuum_normalise`), each pixel's absorption μt = −ln|O/V| and
    phase φ = arg(O·conj V) (2π branch from a spatially unwrapped map of the pixel's
    mean phasor over energy) give the KK phase φ_KK (per-pixel constant fitted to φ,
    :class:`KKOperator`), and the object becomes O·exp(i·w·(φ_KK − φ)): the amplitude
    and the vacuum normalisation are untouched, and w = ``weight`` blends (w = 1
    replaces the phase spectrum).

    Parameters
    ----------
    obj : array (n_E, ny, nx) complex
        Transmission stack on one common, co-registered grid.
    energy : array (n_E,)
        Energies [eV], strictly increasing.
    region : array (ny, nx) bool
        Pixels to constrain (e.g. the covered region); outside, nothing changes.
    weight : float
        Blend weight in [0, 1]: 1 replaces the phase by the KK phase, 0 is a no-op.
    element, table : str
        Resonant element and f″ table for the tails (ignored if ``operator`` is given).
    background : array (ny, nx) bool, optional
        Vacuum pixels; default: estimated inside ``region`` (:func:`vacuum_normalise`).
    operator : KKOperator, optional
        :func:`kk_phase_matrix` for ``energy``; default: built (and cached) here with the
        paper's pre-edge limit.
    vacuum : VacuumFit, optional
        Precomputed vacuum fit (skips :func:`vacuum_normalise`).
    n_sigma : float
        Acceptance of the default vacuum estimate, in noise σ.
    chunk : int
        Pixels per matrix product (bounds temporaries on large maps).
    skip_last : bool
        Leave the highest energy's phase as it is (its μt and φ still enter every other
        energy's KK phase and the per-pixel constant). At the window's upper end φ_KK
        depends most on the unmeasured upper tail, which the table scales without the
        post-edge structure: on the paper preset's noise-free truth its error there is
        1.5 % of the phase contrast (≤ 0.65 % from 5466 to 5488 eV), three times the
        reconstruction's own phase error at that energy (design-notes/s13-paperabs.md).

    Returns
    -------
    ndarray (n_E, ny, nx) complex64
        A new stack; ``obj`` is not modified. Pixels with a zero or non-finite value at
        any energy are left unchanged.

    Raises
    ------
    ValueError
        Bad shapes or weight, an operator for another grid, or no vacuum found.
    """
    obj = np.asarray(obj)
    energy = np.asarray(energy, dtype=float)
    region = np.asarray(region, dtype=bool)
    if obj.ndim != 3 or not np.iscomplexobj(obj):
        raise ValueError(f"obj must be a complex (energy, y, x) stack, got {obj.dtype} of shape {obj.shape}")
    n_e, ny, nx = obj.shape
    if energy.shape != (n_e,):
        raise ValueError(f"energy has shape {energy.shape}, obj has {n_e} energies")
    if region.shape != (ny, nx):
        raise ValueError(f"region has shape {region.shape}, the object's images {(ny, nx)}")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must lie in [0, 1], got {weight}")
    out = obj.astype(np.complex64, copy=True)
    if weight == 0.0 or not np.any(region):
        return out
    if operator is None:
        operator = _cached_operator(tuple(energy.tolist()), element, table)
    elif operator.energy.shape != energy.shape or not np.allclose(operator.energy, energy, rtol=0, atol=1e-6):
        raise ValueError("operator was built for a different energy grid; rebuild it with kk_phase_matrix(energy)")
    finite = np.all(np.isfinite(obj), axis=0) & np.all(obj != 0, axis=0)
    region = region & finite  # unusable pixels stay as they are
    if not np.any(region):
        return out
    if vacuum is None:
        vacuum = vacuum_normalise(obj, region, background=background, n_sigma=n_sigma)
    yy, xx = np.nonzero(region)
    z = vacuum.normalise(obj, yy, xx)  # (n_E, n_pixels) complex64
    # Each pixel's 2π branch: its mean phasor over energy (phase varies little with E),
    # unwrapped in space; every energy's phase is then taken within ±π of that.
    wrapped = np.zeros((ny, nx))
    wrapped[yy, xx] = np.angle(z.mean(axis=0, dtype=np.complex128))
    centre_map = unwrap_anchored(wrapped, region, vacuum.background, fill=0.0, anchor_all=True)
    chunk = max(int(chunk), 1)
    for start in range(0, yy.size, chunk):
        sl = slice(start, start + chunk)
        zc = z[:, sl]
        centre = centre_map[yy[sl], xx[sl]]
        # one complex log gives both: ln|z| = −μt and the phase within ±π of the centre
        log_z = np.log(zc * np.exp(-1j * centre).astype(np.complex64)[None, :])
        mu = -log_z.real.astype(float)
        phase = centre[None, :] + log_z.imag
        # energy-major layout (n_E, n_pixels): plain BLAS products, no transposed copies
        target = operator.fixed @ mu + operator.constant @ phase
        if skip_last:
            target[-1] = phase[-1]  # correction exp(0) = 1: the highest energy keeps its phase
        correction = np.exp((1j * weight) * (target - phase)).astype(np.complex64)
        out[:, yy[sl], xx[sl]] *= correction
    return out


@lru_cache(maxsize=16)
def _cached_operator(energy: tuple[float, ...], element: str, table: Literal["henke", "chantler"]) -> KKOperator:
    # The reconstructor calls kkr_project at every scheduled iteration on the same grid.
    return kk_phase_matrix(np.array(energy), element=element, table=table)
