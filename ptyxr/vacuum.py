"""The vacuum model of a reconstructed object: one numpy kernel for ``spectra`` and the KKR step.

A ptychographic reconstruction is only defined up to an amplitude scale (probe
normalisation), a constant phase and a linear phase ramp (the ramp can move between
object and probe without changing any diffraction pattern). In vacuum the object is
therefore the *vacuum phasor* ``V = A·exp(i(c + g_y·row + g_x·col))`` rather than 1; the
absorption is μt = −ln|O/V| and the phase φ = arg(O·conj V), unwrapped in space with the
vacuum at 0. Both users estimate V on vacuum pixels found from the data and divide it out:

- one image at a time (:func:`detect_background`, :func:`fit_vacuum`,
  :func:`normalise_image`): :func:`ptyxr.spectra.spectra`, :func:`ptyxr.spectra.align` and
  the stack registration (:mod:`ptyxr.registration`) — each energy finds its own vacuum,
  since drift moves the particle between energies;
- a whole (energy, y, x) stack on one co-registered grid (:func:`vacuum_normalise`,
  :class:`VacuumFit`): the Kramers–Kronig step (:mod:`ptyxr.reconstruct.kkr`), which
  selects the vacuum once on the energy-mean phasor.

Shared pieces: the robust noise scale (1.4826·MAD, :func:`robust_centre`) with a floor
(noise-free simulated vacuum has MAD = 0; each user passes its own floor), and the
spatial unwrapping anchored on the vacuum (:func:`unwrap_anchored`). The two ramp
estimators differ on purpose: one image uses the median wrapped neighbour difference
(robust to a particle covering much of a small field), the stack the angle of the summed
neighbour phasor products over all energies at once (cheap on large maps).

Numpy (and scipy/scikit-image) only, no xarray.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ptyxr.errors import SchemaError

__all__ = [
    "IMAGE_SIGMA_FLOOR",
    "MIN_BACKGROUND_PIXELS",
    "STACK_SIGMA_FLOOR",
    "VacuumFit",
    "detect_background",
    "fit_vacuum",
    "neighbour_sigma",
    "normalise_image",
    "robust_centre",
    "unwrap_anchored",
    "vacuum_normalise",
    "vacuum_phase",
    "valid_pixels",
]

#: Fewest vacuum pixels accepted for the one-image normalisation (a plane fit needs 3; the
#: robust statistics need a few dozen to mean anything).
MIN_BACKGROUND_PIXELS = 16
#: Floor of the robust σ [rad or ln-amplitude] of one image's vacuum: noise-free (simulated)
#: vacuum has MAD = 0, and complex64 rounding is ~1e-7, so 1e-6 keeps exact vacuum in and
#: everything else out.
IMAGE_SIGMA_FLOOR = 1e-6
#: Floor of the neighbour-difference σ [rad, or 1 in ln|O|] of the stack's energy-mean
#: phasor: noise-free (simulated) stacks have σ ≈ 0 but complex64 rounding ~1e-7. The two
#: floors were tuned separately and are kept apart (one value would change results).
STACK_SIGMA_FLOOR = 1e-5
#: 1.4826·MAD = σ for Gaussian noise.
MAD_TO_SIGMA = 1.4826
NO_VACUUM_HINT = (
    "Pass the vacuum region explicitly with background=<bool (y, x) mask>, or check that the "
    "field of view contains vacuum around the particle and that `coverage` is right."
)


# =====================================================================================
# shared pieces
# =====================================================================================
def robust_centre(values: np.ndarray, floor: float = 0.0) -> tuple[float, float]:
    """Median and robust σ = max(1.4826·MAD, ``floor``) of ``values`` (same units)."""
    centre = float(np.median(values))
    spread = MAD_TO_SIGMA * float(np.median(np.abs(values - centre)))
    return centre, max(spread, floor)


def neighbour_sigma(image: np.ndarray, mask: np.ndarray) -> float:
    """Pixel noise σ of ``image`` from the MAD of neighbour differences inside ``mask``.

    Differences cancel smooth structure (particle interiors, vacuum level), so σ is
    estimated without knowing which pixels are vacuum; edges are outliers the median
    ignores. Returns 0 when ``mask`` has no neighbouring pair.
    """
    d = np.concatenate(
        [
            (image[1:, :] - image[:-1, :])[mask[1:, :] & mask[:-1, :]],
            (image[:, 1:] - image[:, :-1])[mask[:, 1:] & mask[:, :-1]],
        ]
    )
    if d.size == 0:
        return 0.0
    return robust_centre(d)[1] / np.sqrt(2.0)


def unwrap_anchored(
    wrapped: np.ndarray, region: np.ndarray, anchor: np.ndarray, fill: float = np.nan, anchor_all: bool = False
) -> np.ndarray:
    """Spatially unwrap a wrapped phase image [rad] inside ``region``, vacuum at 0.

    scikit-image unwraps each connected part of ``region`` with its own arbitrary 2π
    offset; each part that holds ``anchor`` (vacuum) pixels is moved so that their median
    phase lies on its branch nearest 0. A part without anchor pixels keeps skimage's
    offset, or with ``anchor_all`` is moved so that its own median lies in [−π, π]. A
    single row or column is unwrapped along it (numpy).

    Parameters
    ----------
    wrapped : ndarray, shape (ny, nx)
        Phase [rad] in (−π, π].
    region, anchor : ndarray of bool, shape (ny, nx)
        Pixels to unwrap; vacuum pixels that fix each part's 2π offset.
    fill : float
        Value outside ``region``.
    anchor_all : bool
        Also move parts without anchor pixels (on their own median).

    Returns
    -------
    ndarray, float64, shape (ny, nx)
    """
    region = np.asarray(region, dtype=bool)
    out = np.full(wrapped.shape, fill, dtype=np.float64)
    if not region.any():
        return out
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
        inside = labels == part
        ref = inside & anchor
        if np.any(ref):
            unwrapped[inside] -= 2 * np.pi * np.round(np.median(unwrapped[ref]) / (2 * np.pi))
        elif anchor_all:
            unwrapped[inside] -= 2 * np.pi * np.round(np.median(unwrapped[inside]) / (2 * np.pi))
    out[region] = unwrapped[region]
    return out


# =====================================================================================
# one image (spectra, align, registration)
# =====================================================================================
def valid_pixels(obj: np.ndarray, coverage: np.ndarray | None = None) -> np.ndarray:
    """Pixels with a usable transmission: inside ``coverage``, finite and non-zero.

    Parameters
    ----------
    obj : ndarray, complex
        Object transmission [1], any shape.
    coverage : ndarray of bool, optional
        Illuminated pixels (same shape); all pixels when omitted.
    """
    valid = np.isfinite(obj) & (np.abs(obj) > 0)
    if coverage is not None:
        valid &= np.asarray(coverage, dtype=bool)
    return valid


def _centred_grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row/column pixel indices relative to the image centre (better-conditioned plane fits)."""
    rows, cols = np.indices(shape, dtype=np.float64)
    return rows - (shape[0] - 1) / 2, cols - (shape[1] - 1) / 2


