"""Beamline files at scale: per-energy files, compressed frames, NXcxi_ptycho, I0 monitor, lazy reads."""

from __future__ import annotations

import pickle
from pathlib import Path

import dask
import h5py
import numpy as np
import pytest
import scipy.constants as const
import xarray as xr

from ptyxr import schema as s
from ptyxr import simulate
from ptyxr.io import open_scan, write_cxi
from ptyxr.io.lazy import H5Dataset
from ptyxr.schema import SchemaError

hdf5plugin = pytest.importorskip("hdf5plugin")


@pytest.fixture(scope="module")
def particle() -> xr.Dataset:
    """A simulated tiny particle with an I0 monitor, a detector mask and ragged scans."""
    raw, _ = simulate.demo_dataset("tiny", seed=3, particle="P2", progress=False)
    rng = np.random.default_rng(1)
    intensity = raw[s.INTENSITY].values.copy()
    py, px = raw[s.POSITION_Y].values.copy(), raw[s.POSITION_X].values.copy()
    # energies 1 and 4 lost their last scan points (beam dump): §1a padding, ragged files
    for e, n in ((1, 2), (4, 1)):
        intensity[e, -n:] = np.nan
        py[e, -n:] = px[e, -n:] = np.nan
    monitor = np.where(np.isfinite(py), rng.uniform(0.9e5, 1.1e5, size=py.shape), np.nan)
    valid = np.ones(intensity.shape[-2:], bool)
    valid[3, 5] = valid[20, 7] = False
    ds = raw.assign(
        {
            s.INTENSITY: (raw[s.INTENSITY].dims, intensity, raw[s.INTENSITY].attrs),
            s.POSITION_Y: (raw[s.POSITION_Y].dims, py, raw[s.POSITION_Y].attrs),
            s.POSITION_X: (raw[s.POSITION_X].dims, px, raw[s.POSITION_X].attrs),
            s.MONITOR: s.variable(s.MONITOR, monitor),
            s.DETECTOR_MASK: s.variable(s.DETECTOR_MASK, valid),
        }
    )
    return s.validate_raw(ds)


def per_energy_files(ds: xr.Dataset, folder: Path, compression: str | None, layout: str = "entries") -> list[Path]:
    """One file per energy, as beamlines write them, named in scrambled order (so sorting is by energy)."""
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(ds.sizes[s.ENERGY]):
        one = ds.isel({s.ENERGY: [i]})
        keep = np.isfinite(one[s.POSITION_Y].values[0])
        one = one.isel(scan=np.flatnonzero(keep))  # each file holds only its own scan points
        name = f"scan_{(7 * i) % ds.sizes[s.ENERGY]:03d}.h5"
        paths.append(write_cxi(one, folder / name, layout=layout, compression=compression))
    return paths


def assert_same(back: xr.Dataset, ds: xr.Dataset) -> None:
    for name in (s.INTENSITY, s.POSITION_Y, s.POSITION_X, s.MONITOR, s.DETECTOR_MASK):
        # float32 counts, float64 positions/monitor are stored as such: exact, NaN padding included
        xr.testing.assert_equal(back[name].compute(), ds[name])
        assert back[name].attrs == ds[name].attrs
    # energies go through joules (×e then ÷e) or eV: a few ulp
    np.testing.assert_allclose(back[s.ENERGY].values, ds[s.ENERGY].values, rtol=1e-14)
    for key in (s.ATTR_DETECTOR_DISTANCE, s.ATTR_DETECTOR_PIXEL_SIZE, s.ATTR_PROBE_FWHM, s.ATTR_CONDITION):
        assert back.attrs[key] == ds.attrs[key]
    assert s.check_attrs(back) == []


@pytest.mark.parametrize("compression", ["bitshuffle-lz4", "blosc-lz4"])
def test_compressed_per_energy_files_read_back_identical_and_lazy(tmp_path, particle, compression, no_compute):
    paths = per_energy_files(particle, tmp_path / "P2", compression)
    with h5py.File(paths[0], "r") as f:  # the frames really went through the plugin filter
        filters = f["entry_1/instrument_1/detector_1/data"]._filters
        assert {"bitshuffle-lz4": "32008", "blosc-lz4": "32001"}[compression] in filters
    with no_compute("a dask graph was computed: opening must stay lazy"):
        back = open_scan(str(tmp_path / "P2" / "scan_*.h5"), lazy=True)
    data = back[s.INTENSITY].data
    assert hasattr(data, "dask")
    # one chunk per energy: reconstruct loads one energy at a time
    assert data.chunks[0] == (1,) * particle.sizes[s.ENERGY]
    assert_same(back, particle)
    # a list of files in any order gives the same series
    assert_same(open_scan(paths[::-1], lazy=False), particle)


