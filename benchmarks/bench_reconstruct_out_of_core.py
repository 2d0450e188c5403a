"""Benchmark: reconstruct a ≥ 4 GB scan under ``memory_limit`` (issue 14 point 2), and its twin.

1. Simulates a *twin* particle with the simulator's forward model ("tiny" preset at 128²
   frames: 16 energies × 20 positions) and writes it as per-energy CXI files.
2. Writes the *big* scan: the same files with each energy's scan repeated ``--repeats``
   times (same positions, the same simulated frames: redundant but valid ptychography data),
   uncompressed float32; the default 205 repeats give 16 × 4,100 frames of 128² = 4.30 GB
   on disk. Writing copies blocks of the twin's frames, so it runs at disk speed.
3. Reconstructs the big scan, opened lazily with :func:`ptyxr.io.open_scan`, with
   ``memory_limit`` in a fresh subprocess and reports its peak RSS
   (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), wall time and the object/probe bytes.
4. Reconstructs the twin in memory and grouped (a limit forcing ≥ 3 groups) and reports
   whether objects and probes are identical.

    python benchmarks/bench_reconstruct_out_of_core.py                     # 4.3 GB in /work/tmp-ooc
    python benchmarks/bench_reconstruct_out_of_core.py --repeats 20 --folder /tmp/ooc

Deletes the files afterwards unless ``--keep``. Not a test (tests/reconstruct/test_groups.py
runs it as a slow test).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def twin_dataset(seed: int = 1):
    """The twin: simulator forward model, "tiny" preset at 128² frames (16 energies × 20 positions)."""
    from ptyxr import simulate

    raw, _ = simulate.demo_dataset("tiny", frame_size=128, seed=seed, progress=False)
    return raw


def write_scan(raw, folder: Path, repeats: int = 1) -> list[Path]:
    """Per-energy CXI files of ``raw`` with every energy's scan repeated ``repeats`` times."""
    import h5py

    from ptyxr import schema as s
    from ptyxr.io import write_cxi

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for e in range(raw.sizes[s.ENERGY]):
        one = raw.isel({s.ENERGY: [e]})
        path = write_cxi(one, folder / f"scan_{e:03d}.cxi", overwrite=True)
        if repeats > 1:
            with h5py.File(path, "a") as f:
                entry = f["entry_1"]
                det = entry["instrument_1/detector_1"]
                frames = np.asarray(det["data"][()], dtype=np.float32)
                trans = entry["sample_1/geometry_1/translation"][()]
                del det["data"], entry["sample_1/geometry_1/translation"]
                n_scan = frames.shape[0] * repeats
                data = det.create_dataset("data", shape=(n_scan, *frames.shape[1:]), dtype=np.float32)
                for k in range(repeats):  # contiguous float32, one block of the twin's frames at a time
                    data[k * frames.shape[0] : (k + 1) * frames.shape[0]] = frames
                entry["sample_1/geometry_1/translation"] = np.tile(trans, (repeats, 1))
                if "data_1" in entry and "data" in entry["data_1"]:  # keep the CXI data_1 link valid
                    del entry["data_1/data"]
                    entry["data_1/data"] = h5py.SoftLink(det["data"].name)
        paths.append(path)
    return paths


def child(folder: str, limit: str, iterations: int, out: str) -> None:
    """Reconstruct the scan in ``folder`` lazily under ``limit``; write RSS/time facts as JSON."""
    import resource

    from ptyxr import provenance
    from ptyxr import schema as s
    from ptyxr.io import open_scan
    from ptyxr.reconstruct.api import reconstruct

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    ds = open_scan(sorted(Path(folder).glob("scan_*.cxi")), lazy=True)
    result = reconstruct(
        ds, iterations=iterations, kkr=True, progress=False, seed=0, memory_limit=None if limit == "none" else limit
    )
    seconds = time.perf_counter() - t0
    facts = {
        "seconds": seconds,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_after_imports": rss0,
        "frames_bytes": int(ds[s.INTENSITY].size * 4),
        "object_probe_bytes": int(result[s.OBJECT].nbytes + result[s.PROBE].nbytes),
        "energy_groups": provenance.parameters(result, "reconstruct")["energy_groups"],
        "kkr_iterations": provenance.parameters(result, "reconstruct")["kkr_iterations"],
        "intensity_lazy": hasattr(result[s.INTENSITY].data, "dask"),
    }
    Path(out).write_text(json.dumps(facts))


def run_child(folder: Path, limit: str, iterations: int) -> dict:
    """:func:`child` in a fresh interpreter (its peak RSS is the reconstruction's alone)."""
    out = folder / "facts.json"
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import bench_reconstruct_out_of_core as b; b.child({str(folder)!r}, {limit!r}, {iterations}, {str(out)!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return json.loads(out.read_text())


def twin_identical(raw, iterations: int) -> dict:
    """In-memory vs grouped reconstruction of the twin (a limit forcing ≥ 3 groups)."""
    from ptyxr import provenance
    from ptyxr import schema as s
    from ptyxr.reconstruct import groups as G
    from ptyxr.reconstruct.api import reconstruct

    n_e, n_scan, n = raw.sizes[s.ENERGY], raw.sizes[s.SCAN], raw.sizes[s.DET_Y]
    limit = G.amplitude_bytes(n_e // 3, n_scan, n) + G.read_reserve(raw)
    kw = dict(iterations=iterations, kkr=True, progress=False, seed=0)
    a = reconstruct(raw, **kw)
    b = reconstruct(raw, **kw, memory_limit=limit)
    return {
        "groups": provenance.parameters(b, "reconstruct")["energy_groups"],
        "object_identical": bool(np.array_equal(a[s.OBJECT].values, b[s.OBJECT].values)),
        "probe_identical": bool(np.array_equal(a[s.PROBE].values, b[s.PROBE].values)),
        "fourier_error_max_rel": float(np.nanmax(np.abs(a[s.FOURIER_ERROR].values / b[s.FOURIER_ERROR].values - 1))),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", default="/work/tmp-ooc", help="where the scan files go (deleted afterwards)")
    parser.add_argument("--repeats", type=int, default=205, help="scan repeats per energy (205: 4.3 GB)")
    parser.add_argument("--limit", default="800MB", help="memory_limit of the big run ('none' = in memory)")
    parser.add_argument("--iterations", type=int, default=3, help="ePIE iterations (KKR after 2 and 3)")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    report: dict = {}
    try:
        raw = twin_dataset()
        report["twin"] = twin_identical(raw, iterations=6)
        print("twin:", report["twin"], flush=True)
        t0 = time.perf_counter()
        paths = write_scan(raw, folder / "big", args.repeats)
        report["write_seconds"] = time.perf_counter() - t0
        report["disk_bytes"] = sum(p.stat().st_size for p in paths)
        print(f"wrote {report['disk_bytes'] / 1e9:.2f} GB in {report['write_seconds']:.0f} s", flush=True)
        report["big"] = run_child(folder / "big", args.limit, args.iterations)
        big = report["big"]
        print(
            f"big: {big['frames_bytes'] / 1e9:.2f} GB of frames, memory_limit {args.limit}, groups "
            f"{big['energy_groups']}: peak RSS {big['peak_rss'] / 1e9:.2f} GB (after imports "
            f"{big['rss_after_imports'] / 1e9:.2f} GB), object+probe {big['object_probe_bytes'] / 1e6:.1f} MB, "
            f"{big['seconds']:.0f} s for {args.iterations} iterations",
            flush=True,
        )
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return report


if __name__ == "__main__":
    main()
