"""Build a raw scan series (DESIGN §1a) from plain numpy arrays.

This is the documented way into ptyxr for data in any format ptyxr has no reader for:
load the frames and positions with whatever tool reads them, then call
:func:`scan_from_arrays`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ptyxr import checks as _checks
from ptyxr import provenance
from ptyxr.optics import real_space_pixel_size
from ptyxr.schema import (
    ATTR_CONDITION,
    ATTR_DETECTOR_DISTANCE,
    ATTR_DETECTOR_PIXEL_SIZE,
    ATTR_PARTICLE,
    ATTR_PROBE_DEFOCUS,
    ATTR_PROBE_FWHM,
    DETECTOR_MASK,
    ENERGY,
    INTENSITY,
    MONITOR,
    POSITION_X,
    POSITION_Y,
    PROBE_GUESS,
    SchemaError,
    energy_coord,
    validate_raw,
    variable,
)

#: Length units accepted by ``positions_in`` (factor to metres); "pixels" is handled apart.
LENGTH_UNITS = {"m": 1.0, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "nm": 1e-9}
PIXELS = "pixels"


def _is_dask(a: Any) -> bool:
    return hasattr(a, "dask")


def _as_float_array(a: Any, name: str) -> np.ndarray:
    try:
        out = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise SchemaError(f"{name} must be numeric, got {type(a).__name__} ({err}).") from None
    return out


def _positive_scalar(value: Any, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise SchemaError(f"{name} must be a number, got {value!r}.") from None
    if not (np.isfinite(out) and out > 0):
        raise SchemaError(f"{name} must be a positive finite number, got {out!r}.")
    return out


def _positions(value: Any, name: str, n_energy: int, n_scan: int) -> np.ndarray:
    pos = _as_float_array(value, name)
    if pos.shape == (n_scan,):
        pos = np.broadcast_to(pos, (n_energy, n_scan)).copy()  # same scan at every energy
    if pos.shape != (n_energy, n_scan):
        raise SchemaError(
            f"{name} has shape {pos.shape}; expected ({n_energy}, {n_scan}) = (energy, scan) "
            f"or ({n_scan},) for the same positions at every energy."
        )
    return pos


def build_raw(
    intensity: Any,
    position_y: Any,
    position_x: Any,
    energy: Any,
    detector_distance: float,
    detector_pixel_size: float,
    detector_mask: Any = None,
    probe_guess: Any = None,
    particle: str = "P1",
    condition: str | None = None,
    probe_fwhm: float | None = None,
    probe_defocus: float | None = None,
    positions_in: str = "m",
    extra_attrs: dict[str, Any] | None = None,
    monitor: Any = None,
) -> xr.Dataset:
    """:func:`scan_from_arrays` without the provenance record (shared with the file readers)."""
    # ---- intensity: (energy, scan, N, N) float32, or (scan, N, N) for one energy
    if _is_dask(intensity):
        frames = intensity.astype(np.float32)
    else:
        try:
            frames = np.asarray(intensity, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise SchemaError(f"intensity must be numeric counts, got {type(intensity).__name__} ({err}).") from None
    energy_arr = _as_float_array(energy, "energy")
    if frames.ndim == 3:
        if energy_arr.size != 1:
            raise SchemaError(
                f"3-D intensity (scan, N, N) is one energy, but {energy_arr.size} energies were given; "
                "pass 4-D intensity (energy, scan, N, N)."
            )
        frames = frames[None]
    if frames.ndim != 4:
        raise SchemaError(f"intensity has shape {tuple(frames.shape)}; expected (energy, scan, N, N) or (scan, N, N).")
    n_energy, n_scan, n_y, n_x = (int(s) for s in frames.shape)
    energy_arr = energy_arr.reshape(-1)
    if energy_arr.size != n_energy:
        raise SchemaError(f"{energy_arr.size} energies given for {n_energy} energies of intensity.")
    if n_y != n_x:
        raise SchemaError(
            f"detector frames must be square, got {n_y}x{n_x}; crop them to N x N around the zero "
            "frequency (ptyxr.open_scan has crop=/center= for this)."
        )

    distance = _positive_scalar(detector_distance, ATTR_DETECTOR_DISTANCE)
    pixel = _positive_scalar(detector_pixel_size, ATTR_DETECTOR_PIXEL_SIZE)

    # ---- positions [m] of probe-array pixel (N//2, N//2) in the object frame
    py = _positions(position_y, POSITION_Y, n_energy, n_scan)
    px = _positions(position_x, POSITION_X, n_energy, n_scan)
    if positions_in == PIXELS:
        if not (np.all(np.isfinite(energy_arr)) and np.all(energy_arr > 0)):
            raise SchemaError("positions_in='pixels' needs finite positive energies to compute the pixel size.")
        # a reconstruction pixel is λz/(Np), different at every energy
        dx = real_space_pixel_size(energy_arr, distance, pixel, n_y)[:, None]
        py, px = py * dx, px * dx
    elif positions_in in LENGTH_UNITS:
        py, px = py * LENGTH_UNITS[positions_in], px * LENGTH_UNITS[positions_in]
    else:
        raise SchemaError(f"positions_in={positions_in!r}; use one of {[*LENGTH_UNITS, PIXELS]}.")

    data_vars = {
        INTENSITY: variable(INTENSITY, frames),
        POSITION_Y: variable(POSITION_Y, py),
        POSITION_X: variable(POSITION_X, px),
    }
    if detector_mask is not None:
        mask = np.asarray(detector_mask)
        if mask.shape != (n_y, n_x):
            raise SchemaError(f"detector_mask has shape {mask.shape}; expected the frame shape {(n_y, n_x)}.")
        if mask.dtype.kind not in "biuf":
            raise SchemaError(f"detector_mask must be boolean (True = valid pixel), got dtype {mask.dtype}.")
        data_vars[DETECTOR_MASK] = variable(DETECTOR_MASK, mask.astype(bool))
    if monitor is not None:
        i0 = _positions(monitor, MONITOR, n_energy, n_scan)
        used = np.isfinite(py) & np.isfinite(px)
        if not np.all(np.isfinite(i0[used]) & (i0[used] > 0)):
            raise SchemaError(f"{MONITOR} (I0) must be positive and finite at every scan point with a position.")
        data_vars[MONITOR] = variable(MONITOR, i0)
    if probe_guess is not None:
        probe = np.asarray(probe_guess)
        if probe.dtype.kind not in "biufc":
            raise SchemaError(f"probe_guess must be a numeric (complex) array, got dtype {probe.dtype}.")
        if probe.shape == (n_y, n_x):
            probe = np.broadcast_to(probe, (n_energy, n_y, n_x))
        if probe.shape != (n_energy, n_y, n_x):
            raise SchemaError(
                f"probe_guess has shape {probe.shape}; expected ({n_y}, {n_x}) or "
                f"({n_energy}, {n_y}, {n_x}) = (energy, probe_y, probe_x), the detector frame size."
            )
        data_vars[PROBE_GUESS] = variable(PROBE_GUESS, probe.astype(np.complex64))

    attrs: dict[str, Any] = {
        ATTR_DETECTOR_DISTANCE: distance,
        ATTR_DETECTOR_PIXEL_SIZE: pixel,
        ATTR_PARTICLE: str(particle),
    }
    if condition is not None:
        attrs[ATTR_CONDITION] = str(condition)
    if probe_fwhm is not None:
        attrs[ATTR_PROBE_FWHM] = _positive_scalar(probe_fwhm, ATTR_PROBE_FWHM)
    if probe_defocus is not None:
        try:
            attrs[ATTR_PROBE_DEFOCUS] = float(probe_defocus)
        except (TypeError, ValueError):
            raise SchemaError(f"{ATTR_PROBE_DEFOCUS} must be a number [m], got {probe_defocus!r}.") from None
    attrs.update(extra_attrs or {})
    ds = xr.Dataset(data_vars, coords={ENERGY: energy_coord(energy_arr)}, attrs=attrs)
    return validate_raw(ds)


def scan_from_arrays(
    intensity: Any,
    position_y: Any,
    position_x: Any,
    energy: Any,
    detector_distance: float,
    detector_pixel_size: float,
    detector_mask: Any = None,
    probe_guess: Any = None,
    particle: str = "P1",
    condition: str | None = None,
    probe_fwhm: float | None = None,
    probe_defocus: float | None = None,
    positions_in: str = "m",
    monitor: Any = None,
) -> xr.Dataset:
    """A validated raw scan series (DESIGN §1a) from numpy arrays.

    Parameters
    ----------
    intensity : array-like
        Photon counts, shape (energy, scan, N, N), or (scan, N, N) for a single energy;
        zero spatial frequency at pixel (N//2, N//2), rows along y, columns along x
        (apply ``np.fft.fftshift`` / flips first if your detector differs). NaN marks
        invalid pixels; frames that are all NaN with NaN positions are padding. Stored as
        float32; a dask array stays lazy.
    position_y, position_x : array-like
        Where the probe centre (probe-array pixel N//2, N//2) sits in the object frame,
        shape (energy, scan), or (scan,) for the same positions at every energy. These are
        *probe* positions: a sample-stage translation t gives −t. Unit: ``positions_in``.
    energy : float or array-like
        Photon energies [eV], strictly increasing, one per intensity energy.
    detector_distance : float
        Sample–detector distance z [m].
    detector_pixel_size : float
        Detector pixel pitch p [m] (square pixels).
    detector_mask : array-like of bool, optional
        (N, N), True = valid pixel.
    probe_guess : array-like, optional
        Initial complex probe, (N, N) for all energies or (energy, N, N).
    particle : str
        Particle name (Dataset attr).
    condition : str, optional
        Sample condition, e.g. "as-prepared" or "delithiated".
    probe_fwhm, probe_defocus : float, optional
        KB focus FWHM and defocus [m], used to model an initial probe.
    positions_in : {"m", "mm", "um", "nm", "pixels"}
        Unit of the positions. "pixels" means reconstruction pixels λz/(Np) at each
        energy's own wavelength (as ptychography codes such as tike store them).
    monitor : array-like, optional
        Incident flux (I0) per frame [counts], (energy, scan) or (scan,); stored as the
        ``monitor`` variable (NaN at padding).

    Returns
    -------
    xarray.Dataset
        DESIGN §1a: ``intensity`` (energy, scan, det_y, det_x), ``position_y``/
        ``position_x`` (energy, scan) [m], optional ``detector_mask``/``probe_guess``,
        coord ``energy`` [eV], attrs ``detector_distance``, ``detector_pixel_size``,
        ``particle`` (+ optional ones), and a ``history`` line.

    Raises
    ------
    ptyxr.SchemaError
        Wrong shapes, non-numeric input, unsorted or duplicate energies, ±inf or negative
        counts, non-positive distance/pixel size, positions inconsistent with the frames.

    Examples
    --------
    Two energies, a 3×3 raster scan with 1 µm steps, 64×64 frames:

    >>> import numpy as np, ptyxr
    >>> yy, xx = np.meshgrid(np.arange(3), np.arange(3), indexing="ij")
    >>> frames = np.ones((2, 9, 64, 64), dtype=np.float32)
    >>> raw = ptyxr.scan_from_arrays(frames, yy.ravel() * 1e-6, xx.ravel() * 1e-6,
    ...                              energy=[5420.0, 5540.0], detector_distance=1.5,
    ...                              detector_pixel_size=75e-6, particle="P1")
    >>> raw.intensity.dims
    ('energy', 'scan', 'det_y', 'det_x')
    >>> float(raw.position_x[1, 4])
    1e-06
    """
    _checks.arguments("scan_from_arrays", locals())
    ds = build_raw(
        intensity,
        position_y,
        position_x,
        energy,
        detector_distance,
        detector_pixel_size,
        detector_mask=detector_mask,
        probe_guess=probe_guess,
        particle=particle,
        condition=condition,
        probe_fwhm=probe_fwhm,
        probe_defocus=probe_defocus,
        positions_in=positions_in,
        monitor=monitor,
    )
    return provenance.record(
        ds,
        "scan_from_arrays",
        {
            "shape": list(ds[INTENSITY].shape),
            "detector_distance": ds.attrs[ATTR_DETECTOR_DISTANCE],
            "detector_pixel_size": ds.attrs[ATTR_DETECTOR_PIXEL_SIZE],
            "particle": particle,
            "condition": condition,
            "probe_fwhm": probe_fwhm,
            "probe_defocus": probe_defocus,
            "positions_in": positions_in,
            "detector_mask": detector_mask is not None,
            "probe_guess": probe_guess is not None,
            "monitor": monitor is not None,
        },
    )
