"""The ``reconstruct`` stage: raw scan series (DESIGN §1a) → reconstruction (§1b).

Pipeline per particle:

1. validate the input (schema.validate_raw plus reconstruction-specific checks);
2. each energy on its own native pixel dx(E) with its frames as measured (default
   ``native_grids=True``); the objects meet on the common pixel dx_c only for KKR and the
   output (bilinear on O − 1). ``native_grids=False`` instead resamples every energy's frames
   onto dx_c (:mod:`ptyxr.reconstruct.grid`), which fits the interpolation error at a pupil's
   sharp far-field edge (docs/design-notes/foreign-engine.md);
3. initial probe from the set-up (KB focus) or ``probe_guess``; initial object 1+0j;
4. energy-batched ePIE (:mod:`ptyxr.reconstruct.epie`), random position order per
   iteration from ``seed``; the energies' probe cores co-registered (onto their mean centre,
   not N//2) before each KKR projection, and put on N//2 for the output
   (:mod:`ptyxr.reconstruct.centring`);
5. the KKR constraint (:func:`ptyxr.reconstruct.kkr.kkr_project`) after iterations
   ``kkr_start, kkr_start + kkr_every, …`` and always after the final iteration, so the
   last KKR projection is the run's final operation (ePIE undoes a projection within
   ~50 iterations; the paper's 500, 550, …, 800 schedule ends on one);
6. optional atomic netCDF checkpoints and exact resume.

A leading ``particle`` dim is mapped over with dask (threads by default, or a
``dask.distributed.Client``); all particles share one pixel size and one lattice, so
their grids combine by coordinate (padding NaN).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ptyxr import checks as _checks
from ptyxr import provenance
from ptyxr.optics import real_space_pixel_size
from ptyxr.progress import progress_bar
from ptyxr.reconstruct import centring as _centring
from ptyxr.reconstruct import checkpoint as _ckpt
from ptyxr.reconstruct import epie as _epie
from ptyxr.reconstruct import flux as _flux
from ptyxr.reconstruct import groups as _groups
from ptyxr.reconstruct import modes as _modes
from ptyxr.reconstruct import momentum as _momentum
from ptyxr.reconstruct import positions as _pos
from ptyxr.reconstruct.detector import dead_pixel_mask
from ptyxr.reconstruct.grid import Grid, common_grid, resample_frames
from ptyxr.reconstruct.probe import coverage_map, guess_probes, setup_probes
from ptyxr.registration import stack_shifts
from ptyxr.schema import (
    ATTR_DETECTOR_DISTANCE,
    ATTR_DETECTOR_PIXEL_SIZE,
    ATTR_PROBE_DEFOCUS,
    ATTR_PROBE_FWHM,
    COVERAGE,
    DET_X,
    DET_Y,
    DETECTOR_MASK,
    ENERGY,
    FOURIER_ERROR,
    INTENSITY,
    ITERATION,
    MONITOR,
    OBJECT,
    PARTICLE,
    POSITION_X,
    POSITION_Y,
    PROBE,
    PROBE_GUESS,
    PROBE_X,
    PROBE_Y,
    RELATIVE_FLUX,
    SCAN,
    SchemaError,
    X,
    Y,
    length_coord,
    validate_raw,
    variable,
)

STAGE = "reconstruct"
ALGORITHM = "ePIE (Maiden & Rodenburg 2009), energy-batched on one common grid, KKR constraint (Hirose et al. 2017)"
#: Provenance description of ``algorithm="mpie"``.
ALGORITHM_MPIE = (
    "mPIE (Maiden, Johnson & Li 2017: rPIE object step + object momentum), energy-batched on one common grid, "
    "KKR constraint (Hirose et al. 2017)"
)
#: Largest object grid side accepted [pixels]; beyond it positions are almost surely in the wrong units.
MAX_GRID_SIDE = 16384
#: KKR needs a spectrum: at least this many energies.
KKR_MIN_ENERGIES = 3
#: Default first KKR iteration and interval as fractions of ``iterations`` (paper: 500 and 50 of 800).
KKR_START_FRACTION = 5 / 8
KKR_EVERY_FRACTION = 1 / 16


# ------------------------------------------------------------------ schedule helpers
def kkr_schedule(iterations: int, kkr_start: int | None = None, kkr_every: int | None = None) -> list[int]:
    """Iteration numbers (1-based, counted after the iteration) at which KKR is applied.

    ``kkr_start, kkr_start + kkr_every, …`` up to ``iterations``, plus ``iterations``
    itself when it is not on the schedule: the run always ends on a KKR projection, for
    every ``iterations`` ≥ 1. Defaults follow the iteration count with the paper's
    proportions (500, 550, …, 800 of 800): ``kkr_start`` = round(5/8·iterations),
    ``kkr_every`` = round(iterations/16), both at least 1. An explicit ``kkr_start`` beyond
    ``iterations`` leaves only the final projection (:func:`reconstruct` warns).
    """
    iterations = int(iterations)
    if iterations < 1:
        return []
    if kkr_start is None:
        kkr_start = round(KKR_START_FRACTION * iterations)
    if kkr_every is None:
        kkr_every = round(KKR_EVERY_FRACTION * iterations)
    start = min(max(int(kkr_start), 1), iterations)
    every = max(int(kkr_every), 1)
    sched = list(range(start, iterations + 1, every))
    if sched[-1] != iterations:
        sched.append(iterations)
    return sched


# ------------------------------------------------------------------------ validation
def _validate(ds: xr.Dataset) -> None:
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
        _validate_lazy_intensity(ds, finite)
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


def _validate_lazy_intensity(ds: xr.Dataset, finite: np.ndarray) -> None:
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


def _particle_path(path: str | os.PathLike | None, name: str | None) -> Path | None:
    """``P.nc`` → ``P.<particle>.nc`` for multi-particle runs."""
    if path is None:
        return None
    path = Path(path)
    return path if name is None else path.with_name(f"{path.stem}.{name}{path.suffix}")


# ------------------------------------------------------------------- one particle
def _frames(ds: xr.Dataset, e: int) -> np.ndarray:
    frames = np.asarray(ds[INTENSITY].isel({ENERGY: e}).values, dtype=np.float32)
    if DETECTOR_MASK in ds:
        frames = np.where(np.asarray(ds[DETECTOR_MASK].values, dtype=bool), frames, np.nan)
    return frames


def _reconstruct_one(
    ds: xr.Dataset,
    *,
    iterations: int,
    alpha: float,
    beta: float,
    kkr: bool,
    kkr_start: int | None,
    kkr_every: int | None,
    kkr_weight: float,
    update_probe: bool,
    probe_update_start: int,
    pixel_size: float,
    coverage_threshold: float,
    seed: int,
    progress: bool,
    checkpoint: Path | None,
    checkpoint_every: int,
    resume_from: Path | None,
    engine: str,
    fft_backend: str,
    interpolation: int,
    recentre_probe: str,
    pin_scale: bool,
    kkr_options: dict[str, Any],
    native_grids: bool = True,
    use_monitor: bool = False,
    refine_flux: bool = False,
    position_correction: bool = False,
    position_options: dict[str, Any] | None = None,
    probe_modes: int = 1,
    memory_limit: int | None = None,
    algorithm: str = "epie",
    object_regularization: float = 1.0,
    momentum: float = 0.0,
    label: str = "",
) -> tuple[xr.Dataset, dict[str, Any]]:
    """Reconstruct one particle; returns the §1b variables and run facts for provenance."""
    energy = np.asarray(ds[ENERGY].values, dtype=np.float64)
    n_e, n_scan, n = ds.sizes[ENERGY], ds.sizes[SCAN], ds.sizes[DET_Y]
    z, p = float(ds.attrs[ATTR_DETECTOR_DISTANCE]), float(ds.attrs[ATTR_DETECTOR_PIXEL_SIZE])
    dx_native = np.atleast_1d(real_space_pixel_size(energy, z, p, n))
    scale = dx_native / pixel_size
    py, px = np.asarray(ds[POSITION_Y].values, float), np.asarray(ds[POSITION_X].values, float)
    grid = common_grid(py, px, pixel_size, n)
    margin = _pos.margin_pixels(position_options["max_shift"]) if position_correction else 0
    grid = _pos.pad_grid(grid, margin)  # room for refined positions (no-op without refinement)
    native = bool(native_grids) and not np.allclose(scale, 1.0, rtol=0, atol=1e-9)
    if native:
        # each energy on its own native pixel dx(E): the frames are used as measured (no
        # detector resampling: its interpolation error at a pupil's sharp far-field edge is far
        # above the noise); objects meet on the common grid only for KKR and the output
        grids = [
            _pos.pad_grid(common_grid(py[e : e + 1], px[e : e + 1], float(dx_native[e]), n), margin) for e in range(n_e)
        ]
        work = Grid(
            pixel_size,
            0,
            0,
            (max(g.shape[0] for g in grids), max(g.shape[1] for g in grids)),
            np.concatenate([g.offsets for g in grids]),
            grid.active,
        )
    else:
        grids, work = None, grid

    # measured data → (common) detector sampling → kernel layout (one energy at a time: bounded memory)
    flux = _flux.monitor_flux(ds, grid.active) if use_monitor and MONITOR in ds else None  # (n_e, n_scan) [1]
    groups = _groups.energy_groups(n_e, n_scan, n, memory_limit, _groups.read_reserve(ds))
    if groups is not None and (refine_flux or position_correction):
        raise ValueError(
            f"{STAGE}: memory_limit needs {groups and len(groups)} energy groups here, and refine_flux / "
            "position_correction do not run out of core yet; raise memory_limit (or leave it None) or switch them off."
        )
    if groups is not None:  # out of core: per-energy sums now, each group's amplitudes inside the loop
        amplitudes = None
        norm, photons = _groups.frame_sums(ds, grid.active, None if native else scale, interpolation, flux=flux)
    else:
        amplitudes = np.empty((n_e, n_scan, n, n), dtype=np.float32)
        norm = np.zeros(n_e)
        photons = np.zeros(n_e)
        for e in range(n_e):
            raw = _frames(ds, e)
            raw[~grid.active[e]] = np.nan  # padding scan points: no data, zero update
            if flux is not None:
                raw = _flux.normalise_frames(raw, flux[e])  # every frame as if it had its energy's mean flux
            photons[e] = np.mean(np.nansum(raw[grid.active[e]], axis=(-2, -1)))
            frames = resample_frames(raw, 1.0 if native else float(scale[e]), order=interpolation)
            norm[e] = _epie.fourier_norm(frames)
            _epie.prepare_amplitudes(frames, out=amplitudes[e])

    if PROBE_GUESS in ds:
        probe = guess_probes(np.asarray(ds[PROBE_GUESS].values), np.ones_like(scale) if native else scale, photons)
    else:
        fwhm, defocus = float(ds.attrs[ATTR_PROBE_FWHM]), float(ds.attrs.get(ATTR_PROBE_DEFOCUS, 0.0))
        if native:
            probe = np.concatenate(
                [
                    setup_probes(energy[e : e + 1], n, float(dx_native[e]), fwhm, defocus, photons[e : e + 1])
                    for e in range(n_e)
                ]
            )
        else:
            probe = setup_probes(energy, n, pixel_size, fwhm, defocus, photons)
    if probe_modes > 1:  # (n_energy, K, N, N): mixed-state probe (ptyxr.reconstruct.modes)
        probe = _modes.initial_modes(probe, probe_modes)
    obj = np.ones((n_e, *work.shape), dtype=np.complex64)
    errors = np.full((n_e, iterations), np.nan, dtype=np.float32)
    rng = np.random.default_rng(seed)
    start = 0
    kkr_shifts = None  # (n_energy, 2) [pixels], fixed at the first KKR projection
    schedule = kkr_schedule(iterations, kkr_start, kkr_every) if kkr else []
    state_params = {
        "seed": int(seed),
        "pixel_size": float(pixel_size),
        "shape": list(grid.shape),
        "origin": [grid.origin_y, grid.origin_x],
        "n": int(n),
        "alpha": float(alpha),
        "beta": float(beta),
        "pin_scale": bool(pin_scale),
        "native_grids": bool(native),
        **_flux.settings(flux is not None, refine_flux),
        "algorithm": [algorithm, float(object_regularization), float(momentum)],
    }
    refiner = None
    if position_correction:  # continuous position estimates per (energy, scan) on each energy's grid
        refiner = _pos.make_refiner(py, px, grids or [grid] * n_e, work, n, position_options)
        state_params["position_correction"] = refiner.settings()
    if probe_modes > 1:
        state_params["probe_modes"] = int(probe_modes)
    if checkpoint is not None or resume_from is not None:  # everything else that determines the result
        state_params.update(_ckpt.settings(ds, locals()))
    flux_refiner = _flux.FluxRefiner(amplitudes, work.offsets, grid.active, iterations, flux) if refine_flux else None
    if resume_from is not None:
        state = _ckpt.read_checkpoint(resume_from)
        start = _ckpt.check_resume(state, state_params, energy, iterations, resume_from)
        _modes.check_resumed(state["probe"], probe, resume_from)
        obj, probe = state["object"], state["probe"]
        errors[:, :start] = state["errors"][:, :start]
        rng.bit_generator.state = state["rng_state"]
        if state["params"].get("kkr_shifts") is not None:
            kkr_shifts = np.array(state["params"]["kkr_shifts"], dtype=np.float64)
        if refiner is not None:
            refiner.restore(state["extra"])
        if flux_refiner is not None:
            flux_refiner.restore(state["extra"])

    if groups is not None and algorithm != "epie":
        raise ValueError(
            f"{STAGE}: memory_limit needs {len(groups)} energy groups here, and algorithm='mpie' does not run out of "
            "core yet; raise memory_limit (or leave it None) or use algorithm='epie'."
        )
    if probe_modes > 1 and algorithm != "epie":
        raise ValueError(f"{STAGE}: probe_modes > 1 runs with algorithm='epie' only (mPIE's step is single-mode).")

    def make_solver(amps: np.ndarray, g: slice = slice(None)) -> Any:
        if probe_modes > 1:
            return _modes.ModeEPIE(amps, work.offsets[g], norm[g], probe_modes, alpha, beta, engine, fft_backend)
        return _epie.BatchedEPIE(
            amps, work.offsets[g], norm[g], alpha, beta, engine=engine, fft_backend=fft_backend,
            regularization=object_regularization,
        )  # fmt: skip

    solver = make_solver(amplitudes) if groups is None else None
    kkr_project = None
    if schedule:
        from ptyxr.reconstruct.kkr import kkr_project
    has_data = grid.active.any(axis=0)
    field = work.field(n)
    # mPIE runs up to the first KKR projection; the KKR phase then takes ePIE steps (a = 1, η = 0):
    # mPIE's larger steps left a noisier amplitude at the end (s11-mpie design note)
    mpie_end = _momentum.mpie_end(algorithm, schedule, iterations)
    mom = _momentum.ObjectMomentum(obj.shape, field, momentum) if momentum > 0 and start < mpie_end else None
    if mom is not None and resume_from is not None:
        extra_state = state["extra"]
        mom.velocity[...] = extra_state[_momentum.VELOCITY + "_real"] + 1j * extra_state[_momentum.VELOCITY + "_imag"]
    # the covered field of the initial probes: where |O| is well determined (scale pinning)
    pin_region = coverage_map(_modes.total(probe), work.offsets, work.active, work.shape, coverage_threshold)
    if refiner is not None and start > 0:  # resumed: the refined patch offsets
        solver.offsets[...] = work.offsets[...] = refiner.offsets()
        field = work.field(n)
    bar = progress_bar(
        range(start, iterations),
        enabled=progress,
        desc=f"ePIE {label}".strip(),
        total=iterations,
        initial=start,
        unit="it",
    )
    # out of core the energy groups take turns between KKR/checkpoint iterations (ptyxr.reconstruct.groups)
    run = _groups.GroupedRun(
        bar, rng, has_data, start, iterations,
        _groups.segment_ends(start, iterations, schedule, checkpoint_every if checkpoint is not None else None),
        groups, solver, make_solver,
        lambda g, out: _groups.load_amplitudes(ds, g, grid.active, None if native else scale, interpolation, out, flux),
        (n_scan, n, n),
    )  # fmt: skip
    for it, g, order, solver, complete in run:
        if algorithm != "epie" and it >= mpie_end:
            solver.reg, mom = 1.0, None
        probe_now = bool(update_probe) and it >= probe_update_start
        if mom is not None:
            mom.before(obj)
        errors[g, it] = solver.iteration(obj[g], probe[g], order, probe_now)
        if mom is not None:
            mom.after(obj)
        if probe_now and probe_modes > 1:
            _modes.orthogonalise(probe[g])
        if probe_now and recentre_probe == "centre":
            shifts = _modes.recentre(obj[g], probe[g], field=field[g])
            if mom is not None:
                mom.shift(shifts)
        if probe_now and pin_scale:
            factors = _epie.pin_scale(obj[g], probe[g], pin_region, field[g])
            if mom is not None:
                mom.scale(factors)
        done = it + 1
        if not complete:  # other energies have not reached iteration `done` yet
            continue
        if flux_refiner is not None and flux_refiner.due(done):
            flux_refiner.refine(obj, probe, done)
        if refiner is not None and refiner.due(done):
            solver.offsets[...] = work.offsets[...] = refiner.refine(obj, probe, amplitudes, solver.offsets)
            field = work.field(n)
        if recentre_probe == "relative" and done in schedule:  # every energy at `done`: probe centres onto their mean
            shifts = _centring.coregister(obj, probe, field, scale if native else np.ones(n_e))
            if mom is not None:
                mom.shift(shifts)
        if kkr_project is not None and done in schedule:
            obj_c = _to_common(obj, grids, grid) if native else obj
            probe_c = _probes_to_common(_modes.total(probe), scale) if native else _modes.total(probe)
            region = coverage_map(probe_c, grid.offsets, grid.active, grid.shape, coverage_threshold)
            if kkr_shifts is None:
                # once, on the ePIE object before any KKR imprint, with align's registration:
                # registering KKR-imprinted phase fed each imprint back into the next shifts
                kkr_shifts = stack_shifts(obj_c, region)
            field_c = grid.field(n) if native else field
            new_c = _registered_kkr(kkr_project, obj_c, energy, region, field_c, kkr_weight, kkr_options, kkr_shifts)
            if native:
                # only the KKR phase correction travels back to the native grids (a smooth map);
                # the amplitudes are never resampled during the iterations
                dphi = np.angle(new_c * np.conj(obj_c)).astype(np.float64)
                obj = (obj * np.exp(1j * _to_native(dphi, grids, grid, work.shape))).astype(np.complex64)
            else:
                obj = new_c
            if mom is not None:
                mom.reset()
        if progress:
            bar.set_postfix(error=f"{float(np.nanmean(errors[:, it])):.3g}")
        if checkpoint is not None and (done % max(int(checkpoint_every), 1) == 0 or done == iterations):
            saved = {**state_params, "kkr_shifts": None if kkr_shifts is None else kkr_shifts.tolist()}
            extra = {
                **(refiner.state() if refiner is not None else {}),
                **(flux_refiner.checkpoint_state() if flux_refiner is not None else {}),
                **(_momentum_state(mom.velocity) if mom is not None else {}),
            } or None
            _ckpt.write_checkpoint(checkpoint, energy, work, obj, probe, errors, done, rng, saved, extra)
    bar.close()
    if recentre_probe == "relative":  # the output: every probe core on N//2 (not the checkpointed state)
        _centring.coregister(obj, probe, work.field(n), scale if native else np.ones(n_e), centre=True)

    if native:
        obj = _to_common(obj, grids, grid, OBJECT_RESAMPLING_ORDER)
        obj[~grid.field(n)] = 1  # outside an energy's own field nothing was measured (interpolation spreads ≤ 1 px)
        probe = _modes.to_common(probe, scale) if probe_modes > 1 else _probes_to_common(probe, scale)
    coverage = coverage_map(_modes.total(probe), grid.offsets, grid.active, grid.shape, coverage_threshold)
    coords = {
        Y: length_coord(Y, grid.y, pixel_size),
        X: length_coord(X, grid.x, pixel_size),
        ITERATION: variable(ITERATION, np.arange(1, iterations + 1, dtype=np.int64)),
    }
    out = xr.Dataset(
        {
            OBJECT: variable(OBJECT, obj, pixel_size=pixel_size),
            PROBE: variable(PROBE, probe, pixel_size=pixel_size),
            FOURIER_ERROR: variable(FOURIER_ERROR, errors),
            COVERAGE: variable(COVERAGE, coverage),
            **(refiner.outputs() if refiner is not None else {}),
            **(_modes.probe_outputs(probe, pixel_size) if probe_modes > 1 else {}),
        },
        coords=coords,
    )
    if flux_refiner is not None:
        flux = flux_refiner.flux
    if flux is not None:
        out[RELATIVE_FLUX] = variable(RELATIVE_FLUX, flux)
    solver = run.solver if run.solver is not None else make_solver(np.empty((n_e, 0, n, n), np.float32))
    facts = {
        "engine": solver.engine,
        "fft_backend": solver.fft.backend,
        "energy_groups": None if groups is None else [g.stop - g.start for g in groups],
        "kkr_iterations": schedule,
        "kkr_shifts": None if kkr_shifts is None else np.round(kkr_shifts, 4).tolist(),
        "resumed_at": start if resume_from is not None else None,
        "monitor_used": bool(use_monitor and MONITOR in ds),
        **(
            {}
            if flux_refiner is None
            else {"flux_refinement_iterations": flux_refiner.schedule, "flux_object_restarts": flux_refiner.restarts}
        ),
        **(refiner.facts() if refiner is not None else {}),
    }
    return out, facts


def _momentum_state(velocity: np.ndarray) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """mPIE's object velocity as checkpoint ``extra`` arrays (real and imaginary parts)."""
    dims = (ENERGY, Y, X)
    return {_momentum.VELOCITY + "_real": (dims, velocity.real), _momentum.VELOCITY + "_imag": (dims, velocity.imag)}


