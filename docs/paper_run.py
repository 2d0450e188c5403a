"""Figures and accuracy table of docs/paper-preset.md from a ``ptyxr demo --preset paper`` run.

Usage::

    ptyxr demo --preset paper --out paper-run          # ~35 min on 2 cores
    python docs/paper_run.py paper-run [--refit]

Reads ``particle-*.nc`` and ``truth-*.nc`` from the demo's output folder, combines and
clusters the particles again (seed 0, the demo's settings), and writes the paper's
Figs. 1–3, S3 and S5 (PRTF per particle and energy) into ``docs/images/paper/`` and the
accuracy table (with the demo's stage timings and the resolution per particle) into
``docs/paper-preset-report.txt``. With ``--refit`` the stages after
the reconstruction (``fit_xanes``, ``chemical_state``) are re-run with the installed
ptyxr first: the reconstruction, by far the costliest stage, is reused, so a report can
follow later changes to the fitting or chemistry without a new half-hour run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import ptyxr
from ptyxr import schema, simulate
from ptyxr.domains import combine_particles
from ptyxr.pipeline import ChainResult, recommended_options
from ptyxr.plotting import save_paper_figures
from ptyxr.plotting.resolution import resolution_summary, save_resolution_figure

DOCS = Path(__file__).resolve().parent
#: What ``spectra`` leaves (DESIGN §1a–1c); a refit drops everything added after it.
SPECTRA_VARIABLES = (
    schema.INTENSITY, schema.POSITION_Y, schema.POSITION_X, schema.OBJECT, schema.PROBE,
    schema.FOURIER_ERROR, schema.COVERAGE, schema.SHIFT_Y, schema.SHIFT_X,
    schema.ABSORPTION, schema.PHASE, schema.BACKGROUND, schema.MATERIAL,
)  # fmt: skip


def _without_fit(ds):
    """``ds`` as ``spectra`` left it (fit_xanes and chemical_state outputs dropped)."""
    return ds.drop_vars([name for name in ds.data_vars if name not in SPECTRA_VARIABLES])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="output folder of `ptyxr demo --preset paper`")
    parser.add_argument("--refit", action="store_true", help="re-run fit_xanes and chemical_state first")
    args = parser.parse_args(argv)

    names = sorted(p.stem.removeprefix("particle-") for p in args.run_dir.glob("particle-*.nc"))
    order = list(simulate.PAPER_PARTICLES)
    names.sort(key=lambda n: order.index(n) if n in order else len(order))
    particles = [ptyxr.open_dataset(args.run_dir / f"particle-{n}.nc") for n in names]
    truths = [ptyxr.open_dataset(args.run_dir / f"truth-{n}.nc") for n in names]
    timings = json.loads((args.run_dir / "timings.json").read_text())
    options = recommended_options("paper", progress=False)
    if args.refit:
        start = time.perf_counter()
        particles = [
            _without_fit(p).ptyxr.fit_xanes(**options.fit_xanes).ptyxr.chemical_state(**options.chemical_state)
            for p in particles
        ]
        print(f"refit of {len(particles)} particles: {time.perf_counter() - start:.1f} s")
    # PRTF per particle and energy (ESI Fig. S5): runs that predate it get it here (needs the kept intensity)
    particles = [p if schema.PRTF in p or schema.INTENSITY not in p else p.ptyxr.resolution() for p in particles]
    combined = combine_particles(particles).ptyxr.cluster(**options.cluster)
    elbow = combined.ptyxr.elbow(**options.elbow)
    result = ChainResult(particles, combined, elbow, timings)
    figures = save_paper_figures(result, DOCS / "images" / "paper")
    s5 = save_resolution_figure(particles, DOCS / "images" / "paper")
    figures += [s5] if s5 is not None else []
    report = simulate.accuracy_report(result, truths)
    text = (
        str(report)
        + "\n\n"
        + resolution_summary(particles)
        + "\n\nparticles: "
        + ", ".join(names)
        + f"\nrefit with the installed ptyxr: {args.refit}\n"
    )
    (DOCS / "paper-preset-report.txt").write_text(text)
    print(text)
    print("figures:", ", ".join(str(f.relative_to(DOCS)) for f in figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
