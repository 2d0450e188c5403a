"""Command line: ``ptyxr demo`` (simulated data, whole chain) and ``ptyxr run CONFIG.toml``.

Config schema for ``ptyxr run`` (TOML)::

    [output]
    dir = "results"            # netCDF files and figures (relative to the config file)
    overwrite = false

    [[particle]]               # one table per particle, at least one
    name = "P1"
    condition = "as-prepared"
    path = "P1.cxi"            # CXI / NeXus HDF5 read by ptyxr.open_scan; also a folder of
                               # per-energy files ("P1/"), a glob ("P1/scan_*.h5") or a list

    [particles]                # instead of [[particle]]: folder-per-particle layout
    root = "scans"             # one sub-folder per particle, named after it
    files = "*.h5"             # per-energy files in each sub-folder (default: all HDF5 suffixes)
    condition = {P1 = "as-prepared", D1 = "delithiated"}   # optional, by particle name

    [open_scan]                # keyword arguments of ptyxr.open_scan (all optional)
    [reconstruct]              # keyword arguments of each stage (all optional)
    [align]
    [spectra]
    [fit_xanes]
    [chemical_state]
    [cluster]
    [elbow]

Everything is checked before any work (:func:`check_config`, :func:`check_feasible`):
unknown sections or keys are errors with a "did you mean" (a typo must not silently fall
back to a default), each stage section is checked against the stage's real signature and
annotated types (``overwrite = "false"`` or ``iterations = "30"`` are refused, not
converted), and each particle's data against every requested stage (units, probe vs
frame size, energy count for ``fit_xanes``).

Each particle's file ``particle-<name>.nc`` is (re)written after every stage, with the
stages done and a key of the data and options behind them; a rerun of the same config
picks up after the last saved stage, so a failure late in the chain loses nothing.
``overwrite = false`` refuses to replace results of a *different* run.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import inspect
import json
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ptyxr import checks
from ptyxr.schema import SchemaError

STAGE_SECTIONS = ("reconstruct", "align", "spectra", "fit_xanes", "chemical_state", "cluster", "elbow")
PARTICLE_STAGES = STAGE_SECTIONS[:5]
CONFIG_SECTIONS = ("output", "particle", "particles", "open_scan", *STAGE_SECTIONS)
OUTPUT_KEYS = ("dir", "overwrite")
PARTICLE_KEYS = ("name", "condition", "path")
PARTICLES_KEYS = ("root", "files", "condition")
#: File suffixes taken as HDF5 scans in a particle's folder.
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".cxi", ".nxs", ".nx5")
#: Dataset attr of a ``ptyxr run``/``demo`` output file: JSON {"stages": [...], "key": ...}.
RUN_ATTR = "ptyxr_run"
#: Options the run sets unless the config does: the raw intensities are not copied into
#: every output file (a rerun reads them from the data files; nothing downstream needs them).
RUN_DEFAULTS = {"reconstruct": {"keep_raw": False}}
#: zlib level of the run's netCDF files (lossless; small preset demo 185 → ~40 MB).
COMPLEVEL = 1


class ConfigError(SchemaError):
    """A ``ptyxr run`` configuration file is invalid (unknown key, missing file …)."""


def _check_keys(table: dict[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        hints = ", ".join(f"{k!r}{checks.did_you_mean(k, allowed)}" for k in unknown)
        raise ConfigError(f"unknown key(s) {unknown} in {where}: {hints}; allowed: {list(allowed)}")


def stage_functions() -> dict[str, Callable[..., Any]]:
    """The function behind each config section (its signature is the section's schema)."""
    from ptyxr.chemistry import chemical_state
    from ptyxr.domains import cluster, elbow
    from ptyxr.io.cxi import open_scan
    from ptyxr.reconstruct.api import reconstruct
    from ptyxr.spectra import align, spectra
    from ptyxr.xanes.fit import fit_xanes

    return {
        "open_scan": open_scan,
        "reconstruct": reconstruct,
        "align": align,
        "spectra": spectra,
        "fit_xanes": fit_xanes,
        "chemical_state": chemical_state,
        "cluster": cluster,
        "elbow": elbow,
    }


#: Arguments a config cannot set (objects, not values; or set by the run itself).
NOT_IN_CONFIG = {"open_scan": ("path", "particle", "condition"), "reconstruct": ("client",)}


def check_config(config: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """Check a parsed config against the schema and every stage's signature and types."""
    _check_keys(config, CONFIG_SECTIONS, f"{where} (top level)")
    output = config.get("output", {})
    if not isinstance(output, dict):
        raise ConfigError(f"{where}: [output] must be a table with keys {list(OUTPUT_KEYS)}")
    _check_keys(output, OUTPUT_KEYS, "[output]")
    if "dir" in output and not (isinstance(output["dir"], str) and output["dir"]):
        raise ConfigError(f'[output] dir = {output["dir"]!r} must be a folder name in quotes, e.g. dir = "results"')
    if "overwrite" in output and not isinstance(output["overwrite"], bool):
        raise ConfigError(
            f"[output] overwrite = {output['overwrite']!r} must be true or false without quotes "
            '(the text "false" would count as true and replace existing results)'
        )
    particles = config.get("particle", [])
    if not isinstance(particles, list) or not particles or not all(isinstance(p, dict) for p in particles):
        raise ConfigError(
            f"{where}: give at least one [[particle]] table with name, condition and path, e.g.\n"
            '[[particle]]\nname = "P1"\ncondition = "as-prepared"\npath = "P1.cxi"\n'
            f"(got particle = {particles!r})"
        )
    names = []
    for i, particle in enumerate(particles):
        _check_keys(particle, PARTICLE_KEYS, f"[[particle]] #{i + 1}")
        if "path" not in particle:
            raise ConfigError(
                f"[[particle]] #{i + 1} needs a 'path' (the CXI/NeXus file, per-energy folder or glob of that particle)"
            )
        for key in PARTICLE_KEYS:
            value = particle.get(key, "-")
            several = key == "path" and isinstance(value, list) and value  # per-energy files
            if not (isinstance(value, str) and value) and not (
                several and all(isinstance(v, str) and v for v in value)
            ):
                what = "text in quotes" + (": it must be a file, folder or glob pattern" if key == "path" else "")
                example = 'path = "P1.cxi" (or a list of files/globs)' if key == "path" else f'{key} = "P1"'
                raise ConfigError(f"[[particle]] #{i + 1}: {key} = {value!r} must be {what}, e.g. {example}")
        names.append(particle.get("name", f"P{i + 1}"))
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: particle names must differ, got {names}")
    functions = stage_functions()
    for section in ("open_scan", *STAGE_SECTIONS):
        table = config.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] must be a table of keyword arguments, got {table!r}")
        refused = [k for k in table if k in NOT_IN_CONFIG.get(section, ())]
        if refused:
            raise ConfigError(f"[{section}] cannot set {refused} in a config (set by the run or not a value)")
        try:
            checks.check_types(functions[section], table, f"[{section}]")
        except ConfigError:
            raise
        except SchemaError as err:
            raise ConfigError(str(err)) from None
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and check a ``ptyxr run`` TOML config (see module docstring for the schema)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder; give the TOML config file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {err.start}: {data[err.start : err.start + 1]!r}); "
            "save it as UTF-8 (TOML files must be UTF-8)"
        ) from None
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    if isinstance(config.get("particles"), dict):  # folder-per-particle layout → [[particle]] tables
        particles = config.get("particle", [])
        config["particle"] = (particles if isinstance(particles, list) else [particles]) + _particle_folders(
            config["particles"], path.parent
        )
    elif "particles" in config:
        raise ConfigError("[particles] must be a table with 'root' (and optional 'files', 'condition')")
    check_config(config, str(path))
    for i, particle in enumerate(config["particle"]):
        particle["path"] = _scan_files(particle["path"], path.parent, f"[[particle]] #{i + 1}")
    return config