def _median_gradient(obj: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Phase ramp [rad/pixel] as the median wrapped phase difference of neighbouring ``mask`` pixels.

    Robust to the particle (its edges are a minority of pixel pairs) and immune to phase
    wrapping, so it gives a first ramp before any unwrapping.
    """
    grads = []
    for axis in (0, 1):
        a = np.take(obj, np.arange(1, obj.shape[axis]), axis=axis)
        b = np.take(obj, np.arange(0, obj.shape[axis] - 1), axis=axis)
        pairs = np.take(mask, np.arange(1, mask.shape[axis]), axis=axis) & np.take(
            mask, np.arange(0, mask.shape[axis] - 1), axis=axis
        )
        grads.append(float(np.median(np.angle(a[pairs] * np.conj(b[pairs])))) if pairs.any() else 0.0)
    return grads[0], grads[1]


def _fit_plane(values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Least-squares plane ``c + g_y·row + g_x·col`` through ``values``; returns (c, g_y, g_x)."""
    design = np.column_stack([np.ones_like(rows), rows, cols])
    coeffs, *_ = np.linalg.lstsq(design, values, rcond=None)
    return coeffs


def vacuum_phase(shape: tuple[int, int], coeffs: np.ndarray) -> np.ndarray:
    """The vacuum phase plane ``c + g_y·row + g_x·col`` [rad] (centred pixel indices)."""
    rows, cols = _centred_grid(shape)
    return coeffs[0] + coeffs[1] * rows + coeffs[2] * cols


def fit_vacuum(obj: np.ndarray, background: np.ndarray) -> tuple[float, np.ndarray]:
    """Vacuum phasor of one image: mean amplitude and phase plane over ``background``.

    Parameters
    ----------
    obj : ndarray, complex, shape (ny, nx)
        Object transmission [1].
    background : ndarray of bool, shape (ny, nx)
        Vacuum pixels (at least 3, ideally many).

    Returns
    -------
    amplitude : float
        Mean |O| over the vacuum [1].
    coeffs : ndarray, shape (3,)
        Phase plane (c [rad], g_y [rad/pixel], g_x [rad/pixel]) on centred pixel indices
        (see :func:`vacuum_phase`).
    """
    bg = np.asarray(background, dtype=bool) & valid_pixels(obj)
    if bg.sum() < 3:
        raise SchemaError(
            f"vacuum normalisation needs at least 3 vacuum pixels, got {int(bg.sum())}. " + NO_VACUUM_HINT
        )
    rows, cols = _centred_grid(obj.shape)
    gy, gx = _median_gradient(obj, bg)
    z = obj[bg] * np.exp(-1j * (gy * rows[bg] + gx * cols[bg]))
    c0 = float(np.angle(np.sum(z / np.abs(z))))
    # after removing the rough ramp and constant the vacuum phase sits near 0, so a
    # least-squares plane on the wrapped angle is exact (no wrap inside the vacuum)
    residual = np.angle(z * np.exp(-1j * c0))
    fine = _fit_plane(residual, rows[bg], cols[bg])
    coeffs = np.array([c0 + fine[0], gy + fine[1], gx + fine[2]])
    return float(np.mean(np.abs(obj[bg]))), coeffs


def _refine_background(
    phase: np.ndarray, log_amp: np.ndarray, valid: np.ndarray, start: np.ndarray, sigma: float, max_iter: int = 50
) -> np.ndarray:
    """Grow/shrink ``start`` to the pixels within ``sigma`` robust σ of its median phase and log-amplitude."""
    bg = start
    for _ in range(max_iter):
        if bg.sum() < MIN_BACKGROUND_PIXELS:
            break
        cp, sp = robust_centre(phase[bg], IMAGE_SIGMA_FLOOR)
        ca, sa = robust_centre(log_amp[bg], IMAGE_SIGMA_FLOOR)
        with np.errstate(invalid="ignore"):
            new = valid & (np.abs(phase - cp) <= sigma * sp) & (np.abs(log_amp - ca) <= sigma * sa)
        if np.array_equal(new, bg):
            break
        bg = new
    return bg


def detect_background(obj: np.ndarray, coverage: np.ndarray | None = None, sigma: float = 3.0) -> np.ndarray:
    """Vacuum pixels of one image: the dominant, highest-phase mode of phase and amplitude.

    Material shifts the phase negative, so vacuum is the upper class of an Otsu split of
    the (ramp-removed, unwrapped) phase; that start is then refined to the pixels whose
    phase and log-amplitude lie within ``sigma`` robust σ (1.4826·MAD) of its median,
    with a least-squares phase plane refitted on it in between.

    Parameters
    ----------
    obj : ndarray, complex, shape (ny, nx)
        Object transmission [1].
    coverage : ndarray of bool, optional
        Illuminated pixels; only those can be vacuum.
    sigma : float
        Acceptance half-width in robust σ.

    Returns
    -------
    ndarray of bool, shape (ny, nx)

    Raises
    ------
    SchemaError
        If fewer than ``MIN_BACKGROUND_PIXELS`` vacuum pixels are found.
    """
    from skimage.filters import threshold_otsu

    obj = np.asarray(obj)
    valid = valid_pixels(obj, coverage)
    if valid.sum() < MIN_BACKGROUND_PIXELS:
        raise SchemaError(
            f"no vacuum found: only {int(valid.sum())} covered pixels with a finite, non-zero object. {NO_VACUUM_HINT}"
        )
    rows, cols = _centred_grid(obj.shape)
    gy, gx = _median_gradient(obj, valid)
    z = obj * np.exp(-1j * (gy * rows + gx * cols))
    z = z * np.exp(-1j * np.angle(np.sum(z[valid] / np.abs(z[valid]))))
    phase = unwrap_anchored(np.angle(np.where(valid, z, 1)), valid, np.zeros_like(valid))
    log_amp = np.full(obj.shape, np.nan)
    log_amp[valid] = np.log(np.abs(obj[valid]))
    values = phase[valid]
    threshold = threshold_otsu(values) if np.ptp(values) > 0 else values[0]
    bg = valid & (phase >= threshold)
    for _ in range(2):
        bg = _refine_background(phase, log_amp, valid, bg, sigma)
        if bg.sum() < MIN_BACKGROUND_PIXELS:
            break
        # remove what is left of the ramp, then re-select on the flattened phase
        plane = _fit_plane(phase[bg], rows[bg], cols[bg])
        phase = phase - (plane[0] + plane[1] * rows + plane[2] * cols)
    bg = _refine_background(phase, log_amp, valid, bg, sigma)
    if bg.sum() < MIN_BACKGROUND_PIXELS:
        raise SchemaError(
            f"no vacuum found: the automatic vacuum detection kept {int(bg.sum())} pixels "
            f"(< {MIN_BACKGROUND_PIXELS}). {NO_VACUUM_HINT}"
        )
    return bg


def normalise_image(
    obj: np.ndarray, coverage: np.ndarray | None, background: np.ndarray, unwrap: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Absorption μt and vacuum-referenced phase φ of one image.

    μt = −ln(|O|/A) with A the mean vacuum amplitude; φ = arg(O·exp(−i·plane)) with the
    vacuum phase plane (constant + linear ramp, :func:`fit_vacuum`) removed *before*
    unwrapping, so vacuum sits at 0 and material is negative.

    Parameters
    ----------
    obj : ndarray, complex, shape (ny, nx)
        Object transmission [1].
    coverage : ndarray of bool or None
        Illuminated pixels; others become NaN.
    background : ndarray of bool
        Vacuum pixels used for the normalisation.
    unwrap : bool
        Unwrap the phase (skimage.restoration.unwrap_phase); else it stays in (−π, π].

    Returns
    -------
    absorption : ndarray, float64 — μt [1]
    phase : ndarray, float64 — φ [rad]
    """
    obj = np.asarray(obj)
    valid = valid_pixels(obj, coverage)
    bg = np.asarray(background, dtype=bool) & valid
    amplitude, coeffs = fit_vacuum(obj, bg)
    z = np.where(valid, obj, 1).astype(np.complex128) * np.exp(-1j * vacuum_phase(obj.shape, coeffs)) / amplitude
    absorption = np.where(valid, -np.log(np.abs(z)), np.nan)
    wrapped = np.angle(z)
    if unwrap:
        phase = unwrap_anchored(wrapped, valid, bg)
    else:
        phase = np.where(valid, wrapped, np.nan)
    return absorption, phase


# =====================================================================================
# an (energy, y, x) stack on one grid (the KKR step)
# =====================================================================================
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
        return _fit_vacuum_stack(obj, vac, gy, gx)
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
    fit = _fit_vacuum_stack(obj, _vacuum_mask(zbar, yy, xx, region, n_sigma), gy, gx)
    zbar = np.mean(fit.normalise(obj, yy, xx), axis=0)
    return _fit_vacuum_stack(obj, _vacuum_mask(zbar, yy, xx, region, n_sigma, level=1.0), fit.ramp_y, fit.ramp_x)


def _vacuum_mask(
    zbar: np.ndarray, yy: np.ndarray, xx: np.ndarray, region: np.ndarray, n_sigma: float, level: complex | None = None
) -> np.ndarray:
    """Vacuum pixels: mean phasor ``zbar`` (at region pixels yy, xx) within n_sigma of ``level``."""
    img = np.zeros(region.shape)
    if level is None:
        img[yy, xx] = np.angle(zbar)
        level = _vacuum_peak(zbar, neighbour_sigma(img, region))
    dphase = np.angle(zbar * np.conj(level))
    dlog = np.log(np.maximum(np.abs(zbar), 1e-30)) - np.log(abs(level))
    img[yy, xx] = dphase
    sigma_phase = neighbour_sigma(img, region)
    img[yy, xx] = dlog
    sigma_log = neighbour_sigma(img, region)
    # floor: noise-free (simulated) stacks have σ ≈ 0 but complex64 rounding ~1e-7
    ok = np.abs(dphase) <= n_sigma * max(sigma_phase, STACK_SIGMA_FLOOR)
    ok &= np.abs(dlog) <= n_sigma * max(sigma_log, STACK_SIGMA_FLOOR)
    if ok.sum() < 3:
        raise ValueError(
            "could not find vacuum pixels inside region; pass `background`, a bool mask of "
            "vacuum pixels (the amplitude/phase reference of every energy)"
        )
    vac = np.zeros(region.shape, dtype=bool)
    vac[yy[ok], xx[ok]] = True
    return vac


def _fit_vacuum_stack(obj: np.ndarray, vac: np.ndarray, gy: np.ndarray, gx: np.ndarray) -> VacuumFit:
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
