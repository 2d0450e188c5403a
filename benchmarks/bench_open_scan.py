"""Benchmark: lazy open_scan of many compressed per-energy files vs reading them into memory.

Writes ``--energies`` files (one scan each, bitshuffle/LZ4 frames as an EIGER pipeline
writes them) totalling ``--gib`` GiB of float32 frames, then times, in the same run:

* ``open_scan(files, lazy=True)``: metadata only; time and peak Python memory;
* computing one energy of the lazy intensity (what ``reconstruct`` pulls at a time);
* ``open_scan(files, lazy=False)`` (everything read and decompressed), unless --no-eager.

Prints the ratios eager/lazy for time and memory. Frames are sparse Poisson counts
(~0.05 photons/pixel outside a central speckle disc, as at high q), so the files are small
on disk while the in-memory size is the stated one. Not a test.

    python benchmarks/bench_open_scan.py               # 1 GiB, 40 energies
    python benchmarks/bench_open_scan.py --gib 20 --no-eager
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import scipy.constants as const


def write_files(folder: Path, n_energy: int, n_scan: int, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n] - n // 2
    lam = np.where(np.hypot(yy, xx) < n // 8, 50.0, 0.05)
    paths = []
    for e in range(n_energy):
        path = folder / f"scan_{e:03d}.h5"
        with h5py.File(path, "w") as f:
            g = f.create_group("entry_1")
            det = g.create_group("instrument_1/detector_1")
            data = det.create_dataset(
                "data", shape=(n_scan, n, n), dtype=np.uint16, chunks=(1, n, n), **hdf5plugin.Bitshuffle(cname="lz4")
            )
            block = 64
            for k in range(0, n_scan, block):
                m = min(block, n_scan - k)
                data[k : k + m] = rng.poisson(lam, size=(m, n, n)).astype(np.uint16)
            det["distance"], det["x_pixel_size"], det["y_pixel_size"] = 2.0, 75e-6, 75e-6
            g["instrument_1/source_1/energy"] = (5420.0 + e) * const.e
            t = np.zeros((n_scan, 3))
            t[:, 0], t[:, 1] = np.divmod(np.arange(n_scan), int(np.sqrt(n_scan)) + 1)
            g["sample_1/geometry_1/translation"] = t * 50e-9
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=1.0, help="float32 frames in memory [GiB]")
    parser.add_argument("--energies", type=int, default=40)
    parser.add_argument("--n", type=int, default=256, help="frame side [pixels]")
    parser.add_argument("--no-eager", action="store_true", help="skip the read-everything baseline")
    args = parser.parse_args()
    from ptyxr.io import open_scan

    n_scan = max(1, int(args.gib * 2**30 / (4 * args.n**2 * args.energies)))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = write_files(Path(tmp), args.energies, n_scan, args.n)
        disk = sum(p.stat().st_size for p in paths)
        print(
            f"wrote {args.energies} files x {n_scan} frames of {args.n}^2: {disk / 2**20:.0f} MiB on disk, "
            f"{args.energies * n_scan * args.n**2 * 4 / 2**30:.2f} GiB as float32 ({time.perf_counter() - t0:.1f} s)"
        )

        def measure(lazy: bool):
            """(wall time untraced, peak Python allocations traced, Dataset)."""
            t0 = time.perf_counter()
            ds = open_scan(paths, lazy=lazy)
            wall = time.perf_counter() - t0
            del ds
            tracemalloc.start()  # slows Python down: memory measured in a separate call
            ds = open_scan(paths, lazy=lazy)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            return wall, peak, ds

        open_scan(paths[:1], lazy=True)  # warm-up: imports, first-call costs
        t_lazy, peak_lazy, lazy = measure(True)
        print(f"lazy open:      {t_lazy:8.3f} s, peak {peak_lazy / 2**20:8.1f} MiB (Python allocations)")

        t0 = time.perf_counter()
        one = lazy["intensity"].isel(energy=args.energies // 2).values
        print(f"one energy:     {time.perf_counter() - t0:8.3f} s for {one.nbytes / 2**20:.0f} MiB")

        if not args.no_eager:
            t_eager, peak_eager, eager = measure(False)
            print(f"eager open:     {t_eager:8.3f} s, peak {peak_eager / 2**20:8.1f} MiB")
            print(f"ratio eager/lazy: time {t_eager / t_lazy:.1f}x, memory {peak_eager / max(peak_lazy, 1):.0f}x")
            assert np.array_equal(eager["intensity"].isel(energy=args.energies // 2).values, one, equal_nan=True)
        print(f"process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")


if __name__ == "__main__":
    main()