def test_lazy_reader_pickles_and_reads_in_threads(tmp_path, particle):
    paths = per_energy_files(particle, tmp_path / "P2", "bitshuffle-lz4")
    back = open_scan(paths, lazy=True)
    again = pickle.loads(pickle.dumps(back))  # dask.distributed ships the graph to workers
    with dask.config.set(scheduler="threads", num_workers=2):
        xr.testing.assert_equal(again[s.INTENSITY].compute(), particle[s.INTENSITY])
    reader = H5Dataset(paths[0], "/entry_1/instrument_1/detector_1/data", (16, 32, 32))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(reader))[2:4], reader[2:4])


def test_nxcxi_entries_read_back_identical(tmp_path, particle, no_compute):
    path = write_cxi(particle, tmp_path / "P2.nxs", layout="nxcxi", compression="bitshuffle-lz4")
    with h5py.File(path, "r") as f:
        assert f["entry_1/definition"][()] == b"NXcxi_ptycho"
        assert "sample_1" not in f["entry_1"]  # positions only in data_1/x, data_1/y
    with no_compute("a dask graph was computed: opening must stay lazy"):
        back = open_scan(path, lazy=True)
    assert_same(back, particle)


def test_nxcxi_raster_file_written_by_hand(tmp_path):
    """An NXcxi_ptycho raster entry (npts_x, npts_y, ny, nx) with 1-D axes, written with h5py alone."""
    n, nx_pts, ny_pts = 8, 3, 4
    rng = np.random.default_rng(0)
    frames = rng.poisson(30.0, size=(nx_pts, ny_pts, n, n)).astype(np.uint16)
    x_axis = np.array([0.0, 1.0, 2.0]) * 1e-6
    y_axis = np.array([0.0, 0.5, 1.0, 1.5]) * 1e-6
    i0 = rng.uniform(1e4, 2e4, size=(nx_pts, ny_pts))
    path = tmp_path / "raster.nxs"
    with h5py.File(path, "w") as f:
        f["cxi_version"] = 160
        g = f.create_group("entry_1")
        g.attrs["NX_class"] = "NXentry"
        g["definition"] = "NXcxi_ptycho"
        det = g.create_group("instrument_1/detector_1")
        det.create_dataset("data", data=frames, chunks=(1, 1, n, n), **hdf5plugin.Bitshuffle(cname="lz4"))
        det["x_pixel_size"] = det["y_pixel_size"] = 55.0
        det["x_pixel_size"].attrs["units"] = det["y_pixel_size"].attrs["units"] = "um"
        det["distance"] = 2.0
        det["pixel_mask"] = np.zeros((n, n), np.uint32)
        det["pixel_mask"][0, 0] = 1
        g["instrument_1/beam_1/energy"] = 5.47
        g["instrument_1/beam_1/energy"].attrs["units"] = "keV"
        g["data_1/x"], g["data_1/y"] = x_axis, y_axis
        g["monitor_reference/data"] = i0
    back = open_scan(path, lazy=True)
    assert back.sizes[s.SCAN] == nx_pts * ny_pts
    assert float(back[s.ENERGY][0]) == pytest.approx(5470.0, rel=1e-12)
    assert back.attrs[s.ATTR_DETECTOR_PIXEL_SIZE] == pytest.approx(55e-6, rel=1e-12)
    # scan point k = (i_x, i_y) in C order; probe position = −sample translation
    ix, iy = np.divmod(np.arange(nx_pts * ny_pts), ny_pts)
    np.testing.assert_array_equal(back[s.POSITION_X].values[0], -x_axis[ix])
    np.testing.assert_array_equal(back[s.POSITION_Y].values[0], -y_axis[iy])
    np.testing.assert_array_equal(back[s.INTENSITY].values[0], frames.reshape(-1, n, n).astype(np.float32))
    np.testing.assert_array_equal(back[s.MONITOR].values[0], i0.reshape(-1))
    assert not bool(back[s.DETECTOR_MASK][0, 0]) and int(back[s.DETECTOR_MASK].sum()) == n * n - 1


def test_lazy_auto_threshold(tmp_path, particle, monkeypatch):
    from ptyxr.io import cxi

    path = write_cxi(particle, tmp_path / "P2.cxi")
    assert not hasattr(open_scan(path)[s.INTENSITY].data, "dask")  # 1 MB: read now, counts checked
    monkeypatch.setattr(cxi, "LAZY_BYTES", 1024)
    assert hasattr(open_scan(path)[s.INTENSITY].data, "dask")