def _scan_files(value: Any, base: Path, where: str, pattern: str | None = None) -> str | list[str]:
    """A particle's data: one file, or the sorted per-energy files of a folder / glob / list."""
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{where}: 'path' must be a file, folder or glob pattern (or a list of them), got {value!r}")
    files: list[Path] = []
    for v in values:
        item = base / v
        if item.is_dir():
            found = (
                sorted(item.glob(pattern))
                if pattern
                else sorted(p for p in item.iterdir() if p.suffix.lower() in HDF5_SUFFIXES)
            )
            if not found:
                what = pattern or f"HDF5 files ({', '.join(HDF5_SUFFIXES)})"
                raise ConfigError(f"{where}: folder {item.resolve()} holds no {what}")
            files.extend(found)
        elif item.exists():
            files.append(item)
        elif any(c in v for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(str(base / v)))
            if not found:
                raise ConfigError(f"{where}: no data file matches {(base / v)}")
            files.extend(found)
        else:
            raise ConfigError(f"{where}: data file {item.resolve()} does not exist")
    resolved = [str(f.resolve()) for f in files]
    single_file = isinstance(value, str) and (base / value).is_file()
    return resolved[0] if single_file else resolved


def _particle_folders(table: Any, base: Path) -> list[dict[str, Any]]:
    """[particles] root/files/condition → one [[particle]] per sub-folder of root, sorted by name."""
    if not isinstance(table, dict):
        raise ConfigError("[particles] must be a table with 'root' (and optional 'files', 'condition')")
    _check_keys(table, PARTICLES_KEYS, "[particles]")
    if "root" not in table:
        raise ConfigError("[particles] needs 'root', the folder holding one sub-folder per particle")
    root = (base / table["root"]).resolve()
    if not root.is_dir():
        raise ConfigError(f"[particles]: root folder {root} does not exist")
    conditions = table.get("condition", {})
    if not isinstance(conditions, dict):
        raise ConfigError("[particles] condition must be a table {particle name = condition}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ConfigError(f"[particles]: root folder {root} holds no particle sub-folder")
    unknown = sorted(set(conditions) - {p.name for p in folders})
    if unknown:
        raise ConfigError(f"[particles] condition names {unknown}, which are not sub-folders of {root}")
    out = []
    for folder in folders:
        particle = {
            "name": folder.name,
            "path": _scan_files(str(folder), base, f"[particles] {folder.name}", table.get("files")),
        }
        if folder.name in conditions:
            particle["condition"] = conditions[folder.name]
        out.append(particle)
    return out


def _options(config: dict[str, Any]):
    from ptyxr.pipeline import ChainOptions

    sections = {s: {**RUN_DEFAULTS.get(s, {}), **config.get(s, {})} for s in STAGE_SECTIONS}
    return ChainOptions(**sections)  # type: ignore[arg-type]


def _default(func: Callable[..., Any], name: str) -> Any:
    return inspect.signature(func).parameters[name].default


def check_feasible(raw: Any, options: Any, label: str) -> None:
    """Check one particle's raw scan against every stage before any reconstruction.

    Units plausibility and probe vs frame size (the checks ``reconstruct`` itself makes
    first), and the energy count ``fit_xanes`` needs (eq. 1's 10 parameters + 1, and
    ``MIN_PRE_EDGE_POINTS`` energies below ``pre_edge_limit``).
    """
    import numpy as np

    from ptyxr.reconstruct.api import _validate
    from ptyxr.schema import ENERGY
    from ptyxr.xanes.fit import MIN_PRE_EDGE_POINTS, fit_xanes

    where = f"particle {label}"
    try:
        checks.raw_units(raw, options.reconstruct.get("pixel_size"))
        _validate(raw)
    except SchemaError as err:
        raise SchemaError(f"{where}: {err}") from None
    energy = np.asarray(raw[ENERGY].values, dtype=float)
    n_par = 10  # eq. (1): a, b1–b3, c11–c23
    if energy.size <= n_par:
        raise SchemaError(
            f"{where}: fit_xanes needs at least {n_par + 1} energies (eq. 1 has {n_par} parameters), the data hold "
            f"{energy.size}; give a file with an energy series (one CXI entry per energy, or several files)."
        )
    limit = options.fit_xanes.get("pre_edge_limit", _default(fit_xanes, "pre_edge_limit"))
    n_pre = int(np.sum(energy < limit))
    if n_pre < MIN_PRE_EDGE_POINTS:
        raise SchemaError(
            f"{where}: fit_xanes needs {MIN_PRE_EDGE_POINTS} energies below pre_edge_limit = {limit} eV, the data "
            f"hold {n_pre} (energies {energy.min():g}–{energy.max():g} eV); set [fit_xanes] pre_edge_limit."
        )


# ------------------------------------------------------------------ staged running
def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _stage_keys(source: str, options: Any) -> list[str]:
    """Key of each particle stage: the data source and the options of it and every earlier stage."""
    after = [options.resolution, options.frc_halves]  # resolution steps follow reconstruct
    return [_key(source, [getattr(options, s) for s in PARTICLE_STAGES[: i + 1]], after) for i in range(5)]


def _saved_state(path: Path) -> dict[str, Any] | None:
    """The run record of an existing output file, or None (no file, or not a run's file)."""
    if not path.exists():
        return None
    from ptyxr.io.netcdf import open_dataset

    try:
        with open_dataset(path) as ds:
            text = ds.attrs.get(RUN_ATTR)
    except OSError:  # damaged or not netCDF: not ours to resume (and replaced only with overwrite)
        return None
    try:
        return json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None


def _plan(path: Path, keys: list[str], overwrite: bool) -> int:
    """How many stages of ``keys`` the file at ``path`` already holds (refusing a foreign file)."""
    state = _saved_state(path)
    if state is not None:
        done = len(state.get("stages", []))
        if 0 < done <= len(keys) and state.get("key") == keys[done - 1]:
            return done
    if path.exists() and not overwrite:
        raise ConfigError(
            f"{path} holds results of another run (other data or settings); set overwrite = true in [output] "
            "or choose another output dir"
        )
    return 0


def run_staged(
    raws: Sequence[Any],
    sources: Sequence[str],
    options: Any,
    out: Path,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    names: Sequence[str] | None = None,
):
    """Run the chain, saving each particle after every stage and picking up from saved stages.

    ``raws`` may hold zero-argument callables that return the raw Dataset (with ``names``
    given): each is called when its particle's turn comes and dropped after it, so only one
    particle's frames are in memory at a time (the paper demo: 0.6 GB of frames each).

    Returns the :class:`ptyxr.pipeline.ChainResult` and the files written.
    """
    import xarray as xr

    from ptyxr.domains import combine_particles
    from ptyxr.io.netcdf import open_dataset, to_netcdf
    from ptyxr.pipeline import ChainResult, _timed, add_resolution
    from ptyxr.schema import ATTR_PARTICLE

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if names is None:
        names = [str(raw.attrs.get(ATTR_PARTICLE, f"P{i + 1}")) for i, raw in enumerate(raws)]
    keys = [_stage_keys(src, options) for src in sources]
    paths = [out / f"particle-{name}.nc" for name in names]
    done = [_plan(p, k, overwrite) for p, k in zip(paths, keys, strict=True)]  # all refusals before any work
    final_key = _key([k[-1] for k in keys], options.cluster, options.elbow)
    domains_path, elbow_path = out / "domains.nc", out / "elbow.nc"
    domains_done = _plan(domains_path, [final_key], overwrite) == 1 and elbow_path.exists()
    timings: dict[str, float] = {}
    particles = []
    for raw, name, path, stage_keys, n_done in zip(raws, names, paths, keys, done, strict=True):
        if callable(raw) and n_done < len(PARTICLE_STAGES):
            raw = raw()  # loaded/simulated now; released when the loop moves on
        ds = raw
        if n_done:
            ds = open_dataset(path, load=True)
            log(f"{name}: picking up after {PARTICLE_STAGES[n_done - 1]} (saved in {path})")
        for i in range(n_done, len(PARTICLE_STAGES)):
            stage = PARTICLE_STAGES[i]
            current = ds
            ds = _timed(timings, stage, lambda s=stage, d=current: getattr(d.ptyxr, s)(**getattr(options, s)))  # type: ignore[misc]
            if stage == "reconstruct":
                ds = add_resolution(ds, raw, options, timings)
            ds.attrs[RUN_ATTR] = json.dumps({"stages": list(PARTICLE_STAGES[: i + 1]), "key": stage_keys[i]})
            to_netcdf(ds, path, overwrite=True, complevel=COMPLEVEL)
        particles.append(ds)
    if domains_done:
        combined = open_dataset(domains_path, load=True)
        elbow = open_dataset(elbow_path, load=True)
        elbow = elbow[list(elbow.data_vars)[0]] if len(elbow.data_vars) == 1 else elbow  # type: ignore[assignment]
        log(f"combined results picked up from {domains_path}")
    else:
        combined = _timed(timings, "combine", lambda: combine_particles(particles))
        combined = _timed(timings, "cluster", lambda: combined.ptyxr.cluster(**options.cluster))
        elbow = _timed(timings, "elbow", lambda: combined.ptyxr.elbow(**options.elbow))
        elbow_ds = elbow.to_dataset(name=elbow.name or "inertia") if isinstance(elbow, xr.DataArray) else elbow
        to_netcdf(elbow_ds, elbow_path, overwrite=True, complevel=COMPLEVEL)
        combined.attrs[RUN_ATTR] = json.dumps({"stages": ["combine", "cluster", "elbow"], "key": final_key})
        to_netcdf(combined, domains_path, overwrite=True, complevel=COMPLEVEL)
    result = ChainResult(particles, combined, elbow, timings)
    from ptyxr.io.netcdf import atomic_path

    timing_path = out / "timings.json"
    with atomic_path(timing_path, overwrite=True) as tmp:  # a crash never leaves half a file
        tmp.write_text(json.dumps(timings, indent=2))
    return result, [*paths, domains_path, elbow_path, timing_path]


def _source_key(path: str, open_kwargs: dict[str, Any], particle: dict[str, Any]) -> str:
    """Data file (name, size, modification time), reader options and particle labels."""
    stat = Path(path).stat()
    return _key(path, stat.st_size, stat.st_mtime_ns, open_kwargs, particle)


def run(config_path: str | Path) -> Path:
    """Run the chain on the real data files named in a config; returns the output dir."""
    import ptyxr

    config = load_config(config_path)
    # relative output dirs are taken from the config file's folder, like the data paths
    out = Path(config_path).parent / config.get("output", {}).get("dir", "ptyxr-results")
    overwrite = config.get("output", {}).get("overwrite", False)
    options = _options(config)
    raws, sources = [], []
    for i, particle in enumerate(config["particle"]):
        name = particle.get("name", f"P{i + 1}")
        try:
            raw = ptyxr.open_scan(particle["path"], **config.get("open_scan", {}))
        except SchemaError as err:
            raise SchemaError(f"particle {name} ({particle['path']}): {err}") from None
        raw.attrs["particle"] = name
        if "condition" in particle:
            raw.attrs["condition"] = particle["condition"]
        check_feasible(raw, options, f"{name} ({particle['path']})")
        raws.append(raw)
        sources.append(_source_key(particle["path"], config.get("open_scan", {}), particle))
    result, _ = run_staged(raws, sources, options, out, overwrite=overwrite)
    _write_figures(result, out)
    return out


def _write_figures(result, out: Path, truths=None) -> list[Path]:
    try:
        from ptyxr.plotting import save_paper_figures
    except ImportError:  # plotting extra not installed
        print("matplotlib/plotting not available: no figures written", file=sys.stderr)
        return []
    from ptyxr.plotting.resolution import save_resolution_figure

    written = save_paper_figures(result, out)
    s5 = save_resolution_figure(result.particles, out)  # Fig. S5: PRTF per particle and energy
    return written + ([s5] if s5 is not None else [])


def demo(
    preset: str = "small",
    out: str | Path = "ptyxr-demo",
    seed: int = 0,
    iterations: int | None = None,
    progress: bool = True,
    frc: bool = False,
) -> Path:
    """Simulate particles, run the whole chain, write netCDF, figures and a summary.

    Parameters
    ----------
    preset : {"tiny", "small", "paper"}
        Simulation preset (ptyxr.simulate).
    out : path
        Output directory (created; files in it are overwritten).
    seed : int
        Seed of the simulation and of every seeded stage.
    iterations : int, optional
        ePIE iterations (default: the preset's recommended schedule).
    frc : bool
        Also reconstruct the even/odd scan halves of each particle and report their FRC
        resolution (≈ doubles the reconstruction time); the PRTF is always reported.
    """
    from ptyxr import simulate
    from ptyxr.pipeline import recommended_options

    if iterations is not None:
        checks.integer("iterations", iterations, "ptyxr demo", minimum=1)
    out = Path(out)
    start = time.perf_counter()
    # one particle's frames at a time (simulated when its turn comes, dropped after its
    # stages): simulating all six first held 3.6 GB of paper-preset frames at once. Each
    # truth goes to its file at once and is read back for the report (as docs/paper_run.py
    # does): six paper truths held through the run were ≈ 0.55 GB of the peak.
    from ptyxr.io.netcdf import open_dataset

    out.mkdir(parents=True, exist_ok=True)
    truth_of: dict[str, Path] = {}

    def save_truth(name: str, truth: Any) -> None:
        truth_of[name] = out / f"truth-{name}.nc"
        truth.ptyxr.to_netcdf(truth_of[name], overwrite=True, complevel=COMPLEVEL)

    def simulated(name: str, condition: str) -> Callable[[], Any]:
        def make() -> Any:
            raw, truth = simulate.demo_dataset(preset, seed, condition, name, progress)
            save_truth(name, truth)
            return raw

        return make

    particles = dict(simulate.PAPER_PARTICLES)
    names = list(particles)
    raws = [simulated(name, condition) for name, condition in particles.items()]
    options = recommended_options(preset, seed=seed, progress=progress)
    for section, defaults in RUN_DEFAULTS.items():
        getattr(options, section).update(defaults)
    if iterations is not None:
        options.reconstruct["iterations"] = iterations
    options.frc_halves = bool(frc)
    sources = [_key("demo", preset, seed, name) for name in names]
    result, written = run_staged(raws, sources, options, out, overwrite=True, names=names)
    for name, condition in particles.items():
        if name not in truth_of:  # a particle picked up from saved stages was not simulated
            save_truth(name, simulate.demo_dataset(preset, seed, condition, name, progress)[1])
    truths = [open_dataset(truth_of[name], load=True) for name in names]
    written.extend(truth_of[name] for name in names)
    figures = _write_figures(result, out, truths)
    summary = simulate.accuracy_report(result, truths)
    summary_text = summary if isinstance(summary, str) else str(summary)
    from ptyxr.plotting.resolution import resolution_summary

    summary_text += "\n\n" + resolution_summary(result.particles)
    total = time.perf_counter() - start
    summary_text += f"\n\ntotal wall time: {total:.1f} s\nfigures: {[f.name for f in figures]}\n"
    from ptyxr.io.netcdf import atomic_path

    with atomic_path(out / "summary.txt", overwrite=True) as tmp:  # a crash never leaves half a file
        tmp.write_text(summary_text)
    print(summary_text)
    print(_where_results_went(out, [*written, *figures, out / "summary.txt"]))
    return out


def _where_results_went(out: Path, files: Sequence[Path]) -> str:
    """One line per file written (name and size), under the folder's absolute path."""
    lines = [f"results written to {Path(out).resolve()}:"]
    total = 0
    for f in files:
        size = f.stat().st_size if f.exists() else 0
        total += size
        lines.append(f"  {f.name:<24} {size / 1e6:8.1f} MB")
    lines.append(f"  {'total':<24} {total / 1e6:8.1f} MB")
    return "\n".join(lines)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1 (ePIE needs one iteration or more)")
    return value


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ptyxr`` console script."""
    parser = argparse.ArgumentParser(prog="ptyxr", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="simulate particles and run the whole chain")
    p_demo.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    p_demo.add_argument("--out", default="ptyxr-demo", help="output directory (default: ptyxr-demo)")
    p_demo.add_argument("--seed", type=int, default=0, help="seed of the simulation and every stage")
    p_demo.add_argument("--iterations", type=_positive_int, default=None, help="ePIE iterations (default: preset's)")
    p_demo.add_argument("--no-progress", action="store_true", help="silence progress bars")
    p_demo.add_argument("--frc", action="store_true", help="also FRC of scan halves (2 more reconstructions)")
    p_run = sub.add_parser("run", help="run the chain on real data described by a TOML config")
    p_run.add_argument("config", help="TOML config file (see `python -m pydoc ptyxr.cli`)")
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            demo(args.preset, args.out, args.seed, args.iterations, progress=not args.no_progress, frc=args.frc)
        else:
            out = run(args.config)
            files = sorted(p for p in Path(out).iterdir() if p.is_file() and not p.name.startswith("."))
            print(_where_results_went(out, files))
    except (SchemaError, OSError) as err:
        print(f"ptyxr: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
