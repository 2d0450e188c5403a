"""Registration of the energy stack and absorption/phase spectra (DESIGN §1c).

Two stages, both xarray in → xarray out and additive:

- :func:`align` registers every energy's reconstructed ``object`` onto a reference energy
  (sub-pixel phase correlation) and records the shifts ``shift_y``/``shift_x``.
- :func:`spectra` normalises each energy to the vacuum (amplitude, constant phase and
  linear phase ramp), unwraps the phase and adds ``absorption`` μt, ``phase`` φ,
  ``background`` and ``material``.

The numerics are numpy-only kernels acting on one 2-D image (``detect_background``,
``fit_vacuum``, ``normalise_image``, ``register_images``, ``shift_object``,
``shift_mask``); the stages map them over energy (and ``particle``) with
``xarray.apply_ufunc``.

Vacuum model. A reconstruction is only defined up to an amplitude scale (probe
normalisation), a constant phase and a linear phase ramp (the ramp can move between
object and probe without changing any diffraction pattern). In vacuum the object is
therefore ``A·exp(i(c + g_y·row + g_x·col))`` rather than 1; both stages estimate this
"vacuum phasor" per energy on vacuum pixels and divide it out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from scipy import ndimage

from ptyxr.registration import IMAGES as _IMAGES
from ptyxr.registration import register_images, registration_image, registration_images
from ptyxr.schema import (
    ABSORPTION,
    BACKGROUND,
    COVERAGE,
    ENERGY,
    MATERIAL,
    OBJECT,
    PARTICLE,
    PHASE,
    SHIFT_X,
    SHIFT_Y,
    SchemaError,
    X,
    Y,
    require_dims,
    validate_reconstruction,
    variable,
    with_attrs,
)
from ptyxr.stage import Recorded, stage

__all__ = [
    "align",
    "spectra",
    "detect_background",
    "registration_image",
    "fit_vacuum",
    "normalise_image",
    "register_images",
    "shift_object",
    "shift_mask",
    "valid_pixels",
]

#: Fewest vacuum pixels accepted for the normalisation (a plane fit needs 3; the robust
#: statistics need a few dozen to mean anything).
MIN_BACKGROUND_PIXELS = 16
#: Floor of the robust σ [rad or ln-amplitude]: noise-free (simulated) vacuum has MAD = 0,
#: and complex64 rounding is ~1e-7, so 1e-6 keeps exact vacuum in and everything else out.
SIGMA_FLOOR = 1e-6
#: 1.4826·MAD = σ for Gaussian noise.
_MAD_TO_SIGMA = 1.4826
_NO_VACUUM_HINT = (
    "Pass the vacuum region explicitly with background=<bool (y, x) mask>, or check that the "
    "field of view contains vacuum around the particle and that `coverage` is right."
)


# =====================================================================================
# array kernels (numpy only)
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
            f"vacuum normalisation needs at least 3 vacuum pixels, got {int(bg.sum())}. " + _NO_VACUUM_HINT
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


def _unwrap(phase: np.ndarray, valid: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """Unwrap ``phase`` inside ``valid`` (NaN elsewhere), anchoring each region on ``anchor``.

    skimage unwraps each connected region with its own arbitrary 2π offset; each region
    that holds anchor (vacuum) pixels is moved so that their median phase lies in (−π, π].
    """
    from skimage.restoration import unwrap_phase

    out = np.full(phase.shape, np.nan)
    if not valid.any():
        return out
    unwrapped = unwrap_phase(np.ma.array(phase, mask=~valid), rng=0)
    out[valid] = np.ma.getdata(unwrapped)[valid]
    labels, n = ndimage.label(valid)
    for region in range(1, n + 1):
        inside = labels == region
        ref = inside & anchor
        if ref.any():
            out[inside] -= 2 * np.pi * np.round(np.median(out[ref]) / (2 * np.pi))
    return out


def _robust_centre(values: np.ndarray) -> tuple[float, float]:
    centre = float(np.median(values))
    spread = _MAD_TO_SIGMA * float(np.median(np.abs(values - centre)))
    return centre, max(spread, SIGMA_FLOOR)


def _refine_background(
    phase: np.ndarray, log_amp: np.ndarray, valid: np.ndarray, start: np.ndarray, sigma: float, max_iter: int = 50
) -> np.ndarray:
    """Grow/shrink ``start`` to the pixels within ``sigma`` robust σ of its median phase and log-amplitude."""
    bg = start
    for _ in range(max_iter):
        if bg.sum() < MIN_BACKGROUND_PIXELS:
            break
        cp, sp = _robust_centre(phase[bg])
        ca, sa = _robust_centre(log_amp[bg])
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
            f"no vacuum found: only {int(valid.sum())} covered pixels with a finite, non-zero object. {_NO_VACUUM_HINT}"
        )
    rows, cols = _centred_grid(obj.shape)
    gy, gx = _median_gradient(obj, valid)
    z = obj * np.exp(-1j * (gy * rows + gx * cols))
    z = z * np.exp(-1j * np.angle(np.sum(z[valid] / np.abs(z[valid]))))
    phase = _unwrap(np.angle(np.where(valid, z, 1)), valid, np.zeros_like(valid))
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
            f"(< {MIN_BACKGROUND_PIXELS}). {_NO_VACUUM_HINT}"
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
        phase = _unwrap(wrapped, valid, bg)
    else:
        phase = np.where(valid, wrapped, np.nan)
    return absorption, phase


def material_mask(phase: np.ndarray, background: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """Pixels whose phase lies below the vacuum by more than ``sigma`` × std of the vacuum phase.

    Parameters
    ----------
    phase : ndarray, shape (ny, nx)
        Vacuum-referenced phase [rad] (NaN = not covered).
    background : ndarray of bool
        Vacuum pixels.
    sigma : float
        Threshold in standard deviations of the vacuum phase.
    """
    bg = np.asarray(background, dtype=bool) & np.isfinite(phase)
    if not bg.any():
        return np.zeros(phase.shape, dtype=bool)
    level = float(np.mean(phase[bg]))
    spread = max(float(np.std(phase[bg])), SIGMA_FLOOR)
    with np.errstate(invalid="ignore"):
        return (phase < level - sigma * spread) & ~bg


def shift_object(
    obj: np.ndarray, coverage: np.ndarray | None, amplitude: float, coeffs: np.ndarray, shift: np.ndarray
) -> np.ndarray:
    """Fourier-shift an object's content by ``shift`` pixels, leaving its vacuum phasor in place.

    The object is divided by its vacuum phasor V = A·exp(i·plane) (so vacuum is 1), the
    deviation ``O/V − 1`` (0 outside the valid pixels) is shifted on a zero-padded grid —
    neither wrap-around nor the coverage edge brings in garbage — and the result is
    multiplied back by the unshifted V (a reconstruction artefact, not content). Shifting
    ``O − V`` instead would rotate the content by the ramp's phase over the shift.

    Parameters
    ----------
    obj : ndarray, complex, shape (ny, nx)
    coverage : ndarray of bool or None
    amplitude, coeffs
        Vacuum phasor from :func:`fit_vacuum`.
    shift : ndarray, shape (2,)
        (row, col) shift in pixels; positive moves content to larger indices.
    """
    obj = np.asarray(obj)
    valid = valid_pixels(obj, coverage)
    vacuum = amplitude * np.exp(1j * vacuum_phase(obj.shape, coeffs))
    deviation = np.where(valid, obj / vacuum - 1, 0)
    pad = int(np.ceil(np.max(np.abs(shift)))) + 2
    padded = np.pad(deviation, pad)
    moved = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(padded), tuple(shift)))
    moved = moved[pad : pad + obj.shape[0], pad : pad + obj.shape[1]]
    return (vacuum * (1 + moved)).astype(obj.dtype)


def shift_mask(mask: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Shift a boolean mask by ``shift`` pixels, keeping only pixels fully inside it (conservative)."""
    moved = ndimage.shift(np.asarray(mask, dtype=np.float64), tuple(shift), order=1, mode="constant", cval=0.0)
    return moved > 1 - 1e-6


