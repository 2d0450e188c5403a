"""The whole chain as plain functions: used by ``ptyxr demo``, ``ptyxr run`` and notebooks.

raw scans → reconstruct → align → spectra → fit_xanes → chemical_state (per particle) →
combine_particles → cluster → figures, netCDF and a text summary.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr

import ptyxr  # noqa: F401  (registers the accessor)
from ptyxr import schema
from ptyxr.xanes.fit import LOCATED_EDGE_STDERR


@dataclass
class ChainOptions:
    """Keyword arguments of each stage (empty = the stage's defaults)."""

    reconstruct: dict[str, Any] = field(default_factory=dict)
    align: dict[str, Any] = field(default_factory=dict)
    spectra: dict[str, Any] = field(default_factory=dict)
    fit_xanes: dict[str, Any] = field(default_factory=dict)
    chemical_state: dict[str, Any] = field(default_factory=dict)
    cluster: dict[str, Any] = field(default_factory=dict)
    elbow: dict[str, Any] = field(default_factory=dict)
    #: ``ptyxr.resolution.prtf`` options right after reconstruct (None: skip). The PRTF costs
    #: one forward pass (≈ one ePIE iteration); an FRC would need two more reconstructions.
    resolution: dict[str, Any] | None = field(default_factory=dict)
    #: Also reconstruct the even/odd scan halves and add their FRC (½-bit): ≈ doubles the
    #: reconstruction time, so off by default (``ptyxr demo --frc``).
    frc_halves: bool = False

    STAGES = ("reconstruct", "align", "spectra", "fit_xanes", "chemical_state", "cluster", "elbow")


@dataclass
class ChainResult:
    """Per-particle stage outputs, the combined clustered Dataset and wall time per stage [s]."""

    particles: list[xr.Dataset]
    combined: xr.Dataset
    elbow: xr.Dataset | xr.DataArray | None
    timings: dict[str, float]


#: Reconstruction schedules per simulation preset, chosen by measured convergence against the
#: simulator's truth (docs/design-notes/s11-mpie.md). "paper": mPIE (ePIE steps in the KKR
#: phase), 150 iterations — on particle P1 through the whole chain: phase NRMSE 0.0102, edge
#: RMSE 0.245 eV (single-domain 0.064 eV), e/V error 0.46 % (ePIE's 800: 0.0101, 0.25, 0.07,
#: 0.4 %), absorption NRMSE 0.0144 (ePIE 800: 0.011), at 1/5 of the time. More iterations lower
#: the absorption error only slowly (P1 0.0120 at 225, D1 0.0136 at 300; s12-paper.md) at the
#: cost of the demo's 10-minute target, so 150 stays. Its absorption NRMSE (P1 0.0124, D1 0.0134)
#: rests on ``kkr_skip_last``, reconstruct's default since session 13 (the highest energy keeps its
#: own phase; projected, that one energy's NRMSE was 0.047 / 0.076: s13-paperabs.md,
#: s13-skiplast2.md), so no schedule overrides it. The small presets keep ePIE (the accuracy
#: tests' fixtures; on "foreign" data mPIE's noise floor is higher);
#: everything else — step sizes, KKR weight, the KKR schedule (from 5/8 of the iterations,
#: every 1/16, ending on a projection) — is :func:`ptyxr.reconstruct.reconstruct`'s default.
RECONSTRUCT_SCHEDULES: dict[str, dict[str, Any]] = {
    "tiny": {"iterations": 100},
    "small": {"iterations": 200},
    "paper": {"iterations": 150, "algorithm": "mpie"},
}


def recommended_options(preset: str = "small", seed: int = 0, progress: bool = True) -> ChainOptions:
    """Stage options for a simulation preset (schedule from :data:`RECONSTRUCT_SCHEDULES`).

    ``fit_xanes`` asks for a located edge (``max_edge_stderr`` =
    :data:`ptyxr.xanes.fit.LOCATED_EDGE_STDERR`, also its default: same accuracy by hand).
    """
    if preset not in RECONSTRUCT_SCHEDULES:
        raise schema.SchemaError(f"unknown preset {preset!r}; choose one of {sorted(RECONSTRUCT_SCHEDULES)}")
    return ChainOptions(
        reconstruct={**RECONSTRUCT_SCHEDULES[preset], "seed": seed, "progress": progress},
        align={"progress": progress},
        fit_xanes={"progress": progress, "max_edge_stderr": LOCATED_EDGE_STDERR},
        cluster={"seed": seed},
        elbow={"seed": seed, "progress": progress},
    )


def _timed(timings: dict[str, float], stage: str, func: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    out = func()
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start
    return out


def add_resolution(
    ds: xr.Dataset, raw: xr.Dataset, options: ChainOptions, timings: dict[str, float] | None = None
) -> xr.Dataset:
    """The steps right after ``reconstruct``: PRTF (``options.resolution``; None skips) and,
    with ``options.frc_halves``, the FRC of the reconstructed scan halves.

    The PRTF reads the measured frames from ``raw`` when ``reconstruct(keep_raw=False)``
    dropped them from ``ds``.
    """
    timings = {} if timings is None else timings
    if options.resolution is not None:
        kwargs = dict(options.resolution)
        if schema.INTENSITY not in ds:
            kwargs.setdefault("raw", raw)
        ds = _timed(timings, "resolution", lambda: ds.ptyxr.resolution(**kwargs))
    if options.frc_halves:
        from ptyxr.resolution import add_frc_of_halves

        ds = _timed(timings, "frc_halves", lambda: add_frc_of_halves(ds, raw, **options.reconstruct))
    return ds


def process_particle(
    raw: xr.Dataset, options: ChainOptions | None = None, timings: dict[str, float] | None = None
) -> xr.Dataset:
    """Run reconstruct → (PRTF resolution) → align → spectra → fit_xanes → chemical_state on one particle."""
    options = options or ChainOptions()
    timings = {} if timings is None else timings
    ds = _timed(timings, "reconstruct", lambda: raw.ptyxr.reconstruct(**options.reconstruct))
    ds = add_resolution(ds, raw, options, timings)
    ds = _timed(timings, "align", lambda: ds.ptyxr.align(**options.align))
    ds = _timed(timings, "spectra", lambda: ds.ptyxr.spectra(**options.spectra))
    ds = _timed(timings, "fit_xanes", lambda: ds.ptyxr.fit_xanes(**options.fit_xanes))
    return _timed(timings, "chemical_state", lambda: ds.ptyxr.chemical_state(**options.chemical_state))


def run_chain(raws: Sequence[xr.Dataset], options: ChainOptions | None = None) -> ChainResult:
    """Process every particle, combine them and cluster the chemical-state maps.

    Parameters
    ----------
    raws : sequence of xarray.Dataset
        Raw scan series (DESIGN §1a), one per particle, with attrs ``particle`` and
        ``condition``.
    options : ChainOptions, optional
        Keyword arguments per stage.
    """
    options = options or ChainOptions()
    if not raws:
        raise schema.SchemaError("run_chain needs at least one raw scan Dataset.")
    timings: dict[str, float] = {}
    particles = [process_particle(raw, options, timings) for raw in raws]
    from ptyxr.domains import combine_particles

    combined = _timed(timings, "combine", lambda: combine_particles(particles))
    clustered = _timed(timings, "cluster", lambda: combined.ptyxr.cluster(**options.cluster))
    elbow = _timed(timings, "elbow", lambda: combined.ptyxr.elbow(**options.elbow))
    return ChainResult(particles, clustered, elbow, timings)


def save_result(result: ChainResult, out: Path, overwrite: bool = True) -> list[Path]:
    """Write each particle's Dataset, the combined Dataset and timings into ``out`` (each file atomically)."""
    from ptyxr.io.netcdf import atomic_path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for ds in result.particles:
        path = out / f"particle-{ds.attrs.get(schema.ATTR_PARTICLE, 'P')}.nc"
        ds.ptyxr.to_netcdf(path, overwrite=overwrite)
        written.append(path)
    path = out / "domains.nc"
    result.combined.ptyxr.to_netcdf(path, overwrite=overwrite)
    written.append(path)
    timing_path = out / "timings.json"
    with atomic_path(timing_path, overwrite=overwrite) as tmp:  # a crash never leaves half a file
        tmp.write_text(json.dumps(result.timings, indent=2))
    written.append(timing_path)
    return written