def test_bad_per_energy_files_name_the_file(tmp_path, particle):
    paths = per_energy_files(particle, tmp_path / "P2", None)
    # a truncated file among many: OSError naming it
    good = paths[5].read_bytes()
    paths[5].write_bytes(good[: len(good) // 2])
    with pytest.raises(OSError, match=paths[5].name):
        open_scan(paths)
    paths[5].write_bytes(good)
    # one file lacking its energy: SchemaError naming the file and the missing dataset
    with h5py.File(paths[3], "a") as f:
        del f["entry_1/instrument_1/source_1/energy"]
    with pytest.raises(SchemaError, match=rf"{paths[3].name}.*(energy|wavelength)"):
        open_scan(paths)
    # two files of the same energy
    with h5py.File(paths[3], "a") as f:
        f["entry_1/instrument_1/source_1/energy"] = float(particle[s.ENERGY][0]) * const.e
    with pytest.raises(SchemaError, match="duplicate photon energies"):
        open_scan(paths)
    # a monitor in only some files
    with h5py.File(paths[3], "a") as f:
        f["entry_1/instrument_1/source_1/energy"][()] = float(particle[s.ENERGY][3]) * const.e
        del f["entry_1/instrument_1/monitor_1"]
    with pytest.raises(SchemaError, match="monitor"):
        open_scan(paths)
    with pytest.raises(FileNotFoundError, match="nothing_"):
        open_scan(str(tmp_path / "nothing_*.h5"))
    with pytest.raises(SchemaError, match="empty list"):
        open_scan([])


def test_lazy_read_of_a_file_damaged_after_opening_names_it(tmp_path, particle):
    paths = per_energy_files(particle, tmp_path / "P2", "bitshuffle-lz4")
    back = open_scan(paths, lazy=True)
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match=paths[2].name):
        back[s.INTENSITY].compute()


def test_reconstruct_on_a_lazy_scan_matches_the_in_memory_one(tmp_path, particle):
    """reconstruct pulls a lazy intensity one energy at a time; the result is the same numbers."""
    paths = per_energy_files(particle.isel({s.ENERGY: slice(0, 4)}), tmp_path / "P2", "bitshuffle-lz4")
    lazy = open_scan(paths, lazy=True)
    eager = particle.isel({s.ENERGY: slice(0, 4)})
    options = dict(iterations=3, kkr=False, progress=False, seed=2)
    a = lazy.ptyxr.reconstruct(**options)
    b = eager.ptyxr.reconstruct(**options)
    # same frames (bit-identical after the round trip) and same seed: identical output
    np.testing.assert_array_equal(a[s.OBJECT].values, b[s.OBJECT].values)
    np.testing.assert_array_equal(a[s.PROBE].values, b[s.PROBE].values)
    xr.testing.assert_equal(a[s.MONITOR], b[s.MONITOR])  # carried along for normalisation downstream


def test_lazy_equals_eager_with_orientation_crop_and_flagged_pixels(tmp_path, no_compute):
    """Re-orienting, cropping, sorting entries and NaN-ing detector flags under the mask are
    dask operations in lazy mode: the numbers equal the eager read."""
    rng = np.random.default_rng(4)
    path = tmp_path / "rect.cxi"
    with h5py.File(path, "w") as f:
        for k, e_ev in ((1, 5460.0), (2, 5420.0)):  # entries not in energy order, ragged scans
            n_scan = 5 - k
            g = f.create_group(f"entry_{k}")
            det = g.create_group("instrument_1/detector_1")
            frames = rng.poisson(9.0, size=(n_scan, 10, 12)).astype(np.int32)
            frames[:, 2, 3] = -1  # a detector flag, under the mask
            det.create_dataset("data", data=frames, chunks=(1, 10, 12), **hdf5plugin.Blosc(cname="lz4"))
            det["distance"], det["x_pixel_size"], det["y_pixel_size"] = 1.5, 75e-6, 75e-6
            mask = np.zeros((10, 12), np.uint32)
            mask[2, 3] = 1
            det["mask"] = mask
            g["instrument_1/source_1/energy"] = e_ev * const.e
            t = np.zeros((n_scan, 3))
            t[:, :2] = rng.normal(size=(n_scan, 2)) * 1e-6
            g["sample_1/geometry_1/translation"] = t
    kw = dict(transpose=True, flip_y=True, crop=8, center=(6, 4))
    with no_compute("a dask graph was computed: opening must stay lazy"):
        lazy = open_scan(path, lazy=True, **kw)
    eager = open_scan(path, lazy=False, **kw)
    assert hasattr(lazy[s.INTENSITY].data, "dask") and not hasattr(eager[s.INTENSITY].data, "dask")
    xr.testing.assert_equal(lazy[s.INTENSITY].compute(), eager[s.INTENSITY])
    xr.testing.assert_equal(lazy[s.DETECTOR_MASK], eager[s.DETECTOR_MASK])
    assert np.isnan(eager[s.INTENSITY].values[..., ~eager[s.DETECTOR_MASK].values]).all()


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("data_1/x", r"no sample translations.*data_1/x"),
        ("instrument_1/beam_1/energy", r"no photon energy.*beam_1/energy"),
        ("instrument_1/detector_1/distance", r"detector distance.*distance="),
        ("instrument_1/detector_1/data", r"no diffraction frames"),
    ],
)
def test_nxcxi_missing_pieces_are_named(tmp_path, particle, drop, message):
    path = write_cxi(particle.isel({s.ENERGY: [0, 1]}), tmp_path / "P2.nxs", layout="nxcxi")
    with h5py.File(path, "a") as f:
        del f[f"entry_2/{drop}"]
    with pytest.raises(SchemaError, match=message) as info:
        open_scan(path)
    assert "P2.nxs" in str(info.value)