# =====================================================================================
# stage helpers (xarray)
# =====================================================================================
def _coverage(ds: xr.Dataset) -> xr.DataArray:
    """``coverage`` if present, else every pixel of the object grid."""
    if COVERAGE in ds:
        cov = ds[COVERAGE]
        if cov.dtype != bool:
            raise SchemaError(f"{COVERAGE!r} must be boolean (True = illuminated), got {cov.dtype}.")
        return cov
    return xr.ones_like(ds[OBJECT].isel({ENERGY: 0}, drop=True), dtype=bool)


def _nearest_energy(energy: np.ndarray, value: float | None, default: float, stage: str) -> int:
    """Index of the energy nearest ``value`` (``default`` when None); raises if far off the grid."""
    target = default if value is None else float(value)
    index = int(np.argmin(np.abs(energy - target)))
    step = np.min(np.diff(energy)) if energy.size > 1 else np.inf
    if abs(energy[index] - target) > 0.5 * step:
        raise SchemaError(
            f"{stage}: energy {target} eV is not on the energy grid "
            f"({energy[0]:g}–{energy[-1]:g} eV); pick one of ds.energy."
        )
    return index


def _user_mask(mask: Any, template: xr.DataArray, name: str, stage: str) -> xr.DataArray:
    """A user-given boolean (y, x) mask as a DataArray aligned with ``template``."""
    if isinstance(mask, xr.DataArray):
        da = mask
    else:
        array = np.asarray(mask)
        if array.shape != template.shape:
            raise SchemaError(
                f"{stage}: {name}= has shape {array.shape}, expected {template.shape} "
                f"(dims {template.dims}); pass a bool array or DataArray over the object grid."
            )
        da = xr.DataArray(array, dims=template.dims, coords=template.coords)
    if da.dtype != bool:
        raise SchemaError(f"{stage}: {name}= must be boolean (True = {name}), got {da.dtype}.")
    require_dims(da, (Y, X), f"{stage} ({name}=)")
    missing = [d for d in (Y, X) if da.sizes[d] != template.sizes[d]]
    if missing:
        raise SchemaError(f"{stage}: {name}= does not match the object grid along {missing}.")
    return da.reset_coords(drop=True).assign_coords({d: template[d] for d in (Y, X) if d in template.coords})


