"""Out-of-core reconstruction (issue 14 point 2): energy groups under ``memory_limit``.

The grouped run must be the in-memory run: energies never mix in ePIE between two KKR
projections, and every group replays the same position orders, so objects and probes are
compared bit for bit (the Fourier-error denominator is summed per read block: float rounding).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import xarray as xr
from dask.callbacks import Callback
from repo_paths import ROOT  # tests/ is on sys.path (pytest's "prepend" import mode)

from ptyxr import provenance, simulate
from ptyxr import schema as s
from ptyxr.io import open_scan, write_cxi
from ptyxr.reconstruct import groups as G
from ptyxr.reconstruct.api import reconstruct
from ptyxr.schema import SchemaError


class LargestCompute(Callback):
    """Records the largest array any dask task returns (a whole-intensity compute would show)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def _posttask(self, key, result, dsk, state, worker_id):
        self.largest = max(self.largest, int(getattr(result, "nbytes", 0)))


@pytest.fixture(scope="module")
def tiny() -> xr.Dataset:
    raw, _ = simulate.demo_dataset("tiny", seed=3, progress=False)
    return raw


def limit_for(ds: xr.Dataset, energies_per_group: int) -> int:
    """A memory_limit that holds ``energies_per_group`` energies' amplitudes and the read buffers."""
    n_scan, n = ds.sizes[s.SCAN], ds.sizes[s.DET_Y]
    return G.amplitude_bytes(energies_per_group, n_scan, n) + G.read_reserve(ds)


def assert_same_run(a: xr.Dataset, b: xr.Dataset) -> None:
    np.testing.assert_array_equal(a[s.OBJECT].values, b[s.OBJECT].values)
    np.testing.assert_array_equal(a[s.PROBE].values, b[s.PROBE].values)
    np.testing.assert_array_equal(a[s.COVERAGE].values, b[s.COVERAGE].values)
    # same errors; only the denominator's summation order differs (float64, then stored as float32)
    np.testing.assert_allclose(a[s.FOURIER_ERROR].values, b[s.FOURIER_ERROR].values, rtol=1e-6)


