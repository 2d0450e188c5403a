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

Accuracy (tests/test_kkr.py, exact-KK near-edge model, paper grid): ≈1.4e-3 rad rms for
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
#: Smallest noise σ [rad, or 1 in ln|O|] assumed by the vacuum estimate (complex64 rounding).
_SIGMA_FLOOR = 1e-5


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


# ------------------------------------------------------------------ vacuum normalisation
@dataclass(frozen=True)
class VacuumFit:
    """Per-energy vacuum level of a transmission stack.

    The vacuum phasor of energy e at pixel (y, x) (pixel indices) is
    ``amplitude[e] * exp(i (offset[e] + ramp_y[e] (y − y0) + ramp_x[e] (x − x0)))``.

    Attributes
    ----------
    amplitude : ndarray (n_E,)
        Vacuum transmission amplitude [1].
    offset : ndarray (n_E,)
        Vacuum phase at (y0, x0) [rad].
    ramp_y, ramp_x : ndarray (n_E,)
        Linear phase ramp [rad per pixel].
    y0, x0 : float
        Pixel indices the ramp is centred on (centroid of the vacuum pixels).
    background : ndarray (ny, nx) bool
        Vacuum pixels used for the fit.
    """

    amplitude: np.ndarray
    offset: np.ndarray
    ramp_y: np.ndarray
    ramp_x: np.ndarray
    y0: float
    x0: float
    background: np.ndarray

    def phasor(self, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
        """Vacuum phasors V (n_E, n_pixels) at pixel indices ``iy``, ``ix`` (complex128)."""
        dy = np.asarray(iy, dtype=float)[None, :] - self.y0
        dx = np.asarray(ix, dtype=float)[None, :] - self.x0
        phase = self.offset[:, None] + self.ramp_y[:, None] * dy + self.ramp_x[:, None] * dx
        return self.amplitude[:, None] * np.exp(1j * phase)

    def normalise(self, obj: np.ndarray, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
        """O/V at pixels (iy, ix): (n_E, n_pixels) complex64.

        The vacuum plane is separable, exp(i(a + b·y + c·x)) = e^{ia}·e^{iby}·e^{icx}, so
        only one complex exponential per row and column is evaluated and the division
        is two broadcast multiplications over the pixels' bounding box (complex
        exponentials per pixel and energy would dominate the cost on large maps).
        """
        iy, ix = np.asarray(iy), np.asarray(ix)
        y_lo, y_hi, x_lo, x_hi = iy.min(), iy.max() + 1, ix.min(), ix.max() + 1
        rows = np.exp(-1j * (self.offset[:, None] + self.ramp_y[:, None] * (np.arange(y_lo, y_hi) - self.y0)))
        rows /= self.amplitude[:, None]
        cols = np.exp(-1j * self.ramp_x[:, None] * (np.arange(x_lo, x_hi) - self.x0))
        box = obj[:, y_lo:y_hi, x_lo:x_hi] * rows.astype(np.complex64)[:, :, None]
        box *= cols.astype(np.complex64)[:, None, :]
        return box[:, iy - y_lo, ix - x_lo]


def _neighbour_ramp(obj: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-energy phase ramp [rad/pixel] along y and x from neighbour phasor products over ``mask``.

    angle(Σ O[y, x+1]·conj O[y, x]) is free of 2π wraps as long as the ramp is below
    π per pixel, and material edges inside the mask cancel going in and out.
    """
    ramps = []
    for axis in (1, 2):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        both = mask[tuple(lo[1:])] & mask[tuple(hi[1:])]
        if not np.any(both):
            ramps.append(np.zeros(obj.shape[0]))
            continue
        prod = obj[tuple(lo)][:, both].conj() * obj[tuple(hi)][:, both]
        ramps.append(np.angle(prod.sum(axis=1, dtype=np.complex128)))
    return ramps[0], ramps[1]


def _robust_sigma_from_neighbours(image: np.ndarray, mask: np.ndarray) -> float:
    """Pixel noise σ of ``image`` from the MAD of neighbour differences inside ``mask``.

    Differences cancel smooth structure (particle interiors, vacuum level), so σ is
    estimated without knowing which pixels are vacuum; edges are outliers the median
    ignores.
    """
    d = np.concatenate(
        [
            (image[1:, :] - image[:-1, :])[mask[1:, :] & mask[:-1, :]],
            (image[:, 1:] - image[:, :-1])[mask[:, 1:] & mask[:, :-1]],
        ]
    )
    if d.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def _vacuum_peak(zbar: np.ndarray, sigma: float) -> complex:
    """Phasor of the vacuum level among the region's mean phasors ``zbar`` (1-D).

    Candidates are peaks of the smoothed circular histogram of arg(zbar) at least a
    quarter of the highest; vacuum is the candidate with the largest mean amplitude
    (material absorbs, μt > 0), so a large flat particle cannot be mistaken for vacuum.
    """
    n_bins = 720
    width = 2 * np.pi / n_bins
    smooth = max(sigma / width, 1.0)  # histogram smoothing in bins: the phase noise
    angle = np.angle(zbar)
    counts, _ = np.histogram(angle, bins=n_bins, range=(-np.pi, np.pi))
    offsets = np.arange(-int(4 * smooth) - 1, int(4 * smooth) + 2)
    kernel = np.exp(-0.5 * (offsets / smooth) ** 2)
    hist = np.real(np.fft.ifft(np.fft.fft(counts) * np.fft.fft(_circular_kernel(kernel, offsets, n_bins))))
    is_peak = (hist >= np.roll(hist, 1)) & (hist > np.roll(hist, -1)) & (hist >= 0.25 * hist.max())
    centres = -np.pi + (np.nonzero(is_peak)[0] + 0.5) * width
    half = max(2.0 * sigma, 2 * width)
    best, best_amp = None, -np.inf
    for c in centres[:32]:  # a smoothed histogram has few peaks; bound the work anyway
        near = np.abs(np.angle(zbar * np.exp(-1j * c))) < half
        if not np.any(near):
            continue
        amp = float(np.mean(np.abs(zbar[near])))
        if amp > best_amp:
            best, best_amp = zbar[near].mean(), amp
    if best is None:  # degenerate (e.g. all pixels identical): the mean phasor
        best = zbar.mean()
    return complex(best)


def _circular_kernel(kernel: np.ndarray, offsets: np.ndarray, n: int) -> np.ndarray:
    k = np.zeros(n)
    np.add.at(k, offsets % n, kernel)
    return k


def vacuum_normalise(
    obj: np.ndarray, region: np.ndarray, background: np.ndarray | None = None, n_sigma: float = 3.0
) -> VacuumFit:
    """Fit each energy's vacuum level: amplitude, phase constant and linear phase ramp.

    Parameters
    ----------
    obj : array (n_E, ny, nx) complex
        Transmission stack on one common grid.
    region : array (ny, nx) bool
        Pixels that carry information (e.g. ``coverage``).
    background : array (ny, nx) bool, optional
        Vacuum pixels (only those inside ``region`` are used). Default: estimated inside
        ``region``: (1) per-energy phase ramps from neighbour phasor products over the
        region, and per-energy phase offsets relative to the lowest energy, bring all
        energies to a common level; (2) the phase histogram of their energy mean z̄ is
        searched for the vacuum level: the peak whose pixels have the largest mean
        amplitude (material absorbs); (3) vacuum pixels are those whose mean phase and
        log-amplitude lie within ``n_sigma`` noise σ of that level, σ from the MAD of
        neighbour differences (no vacuum fraction assumed); (4) after a least-squares
        fit on them, the selection is repeated once against the fitted vacuum phasor.
        This needs a vacuum area of at least a few % of the region; pass ``background``
        otherwise.
    n_sigma : float
        Acceptance of the default vacuum estimate, in noise σ.

    Returns
    -------
    VacuumFit
        Amplitude (geometric mean |O| over the vacuum) and offset + ramp by least
        squares on arg(O·conj(provisional phasor)) over the vacuum pixels.

    Raises
    ------
    ValueError
        If no vacuum pixel is found (pass ``background``).
    """
    obj = np.asarray(obj)
    region = np.asarray(region, dtype=bool)
    if obj.ndim != 3:
        raise ValueError(f"obj must be an (energy, y, x) stack, got shape {obj.shape}")
    n_e, ny, nx = obj.shape
    if region.shape != (ny, nx):
        raise ValueError(f"region has shape {region.shape}, the object's images {(ny, nx)}")
    if not np.any(region):
        raise ValueError("region is empty: nothing to normalise")
    if background is not None:
        vac = np.asarray(background, dtype=bool) & region
        if vac.sum() < 3:
            raise ValueError(
                "fewer than 3 background pixels inside region: the vacuum level is undetermined; "
                "pass a larger `background` mask of vacuum pixels inside the covered region"
            )
        gy, gx = _neighbour_ramp(obj, vac)
        return _fit_vacuum(obj, vac, gy, gx)
    yy, xx = np.nonzero(region)
    # (1) provisional ramp, offsets relative to the lowest energy
    gy, gx = _neighbour_ramp(obj, region)
    y0, x0 = float(yy.mean()), float(xx.mean())
    provisional = VacuumFit(np.ones(n_e), np.zeros(n_e), gy, gx, y0, x0, region)
    deramped = provisional.normalise(obj, yy, xx)
    rel = np.angle(deramped @ deramped[0].conj().astype(np.complex128))
    zbar = np.mean(deramped * np.exp(-1j * rel).astype(np.complex64)[:, None], axis=0)
    del deramped
    # (2)–(3) vacuum level and pixels, (4) fit and one refinement
    fit = _fit_vacuum(obj, _vacuum_mask(zbar, yy, xx, region, n_sigma), gy, gx)
    zbar = np.mean(fit.normalise(obj, yy, xx), axis=0)
    return _fit_vacuum(obj, _vacuum_mask(zbar, yy, xx, region, n_sigma, level=1.0), fit.ramp_y, fit.ramp_x)


def _vacuum_mask(
    zbar: np.ndarray, yy: np.ndarray, xx: np.ndarray, region: np.ndarray, n_sigma: float, level: complex | None = None
) -> np.ndarray:
    """Vacuum pixels: mean phasor ``zbar`` (at region pixels yy, xx) within n_sigma of ``level``."""
    img = np.zeros(region.shape)
    if level is None:
        img[yy, xx] = np.angle(zbar)
        level = _vacuum_peak(zbar, _robust_sigma_from_neighbours(img, region))
    dphase = np.angle(zbar * np.conj(level))
    dlog = np.log(np.maximum(np.abs(zbar), 1e-30)) - np.log(abs(level))
    img[yy, xx] = dphase
    sigma_phase = _robust_sigma_from_neighbours(img, region)
    img[yy, xx] = dlog
    sigma_log = _robust_sigma_from_neighbours(img, region)
    # floor: noise-free (simulated) stacks have σ ≈ 0 but complex64 rounding ~1e-7
    ok = np.abs(dphase) <= n_sigma * max(sigma_phase, _SIGMA_FLOOR)
    ok &= np.abs(dlog) <= n_sigma * max(sigma_log, _SIGMA_FLOOR)
    if ok.sum() < 3:
        raise ValueError(
            "could not find vacuum pixels inside region; pass `background`, a bool mask of "
            "vacuum pixels (the amplitude/phase reference of every energy)"
        )
    vac = np.zeros(region.shape, dtype=bool)
    vac[yy[ok], xx[ok]] = True
    return vac


def _fit_vacuum(obj: np.ndarray, vac: np.ndarray, gy: np.ndarray, gx: np.ndarray) -> VacuumFit:
    """Least-squares vacuum level over the pixels ``vac`` around a provisional ramp (gy, gx)."""
    n_e = obj.shape[0]
    vy, vx = np.nonzero(vac)
    y0, x0 = float(vy.mean()), float(vx.mean())
    # Offset re-fitted around the vacuum centroid, so residual phases about the provisional
    # ramp are small and a plain LS plane is wrap-free.
    deramped = VacuumFit(np.ones(n_e), np.zeros(n_e), gy, gx, y0, x0, vac).normalise(obj, vy, vx)
    base = np.angle(deramped.mean(axis=1, dtype=np.complex128))
    resid = np.angle(deramped * np.exp(-1j * base).astype(np.complex64)[:, None]).astype(float)
    design = np.stack([np.ones(vy.size), vy - y0, vx - x0], axis=1)
    if np.linalg.matrix_rank(design) == 3:
        # normal equations: centred coordinates keep the 3×3 system well conditioned
        coef = np.linalg.solve(design.T @ design, (resid @ design).T)  # (3, n_E)
    else:  # vacuum on a line or a point: keep the provisional ramp, fit only the constant
        coef = np.zeros((3, n_e))
        coef[0] = resid.mean(axis=1)
    amplitude = np.exp(np.mean(np.log(np.maximum(np.abs(deramped), 1e-30)), axis=1, dtype=float))
    return VacuumFit(
        amplitude=amplitude,
        offset=base + coef[0],
        ramp_y=gy + coef[1],
        ramp_x=gx + coef[2],
        y0=y0,
        x0=x0,
        background=vac,
    )


# -------------------------------------------------------------------------- projection
def _unwrap_mean_phase(wrapped: np.ndarray, region: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Spatially unwrap a wrapped phase image [rad] inside ``region``, vacuum at 0.

    Each connected part of ``region`` is anchored on its own vacuum pixels (their median
    phase is brought to its branch nearest 0) or, without vacuum, so that its median
    phase lies in [−π, π].
    """
    from scipy import ndimage

    ny, nx = wrapped.shape
    if ny > 1 and nx > 1:
        from skimage.restoration import unwrap_phase

        unwrapped = np.array(np.ma.getdata(unwrap_phase(np.ma.array(wrapped, mask=~region), rng=0)), dtype=float)
    else:  # a single row or column: 1-D unwrap along it
        unwrapped = np.zeros(wrapped.size)
        unwrapped[region.ravel()] = np.unwrap(wrapped.ravel()[region.ravel()])
        unwrapped = unwrapped.reshape(wrapped.shape)
    labels, n_parts = ndimage.label(region)
    for part in range(1, n_parts + 1):
        sel = labels == part
        anchor = sel & background
        ref = np.median(unwrapped[anchor]) if np.any(anchor) else np.median(unwrapped[sel])
        unwrapped[sel] -= 2 * np.pi * np.round(ref / (2 * np.pi))
    return np.where(region, unwrapped, 0.0)


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
    centre_map = _unwrap_mean_phase(wrapped, region, vacuum.background)
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
        correction = np.exp((1j * weight) * (target - phase)).astype(np.complex64)
        out[:, yy[sl], xx[sl]] *= correction
    return out


@lru_cache(maxsize=16)
def _cached_operator(energy: tuple[float, ...], element: str, table: str) -> KKOperator:
    # The reconstructor calls kkr_project at every scheduled iteration on the same grid.
    return kk_phase_matrix(np.array(energy), element=element, table=table)