def _region_mask(region: Any, template: xr.DataArray, stage: str) -> xr.DataArray:
    """``region=`` as a bool (y, x) mask: a mask, or a dict {y: slice, x: slice} in metres."""
    if region is None:
        return xr.ones_like(template, dtype=bool)
    if isinstance(region, dict):
        unknown = set(region) - {Y, X}
        if unknown:
            raise SchemaError(f"{stage}: region= keys must be {Y!r}/{X!r} (slices in metres), got {sorted(unknown)}.")
        mask = xr.zeros_like(template, dtype=bool)
        mask.loc[region] = True
        if not mask.any():
            raise SchemaError(f"{stage}: region={region} selects no pixel; slices are in metres along y/x.")
        return mask
    return _user_mask(region, template, "region", stage)


def _pixel_spacing(ds: xr.Dataset, dim: str, stage: str) -> float:
    """Signed coordinate step [m] along ``dim`` (a +1 pixel shift moves content by this much)."""
    coord = np.asarray(ds[dim].values, dtype=float)
    if coord.size < 2:
        raise SchemaError(f"{stage}: the {dim!r} coordinate needs at least 2 pixels.")
    steps = np.diff(coord)
    if not np.allclose(steps, steps[0], rtol=1e-6, atol=0):
        raise SchemaError(f"{stage}: the {dim!r} coordinate must be uniformly spaced (a regular pixel grid).")
    return float(steps[0])