def test_energy_groups_fit_the_limit_and_cover_every_energy_once():
    n_scan, n, reserve = 1000, 256, 96 * 2**20
    per = G.amplitude_bytes(1, n_scan, n)
    assert G.energy_groups(40, n_scan, n, None, reserve) is None
    assert G.energy_groups(40, n_scan, n, 40 * per, reserve) is None  # everything fits: the in-memory path
    for limit in (per + reserve, 7 * per, int(1.5e9), 39 * per):
        groups = G.energy_groups(40, n_scan, n, limit, reserve)
        sizes = [g.stop - g.start for g in groups]
        assert [g.start for g in groups] == [0, *np.cumsum(sizes)[:-1]] and sum(sizes) == 40
        assert max(sizes) * per + reserve <= limit  # each group fits
        assert max(sizes) - min(sizes) <= 1  # as equal as possible
        # the fewest groups: one more energy in the largest group would not fit
        assert len(groups) == -(-40 // ((limit - reserve) // per))
    with pytest.raises(ValueError, match=f"at least {per + reserve} bytes"):
        G.energy_groups(40, n_scan, n, per, reserve)
    assert G.parse_memory_limit("1.5GB") == 1_500_000_000
    assert G.parse_memory_limit("800 MiB") == 800 * 2**20
    assert G.parse_memory_limit(2e9) == 2_000_000_000


def test_segments_end_at_kkr_and_checkpoint_iterations():
    assert G.segment_ends(0, 10, [4, 7, 10], None) == [4, 7, 10]
    assert G.segment_ends(0, 10, [], 3) == [3, 6, 9, 10]
    assert G.segment_ends(5, 10, [4, 7, 10], 3) == [6, 7, 9, 10]


@pytest.mark.parametrize(
    "options",
    [
        # KKR three times (4, 7, 10), native grids, the fused/default engine
        dict(iterations=10, kkr=True, kkr_start=4, kkr_every=3),
        # frames resampled onto the common grid
        dict(iterations=5, kkr=True, kkr_start=2, kkr_every=2, native_grids=False),
        # the numpy reference engine (batched scipy FFTs over a group instead of all energies);
        # it warns on tiny's padded frames in memory too (0·inf in _np_modulus, pre-existing)
        pytest.param(
            dict(iterations=4, kkr=True, kkr_start=2, kkr_every=2, engine="numpy"),
            marks=pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning"),
        ),
    ],
    ids=["native-kkr", "resampled", "numpy-engine"],
)
def test_grouped_run_equals_the_in_memory_run(tiny, options):
    options = dict(progress=False, seed=2, **options)
    in_memory = reconstruct(tiny, **options)
    grouped = reconstruct(tiny, **options, memory_limit=limit_for(tiny, 3))
    sizes = provenance.parameters(grouped, "reconstruct")["energy_groups"]
    assert len(sizes) >= 3 and sum(sizes) == tiny.sizes[s.ENERGY]
    assert provenance.parameters(in_memory, "reconstruct")["energy_groups"] is None
    assert_same_run(grouped, in_memory)
    # a limit that holds everything is the in-memory path itself
    whole = reconstruct(tiny, **options, memory_limit="1GB")
    assert provenance.parameters(whole, "reconstruct")["energy_groups"] is None
    assert_same_run(whole, in_memory)


def test_grouped_checkpoint_resumes_exactly_in_either_mode(tiny, tmp_path):
    kw = dict(iterations=12, kkr=True, kkr_start=4, kkr_every=4, progress=False, seed=5, checkpoint_every=3)
    full = reconstruct(tiny, **kw)
    limit = limit_for(tiny, 5)
    ck = tmp_path / "state.nc"
    # interrupted grouped run: 8 iterations (checkpoints at 3, 6, 8), the same KKR schedule (4, 8) as the full run's
    reconstruct(tiny, **{**kw, "iterations": 8}, checkpoint=ck, memory_limit=limit)
    resumed_grouped = reconstruct(tiny, **kw, resume_from=ck, memory_limit=limit)
    resumed_in_memory = reconstruct(tiny, **kw, resume_from=ck)
    for resumed in (resumed_grouped, resumed_in_memory):
        np.testing.assert_array_equal(resumed[s.OBJECT].values, full[s.OBJECT].values)
        np.testing.assert_array_equal(resumed[s.PROBE].values, full[s.PROBE].values)


def test_grouped_run_reads_a_lazy_scan_block_by_block_and_keeps_it_lazy(tiny, tmp_path):
    path = write_cxi(tiny, tmp_path / "tiny.cxi")
    lazy = open_scan(path, lazy=True).chunk({s.SCAN: 7})  # reads in ragged blocks of 7, 7, 7, 4 frames
    per_energy = G.amplitude_bytes(1, tiny.sizes[s.SCAN], tiny.sizes[s.DET_Y])
    options = dict(iterations=4, kkr=True, kkr_start=2, kkr_every=2, progress=False, seed=1)
    with LargestCompute() as seen:
        out = reconstruct(lazy, **options, memory_limit=limit_for(tiny, 4))
    # no task returned more than one energy's frames (the whole intensity is 16 energies)
    assert 0 < seen.largest <= per_energy
    assert hasattr(out[s.INTENSITY].data, "dask")  # keep_raw keeps the lazy frames, unread
    assert_same_run(out, reconstruct(tiny, **options))


def test_grouped_run_holds_one_group_of_frames(tiny):
    """Peak allocation while reconstructing a dask-backed scan (tracemalloc sees numpy's buffers,
    in every thread): the grouped run allocates about one group's amplitudes, the in-memory run
    all energies' amplitudes."""
    # 12 times the scan points (same positions): amplitudes 16 x 300 x 32² x 4 B = 20 MB
    big = xr.concat([tiny] * 12, dim=s.SCAN).chunk({s.ENERGY: 1})
    full = G.amplitude_bytes(big.sizes[s.ENERGY], big.sizes[s.SCAN], big.sizes[s.DET_Y])
    limit = limit_for(big, 2)
    options = dict(iterations=1, kkr=True, progress=False, seed=0)
    peaks = {}
    for name, extra in (("in_memory", {}), ("grouped", {"memory_limit": limit})):
        tracemalloc.start()
        reconstruct(big, **options, **extra)
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks["in_memory"] > full
    assert peaks["grouped"] < limit + 0.25 * full, (peaks, limit, full)


def test_memory_limit_errors_are_clear(tiny):
    with pytest.raises(SchemaError, match="memory_limit"):
        reconstruct(tiny, iterations=1, progress=False, memory_limit="lots")
    with pytest.raises(SchemaError, match="memory_limit"):
        reconstruct(tiny, iterations=1, progress=False, memory_limit=-5)
    with pytest.raises(ValueError, match="holds no energy's frames"):
        reconstruct(tiny, iterations=1, progress=False, memory_limit=1000)


@pytest.mark.slow
def test_four_gb_scan_reconstructs_under_the_rss_bound_and_its_twin_matches(tmp_path):
    """Issue 14 acceptance: a ≥ 4 GB scan (on disk, opened lazily) reconstructs with peak RSS
    ≤ 1.5 GB plus the object/probe arrays; the smaller twin that fits gives identical results
    in memory and grouped. Minutes: writes 4.3 GB (benchmarks/bench_reconstruct_out_of_core.py)."""
    import importlib.util
    import shutil
    from pathlib import Path

    bench_path = ROOT / "benchmarks" / "bench_reconstruct_out_of_core.py"
    spec = importlib.util.spec_from_file_location("bench_reconstruct_out_of_core", bench_path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    folder = Path("/work/tmp-ooc") if Path("/work").is_dir() else tmp_path / "ooc"
    if shutil.disk_usage(folder.parent).free < 6e9:
        pytest.skip("needs ~4.5 GB of free disk for the scan")
    report = bench.main(["--folder", str(folder)])
    assert not folder.exists()  # the scan is deleted afterwards
    twin = report["twin"]
    assert len(twin["groups"]) >= 3 and twin["object_identical"] and twin["probe_identical"]
    assert twin["fourier_error_max_rel"] < 1e-6
    big = report["big"]
    assert report["disk_bytes"] >= 4e9 and big["frames_bytes"] >= 4e9
    assert len(big["energy_groups"]) >= 2 and big["intensity_lazy"]
    assert big["peak_rss"] <= 1.5e9 + big["object_probe_bytes"], big


def test_grouped_run_equals_the_in_memory_run_with_probe_modes_and_monitor(tiny):
    # the options merged after the energy groups: the mode solver per group and the monitor
    # normalisation applied block by block must give the in-memory numbers exactly
    rng = np.random.default_rng(0)
    monitor = 1e6 * (1 + 0.05 * rng.standard_normal((tiny.sizes[s.ENERGY], tiny.sizes[s.SCAN])))
    data = tiny.assign({s.MONITOR: ((s.ENERGY, s.SCAN), monitor, {"units": "counts", "long_name": "monitor"})})
    options = dict(progress=False, seed=3, iterations=6, kkr=True, kkr_start=3, kkr_every=3, probe_modes=2)
    in_memory = reconstruct(data, **options)
    grouped = reconstruct(data, **options, memory_limit=limit_for(data, 3))
    assert len(provenance.parameters(grouped, "reconstruct")["energy_groups"]) >= 3
    assert provenance.parameters(grouped, "reconstruct")["monitor_used"]
    assert_same_run(grouped, in_memory)
    np.testing.assert_array_equal(grouped[s.RELATIVE_FLUX].values, in_memory[s.RELATIVE_FLUX].values)


@pytest.mark.parametrize(
    "options", [dict(refine_flux=True), dict(position_correction=True), dict(algorithm="mpie")], ids=str
)
def test_options_that_do_not_run_out_of_core_are_refused_clearly(tiny, options):
    with pytest.raises(ValueError, match="out of core"):
        reconstruct(tiny, iterations=2, progress=False, memory_limit=limit_for(tiny, 3), **options)


def test_a_grouped_run_without_its_group_loader_is_refused_clearly():
    # a GroupedRun over energy groups needs make_solver, load and shape (the type check's narrowing)
    run = G.GroupedRun(range(2), np.random.default_rng(0), np.ones(4, bool), 0, 2, [2], [slice(0, 2)], make_solver=None)
    with pytest.raises(ValueError, match="needs make_solver, load and shape"):
        next(iter(run))
