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

from ptyxr.optics import real_space_pixel_size
from ptyxr.reconstruct import centring as _centring
from ptyxr.reconstruct import flux as _flux
from ptyxr.reconstruct import groups as _groups
from ptyxr.reconstruct import momentum as _momentum
from ptyxr.reconstruct import positions as _pos
from ptyxr.reconstruct.detector import dead_pixel_mask
from ptyxr.reconstruct.options import (
    KKR_EVERY_FRACTION,
    KKR_MIN_ENERGIES,
    KKR_START_FRACTION,
    FluxOptions,
    KKROptions,
    PositionOptions,
    ProbeOptions,
    RunOptions,
    kkr_schedule,
)
from ptyxr.reconstruct.particle import reconstruct_particle as _reconstruct_one
from ptyxr.reconstruct.validate import MAX_GRID_SIDE, validate_input
from ptyxr.schema import (
    ATTR_DETECTOR_DISTANCE,
    ATTR_DETECTOR_PIXEL_SIZE,
    COVERAGE,
    DET_X,
    DET_Y,
    DETECTOR_MASK,
    ENERGY,
    INTENSITY,
    OBJECT,
    PARTICLE,
    variable,
)
from ptyxr.stage import Recorded, stage

STAGE = "reconstruct"
ALGORITHM = "ePIE (Maiden & Rodenburg 2009), energy-batched on one common grid, KKR constraint (Hirose et al. 2017)"
#: Provenance description of ``algorithm="mpie"``.
ALGORITHM_MPIE = (
    "mPIE (Maiden, Johnson & Li 2017: rPIE object step + object momentum), energy-batched on one common grid, "
    "KKR constraint (Hirose et al. 2017)"
)
#: Arguments left out of the provenance record: they do not change the result (``progress``,
#: ``client``) or are recorded resolved, grouped as earlier versions did (``kkr_options``,
#: ``position_options``: :meth:`ptyxr.reconstruct.options.RunOptions.record`).
NOT_RECORDED = (
    "progress",
    "client",
    "kkr_element",
    "kkr_table",
    "kkr_skip_last",
    "position_correction_start",
    "position_correction_every",
    "position_max_shift",
)
#: The one validation path of the input (kept under its old name for the CLI's pre-flight check).
_validate = validate_input

__all__ = [
    "KKR_EVERY_FRACTION",
    "KKR_MIN_ENERGIES",
    "KKR_START_FRACTION",
    "MAX_GRID_SIDE",
    "kkr_schedule",
    "reconstruct",
]


def _particle_path(path: str | os.PathLike | None, name: str | None) -> Path | None:
    """``P.nc`` → ``P.<particle>.nc`` for multi-particle runs."""
    if path is None:
        return None
    path = Path(path)
    return path if name is None else path.with_name(f"{path.stem}.{name}{path.suffix}")


# ------------------------------------------------------------------------ the stage
@stage(STAGE, validate=validate_input, exclude=NOT_RECORDED)
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
    kkr_skip_last: bool = True,
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
) -> Recorded:
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
    kkr_skip_last : bool
        KKR leaves the highest energy's phase to the reconstruction (its μt and φ still enter
        the other energies' KK phases, which are the same as with False). At the window's
        upper end the KK phase rests most on the table-scaled tail, without the post-edge
        structure, and the reconstruction's own phase there is the better one: paper preset
        (1e9 photons) 0.5 % vs the KK phase's 1.5 % of the phase contrast, and projecting it
        made that energy's absorption NRMSE 0.047 instead of 0.014; small preset at 1e6
        photons, phase error there 4.26 mrad vs 4.55 mrad projected (design-notes/
        s13-paperabs.md, s13-skiplast2.md). The near-edge energies keep the whole KKR benefit.
        Default True since session 13 (False = earlier versions: every energy projected).
        Recorded in ``kkr_options`` when on and KKR runs.
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
        restarts from 1 after 20 % and 40 % of the iterations (probe kept); and with ≥ 6
        energies, from iteration 5 the object's smooth log-amplitude that is independent from
        energy to energy (outside the stack's 3 leading singular components) is moved into
        the flux before every estimate (flux errors are independent per energy, the sample
        is not; docs/design-notes/s13-flux2.md). Costs one pass
        over the exit waves per iteration, plus an FFT for frames with invalid pixels, plus
        the prior's decomposition and a one-time registration (small preset, 20 iterations,
        same run: 1.64× the iteration time without the prior, 3.39× with it).
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
    object_regularization, momentum = _momentum.resolve(algorithm, object_regularization, momentum)
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
            stacklevel=3,  # the caller of the @stage wrapper
        )
    if position_correction and position_correction_start is not None and int(position_correction_start) > iterations:
        warnings.warn(
            f"{STAGE}: position_correction_start={position_correction_start} > iterations={iterations}: no "
            "position refinement pass runs. Leave it None to start at 30 % of the iterations.",
            UserWarning,
            stacklevel=3,  # the caller of the @stage wrapper
        )
    options = RunOptions(
        iterations=int(iterations),
        pixel_size=float(pixel_size),
        alpha=float(alpha),
        beta=float(beta),
        coverage_threshold=float(coverage_threshold),
        seed=int(seed),
        kkr=KKROptions(
            enabled=kkr_used,
            start=None if kkr_start is None else int(kkr_start),
            every=None if kkr_every is None else int(kkr_every),
            weight=float(kkr_weight),
            element=kkr_element,
            table=kkr_table,
            skip_last=bool(kkr_skip_last),
        ),
        probe=ProbeOptions(
            modes=int(probe_modes),
            update=bool(update_probe),
            update_start=int(probe_update_start),
            recentre=_centring.mode(recentre_probe),
        ),
        flux=FluxOptions(use_monitor=bool(use_monitor), refine=bool(refine_flux)),
        positions=PositionOptions(
            enabled=bool(position_correction),
            start=position_correction_start,
            every=int(position_correction_every),
            max_shift=float(position_max_shift),
        ),
        progress=bool(progress),
        checkpoint_every=int(checkpoint_every),
        engine=engine,
        fft_backend=fft_backend,
        interpolation=int(interpolation),
        native_grids=bool(native_grids),
        pin_scale=bool(pin_scale),
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
            ds, options, checkpoint=_particle_path(checkpoint, None), resume_from=_particle_path(resume_from, None)
        )
    out = ds if keep_raw else ds.drop_vars([INTENSITY])
    out = out.assign({name: new[name] for name in new.data_vars})
    parameters = {
        **options.record(),
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
    return Recorded(out, parameters)


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
    ds: xr.Dataset, options: RunOptions, checkpoint: Any, resume_from: Any, client: Any
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
                options,
                checkpoint=_particle_path(checkpoint, name),
                resume_from=_particle_path(resume_from, name),
                label=name,
            )
        )
    if client is not None:
        return client.gather(client.compute(tasks))
    return list(dask.compute(*tasks, scheduler="threads"))