# =====================================================================================
# stage: align
# =====================================================================================
def _align_one(
    ds: xr.Dataset, reference: int, upsample: int, region: Any, image: str, edges: bool, smooth: float, progress: bool
) -> tuple[xr.DataArray, xr.DataArray, np.ndarray]:
    """Align one particle: returns (registered object, new coverage, shifts [pixels])."""
    obj = ds[OBJECT].transpose(ENERGY, Y, X)
    cov = _coverage(ds).transpose(Y, X)
    region_mask = _region_mask(region, cov, "align")
    # registration needs the pixel values: this computes the object stack (dask input
    # included) once; the shifted object below stays lazy on dask input
    images, amplitudes, coeffs = registration_images(
        np.asarray(obj.values), np.asarray(cov.values), np.asarray(region_mask.values), image, edges, smooth, progress
    )
    shifts = register_images(images, reference, upsample=upsample, progress=progress)

    per_energy = {
        name: xr.DataArray(values, dims=(ENERGY,), coords={ENERGY: obj[ENERGY]})
        for name, values in (
            ("amplitude", amplitudes),
            ("c", coeffs[:, 0]),
            ("gy", coeffs[:, 1]),
            ("gx", coeffs[:, 2]),
            ("sy", shifts[:, 0]),
            ("sx", shifts[:, 1]),
        )
    }

    def _kernel(o, c, amplitude, c0, gy, gx, sy, sx):
        return shift_object(o, c, amplitude, np.array([c0, gy, gx]), np.array([sy, sx]))

    moved = xr.apply_ufunc(
        _kernel,
        obj,
        cov,
        per_energy["amplitude"],
        per_energy["c"],
        per_energy["gy"],
        per_energy["gx"],
        per_energy["sy"],
        per_energy["sx"],
        input_core_dims=[[Y, X], [Y, X], [], [], [], [], [], []],
        output_core_dims=[[Y, X]],
        vectorize=True,
        dask="parallelized",
        output_dtypes=[obj.dtype],
    )
    new_cov = np.logical_and.reduce([shift_mask(cov.values, s) for s in shifts])
    new_cov_da = xr.DataArray(new_cov, dims=(Y, X), coords=cov.coords)
    # outside the common covered region the object is 1+0j, as in a reconstruction (§1b)
    moved = moved.where(new_cov_da, np.ones((), dtype=obj.dtype)).transpose(*ds[OBJECT].dims).astype(obj.dtype)
    return moved, new_cov_da, shifts


