"""One paper-preset particle through the demo's own chain with a given reconstruct schedule.

Simulates the particle once (cached under ``--cache``), then runs
:func:`ptyxr.pipeline.process_particle` with ``recommended_options("paper")`` plus the
schedule overrides given on the command line, and prints the accuracy figures
(:func:`ptyxr.simulate.accuracy.particle_accuracy` with the ideal fit), the stage times and
the reconstruct time per iteration (compare schedules by iterations x per-iteration cost on
a shared machine).

Usage::

    python benchmarks/paper_schedule.py --particle P1 iterations=150 algorithm=mpie
    python benchmarks/paper_schedule.py --particle D1 iterations=200 kkr_start=60 momentum=0.85
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import time
from pathlib import Path

from ptyxr import pipeline, simulate
from ptyxr.cli import RUN_DEFAULTS
from ptyxr.pipeline import process_particle, recommended_options
from ptyxr.simulate.accuracy import ideal_maps, particle_accuracy


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def cached(particle: str, cache: Path, seed: int):
    """(raw, truth, ideal) of one paper particle, simulated once and kept in ``cache``."""
    condition = dict(simulate.PAPER_PARTICLES)[particle]
    path = cache / f"paper-{particle}-{seed}.pickle"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        raw, truth = simulate.demo_dataset("paper", seed, condition, particle, False)
        options = recommended_options("paper", seed=seed, progress=False)
        ideal = ideal_maps(truth, options.fit_xanes, options.chemical_state)
        path.write_bytes(pickle.dumps((raw, truth, ideal)))
    return pickle.loads(path.read_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="reconstruct options, key=value")
    parser.add_argument("--particle", default="P1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/ptyxr-paper-cache"))
    parser.add_argument("--no-resolution", action="store_true")
    parser.add_argument("--save", type=Path, help="pickle the particle's chain output here")
    args = parser.parse_args()
    raw, truth, ideal = cached(args.particle, args.cache, args.seed)
    options = recommended_options("paper", seed=args.seed, progress=False)
    for section, defaults in RUN_DEFAULTS.items():
        getattr(options, section).update(defaults)
    options.reconstruct.update({k: _value(v) for k, v in (o.split("=", 1) for o in args.overrides)})
    if args.no_resolution:
        options.resolution = None
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    timed = pipeline._timed

    def timed_cpu(store, stage, func):  # wall (the chain's own clock) and CPU time of every thread
        start = time.process_time()
        out = timed(store, stage, func)
        cpu[stage] = cpu.get(stage, 0.0) + time.process_time() - start
        return out

    pipeline._timed = timed_cpu
    cpu0 = time.process_time()
    ds = process_particle(raw, options, timings)
    row = particle_accuracy(ds, truth, ideal)
    if args.save:
        args.save.write_bytes(pickle.dumps(ds))
    it = options.reconstruct["iterations"]
    out = {
        "particle": args.particle,
        "reconstruct": {k: v for k, v in options.reconstruct.items() if k not in ("progress", "seed")},
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "cpu_s_by_stage": {k: round(v, 2) for k, v in cpu.items()},
        "reconstruct_s_per_iteration": round(timings["reconstruct"] / it, 4),
        "reconstruct_cpu_s_per_iteration": round(cpu["reconstruct"] / it, 4),
        "cpu_s": round(time.process_time() - cpu0, 1),
        "peak_rss_GB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        **{k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
