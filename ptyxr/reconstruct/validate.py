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


def validate_input(ds: xr.Dataset, stage: str = STAGE) -> xr.Dataset:
    """Validate ``reconstruct``'s input (numpy or dask): the raw-scan schema plus what ePIE needs.

    :func:`ptyxr.schema.validate_raw` (structure; values where in memory), then: the initial
    probe (a finite, non-zero ``probe_guess`` of the frames' size, or a ``probe_fwhm`` smaller
    than half the real-space window), positions in metres within the scanned field and a
    grid below :data:`MAX_GRID_SIDE`, and frame values (:func:`_check_frames`: no ±inf,
    negative or empty frames at scan points with a position, dask intensities included).
    The validator of the ``@stage`` decorator (:mod:`ptyxr.stage`); returns ``ds``.

    Raises
    ------
    ptyxr.SchemaError
        Naming what is wrong and how to fix it.
    """
    ds = validate_raw(ds)
    n = ds.sizes[DET_Y]
    if PROBE_GUESS in ds:
        pg = ds[PROBE_GUESS]
        dims = (ENERGY, PROBE_Y, PROBE_X)
        if pg.dims not in (dims, (PARTICLE, *dims)):
            raise SchemaError(f"{stage}: {PROBE_GUESS!r} has dims {pg.dims}, expected {dims}; transpose/rename it.")
        if pg.sizes[PROBE_Y] != n or pg.sizes[PROBE_X] != n:
            raise SchemaError(
                f"{stage}: {PROBE_GUESS!r} is {pg.sizes[PROBE_Y]}x{pg.sizes[PROBE_X]} but the frames are {n}x{n}; "
                "ePIE needs probe and frames of the same size N (frames smaller than the probe cannot hold it). "
                "Crop/pad the probe guess or the frames to the same N."
            )
        values = np.asarray(pg.values)
        if not np.isfinite(values).all():
            raise SchemaError(f"{stage}: {PROBE_GUESS!r} holds NaN/inf values; ePIE would spread them over the object.")
        # a probe that is zero at one energy never updates the object there (ePIE divides by max|P|²)
        dead = ~(np.abs(values) > 0).any(axis=(-2, -1))
        if dead.any():
            raise SchemaError(
                f"{stage}: {PROBE_GUESS!r} is zero everywhere at {int(dead.sum())} energy(ies); give a real initial "
                f"probe there or drop {PROBE_GUESS!r} and set attr {ATTR_PROBE_FWHM!r} to model one."
            )
    elif ATTR_PROBE_FWHM not in ds.attrs:
        raise SchemaError(
            f"{stage} needs an initial probe: a {PROBE_GUESS!r} variable or the Dataset attrs "
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
                f"{stage}: the frames are smaller than the probe: probe FWHM {fwhm:.3g} m vs a real-space window "
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
                    f"{stage}: {int(far.sum())} {axis_name} value(s) lie far outside the scanned field "
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
            f"{stage}: the scan spans {max(side):.3g} m = {max(side) / np.min(dx):.0f} pixels of "
            f"{np.min(dx):.3g} m; positions must be in metres (did you pass pixels or µm?)."
        )
    _check_frames(ds, finite, stage)
    return ds


def _check_frames(ds: xr.Dataset, finite: np.ndarray, stage: str) -> None:
    """Every frame at a scan point with a position holds counts; numpy and dask intensities alike.

    :func:`ptyxr.schema.validate_raw` checks the values of in-memory intensities (±inf,
    negative counts) but not of dask ones, since validation must not load data; ePIE reads
    every frame anyway, so here blockwise reductions bring back per-frame numbers only
    (no second copy of the data) and the same checks apply to a lazy scan.
    """
    data = ds[INTENSITY]
    if DETECTOR_MASK in ds:
        data = data.where(ds[DETECTOR_MASK])
    frame_dims = (DET_Y, DET_X)
    totals = data.sum(frame_dims, skipna=True).data
    if hasattr(data.data, "dask"):
        import dask

        has_inf, minimum, totals = dask.compute(
            np.isinf(data.data).any(), data.min(frame_dims, skipna=True).min().data, totals
        )
        if bool(has_inf):
            raise SchemaError(
                f"{stage}: {INTENSITY!r} holds +-inf values; mark invalid pixels with NaN or in {DETECTOR_MASK!r}."
            )
        if np.isfinite(minimum) and minimum < 0:
            raise SchemaError(
                f"{stage}: {INTENSITY!r} holds negative counts (min {float(minimum):g}); subtract dark frames and "
                "clip at zero, or mark those pixels NaN."
            )
    empty = finite & ~(np.asarray(totals) > 0)
    if empty.any():
        where = np.argwhere(empty)[:5].tolist()
        raise SchemaError(
            f"{stage}: {int(empty.sum())} frame(s) with a position hold no valid pixel or zero counts "
            f"(index {where} …); ePIE cannot use an empty frame. Mark them as padding (NaN position and NaN "
            "frame) or check the data."
        )