def _native_to_common_index(g: Grid, common: Grid, axis: int) -> np.ndarray:
    """Fractional pixel index in native grid ``g`` of each common-grid pixel centre along ``axis``."""
    origin_c, origin_n = (common.origin_y, g.origin_y) if axis == 0 else (common.origin_x, g.origin_x)
    pos = (origin_c + np.arange(common.shape[axis])) * common.pixel_size
    return pos / g.pixel_size - origin_n


#: Spline order that brings the final native-grid objects onto the common grid (O − 1).
#: Bilinear. Cubic lowered the foreign control's φ NRMSE (0.0197 vs 0.0240; μt 0.040 vs 0.038)
#: but cut KKR's measured benefit on the varying phase (tests/test_accuracy.py::
#: test_kkr_lowers_varying_phase_error_near_edge: KKR/no-KKR 0.82, bound 0.8), so it stays 1.
OBJECT_RESAMPLING_ORDER = 1


def _to_common(obj: np.ndarray, grids: list[Grid], common: Grid, order: int = 1) -> np.ndarray:
    """Objects on their native grids → the common grid (spline of ``order`` on O − 1; outside = vacuum 1)."""
    from scipy.ndimage import map_coordinates

    out = np.ones((obj.shape[0], *common.shape), dtype=np.complex64)
    for e, g in enumerate(grids):
        iy, ix = np.meshgrid(
            _native_to_common_index(g, common, 0), _native_to_common_index(g, common, 1), indexing="ij"
        )
        dev = obj[e, : g.shape[0], : g.shape[1]].astype(np.complex128) - 1
        re = map_coordinates(dev.real, [iy, ix], order=order, mode="constant", cval=0.0)
        im = map_coordinates(dev.imag, [iy, ix], order=order, mode="constant", cval=0.0)
        out[e] = 1 + re + 1j * im
    return out


