"""CXI / HDF5 reader and writer (ptyxr.io.cxi, cxi_layout, cxi_write): hand-written files, the packaged scan."""

from __future__ import annotations

import doctest
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.constants as const
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ptyxr
from ptyxr import schema as s
from ptyxr.io import cxi, cxi_example_path, open_scan, scan_from_arrays, write_cxi
from ptyxr.physics import wavelength
from ptyxr.schema import SchemaError

N = 8


def make_raw(
    n_energy: int = 3, n_scan: int = 5, seed: int = 0, pad_last: bool = True, mask: bool = True, probe: bool = True
) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    intensity = rng.poisson(20.0, size=(n_energy, n_scan, N, N)).astype(np.float32)
    pos_y = rng.normal(size=(n_energy, n_scan)) * 1e-6
    pos_x = rng.normal(size=(n_energy, n_scan)) * 1e-6
    if pad_last and n_energy > 1:  # energy 1 has one scan point fewer: trailing padding
        intensity[1, -1] = np.nan
        pos_y[1, -1] = pos_x[1, -1] = np.nan
    valid = np.ones((N, N), bool)
    valid[0, 1] = False
    prb = (rng.normal(size=(n_energy, N, N)) + 1j * rng.normal(size=(n_energy, N, N))).astype(np.complex64)
    return scan_from_arrays(
        intensity,
        pos_y,
        pos_x,
        5420.0 + 10.0 * np.arange(n_energy),
        1.5,
        75e-6,
        detector_mask=valid if mask else None,
        probe_guess=prb if probe else None,
        particle="P7",
        condition="delithiated",
        probe_fwhm=1.2e-7,
        probe_defocus=5e-6,
    )


def assert_same_scan(back: xr.Dataset, ds: xr.Dataset) -> None:
    for name in ds.data_vars:
        # float32 counts and float64 positions are stored as such: exact, NaN padding included
        xr.testing.assert_equal(back[name], ds[name])
    # energy goes through joules (×e then ÷e): a few ulp
    np.testing.assert_allclose(back[s.ENERGY].values, ds[s.ENERGY].values, rtol=1e-14)
    for key in (
        s.ATTR_DETECTOR_DISTANCE,
        s.ATTR_DETECTOR_PIXEL_SIZE,
        s.ATTR_PARTICLE,
        s.ATTR_CONDITION,
        s.ATTR_PROBE_FWHM,
        s.ATTR_PROBE_DEFOCUS,
    ):
        assert back.attrs[key] == ds.attrs[key], key
    assert s.check_attrs(back) == []


# ------------------------------------------------------------------ independent minimal CXI writer
def write_minimal(
    path: Path,
    entries: list[dict],
    data_in: str = "detector",
    translation_in: str = "sample",
    energy_units: str | None = None,
) -> Path:
    """A CXI file written with h5py directly (not with ptyxr.write_cxi)."""
    with h5py.File(path, "w") as f:
        for i, e in enumerate(entries):
            g = f.create_group(f"entry_{e.get('number', i + 1)}")
            det = g.create_group("instrument_1/detector_1")
            data_path = "instrument_1/detector_1/data" if data_in == "detector" else "data_1/data"
            g[data_path] = e["frames"]
            for key in ("distance", "x_pixel_size", "y_pixel_size", "mask"):
                if e.get(key) is not None:
                    det[key] = e[key]
            if e.get("energy") is not None:
                g["instrument_1/source_1/energy"] = e["energy"]
                if energy_units:
                    g["instrument_1/source_1/energy"].attrs["units"] = energy_units
            if e.get("wavelength") is not None:
                g["instrument_1/source_1/wavelength"] = e["wavelength"]
            t_path = "sample_1/geometry_1/translation" if translation_in == "sample" else "data_1/translation"
            g[t_path] = e["translation"]
    return path


def entry(energy_ev: float, n_scan: int = 4, shape: tuple[int, int] = (N, N), seed: int = 0, **kw) -> dict:
    rng = np.random.default_rng(seed)
    translation = np.zeros((n_scan, 3))
    translation[:, :2] = rng.normal(size=(n_scan, 2)) * 1e-6
    out = {
        "frames": rng.poisson(10.0, size=(n_scan, *shape)).astype(np.int32),
        "translation": translation,
        "energy": energy_ev * const.e,
        "distance": 2.0,
        "x_pixel_size": 55e-6,
        "y_pixel_size": 55e-6,
    }
    out.update(kw)
    return out


