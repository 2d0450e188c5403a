"""Convergence of ePIE vs mPIE against the simulator's truth (issue 12 point 5).

For each algorithm setting and iteration count, one full ``reconstruct`` run (its own
default KKR schedule for that count, or ``--no-kkr``) on a simulated particle; prints object
NRMSE (complex, best global phase, drift undone, inside coverage, normalised by ‖O_true − 1‖),
phase NRMSE (arg O vs truth, mean removed per energy, normalised by the truth's phase rms),
both averaged over energies, and wall and CPU time (CPU: all threads; steadier on a shared machine).

Usage: ``python benchmarks/convergence_mpie.py --preset tiny --iterations 25 50 100``
(``--energies 8`` keeps every 5th energy of a paper particle; ``--variants`` picks settings).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ptyxr import schema as S
from ptyxr import simulate
from ptyxr.reconstruct import epie, reconstruct

SETTINGS = {
    "epie": {"algorithm": "epie"},
    "mpie": {"algorithm": "mpie"},
    "rpie": {"algorithm": "mpie", "momentum": 0.0},
}


def errors(out, truth) -> tuple[float, float]:
    """(object NRMSE, phase NRMSE), mean over energies."""
    dx = out[S.Y].attrs[S.ATTR_PIXEL_SIZE]
    tr = truth[S.OBJECT].interp({S.Y: out[S.Y], S.X: out[S.X]}, method="nearest").values
    cov = out[S.COVERAGE].values
    e_obj, e_ph = [], []
    for e in range(out.sizes[S.ENERGY]):
        shift = (truth[S.SHIFT_Y].values[e] / dx, truth[S.SHIFT_X].values[e] / dx)
        rec = epie.fourier_shift(out[S.OBJECT].values[e], shift)[cov]
        b = tr[e][cov]
        gamma = np.angle(np.vdot(rec, b))
        a = rec * np.exp(1j * gamma)
        e_obj.append(np.linalg.norm(a - b) / np.linalg.norm(b - 1))
        dphi = np.angle(a * np.conj(b))
        dphi -= dphi.mean()
        ph = np.angle(b)
        e_ph.append(np.sqrt(np.mean(dphi**2)) / np.sqrt(np.mean((ph - ph.mean()) ** 2)))
    return float(np.mean(e_obj)), float(np.mean(e_ph))


def parse_setting(text: str) -> tuple[str, dict]:
    """``mpie`` / ``epie`` / ``mpie:a=0.1,m=0.5``."""
    name, _, rest = text.partition(":")
    kw = dict(SETTINGS[name])
    for item in filter(None, rest.split(",")):
        k, v = item.split("=")
        kw[{"a": "object_regularization", "m": "momentum"}[k]] = float(v)
    return text, kw


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--iterations", type=int, nargs="+", default=[25, 50, 100])
    ap.add_argument("--variants", nargs="+", default=["epie", "mpie"])
    ap.add_argument("--energies", type=int, default=0, help="keep this many energies (evenly spaced)")
    ap.add_argument("--no-kkr", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    raw, truth = simulate.demo_dataset(args.preset, seed=args.seed, progress=False)
    if args.energies:
        keep = np.unique(np.linspace(0, raw.sizes[S.ENERGY] - 1, args.energies).round().astype(int))
        raw, truth = raw.isel({S.ENERGY: keep}), truth.isel({S.ENERGY: keep})
    print(f"preset {args.preset}: {dict(raw.sizes)}  kkr={not args.no_kkr}")
    print(f"{'setting':<22} {'iter':>5} {'obj NRMSE':>10} {'phase NRMSE':>12} {'wall s':>8} {'cpu s':>8}")
    for text, kw in map(parse_setting, args.variants):
        for it in args.iterations:
            t0, c0 = time.perf_counter(), time.process_time()
            out = reconstruct(raw, iterations=it, kkr=not args.no_kkr, progress=False, keep_raw=False, **kw)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            eo, ep = errors(out, truth)
            print(f"{text:<22} {it:>5} {eo:>10.4f} {ep:>12.4f} {wall:>8.1f} {cpu:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
