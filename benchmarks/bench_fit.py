"""Benchmark: batch XANES fit (variable projection + batched LM) vs lmfit per pixel, same run.

Prints batch px/s, lmfit px/s (on a subset), their ratio (target ≥ 100×), and the time
and peak memory of a 256×256×40 map (target ≲ 10 s on the 2-core dev machine). Wall
and CPU (process) times are both printed: on a shared machine the CPU time is the
stable number. Not a test.

    python benchmarks/bench_fit.py            # full: 256×256 map, 200 lmfit pixels
    python benchmarks/bench_fit.py --reduced  # quick: 64×64 map, 40 lmfit pixels
    python benchmarks/bench_fit.py --baseline /tmp/ptyxr-main   # also time another checkout's
                                                                # solver (same map, same run)

The map fit's CPU/wall ratio says how many cores it used (threads over pixel blocks).
``--baseline`` runs that checkout's ``fit_batch`` on the same map in a subprocess
(``PYTHONPATH`` = that folder) just before this one, so both see the same machine load.
``--repeat N`` alternates the two N times and prints every pair and the medians (on a
shared machine one pair can be off by ±20 %).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc

import numpy as np

from ptyxr.simulate.energies import paper_energy_grid
from ptyxr.xanes import model as xm
from ptyxr.xanes.fit import _fit_lmfit_rows
from ptyxr.xanes.solver import fit_batch

PRE_EDGE_LIMIT = 5466.0


def synthetic_map(n_pixels: int, material_fraction: float = 0.6, sigma: float = 0.01, seed: int = 0):
    """Spectra of a map: eq. (1) with realistic random parameters in ``material_fraction`` of
    the pixels, noise only (vacuum) in the rest."""
    rng = np.random.default_rng(seed)
    energy = paper_energy_grid()
    n = n_pixels
    b1 = rng.uniform(0.05, 0.5, n) * (rng.random(n) < material_fraction)
    b2 = rng.uniform(5474.0, 5484.0, n)
    c13 = rng.uniform(0.8, 1.6, n)
    params = np.stack(
        [
            rng.uniform(0.0, 0.3, n),
            b1,
            b2,
            rng.uniform(1.5, 4.0, n),
            rng.uniform(0.5, 3.0, n) * b1 / (np.pi * c13),
            rng.uniform(5467.0, 5470.0, n),
            c13,
            rng.uniform(0.2, 0.8, n) * b1,
            b2 + rng.uniform(3.0, 8.0, n),
            rng.uniform(2.0, 5.0, n),
        ],
        axis=1,
    )
    return energy, xm.eq1_array(energy, params) + rng.normal(0.0, sigma, (n, energy.size))


def timed(func, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = func(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reduced", action="store_true", help="64×64 map and 40 lmfit pixels (≈ 10 s)")
    parser.add_argument("--size", type=int, default=None, help="map side (default 256, reduced 64)")
    parser.add_argument("--lmfit-pixels", type=int, default=None, help="lmfit subset (default 200, reduced 40)")
    parser.add_argument("--baseline", default=None, help="folder holding another ptyxr checkout to time alongside")
    parser.add_argument("--repeat", type=int, default=1, help="baseline/this pairs to time (with --baseline)")
    parser.add_argument("--solver-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    side = args.size or (64 if args.reduced else 256)
    n_lmfit = args.lmfit_pixels or (40 if args.reduced else 200)

    if args.solver_only:  # child of --baseline: time this checkout's fit_batch only
        energy, mu = synthetic_map(side * side)
        fit_batch(energy, mu[:64], pre_edge_limit=PRE_EDGE_LIMIT)  # warm-up (numba compile/load, if any)
        res, wall, cpu = timed(fit_batch, energy, mu, pre_edge_limit=PRE_EDGE_LIMIT)
        cpu = getattr(res, "cpu_time", cpu)  # worker processes' CPU where the solver reports it
        print(json.dumps({"wall": wall, "cpu": cpu, "n": mu.shape[0]}))
        return
    base = None

    def run_baseline() -> dict:
        env = dict(os.environ, PYTHONPATH=os.path.abspath(args.baseline))
        cmd = [sys.executable, os.path.abspath(__file__), "--solver-only", "--size", str(side)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    if args.baseline:
        base = run_baseline()
    energy, mu = synthetic_map(side * side)
    fit_batch(energy, mu[:64], pre_edge_limit=PRE_EDGE_LIMIT)  # compile / load the numba kernels first
    print(f"map {side}×{side}×{energy.size}: 60 % material (eq. 1, b1 0.05–0.5), 40 % vacuum, σ = 0.01")

    subset = mu[:n_lmfit]
    _, lm_wall, lm_cpu = timed(_fit_lmfit_rows, energy, subset, PRE_EDGE_LIMIT)
    print(f"lmfit  on {n_lmfit} px: {n_lmfit / lm_wall:9.1f} px/s wall, {n_lmfit / lm_cpu:9.1f} px/s CPU")

    res, wall, cpu = timed(fit_batch, energy, mu, pre_edge_limit=PRE_EDGE_LIMIT)
    cpu = res.cpu_time  # summed over the workers (thread CPU time of each block)
    n = mu.shape[0]
    print(f"batch  on {n} px: {n / wall:9.1f} px/s wall, {n / cpu:9.1f} px/s CPU")
    print(f"ratio batch/lmfit: {(n / wall) / (n_lmfit / lm_wall):.0f}× wall, {(n / cpu) / (n_lmfit / lm_cpu):.0f}× CPU")
    print(f"{side}×{side}×{energy.size} map: {wall:.2f} s wall, {cpu:.2f} s CPU; success {res.success.mean():.3f}")
    print(f"map fit CPU/wall: {cpu / wall:.2f} ({os.cpu_count()} cores, threads)")
    npy, np_wall, _ = timed(fit_batch, energy, mu, pre_edge_limit=PRE_EDGE_LIMIT, engine="numpy")
    print(
        f"numpy engine, same map: {n / np_wall:9.1f} px/s wall, {n / npy.cpu_time:9.1f} px/s CPU, "
        f"CPU/wall {npy.cpu_time / np_wall:.2f}; default/numpy {np_wall / wall:.2f}× px/s wall, "
        f"{npy.cpu_time / cpu:.2f}× px/s CPU; max |Δb2| {np.nanmax(np.abs(npy.params[:, 2] - res.params[:, 2])):.1e} eV"
    )
    th, th_wall, _ = timed(fit_batch, energy, mu, pre_edge_limit=PRE_EDGE_LIMIT, executor="process")
    print(
        f"same map in worker processes: {n / th_wall:9.1f} px/s wall, CPU/wall {th.cpu_time / th_wall:.2f}; "
        f"threads/processes {th_wall / wall:.2f}× px/s"
    )
    if base is not None:
        print(
            f"baseline ({args.baseline}): {base['n'] / base['wall']:9.1f} px/s wall, "
            f"{base['n'] / base['cpu']:9.1f} px/s CPU, CPU/wall {base['cpu'] / base['wall']:.2f}"
        )
        print(f"this/baseline: {base['wall'] / wall:.2f}× px/s wall, {base['cpu'] / cpu:.2f}× px/s CPU")
        pairs = [(base, wall, cpu)]
        for _ in range(args.repeat - 1):
            b = run_baseline()
            r, w, _ = timed(fit_batch, energy, mu, pre_edge_limit=PRE_EDGE_LIMIT)
            pairs.append((b, w, r.cpu_time))
        if len(pairs) > 1:
            for k, (b, w, c) in enumerate(pairs):
                print(
                    f"  pair {k}: baseline {b['n'] / b['wall']:8.1f} / this {n / w:8.1f} px/s wall "
                    f"({b['wall'] / w:.2f}×), CPU {b['n'] / b['cpu']:8.1f} / {n / c:8.1f} ({b['cpu'] / c:.2f}×)"
                )
            med = np.median
            print(
                f"median of {len(pairs)}: this {n / med([w for _, w, _ in pairs]):.1f} px/s wall, "
                f"baseline {n / med([b['wall'] for b, _, _ in pairs]):.1f}; this/baseline "
                f"{med([b['wall'] / w for b, w, _ in pairs]):.2f}× wall, "
                f"{med([b['cpu'] / c for b, _, c in pairs]):.2f}× CPU"
            )

    tracemalloc.start()
    fit_batch(energy, mu, pre_edge_limit=PRE_EDGE_LIMIT, workers=1)  # in this process: one worker's peak
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"peak memory of the batch fit, one worker (tracemalloc, numpy buffers): {peak / 2**20:.0f} MiB "
        f"(input {mu.nbytes / 2**20:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
