"""KKR's near-edge benefit on the energy-varying phase: no KKR / every energy projected / skip_last.

One simulated particle, reconstructed three times with the preset's schedule (the default
chain on "foreign"), then aligned; prints one JSON line per run with the near-edge
(5465–5490 eV) rms error of the varying phase under three references — φ(E) − φ(E_max)
("last", tests/test_accuracy.py before session 13), φ(E) − mean over all E ("mean", issue
11's metric) and − mean over the near-edge energies ("band") — on the reconstruction and
(``*_al``) on the aligned stack, plus ``particle_accuracy``'s object and alignment figures.
Accuracy only (docs/design-notes/s13-skiplast2.md); CPU times are indicative.

    python benchmarks/kkr_varying_phase.py small --seed 0 --photons 1e6 --drift 0
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import ptyxr  # noqa: F401  (accessor)
from ptyxr import simulate
from ptyxr.pipeline import recommended_options
from ptyxr.simulate.accuracy import NEAR_EDGE_BAND, particle_accuracy, varying_phase_error

RUNS: dict[str, dict[str, Any]] = {
    "off": {"kkr": False},
    "kkr": {"kkr": True, "kkr_skip_last": False},
    "skip": {"kkr": True, "kkr_skip_last": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=["tiny", "small", "paper", "foreign"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--photons", type=float, default=None, help="default: the preset's")
    parser.add_argument("--drift", type=float, default=None, help="default: the preset's")
    args = parser.parse_args()
    overrides = {k: v for k, v in {"photons": args.photons, "drift": args.drift}.items() if v is not None}
    raw, truth = simulate.demo_dataset(args.preset, seed=args.seed, progress=False, **overrides)
    options: dict[str, Any] = {"progress": False}
    if args.preset != "foreign":
        options = dict(recommended_options(args.preset, progress=False).reconstruct)
    for name, extra in RUNS.items():
        start = time.process_time()
        rec = raw.ptyxr.reconstruct(**{**options, **extra})
        aligned = rec.ptyxr.align(progress=False)
        row = particle_accuracy(aligned.ptyxr.spectra(), truth)
        out: dict[str, Any] = {"preset": args.preset, "seed": args.seed, **overrides, "run": name}
        for ref in ("last", "mean", "band"):
            out[ref] = varying_phase_error(rec, truth, NEAR_EDGE_BAND, ref)
            out[f"{ref}_al"] = varying_phase_error(aligned, truth, NEAR_EDGE_BAND, ref)
        out.update({k: v for k, v in row.items() if isinstance(v, float)})
        out["cpu_s"] = time.process_time() - start
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