# ------------------------------------------------------------------------------ the real file
def test_real_petra_cxi_file():
    path = cxi_example_path()
    raw = open_scan(path)
    s.validate_raw(raw)
    with h5py.File(path, "r") as f:
        det = f["entry_1/instrument_1/detector_1"]
        frames, mask = det["data"][()], det["mask"][()]
        translation = f["entry_1/sample_1/geometry_1/translation"][()]
        wl = float(f["entry_1/instrument_1/source_1/wavelength"][()])
    assert raw.sizes == {s.ENERGY: 1, s.SCAN: 200, s.DET_Y: 100, s.DET_X: 100}
    energy = float(raw[s.ENERGY][0])
    # independent route: E = hc/λ from the stored wavelength (float32: ~1e-7 relative)
    assert energy == pytest.approx(const.h * const.c / const.e / wl, rel=1e-6)
    assert energy == pytest.approx(12.66e3, rel=1e-3)  # "12.66 keV" of the data README
    assert raw.attrs[s.ATTR_DETECTOR_DISTANCE] == 1.12  # float32 1.12 read as the decimal the writer meant
    assert raw.attrs[s.ATTR_DETECTOR_PIXEL_SIZE] == 55e-6
    # probe position = −(sample translation); CXI translation columns are (x, y, z)
    np.testing.assert_allclose(raw[s.POSITION_Y][0], -translation[:, 1], rtol=1e-7)
    np.testing.assert_allclose(raw[s.POSITION_X][0], -translation[:, 0], rtol=1e-7)
    np.testing.assert_array_equal(raw[s.INTENSITY][0], frames.astype(np.float32))
    np.testing.assert_array_equal(raw[s.DETECTOR_MASK], mask == 0)  # CXI: nonzero = bad pixel
    assert int((~raw[s.DETECTOR_MASK]).sum()) == 5
    assert raw.attrs["source"] == str(path) and "open_scan" in raw.attrs[s.ATTR_HISTORY]
    raw_kept = open_scan(path, flip_translation=False)
    np.testing.assert_allclose(raw_kept[s.POSITION_X][0], translation[:, 0], rtol=1e-7)
    # top-level API and entry selection by number
    xr.testing.assert_equal(ptyxr.open_scan(path, entry=1)[s.INTENSITY], raw[s.INTENSITY])


# ------------------------------------------------------------------------------ write ↔ read
@pytest.mark.parametrize("layout", ["entries", "stacked"])
def test_write_cxi_round_trip(tmp_path, layout):
    ds = make_raw()
    back = open_scan(write_cxi(ds, tmp_path / "scan.cxi", layout=layout))
    assert_same_scan(back, ds)
    with h5py.File(tmp_path / "scan.cxi", "r") as f:
        n_entries = len([k for k in f if k.startswith("entry_")])
        assert f["entry_1/instrument_1/source_1/energy"].attrs["units"] == "J"
    assert n_entries == (3 if layout == "entries" else 1)


def test_write_cxi_refuses_overwrite_and_particle_dim(tmp_path):
    ds = make_raw(n_energy=1)
    path = write_cxi(ds, tmp_path / "a.cxi")
    with pytest.raises(FileExistsError):
        write_cxi(ds, path)
    write_cxi(ds, path, overwrite=True)
    two = xr.concat([ds, ds], dim=s.PARTICLE)
    with pytest.raises(SchemaError, match="one particle"):
        write_cxi(two, tmp_path / "b.cxi")


def test_entries_sorted_by_energy_and_padded(tmp_path):
    # entry numbering is not energy order; scan lengths differ; data_1 and eV-unit variants
    path = write_minimal(
        tmp_path / "m.cxi",
        [
            entry(5500.0, n_scan=3, seed=1, number=1),
            entry(5420.0, n_scan=5, seed=2, number=2),
            entry(5460.0, n_scan=4, seed=3, number=10),
        ],
        data_in="data_1",
        translation_in="data_1",
    )
    raw = open_scan(path)
    np.testing.assert_allclose(raw[s.ENERGY], [5420.0, 5460.0, 5500.0], rtol=1e-12)
    assert raw.sizes[s.SCAN] == 5
    # the 5500 eV entry (3 scans, entry_1) went last and was padded by two NaN points
    assert np.isnan(raw[s.POSITION_Y][2, 3:]).all() and np.isnan(raw[s.INTENSITY][2, 3:]).all()
    e1 = entry(5500.0, n_scan=3, seed=1)
    np.testing.assert_array_equal(raw[s.INTENSITY][2, :3], e1["frames"])
    np.testing.assert_allclose(raw[s.POSITION_X][2, :3], -e1["translation"][:, 0])
    only = open_scan(path, entry=["entry_10"])
    assert only.sizes[s.ENERGY] == 1 and float(only[s.ENERGY][0]) == pytest.approx(5460.0)


def test_energy_units_attr_and_wavelength_fallback(tmp_path):
    raw = open_scan(write_minimal(tmp_path / "ev.cxi", [entry(5.42, energy=5.42)], energy_units="keV"))
    assert float(raw[s.ENERGY][0]) == pytest.approx(5420.0)
    lam = wavelength(5420.0)
    raw = open_scan(write_minimal(tmp_path / "wl.cxi", [entry(0.0, energy=None, wavelength=lam)]))
    assert float(raw[s.ENERGY][0]) == pytest.approx(5420.0, rel=1e-12)


