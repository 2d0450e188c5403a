"""Kernel-level checks of ptyxr.reconstruct.epie that the stage tests do not reach."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ptyxr.reconstruct import epie, epie_numba


def test_fftw_planning_from_parallel_threads_gives_one_plan_per_size():
    # particles reconstructed in dask threads build their solvers at the same time; FFTW's planner
    # is not thread-safe (ctypes drops the GIL), so planning must be serialised: every thread gets
    # the one cached plan pair of its size, and the process survives (a race crashed a notebook kernel)
    if epie._load_fftw() is None:
        pytest.skip("fused numba+FFTW engine unavailable (needs numba and pyFFTW)")
    n = 44  # a size no other test plans, so the threads race on a cold cache
    epie_numba._FFTW[1].pop((n, False), None)
    bufs = [epie._aligned_empty((3, n, n), np.complex64) for _ in range(8)]
    results: list[tuple[int, int]] = []
    start = threading.Barrier(len(bufs))

    def plan(buf: np.ndarray) -> None:
        start.wait()
        results.append(epie._fftw_plans(buf))

    threads = [threading.Thread(target=plan, args=(b,)) for b in bufs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == len(bufs) and all(all(p) for p in results)
    # one plan pair per (size, alignment) key, not one per thread
    assert len(set(results)) == len({key for key in epie_numba._FFTW[1] if key[0] == n}) <= 2
