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

Unknown sections or keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from ptyxr.schema import SchemaError

STAGE_SECTIONS = ("reconstruct", "align", "spectra", "fit_xanes", "chemical_state", "cluster", "elbow")
CONFIG_SECTIONS = ("output", "particle", "particles", "open_scan", *STAGE_SECTIONS)
OUTPUT_KEYS = ("dir", "overwrite")
PARTICLE_KEYS = ("name", "condition", "path")
PARTICLES_KEYS = ("root", "files", "condition")
#: File suffixes taken as HDF5 scans in a particle's folder.
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".cxi", ".nxs", ".nx5")


class ConfigError(SchemaError):
    """A ``ptyxr run`` configuration file is invalid (unknown key, missing file …)."""


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; allowed: {list(allowed)}")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and check a ``ptyxr run`` TOML config (see module docstring for the schema)."""
    path = Path(path)
    try:
        config = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    _check_keys(config, CONFIG_SECTIONS, f"{path} (top level)")
    _check_keys(config.get("output", {}), OUTPUT_KEYS, "[output]")
    if "particles" in config:
        config["particle"] = config.get("particle", []) + _particle_folders(config["particles"], path.parent)
    particles = config.get("particle", [])
    if not isinstance(particles, list) or not particles:
        raise ConfigError(f"{path}: give at least one [[particle]] table with name, condition and path")
    for i, particle in enumerate(particles):
        _check_keys(particle, PARTICLE_KEYS, f"[[particle]] #{i + 1}")
        if "path" not in particle:
            raise ConfigError(f"[[particle]] #{i + 1} needs a 'path'")
        particle["path"] = _scan_files(particle["path"], path.parent, f"[[particle]] #{i + 1}")
    for section in STAGE_SECTIONS + ("open_scan",):
        if not isinstance(config.get(section, {}), dict):
            raise ConfigError(f"[{section}] must be a table of keyword arguments")
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

    return ChainOptions(**{s: dict(config.get(s, {})) for s in STAGE_SECTIONS})


def run(config_path: str | Path) -> Path:
    """Run the chain on the real data files named in a config; returns the output dir."""
    import ptyxr
    from ptyxr.pipeline import run_chain, save_result

    config = load_config(config_path)
    # relative output dirs are taken from the config file's folder, like the data paths
    out = Path(config_path).parent / config.get("output", {}).get("dir", "ptyxr-results")
    overwrite = bool(config.get("output", {}).get("overwrite", False))
    raws = []
    for i, particle in enumerate(config["particle"]):
        raw = ptyxr.open_scan(particle["path"], **config.get("open_scan", {}))
        raw.attrs["particle"] = particle.get("name", f"P{i + 1}")
        if "condition" in particle:
            raw.attrs["condition"] = particle["condition"]
        raws.append(raw)
    result = run_chain(raws, _options(config))
    save_result(result, out, overwrite=overwrite)
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
    from ptyxr.pipeline import recommended_options, run_chain, save_result

    out = Path(out)
    start = time.perf_counter()
    pairs = simulate.paper_particles(preset, seed=seed, progress=progress)
    raws = [raw for raw, _ in pairs]
    truths = [truth for _, truth in pairs]
    options = recommended_options(preset, seed=seed, progress=progress)
    if iterations is not None:
        options.reconstruct["iterations"] = iterations
    options.frc_halves = bool(frc)
    result = run_chain(raws, options)
    save_result(result, out)
    for truth in truths:
        truth.ptyxr.to_netcdf(out / f"truth-{truth.attrs['particle']}.nc", overwrite=True)
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
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ptyxr`` console script."""
    parser = argparse.ArgumentParser(prog="ptyxr", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="simulate particles and run the whole chain")
    p_demo.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    p_demo.add_argument("--out", default="ptyxr-demo", help="output directory (default: ptyxr-demo)")
    p_demo.add_argument("--seed", type=int, default=0)
    p_demo.add_argument("--iterations", type=int, default=None, help="ePIE iterations (default: preset's)")
    p_demo.add_argument("--no-progress", action="store_true", help="silence progress bars")
    p_demo.add_argument("--frc", action="store_true", help="also FRC of scan halves (2 more reconstructions)")
    p_run = sub.add_parser("run", help="run the chain on real data described by a TOML config")
    p_run.add_argument("config", help="TOML config file (see `python -m pydoc ptyxr.cli`)")
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            demo(args.preset, args.out, args.seed, args.iterations, progress=not args.no_progress, frc=args.frc)
        else:
            print(f"results written to {run(args.config)}")
    except (SchemaError, OSError) as err:
        print(f"ptyxr: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