@stage("align", validate=validate_reconstruction)
def align(
    ds: xr.Dataset,
    reference: float | None = None,
    upsample: int = 100,
    region: Any = None,
    image: str = "phase",
    progress: bool = True,
    edges: bool = True,
    smooth: float = 1.5,
) -> Recorded:
    """Register the energy stack of ``object`` onto a reference energy (sub-pixel).

    Each energy's image (vacuum-normalised unwrapped phase, or absorption μt with
    ``image="absorption"``) is registered onto the reference energy's by upsampled phase
    cross-correlation (``skimage.registration.phase_cross_correlation``); the complex
    object is then Fourier-shifted — only its deviation from the vacuum, zero-padded, so
    edges bring in no garbage. ``coverage`` becomes the AND of the shifted coverages
    (pixels covered at every energy); outside it the object is 1+0j.

    Parameters
    ----------
    ds : xarray.Dataset
        Reconstruction (DESIGN §1b): ``object`` (energy, y, x) complex, coords y/x [m] on a
        regular grid, optional ``coverage`` (y, x) bool. A leading ``particle`` dim is
        aligned particle by particle.
    reference : float, optional
        Reference energy [eV] (nearest grid energy); default the highest energy. Its
        shift is exactly 0.
    upsample : int
        Cross-correlation upsampling: shifts are found to 1/upsample pixel.
    region : bool (y, x) mask or dict {"y": slice, "x": slice} in metres, optional
        Restrict the registration to this region (enclose the particle with some vacuum);
        default the whole covered field.
    image : {"phase", "absorption"}
        Which image to register on. Phase has strong contrast at every energy; absorption
        fails near the edge when chemical domains cross their edges at different energies
        (the μt image then shows only part of the particle).
    progress : bool
        Show progress bars.
    edges : bool
        Register the images' gradient magnitude rather than the images themselves, so
        chemical contrast that changes with energy inside the particle does not bias the
        shifts (:func:`registration_image`).
    smooth : float
        Gaussian smoothing [pixels] of the registration images (noise suppression).

    Returns
    -------
    xarray.Dataset
        ``ds`` with ``object`` and ``coverage`` replaced by their registered versions and
        ``shift_y``, ``shift_x`` (energy) [m] added: the shift applied to each energy's
        image; positive moves content toward +y/+x.

    Notes
    -----
    Registration needs pixel values, so the object stack is computed once (dask input
    included); the shifted ``object`` itself stays lazy on dask input.
    """
    if image not in _IMAGES:
        raise ValueError(f"align: image must be one of {_IMAGES}, got {image!r}.")
    if int(upsample) < 1:
        raise ValueError(f"align: upsample must be a positive integer, got {upsample!r}.")
    energy = np.asarray(ds[ENERGY].values, dtype=float)
    ref = _nearest_energy(energy, reference, energy[-1], "align")
    dy, dx = _pixel_spacing(ds, Y, "align"), _pixel_spacing(ds, X, "align")

    if PARTICLE in ds[OBJECT].dims:
        parts = [
            _align_one(ds.isel({PARTICLE: i}), ref, int(upsample), region, image, edges, float(smooth), progress)
            for i in range(ds.sizes[PARTICLE])
        ]
        obj = xr.concat([p[0] for p in parts], dim=PARTICLE).transpose(*ds[OBJECT].dims)
        cov = xr.concat([p[1] for p in parts], dim=PARTICLE)
        shifts = np.stack([p[2] for p in parts])  # (particle, energy, 2)
        shift_dims: tuple[str, ...] = (PARTICLE, ENERGY)
    else:
        obj, cov, shifts = _align_one(ds, ref, int(upsample), region, image, edges, float(smooth), progress)
        shift_dims = (ENERGY,)
    comment = f"registered onto {energy[ref]:g} eV by ptyxr align ({image} images)"
    out = ds.assign(
        {
            OBJECT: with_attrs(obj, OBJECT, comment=comment),
            COVERAGE: with_attrs(cov, COVERAGE),
            SHIFT_Y: variable(SHIFT_Y, shifts[..., 0] * dy, dims=shift_dims),
            SHIFT_X: variable(SHIFT_X, shifts[..., 1] * dx, dims=shift_dims),
        }
    )
    # the parameters are recorded from the call; "reference" is the grid energy used
    return Recorded(out, {"reference": float(energy[ref])})