def test_stacked_4d_layout_written_by_hand(tmp_path):
    rng = np.random.default_rng(4)
    frames = rng.poisson(5.0, size=(2, 3, N, N)).astype(np.uint16)
    translation = rng.normal(size=(3, 3)) * 1e-6  # shared by both energies
    e = entry(0.0, frames=frames, translation=translation, energy=np.array([5420.0, 5540.0]) * const.e)
    raw = open_scan(write_minimal(tmp_path / "s.cxi", [e]))
    np.testing.assert_allclose(raw[s.ENERGY], [5420.0, 5540.0])
    np.testing.assert_allclose(raw[s.POSITION_Y], -np.stack([translation[:, 1]] * 2))
    np.testing.assert_array_equal(raw[s.INTENSITY], frames.astype(np.float32))


# ------------------------------------------------------------------------------ geometry options
def test_overrides_for_missing_metadata(tmp_path):
    path = write_minimal(
        tmp_path / "bare.cxi", [entry(0.0, energy=None, distance=None, x_pixel_size=None, y_pixel_size=None)]
    )
    with pytest.raises(SchemaError, match="energy"):
        open_scan(path)
    with pytest.raises(SchemaError, match="distance"):
        open_scan(path, energy=5420.0)
    with pytest.raises(SchemaError, match="pixel_size"):
        open_scan(path, energy=5420.0, distance=1.0)
    raw = open_scan(path, energy=5420.0, distance=1.0, pixel_size=75e-6, particle="Q", condition="as-prepared")
    assert raw.attrs[s.ATTR_DETECTOR_DISTANCE] == 1.0 and raw.attrs[s.ATTR_DETECTOR_PIXEL_SIZE] == 75e-6
    assert raw.attrs[s.ATTR_PARTICLE] == "Q" and raw.attrs[s.ATTR_CONDITION] == "as-prepared"


def test_rectangular_frames_need_crop(tmp_path):
    e = entry(5420.0, shape=(6, 10))
    frames = np.zeros((4, 6, 10), np.int32)
    frames[:, 2, 7] = 100  # the zero frequency, off-centre
    e["frames"] = frames
    path = write_minimal(tmp_path / "r.cxi", [e])
    with pytest.raises(SchemaError, match="crop="):
        open_scan(path)
    raw = open_scan(path, crop=4, center=(2, 7))
    assert raw.sizes[s.DET_Y] == raw.sizes[s.DET_X] == 4
    assert raw[s.INTENSITY][0, 0, 2, 2] == 100  # zero frequency now at pixel (N//2, N//2)
    with pytest.raises(SchemaError, match="does not fit"):
        open_scan(path, crop=6, center=(2, 7))


def test_orientation_options(tmp_path):
    e = entry(5420.0)
    frames = np.zeros((4, N, N), np.int32)
    frames[:, 1, 5] = 7
    e["frames"] = frames
    path = write_minimal(tmp_path / "o.cxi", [e])
    assert open_scan(path, transpose=True)[s.INTENSITY][0, 0, 5, 1] == 7
    assert open_scan(path, flip_y=True)[s.INTENSITY][0, 0, N - 2, 5] == 7
    assert open_scan(path, flip_x=True)[s.INTENSITY][0, 0, 1, N - 6] == 7


def test_detector_flags_under_the_mask_become_nan(tmp_path):
    e = entry(5420.0)
    e["frames"][:, 3, 3] = -1  # detector gap flag
    mask = np.zeros((N, N), np.uint32)
    mask[3, 3] = 1
    raw = open_scan(write_minimal(tmp_path / "g.cxi", [dict(e, mask=mask)]))
    assert np.isnan(raw[s.INTENSITY][0, :, 3, 3]).all() and not raw[s.DETECTOR_MASK][3, 3]
    with pytest.raises(SchemaError, match="negative counts"):
        open_scan(write_minimal(tmp_path / "n.cxi", [e]))