def _to_native(values: np.ndarray, grids: list[Grid], common: Grid, shape: tuple[int, int]) -> np.ndarray:
    """Real maps on the common grid → each energy's native grid (bilinear; outside = 0)."""
    from scipy.ndimage import map_coordinates

    out = np.zeros((values.shape[0], *shape), dtype=np.float64)
    for e, g in enumerate(grids):
        # common-grid index of each native pixel centre
        cy = ((g.origin_y + np.arange(g.shape[0])) * g.pixel_size) / common.pixel_size - common.origin_y
        cx = ((g.origin_x + np.arange(g.shape[1])) * g.pixel_size) / common.pixel_size - common.origin_x
        iy, ix = np.meshgrid(cy, cx, indexing="ij")
        out[e, : g.shape[0], : g.shape[1]] = map_coordinates(values[e], [iy, ix], order=1, mode="constant", cval=0.0)
    return out


def _probes_to_common(probe: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Probes at native pixels dx(E) → the common pixel dx_c (power conserved)."""
    from ptyxr.reconstruct.grid import resample_probe

    return np.stack([resample_probe(probe[e], float(scale[e])) for e in range(probe.shape[0])]).astype(np.complex64)


def _registered_kkr(
    kkr_project: Any,
    obj: np.ndarray,
    energy: np.ndarray,
    region: np.ndarray,
    field: np.ndarray,
    weight: float,
    options: dict[str, Any],
    shifts: np.ndarray,
) -> np.ndarray:
    """KKR on energies co-registered with ``shifts``; only the phase correction moves back.

    Sample drift between energies (a few pixels in practice) would make KKR combine
    different sample points into one "pixel spectrum" and hurt (measured on the simulator:
    object NRMSE 0.12 → 0.3–0.8 with 1 px rms drift). So each energy is Fourier-shifted by
    ``shifts`` (from :func:`ptyxr.registration.stack_shifts` on the pre-KKR ePIE object, the
    registration ``align`` uses), KKR runs on the registered stack, and each energy's
    phase correction (a real map) is Fourier-shifted back (sub-pixel exact, no linear
    interpolation blur) and applied to the unregistered object inside ``region``
    (the KKR region) only; amplitudes are never resampled.
    """
    registered = obj.copy()
    moved = np.any(np.abs(shifts) > 1e-3, axis=1)
    for e in np.flatnonzero(moved):
        registered[e] = _epie.fourier_shift(obj[e] - 1, tuple(shifts[e])) + 1
    projected = kkr_project(registered, energy, region, weight=weight, **options)
    correction = np.angle(projected * np.conj(registered))
    out = obj.copy()
    for e in range(obj.shape[0]):
        back = correction[e]
        if moved[e]:
            back = _epie.fourier_shift(back.astype(np.complex128), (-shifts[e, 0], -shifts[e, 1])).real
        out[e] *= np.exp(1j * np.where(region & field[e], back, 0.0)).astype(np.complex64)
    return np.ascontiguousarray(out, dtype=np.complex64)


# ------------------------------------------------------------------------ the stage
def reconstruct(
    ds: xr.Dataset,
    iterations: int = 800,
    alpha: float = 1.0,
    beta: float = 0.25,
    kkr: bool = True,
    kkr_start: int | None = None,
    kkr_every: int | None = None,
    kkr_weight: float = 1.0,
    update_probe: bool = True,
    probe_update_start: int = 0,
    pixel_size: float | None = None,
    coverage_threshold: float = 0.1,
    seed: int = 0,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    resume_from: str | os.PathLike | None = None,
    keep_raw: bool = True,
    client: Any = None,
    *,
    engine: str = "auto",
    fft_backend: str = "auto",
    interpolation: int = 1,
    native_grids: bool = True,
    recentre_probe: bool | str = "relative",
    pin_scale: bool = True,
    mask_dead_pixels: bool = True,
    probe_modes: int = 1,
    kkr_element: str = "V",
    kkr_table: str = "chantler",
    use_monitor: bool = True,
    refine_flux: bool = False,
    position_correction: bool = False,
    position_correction_start: int | None = None,
    position_correction_every: int = _pos.EVERY,
    position_max_shift: float = _pos.MAX_SHIFT,
    memory_limit: int | float | str | None = None,
    algorithm: str = "epie",
    object_regularization: float | None = None,
    momentum: float | None = None,
) -> xr.Dataset:
    """Reconstruct object and probe at every energy on one common grid (ePIE + KKR).

    Parameters
    ----------
    ds : xarray.Dataset
        Raw scan series (DESIGN §1a), optionally with a leading ``particle`` dim.
    iterations : int
        ePIE iterations (each visits every scan point once, all energies together).
    alpha, beta : float
        ePIE object and probe step sizes. Maiden & Rodenburg's α = β = 1 diverges on real,
        noisy data (bundled Siemens star: Fourier error 0.019 at iteration 22, 29 at 300);
        the probe step drives it. β = 0.25 stays at its minimum there (final/min 1.005 at
        500 iterations) and α = 1 keeps the object converging as fast as before on the
        simulator (docs/design-notes/engine-defaults.md).
    kkr : bool
        Apply the Kramers–Kronig constraint (needs ≥ 3 energies; skipped, and recorded as
        skipped in the provenance, for fewer).
    kkr_start, kkr_every : int, optional
        KKR after iteration ``kkr_start`` and every ``kkr_every`` after it, and always after
        the final iteration: the run ends on a KKR projection for any ``iterations``
        (:func:`kkr_schedule`). Default 5/8 and 1/16 of ``iterations`` (the paper's 500,
        550, …, 800 of 800). An explicit ``kkr_start`` > ``iterations`` warns and applies
        KKR once, at the end. The provenance lists every KKR iteration applied
        (``kkr_iterations``) and the registration shifts used (``kkr_shifts``).
    kkr_weight : float
        Blend toward the KK phase (1 = replace).
    update_probe : bool
        Update the probe (from iteration ``probe_update_start``, 0-based).
    probe_update_start : int
        First iteration with probe updates.
    pixel_size : float, optional
        Common real-space pixel [m]; default the finest, λz/(Np) at the highest energy.
    coverage_threshold : float
        ``coverage`` = summed probe intensity ≥ this × its maximum, at every energy.
    seed : int
        Seed of the random position order (numpy default_rng).
    progress : bool
        Show a tqdm progress bar (notebook-aware).
    checkpoint : path, optional
        Write the solver state (object, probe, errors, iteration, RNG state) there as
        netCDF every ``checkpoint_every`` iterations and at the end, atomically. With a
        ``particle`` dim, ``P.nc`` becomes ``P.<particle>.nc``.
    checkpoint_every : int
        Iterations between checkpoints.
    resume_from : path, optional
        Continue from a checkpoint; the result equals the uninterrupted run's exactly
        (same data, settings and seed).
    keep_raw : bool
        Keep ``intensity`` in the output (False drops it to save memory).
    client : dask.distributed.Client, optional
        Reconstruct particles on this cluster; default a dask threaded scheduler.
    engine : {"auto", "numba", "numpy"}
        ePIE kernel implementation (same results to float rounding).
    fft_backend : {"auto", "pyfftw", "scipy"}
        FFT implementation.
    interpolation : {1, 3}
        With ``native_grids=False`` only: order of the detector resampling onto the common
        grid: linear (default) or Keys cubic. Cubic is better on smooth patterns (count bias 0.1 % vs 1.7 % on a 5-px
        Gaussian spot) but rings at the hard edges of a KB pupil's far field: on the
        simulator's tiny preset it left a 5× larger Fourier error and object NRMSE 0.50
        vs 0.12 at the resampled energies.
    native_grids : bool
        Iterate each energy on its own native pixel dx(E) = λz/(Np) with the frames as measured,
        and bring the objects onto the common grid (bilinear on O − 1) only for the KKR step
        (whose phase correction goes back the same way) and for the output. False = resample
        the detector frames onto the common grid (``interpolation``) and iterate there: the
        interpolation error at the sharp far-field edge of a KB or zone-plate pupil is far
        above the photon noise, and ePIE fits it (FZP probe, small geometry: μt NRMSE 0.21 and
        a Fourier error creeping to 1.11× its minimum at the resampled energies, 0.04 and 1.01
        on native grids; docs/design-notes/foreign-engine.md).
    recentre_probe : {"relative", "centre", "off"} or bool
        How the energies are kept co-registered (ePIE leaves a common shift of probe and
        object free at each energy; :mod:`ptyxr.reconstruct.centring`). ``"relative"``
        (default): before each KKR projection move every energy's probe (object alike) so
        the centres of the probes' bright cores (weight intensity²) coincide at their mean, in
        physical units (where the probes sit is left to the data), and on the output put
        every core centre on pixel N//2.
        ``"centre"`` (= True, the default before session 12): move each probe's centre of
        mass onto pixel N//2 after every probe-updating iteration — it fights a focus whose
        centre of mass is off axis (KB with 0.25 waves of coma + astigmatism, foreign
        geometry: μt NRMSE 0.34, alignment 0.22 px, Fourier error 1.06× its minimum;
        ``"relative"``: 0.074, 0.064 px, 1.011). ``"off"`` (= False): neither.
    pin_scale : bool
        After each probe-updating iteration rescale probe and object (P → cP, O → O/c, which
        leaves every exit wave unchanged) so the object's transparent part (85 % quantile of
        ``|O|`` over the covered field: the vacuum) has amplitude 1
        (:func:`ptyxr.reconstruct.epie.pin_scale`). Without it the O·P scale ambiguity drifts
        on noisy data (Siemens star: probe power ×3·10⁶ in 300 iterations).
    mask_dead_pixels : bool
        Find detector pixels that read zero over the whole scan although their neighbours
        collect ≥ 20 counts (dead rows/columns, module gaps, beam-stop shadows:
        :func:`ptyxr.reconstruct.detector.dead_pixel_mask`) and leave them out of the
        modulus constraint; the output's ``detector_mask`` then excludes them and the
        provenance records how many were found. ePIE would otherwise force the exit wave to
        zero there (unmasked dead row on the simulator: absorption NRMSE 0.10 → 0.57).
    probe_modes : int
        Number K of mutually incoherent probe modes (mixed-state ptychography, Thibault &
        Menzel 2013; :mod:`ptyxr.reconstruct.modes`), 1–8. 1 (default) = one coherent probe.
        K > 1 fits the incoherent sum ``Σ_m |F(P_m·O)|²`` to the frames (partial coherence,
        vibrations, detector point spread); the modes start as the coherent initial probe
        plus K − 1 weak (10 % power each) low-order polynomial modes, and are orthogonalised
        and ordered by power after each probe-updating iteration. The output ``probe`` then
        has a leading ``probe_mode`` dim and ``probe_mode_fraction`` (energy, probe_mode)
        gives each mode's power fraction. Cost ≈ K× the FFTs of one ePIE iteration.
    kkr_element, kkr_table : str
        Resonant element and f″ table used to extend μt outside the window in KKR.
    use_monitor : bool
        When ``ds`` has a ``monitor`` (incident flux I0 per frame [counts]), divide every
        frame by its relative flux ``monitor / mean(monitor)`` (mean over that energy's
        measured frames), so beam-current and monochromator flux changes do not enter the
        object; the absolute scale stays with the probe. The monitor must be positive and
        finite at every scan point with a position. Output ``relative_flux``; the
        provenance records ``monitor_used``. No effect without a monitor.
    refine_flux : bool
        Refine each frame's relative flux (beam-current drift without a monitor, or what a
        monitor misses): after every iteration the Poisson maximum-likelihood scale
        ΣI/Σ|F(P·O)|² of every frame on its valid detector pixels (with ``probe_modes`` > 1
        the model counts are the incoherent sum over the modes) updates the flux (mean 1
        per energy, over-relaxed by 1.5), and the frame's target amplitudes are rescaled
        (:mod:`ptyxr.reconstruct.flux`). Output ``relative_flux`` (energy, scan);
        checkpointed, so a resumed run stays exact. A flux change that is smooth over the
        scanned field is nearly degenerate with an object amplitude gradient, which the object
        absorbs while the flux is still wrong; so in runs of ≥ 50 iterations the object
        restarts from 1 after 20 % and 40 % of the iterations (probe kept). Costs one pass
        over the exit waves per iteration, plus an FFT for frames with invalid pixels
        (small preset: 1.4–1.9× the iteration time).
    position_correction : bool
        Refine every probe position at every energy (:mod:`ptyxr.reconstruct.positions`):
        a Gauss–Newton shift estimate per frame from the current object and probe, damped,
        with each energy's mean correction removed (the sample drift stays in the object for
        ``align``; with ``probe_modes`` > 1 the model is the incoherent sum over the modes).
        Adds ``position_correction_y``/``_x`` (energy, scan) [m] = refined −
        recorded to the output and pads the object grid by ``position_max_shift`` + 1 pixels.
        Off (default) reproduces the results without it bit for bit. Simulator, 1 px rms
        position errors: docs/design-notes/s11-positions.md.
    position_correction_start : int, optional
        First refinement pass after this iteration (1-based); default 30 % of ``iterations``
        (the object must exist first).
    position_correction_every : int
        Iterations between refinement passes. A pass (numpy, batched FFTs) costs about 3–4
        iterations of the fused ePIE kernel; the defaults doubled the reconstruct time of the
        simulator's 20-energy ``small`` scan (design note).
    position_max_shift : float
        Largest total correction of one position [pixels of its energy's grid].
    memory_limit : int, float or str, optional
        Most memory for the diffraction data [bytes], or text such as ``"1.5GB"`` /
        ``"800MiB"``. ePIE holds every frame as float32 amplitudes (n_energy·n_scan·N²·4
        bytes). When that exceeds ``memory_limit``, energies run in consecutive groups whose
        amplitudes fit together with the read buffers (two copies of one dask chunk, ≤ 64 MiB
        from :func:`ptyxr.io.open_scan`, and three 16 MiB pieces): between two KKR iterations (and
        checkpoints) each group runs its iterations with only its own frames in memory, read
        block by block from the intensity (a lazy :func:`ptyxr.io.open_scan` scan is never
        loaded whole), then KKR couples all energies as usual. Objects, probes and errors
        equal the in-memory run's (same seed: the same position orders); the frames are read
        once per segment between KKR iterations, plus once for per-energy sums. Objects,
        probes and the process itself come on top of the limit. None (default): all frames
        in memory. With a ``particle`` dim the limit holds per particle, and particles run
        concurrently (one per dask thread/worker). The provenance records the group sizes
        (``energy_groups``).
    algorithm : {"epie", "mpie"}
        ``"epie"``: energy-batched ePIE (the results of every earlier version, bit for bit).
        ``"mpie"``: Maiden, Johnson & Li's mPIE (Optica 4, 736 (2017)) — rPIE's regularised
        object step plus momentum on the object between iterations
        (:mod:`ptyxr.reconstruct.momentum`); it reaches ePIE's object error in fewer
        iterations (measured: docs/design-notes/s11-mpie.md).
    object_regularization : float, optional
        mPIE only: rPIE's a in (0, 1] — object step α·P*/((1 − a)|P|² + a·max|P|²); 1 = ePIE's
        step. Default :data:`ptyxr.reconstruct.momentum.MPIE_REGULARIZATION`.
    momentum : float, optional
        mPIE only: friction η in [0, 0.99] of the object momentum applied after each iteration
        (0 = rPIE). Default :data:`ptyxr.reconstruct.momentum.MPIE_MOMENTUM`.

    Returns
    -------
    xarray.Dataset
        ``ds`` plus ``object`` (energy, y, x), ``probe``, ``fourier_error`` (energy,
        iteration), ``coverage`` (y, x), coords ``y``/``x`` [m] with attr ``pixel_size``;
        ``relative_flux`` (energy, scan) when a monitor was used or the flux refined;
        with ``probe_modes`` > 1 ``probe`` is (probe_mode, energy, probe_y, probe_x) and
        ``probe_mode_fraction`` (energy, probe_mode) is added; with ``position_correction``
        ``position_correction_y``/``_x`` (energy, scan) [m].

    Notes
    -----
    Placement: the probe centre (pixel N//2, N//2) sits at the nearest grid pixel of its
    position, ``floor(position/dx + 0.5)``, on a lattice anchored at 0 m. The intensity
    is loaded into memory (the reconstruction is global in the frames) unless ``memory_limit``
    asks for energy groups.
    """
    _checks.reconstruct_arguments(ds, **{k: v for k, v in locals().items() if k != "ds"})
    object_regularization, momentum = _momentum.resolve(algorithm, object_regularization, momentum)
    _validate(ds)
    n = ds.sizes[DET_Y]
    energy = np.asarray(ds[ENERGY].values, dtype=np.float64)
    if pixel_size is None:
        pixel_size = float(
            np.min(
                real_space_pixel_size(
                    energy, float(ds.attrs[ATTR_DETECTOR_DISTANCE]), float(ds.attrs[ATTR_DETECTOR_PIXEL_SIZE]), n
                )
            )
        )
    elif not (np.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be a positive length in metres, got {pixel_size!r}")
    if iterations < 1:
        raise ValueError(f"iterations must be ≥ 1, got {iterations}")
    if use_monitor:
        _flux.validate_monitor(ds)
    ds, dead_pixels = _mask_dead_pixels(ds) if mask_dead_pixels else (ds, 0)
    kkr_used = bool(kkr) and energy.size >= KKR_MIN_ENERGIES
    if kkr_used and kkr_start is not None and int(kkr_start) > int(iterations):
        warnings.warn(
            f"{STAGE}: kkr_start={kkr_start} > iterations={iterations}: KKR is applied once, after the final "
            "iteration. Leave kkr_start=None to start KKR at 5/8 of the iterations (the paper's 500 of 800).",
            UserWarning,
            stacklevel=2,
        )
    if position_correction and position_correction_start is not None and int(position_correction_start) > iterations:
        warnings.warn(
            f"{STAGE}: position_correction_start={position_correction_start} > iterations={iterations}: no "
            "position refinement pass runs. Leave it None to start at 30 % of the iterations.",
            UserWarning,
            stacklevel=2,
        )
    options = dict(
        iterations=int(iterations),
        alpha=float(alpha),
        beta=float(beta),
        kkr=kkr_used,
        kkr_start=None if kkr_start is None else int(kkr_start),
        kkr_every=None if kkr_every is None else int(kkr_every),
        kkr_weight=float(kkr_weight),
        update_probe=bool(update_probe),
        probe_update_start=int(probe_update_start),
        pixel_size=float(pixel_size),
        coverage_threshold=float(coverage_threshold),
        seed=int(seed),
        progress=bool(progress),
        checkpoint_every=int(checkpoint_every),
        engine=engine,
        fft_backend=fft_backend,
        interpolation=int(interpolation),
        native_grids=bool(native_grids),
        recentre_probe=_centring.mode(recentre_probe),
        pin_scale=bool(pin_scale),
        probe_modes=int(probe_modes),
        kkr_options={"element": kkr_element, "table": kkr_table},
        use_monitor=bool(use_monitor),
        refine_flux=bool(refine_flux),
        position_correction=bool(position_correction),
        position_options=_pos.options(
            int(iterations), position_correction_start, int(position_correction_every), float(position_max_shift)
        )
        if position_correction
        else None,
        memory_limit=_groups.parse_memory_limit(memory_limit),
        algorithm=algorithm,
        object_regularization=object_regularization,
        momentum=momentum,
    )

    if PARTICLE in ds[INTENSITY].dims:
        results = _map_particles(ds, options, checkpoint, resume_from, client)
        names = [str(v) for v in ds[PARTICLE].values] if PARTICLE in ds.coords else None
        new = xr.concat(
            [r for r, _ in results],
            dim=PARTICLE,
            join="outer",
            fill_value={OBJECT: np.complex64(np.nan), COVERAGE: False},
        )
        new[COVERAGE] = new[COVERAGE].astype(bool)
        if names is not None:
            new = new.assign_coords({PARTICLE: ds[PARTICLE]})
        facts = results[0][1]
    else:
        new, facts = _reconstruct_one(
            ds, checkpoint=_particle_path(checkpoint, None), resume_from=_particle_path(resume_from, None), **options
        )
    out = ds if keep_raw else ds.drop_vars([INTENSITY])
    out = out.assign({name: new[name] for name in new.data_vars})
    parameters = {
        **{k: v for k, v in options.items() if k not in ("progress", "algorithm")},
        "algorithm": ALGORITHM if algorithm == "epie" else ALGORITHM_MPIE,
        "algorithm_name": algorithm,
        "kkr_requested": bool(kkr),
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "resume_from": None if resume_from is None else str(resume_from),
        "keep_raw": bool(keep_raw),
        "mask_dead_pixels": bool(mask_dead_pixels),
        "dead_pixels_masked": int(dead_pixels),
        **facts,
    }
    return provenance.record(out, STAGE, parameters)


def _mask_dead_pixels(ds: xr.Dataset) -> tuple[xr.Dataset, int]:
    """``ds`` with dead detector pixels removed from ``detector_mask``, and their count.

    One reduction over every frame (dask intensities are summed blockwise; ePIE reads
    every frame anyway). Pixels already masked or NaN everywhere are left alone.
    """
    data = ds[INTENSITY]
    if DETECTOR_MASK in ds:
        data = data.where(ds[DETECTOR_MASK])
    frame_axes = [d for d in data.dims if d not in (DET_Y, DET_X)]
    totals = np.asarray(data.sum(frame_axes, skipna=True, min_count=1).values, dtype=np.float64)
    dead = dead_pixel_mask(totals)
    if not dead.any():
        return ds, 0
    valid = ~dead if DETECTOR_MASK not in ds else np.asarray(ds[DETECTOR_MASK].values, dtype=bool) & ~dead
    return ds.assign({DETECTOR_MASK: variable(DETECTOR_MASK, valid)}), int(dead.sum())


def _map_particles(
    ds: xr.Dataset, options: dict[str, Any], checkpoint: Any, resume_from: Any, client: Any
) -> list[tuple[xr.Dataset, dict[str, Any]]]:
    """Reconstruct each particle separately, in parallel through dask (threads or ``client``)."""
    import dask

    names = (
        [str(v) for v in ds[PARTICLE].values] if PARTICLE in ds.coords else [str(i) for i in range(ds.sizes[PARTICLE])]
    )
    tasks = []
    for i, name in enumerate(names):
        sub = ds.isel({PARTICLE: i})
        if PARTICLE in sub.coords:
            sub = sub.drop_vars(PARTICLE)
        tasks.append(
            dask.delayed(_reconstruct_one, pure=False)(
                sub,
                checkpoint=_particle_path(checkpoint, name),
                resume_from=_particle_path(resume_from, name),
                label=name,
                **options,
            )
        )
    if client is not None:
        return client.gather(client.compute(tasks))
    return list(dask.compute(*tasks, scheduler="threads"))