# =====================================================================================
# stage: spectra
# =====================================================================================
@stage("spectra", validate=validate_reconstruction)
def spectra(
    ds: xr.Dataset,
    background: Any = None,
    material: Any = None,
    material_sigma: float = 3.0,
    reference_energy: float | None = None,
    unwrap: bool = True,
    background_sigma: float = 3.0,
) -> Recorded:
    """Absorption μt and phase φ stacks normalised to the vacuum (DESIGN §1c).

    Per energy: A = mean vacuum amplitude, plane = least-squares vacuum phase (constant +
    linear ramp); μt = −ln(``|O|``/A) and φ = unwrap(arg(O·exp(−i·plane))), so vacuum is 0 and
    material has μt > 0, φ < 0. Uncovered pixels are NaN.

    Parameters
    ----------
    ds : xarray.Dataset
        Reconstruction (DESIGN §1b), usually after :func:`align`: ``object`` (energy, y, x)
        complex, optional ``coverage`` (y, x). A leading ``particle`` dim is supported.
    background : bool (y, x) mask, optional
        Vacuum region. Default: detected on the reference-energy image — covered pixels
        whose phase and log-amplitude lie within ``background_sigma`` robust σ of the
        dominant, highest-phase (vacuum) mode (:func:`detect_background`).
    material : bool (y, x) mask, optional
        Particle region. Default: phase at the reference energy below the vacuum by more
        than ``material_sigma`` × std of the vacuum phase.
    material_sigma : float
        Threshold of the default material mask [std of the vacuum phase].
    reference_energy : float, optional
        Energy [eV] (nearest on the grid) whose image defines ``background`` and
        ``material``; default the lowest energy (the paper's pre-edge phase image).
    unwrap : bool
        Unwrap the phase per energy image (else it stays in (−π, π]).
    background_sigma : float
        Acceptance half-width of the automatic vacuum detection [robust σ].

    Returns
    -------
    xarray.Dataset
        ``ds`` plus ``absorption``, ``phase`` (energy, y, x), ``background``, ``material`` (y, x).

    Raises
    ------
    SchemaError
        No/odd ``object``, no ``energy``, a real-valued object, masks of the wrong shape, or
        no vacuum found (then pass ``background=``). On dask input the work stays lazy and
        a missing vacuum is reported when the result is computed.
    """
    energy = np.asarray(ds[ENERGY].values, dtype=float)
    ref = _nearest_energy(energy, reference_energy, energy[0], "spectra")
    obj = ds[OBJECT]
    if any(obj.sizes[d] < 2 for d in (Y, X)):
        raise SchemaError("spectra: the object grid needs at least 2 x 2 pixels.")
    cov = _coverage(ds)
    obj_ref = obj.isel({ENERGY: ref}, drop=True)
    if obj.chunks is not None:  # whole images per block: chunk over energy/particle only
        obj = obj.chunk({Y: -1, X: -1})
        obj_ref = obj_ref.chunk({Y: -1, X: -1})

    if background is None:
        bg = xr.apply_ufunc(
            detect_background,
            obj_ref,
            cov,
            input_core_dims=[[Y, X], [Y, X]],
            output_core_dims=[[Y, X]],
            vectorize=True,
            dask="parallelized",
            output_dtypes=[bool],
            kwargs={"sigma": float(background_sigma)},
        )
    else:
        bg = _user_mask(background, cov, "background", "spectra") & cov
        if not bool(bg.any()):
            raise SchemaError(f"spectra: background= selects no covered pixel. {_NO_VACUUM_HINT}")

    absorption, phase = xr.apply_ufunc(
        normalise_image,
        obj,
        cov,
        bg,
        input_core_dims=[[Y, X]] * 3,
        output_core_dims=[[Y, X], [Y, X]],
        vectorize=True,
        dask="parallelized",
        kwargs={"unwrap": bool(unwrap)},
        # explicit meta: dask would otherwise derive it by casting the complex input (ComplexWarning)
        dask_gufunc_kwargs={"meta": (np.empty((0, 0), np.float64), np.empty((0, 0), np.float64))},
    )
    absorption = absorption.transpose(*ds[OBJECT].dims)
    phase = phase.transpose(*ds[OBJECT].dims)

    if material is None:
        mat = xr.apply_ufunc(
            material_mask,
            phase.isel({ENERGY: ref}, drop=True),
            bg,
            input_core_dims=[[Y, X], [Y, X]],
            output_core_dims=[[Y, X]],
            vectorize=True,
            dask="parallelized",
            output_dtypes=[bool],
            kwargs={"sigma": float(material_sigma)},
        )
    else:
        mat = _user_mask(material, cov, "material", "spectra") & cov

    out = ds.assign(
        {
            ABSORPTION: with_attrs(absorption, ABSORPTION),
            PHASE: with_attrs(phase, PHASE),
            BACKGROUND: with_attrs(bg.transpose(..., Y, X), BACKGROUND),
            MATERIAL: with_attrs(mat.transpose(..., Y, X), MATERIAL),
        }
    )
    return Recorded(out, {"reference_energy": float(energy[ref])})
