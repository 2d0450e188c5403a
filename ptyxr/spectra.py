"""Registration of the energy stack and absorption/phase spectra (DESIGN §1c).

Two stages, both xarray in → xarray out and additive:

- :func:`align` registers every energy's reconstructed ``object`` onto a reference energy
  (sub-pixel phase correlation) and records the shifts ``shift_y``/``shift_x``.
- :func:`spectra` normalises each energy to the vacuum (amplitude, constant phase and
  linear phase ramp), unwraps the phase and adds ``absorption`` μt, ``phase`` φ,
  ``background`` and ``material``.

The numerics are numpy-only kernels acting on one 2-D image: the vacuum model
(``detect_background``, ``fit_vacuum``, ``normalise_image``) lives in :mod:`ptyxr.vacuum`,
the registration (``register_images``) in :mod:`ptyxr.registration`, both re-exported
here; ``shift_object`` and ``shift_mask`` are this module's. The stages map them over
energy (and ``particle``) with ``xarray.apply_ufunc``.

Vacuum model (:mod:`ptyxr.vacuum`). A reconstruction is only defined up to an amplitude
scale, a constant phase and a linear phase ramp, so in vacuum the object is the "vacuum
phasor" ``A·exp(i(c + g_y·row + g_x·col))`` rather than 1; both stages estimate it per
energy on vacuum pixels and divide it out.
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
from ptyxr.vacuum import (
    IMAGE_SIGMA_FLOOR,
    MIN_BACKGROUND_PIXELS,  # noqa: F401  (re-exported: spectra's documented constant)
    detect_background,
    fit_vacuum,
    normalise_image,
    vacuum_phase,
    valid_pixels,
)
from ptyxr.vacuum import (
    NO_VACUUM_HINT as _NO_VACUUM_HINT,
)

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

#: Floor of the robust σ of one image's vacuum (:data:`ptyxr.vacuum.IMAGE_SIGMA_FLOOR`).
SIGMA_FLOOR = IMAGE_SIGMA_FLOOR


# =====================================================================================
# array kernels (numpy only)
# =====================================================================================
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
