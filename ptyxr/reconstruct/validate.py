"""Input validation of the ``reconstruct`` stage: the raw-scan schema plus what ePIE needs."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ptyxr.optics import real_space_pixel_size
from ptyxr.schema import (
    ATTR_DETECTOR_DISTANCE,
    ATTR_DETECTOR_PIXEL_SIZE,
    ATTR_PROBE_DEFOCUS,
    ATTR_PROBE_FWHM,
    DET_X,
    DET_Y,
    DETECTOR_MASK,
    ENERGY,
    INTENSITY,
    PARTICLE,
    POSITION_X,
    POSITION_Y,
    PROBE_GUESS,
    PROBE_X,
    PROBE_Y,
    SchemaError,
    validate_raw,
)

STAGE = "reconstruct"
#: Largest object grid side accepted [pixels]; beyond it positions are almost surely in the wrong units.
MAX_GRID_SIDE = 16384


def validate_scan(ds: xr.Dataset) -> None:
    """Checks beyond :func:`ptyxr.schema.validate_raw` that matter for ePIE."""
    validate_raw(ds)
    n = ds.sizes[DET_Y]
    if PROBE_GUESS in ds:
        pg = ds[PROBE_GUESS]
        dims = (ENERGY, PROBE_Y, PROBE_X)
        if pg.dims not in (dims, (PARTICLE, *dims)):
            raise SchemaError(f"{STAGE}: {PROBE_GUESS!r} has dims {pg.dims}, expected {dims}; transpose/rename it.")
        if pg.sizes[PROBE_Y] != n or pg.sizes[PROBE_X] != n:
            raise SchemaError(
                f"{STAGE}: {PROBE_GUESS!r} is {pg.sizes[PROBE_Y]}x{pg.sizes[PROBE_X]} but the frames are {n}x{n}; "
                "ePIE needs probe and frames of the same size N (frames smaller than the probe cannot hold it). "
                "Crop/pad the probe guess or the frames to the same N."
            )
        values = np.asarray(pg.values)
        if not np.isfinite(values).all():
            raise SchemaError(f"{STAGE}: {PROBE_GUESS!r} holds NaN/inf values; ePIE would spread them over the object.")
        # a probe that is zero at one energy never updates the object there (ePIE divides by max|P|²)
        dead = ~(np.abs(values) > 0).any(axis=(-2, -1))
        if dead.any():
            raise SchemaError(
                f"{STAGE}: {PROBE_GUESS!r} is zero everywhere at {int(dead.sum())} energy(ies); give a real initial "
                f"probe there or drop {PROBE_GUESS!r} and set attr {ATTR_PROBE_FWHM!r} to model one."
            )
    elif ATTR_PROBE_FWHM not in ds.attrs:
        raise SchemaError(
            f"{STAGE} needs an initial probe: a {PROBE_GUESS!r} variable or the Dataset attrs "
            f"{ATTR_PROBE_FWHM!r} [m] (and optionally {ATTR_PROBE_DEFOCUS!r} [m])."
        )
    energy = ds[ENERGY].values
    dx = real_space_pixel_size(
        energy, float(ds.attrs[ATTR_DETECTOR_DISTANCE]), float(ds.attrs[ATTR_DETECTOR_PIXEL_SIZE]), n
    )
    if PROBE_GUESS not in ds:
        fwhm = float(ds.attrs[ATTR_PROBE_FWHM])
        window = n * float(np.min(dx))
        if fwhm >= window / 2:
            raise SchemaError(
                f"{STAGE}: the frames are smaller than the probe: probe FWHM {fwhm:.3g} m vs a real-space window "
                f"N·dx = {window:.3g} m (needs FWHM < window/2). Use larger frames (N) or check "
                f"{ATTR_DETECTOR_DISTANCE!r}/{ATTR_DETECTOR_PIXEL_SIZE!r}/{ATTR_PROBE_FWHM!r} units (metres)."
            )
    py, px = np.asarray(ds[POSITION_Y].values), np.asarray(ds[POSITION_X].values)
    # positions far outside the scanned field (typically pixels or µm given as metres)
    for axis_name, pos in ((POSITION_Y, py), (POSITION_X, px)):
        flat = pos.reshape(-1, pos.shape[-1])
        for row in flat:
            row = row[np.isfinite(row)]
            if row.size < 10:
                continue
            lo, hi = np.percentile(row, [5, 95])
            reach = 2.0 * (hi - lo) + n * float(np.max(dx))
            far = np.abs(row - np.median(row)) > reach
            if far.any():
                raise SchemaError(
                    f"{STAGE}: {int(far.sum())} {axis_name} value(s) lie far outside the scanned field "
                    f"(e.g. {row[far][0]:.3g} m vs median {np.median(row):.3g} m, field ±{reach:.3g} m). "
                    "Remove those scan points (NaN position and NaN frame) or fix their units (metres)."
                )
    finite = np.isfinite(py) & np.isfinite(px)
    side = (
        np.nanmax(np.where(finite, py, np.nan)) - np.nanmin(np.where(finite, py, np.nan)),
        np.nanmax(np.where(finite, px, np.nan)) - np.nanmin(np.where(finite, px, np.nan)),
    )
    if max(side) / float(np.min(dx)) + n > MAX_GRID_SIDE:
        raise SchemaError(
            f"{STAGE}: the scan spans {max(side):.3g} m = {max(side) / np.min(dx):.0f} pixels of "
            f"{np.min(dx):.3g} m; positions must be in metres (did you pass pixels or µm?)."
        )
    intensity = ds[INTENSITY]
    if hasattr(intensity.data, "dask"):
        _lazy_values(ds, finite)
    else:
        values = intensity.values
        if DETECTOR_MASK in ds:
            values = np.where(ds[DETECTOR_MASK].values, values, np.nan)
        totals = np.nansum(values, axis=(-2, -1))
        empty = finite & (totals <= 0)
        if empty.any():
            where = np.argwhere(empty)[:5].tolist()
            raise SchemaError(
                f"{STAGE}: {int(empty.sum())} frame(s) hold zero counts at scan points with a position "
                f"(index {where} …); ePIE cannot use an empty frame. Mark them as padding (NaN "
                "position and NaN frame) or check the data."
            )


def _lazy_values(ds: xr.Dataset, finite: np.ndarray) -> None:
    """Value checks of :func:`ptyxr.schema.validate_raw` for dask intensities (it skips them).

    ePIE loads every frame anyway; blockwise reductions bring back only per-frame numbers,
    so ±inf, negative counts and empty frames at scan points with a position are caught
    without holding a second copy of the data.
    """
    import dask

    data = ds[INTENSITY]
    if DETECTOR_MASK in ds:
        data = data.where(ds[DETECTOR_MASK])
    frame_dims = (DET_Y, DET_X)
    has_inf, minimum, totals = dask.compute(
        np.isinf(data.data).any(), data.min(frame_dims, skipna=True).min().data, data.sum(frame_dims, skipna=True).data
    )
    if bool(has_inf):
        raise SchemaError(
            f"{STAGE}: {INTENSITY!r} holds +-inf values; mark invalid pixels with NaN or in {DETECTOR_MASK!r}."
        )
    if np.isfinite(minimum) and minimum < 0:
        raise SchemaError(
            f"{STAGE}: {INTENSITY!r} holds negative counts (min {float(minimum):g}); subtract dark frames and clip "
            "at zero, or mark those pixels NaN."
        )
    empty = finite & ~(np.asarray(totals) > 0)
    if empty.any():
        where = np.argwhere(empty)[:5].tolist()
        raise SchemaError(
            f"{STAGE}: {int(empty.sum())} frame(s) with a position hold no valid pixel or zero counts "
            f"(index {where} …); ePIE cannot use an empty frame. Mark them as padding (NaN position and NaN "
            "frame) or check the data."
        )