# ------------------------------------------------------------------------------ bad content
@pytest.mark.parametrize(
    "change, message",
    [
        (lambda es: es.append(entry(5420.0, seed=5)), "duplicate"),
        (
            lambda es: es[0].update(
                energy=np.array([5540.0, 5420.0]) * const.e, frames=np.ones((2, 4, N, N), np.int32)
            ),
            "not strictly increasing",
        ),
        (lambda es: es[0].update(distance=-1.0), "distance"),
        (lambda es: es[0].update(energy=5420.0), "wrong units"),  # eV stored without a units attr
        (lambda es: es[0].update(x_pixel_size=50e-6), "square pixels"),
        (lambda es: es[0].update(translation=np.zeros((3, 3))), "translation"),
        (lambda es: es[0].update(mask=np.zeros((3, 3), np.uint32)), "mask"),
        (lambda es: es[0]["translation"].__setitem__((1, 0), np.nan), "NaN positions"),
        (lambda es: es[0]["translation"].__setitem__((1, 0), np.inf), "inf"),
        (lambda es: es[0].update(frames=np.full((4, N, N), -3, np.int32)), "negative"),
        (lambda es: es[0].update(frames=np.ones((4, N), np.int32)), "shape"),
        (lambda es: es.append(entry(5500.0, shape=(6, 6))), "frame shapes"),
        (lambda es: es.append(entry(5500.0, distance=3.0)), "disagree"),
    ],
)
def test_bad_content_raises_schema_error(tmp_path, change, message):
    entries = [entry(5420.0)]
    change(entries)
    path = write_minimal(tmp_path / "bad.cxi", entries)
    with pytest.raises(SchemaError, match=message) as info:
        open_scan(path)
    assert "bad.cxi" in str(info.value)


def test_bad_files_raise_oserror(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.cxi"):
        open_scan(tmp_path / "missing.cxi")
    garbage = tmp_path / "garbage.cxi"
    garbage.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(OSError, match="garbage.cxi"):
        open_scan(garbage)
    good = write_cxi(make_raw(), tmp_path / "good.cxi").read_bytes()
    (tmp_path / "cut.cxi").write_bytes(good[: len(good) // 3])
    with pytest.raises(OSError, match="cut.cxi"):
        open_scan(tmp_path / "cut.cxi")
    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    with pytest.raises(SchemaError, match="no entry_"):
        open_scan(tmp_path / "empty.h5")


_DROPPABLE = [
    "instrument_1/detector_1/data",
    "data_1/data",
    "sample_1/geometry_1/translation",
    "data_1/translation",
    "instrument_1/source_1/energy",
    "instrument_1/detector_1/distance",
    "instrument_1/detector_1/x_pixel_size",
    "instrument_1/detector_1/y_pixel_size",
    "instrument_1/detector_1/mask",
    "instrument_1/source_1/probe",
    "instrument_1",
    "sample_1",
]

_mutation = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 0.999)),
    st.tuples(st.just("drop"), st.sampled_from(_DROPPABLE)),
    st.tuples(st.just("string"), st.sampled_from(_DROPPABLE[:9])),
    st.tuples(st.just("shape"), st.sampled_from(_DROPPABLE[:10]), st.lists(st.integers(0, 9), max_size=4)),
    st.tuples(
        st.just("value"), st.sampled_from(_DROPPABLE[2:8]), st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 0.0, 1e30])
    ),
)


def _mutate(path: Path, mutation: tuple, entry_name: str) -> None:
    kind = mutation[0]
    if kind == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * mutation[1])])
        return
    with h5py.File(path, "r+") as f:
        if entry_name not in f:
            return
        g = f[entry_name]
        target = mutation[1]
        try:
            _apply(g, kind, target, mutation)
        except KeyError:  # a path an earlier mutation removed: nothing to mutate
            return


def _apply(g: h5py.Group, kind: str, target: str, mutation: tuple) -> None:
    if target not in g:
        return
    if kind == "value" and not (
        isinstance(g[target], h5py.Dataset) and g[target].dtype.kind in "iuf" and g[target].size
    ):
        return
    if kind == "drop":
        del g[target]
    elif kind == "string":
        del g[target]
        g[target] = np.array([b"not", b"numbers"])
    elif kind == "shape":
        del g[target]
        g[target] = np.ones(mutation[2], np.float32)
    elif kind == "value":
        dset = g[target]
        values = dset[()].astype(np.float64)
        values.reshape(-1)[0] = mutation[2]
        del g[target]
        g[target] = values


@settings(
    max_examples=int(os.environ.get("PTYXR_FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    mutations=st.lists(_mutation, min_size=1, max_size=3),
    layout=st.sampled_from(["entries", "stacked"]),
    entry_number=st.integers(1, 2),
)
def test_broken_files_raise_only_schema_or_os_errors(mutations, layout, entry_number):
    ds = make_raw(n_energy=2, n_scan=3, pad_last=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_cxi(ds, Path(tmp) / "x.cxi", layout=layout)
        for mutation in mutations:
            name = "entry_1" if layout == "stacked" else f"entry_{entry_number}"
            _mutate(path, mutation, name)
            if mutation[0] == "truncate":  # a truncated file is not mutated further
                break
        try:
            out = open_scan(path)
        except (SchemaError, OSError) as err:
            assert "x.cxi" in str(err)
        else:
            s.validate_raw(out)  # whatever loads is a valid §1a Dataset


def test_cxi_docstring_example():
    result = doctest.testmod(cxi)
    assert result.attempted >= 3 and result.failed == 0
