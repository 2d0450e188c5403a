"""Exact, atomic netCDF storage (ptyxr.io.netcdf): every stage's Dataset round-trips identically."""

from __future__ import annotations

import os
import stat

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

import ptyxr
from ptyxr import provenance
from ptyxr import schema as s
from ptyxr.io.netcdf import encode, open_dataset, to_netcdf

NY, NX, NE, NS, N = 5, 6, 4, 7, 8


# ------------------------------------------------------------------ fixtures (DESIGN §1a–1f by hand)
def _energy() -> xr.DataArray:
    return s.energy_coord(np.array([5420.0, 5465.0, 5480.5, 5540.0]))


def _grid(ds: xr.Dataset) -> xr.Dataset:
    dx = 2.5e-8
    return ds.assign_coords(
        {s.Y: s.length_coord(s.Y, np.arange(NY) * dx, dx), s.X: s.length_coord(s.X, np.arange(NX) * dx, dx)}
    )


def make_raw(rng: np.random.Generator) -> xr.Dataset:
    intensity = rng.poisson(50.0, size=(NE, NS, N, N)).astype(np.float32)
    pos_y = rng.normal(size=(NE, NS)) * 1e-6
    pos_x = rng.normal(size=(NE, NS)) * 1e-6
    intensity[1, -1] = np.nan  # padding: all-NaN frame with NaN position
    pos_y[1, -1] = pos_x[1, -1] = np.nan
    intensity[0, 0, 2, 3] = np.nan  # an invalid pixel
    mask = np.ones((N, N), bool)
    mask[0, 0] = False
    probe = (rng.normal(size=(NE, N, N)) + 1j * rng.normal(size=(NE, N, N))).astype(np.complex64)
    ds = xr.Dataset(
        {
            s.INTENSITY: s.variable(s.INTENSITY, intensity),
            s.POSITION_Y: s.variable(s.POSITION_Y, pos_y),
            s.POSITION_X: s.variable(s.POSITION_X, pos_x),
            s.DETECTOR_MASK: s.variable(s.DETECTOR_MASK, mask),
            s.PROBE_GUESS: s.variable(s.PROBE_GUESS, probe),
        },
        coords={s.ENERGY: _energy()},
        attrs={
            s.ATTR_DETECTOR_DISTANCE: 1.5,
            s.ATTR_DETECTOR_PIXEL_SIZE: 75e-6,
            s.ATTR_PARTICLE: "P1",
            s.ATTR_CONDITION: "as-prepared",
            s.ATTR_PROBE_FWHM: 1e-7,
            s.ATTR_PROBE_DEFOCUS: 0.0,
        },
    )
    s.validate_raw(ds)
    return provenance.record(ds, "scan_from_arrays", {"particle": "P1", "mask": None, "flag": True})


def make_reconstruction(rng: np.random.Generator) -> xr.Dataset:
    ds = make_raw(rng)
    obj = np.exp(-rng.random((NE, NY, NX)) + 1j * rng.normal(size=(NE, NY, NX))).astype(np.complex64)
    obj[0, 1, 1] = complex(np.nan, 0.0)  # NaN in one part only must not spread to the other
    obj[1, 1, 2] = complex(0.5, np.nan)
    obj[2, 2, 2] = complex(np.nan, np.nan)
    probe = (rng.normal(size=(NE, N, N)) + 1j * rng.normal(size=(NE, N, N))).astype(np.complex64)
    ds = ds.assign(
        {
            s.OBJECT: s.variable(s.OBJECT, obj),
            s.PROBE: s.variable(s.PROBE, probe),
            s.FOURIER_ERROR: s.variable(s.FOURIER_ERROR, rng.random((NE, 3)).astype(np.float32)),
            s.COVERAGE: s.variable(s.COVERAGE, rng.random((NY, NX)) > 0.3),
        }
    ).assign_coords({s.ITERATION: s.variable(s.ITERATION, np.arange(3, dtype=np.int64))})
    return provenance.record(
        _grid(ds), "reconstruct", {"iterations": 3, "kkr_weight": None, "alpha": 1.0, "seed": 0, "checkpoint": None}
    )


def make_spectra(rng: np.random.Generator) -> xr.Dataset:
    ds = make_reconstruction(rng)
    absorption = rng.random((NE, NY, NX))
    absorption[:, 0, 0] = np.nan
    ds = ds.assign(
        {
            s.ABSORPTION: s.variable(s.ABSORPTION, absorption),
            s.PHASE: s.variable(s.PHASE, -rng.random((NE, NY, NX))),
            s.BACKGROUND: s.variable(s.BACKGROUND, rng.random((NY, NX)) > 0.5),
            s.MATERIAL: s.variable(s.MATERIAL, rng.random((NY, NX)) > 0.5),
            s.SHIFT_Y: s.variable(s.SHIFT_Y, rng.normal(size=NE) * 1e-9),
            s.SHIFT_X: s.variable(s.SHIFT_X, np.zeros(NE)),
        }
    )
    return provenance.record(ds, "spectra", {"background": None, "material_sigma": 3.0})


def _map_with_nan(rng: np.random.Generator) -> np.ndarray:
    """A random (y, x) map with one NaN pixel, as every map after the fit has."""
    v = rng.random((NY, NX))
    v[0, 0] = np.nan
    return v


def make_fit(rng: np.random.Generator) -> xr.Dataset:
    ds = make_spectra(rng)
    new = {}
    for p in s.FIT_PARAMETERS:
        v = _map_with_nan(rng)
        new[p] = s.variable(p, v)
        new[p + s.STDERR_SUFFIX] = s.variable(p + s.STDERR_SUFFIX, v / 10)
    new[s.REDCHI] = s.variable(s.REDCHI, rng.random((NY, NX)))
    new[s.NOISE] = s.variable(s.NOISE, rng.random((NY, NX)))
    new[s.SUCCESS] = s.variable(s.SUCCESS, rng.random((NY, NX)) > 0.1)
    new[s.FIT_VALID] = s.variable(s.FIT_VALID, rng.random((NY, NX)) > 0.4)
    new[s.ABSORPTION_FIT] = s.variable(s.ABSORPTION_FIT, rng.random((NE, NY, NX)))
    return provenance.record(
        ds.assign(new), "fit_xanes", {"method": "batch", "noise": "paper", "pre_edge_limit": 5466.0}
    )


def make_chemical_state(rng: np.random.Generator) -> xr.Dataset:
    ds = make_fit(rng)
    new = {}
    for name in s.CHEMICAL_STATE_OUTPUTS:
        new[name] = s.variable(name, _map_with_nan(rng))
    out = ds.assign(new)
    out.attrs.update({"delta_f2_V": 3.53, "f1_table": "paper", "reference_energy": 5420.0})
    return provenance.record(out, "chemical_state", {"table": "paper", "reference_energy": None})


def make_domains(rng: np.random.Generator) -> xr.Dataset:
    particles = ["P1", "P2", "D1"]
    conditions = ["as-prepared", "as-prepared", "delithiated"]
    per = [
        make_chemical_state(rng).drop_vars([s.INTENSITY, s.POSITION_Y, s.POSITION_X, s.PROBE_GUESS, s.DETECTOR_MASK])
        for _ in particles
    ]
    ds = xr.concat(
        per,
        dim=s.PARTICLE,
        combine_attrs="override",
        coords="minimal",
        compat="override",
        data_vars="all",
        join="outer",
    )
    ds = ds.assign_coords({s.PARTICLE: particles, s.CONDITION: (s.PARTICLE, conditions)})
    domain = rng.integers(-1, 6, size=(len(particles), NY, NX)).astype(np.int16)
    domain[:, 0, 0] = s.MISSING_DOMAIN
    ds = ds.assign(
        {
            s.DOMAIN: s.variable(
                s.DOMAIN,
                domain,
                flag_values=np.arange(-1, 6, dtype=np.int16),
                flag_meanings="missing c0 c1 c2 c3 c4 c5",
            ),
            s.CLUSTER_CENTER: s.variable(s.CLUSTER_CENTER, rng.random((6, 3))),
            s.FRACTION: s.variable(s.FRACTION, rng.random((2, 6))),
            s.CLUSTER_SPECTRUM: s.variable(s.CLUSTER_SPECTRUM, rng.random((6, NE))),
        }
    ).assign_coords(
        {s.CLUSTER: np.arange(6), s.FEATURE: list(s.DOMAIN_FEATURES), s.GROUP: ["as-prepared", "delithiated"]}
    )
    return provenance.record(ds, "cluster", {"n_clusters": 6, "features": list(s.DOMAIN_FEATURES), "seed": 0})


STAGES = {
    "raw": make_raw,
    "reconstruction": make_reconstruction,
    "spectra": make_spectra,
    "fit": make_fit,
    "chemical_state": make_chemical_state,
    "domains": make_domains,
}


# ------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("load", [True, False])
def test_every_stage_round_trips_identically(tmp_path, stage, load):
    ds = STAGES[stage](np.random.default_rng(1))
    path = to_netcdf(ds, tmp_path / f"{stage}.nc")
    with open_dataset(path, load=load) as back:
        xr.testing.assert_identical(back, ds)
        for name, var in ds.variables.items():  # identical() does not compare dtypes
            assert back[name].dtype == var.dtype or var.dtype.kind in "UO", name


def test_fixture_really_holds_the_hard_cases():
    ds = make_domains(np.random.default_rng(0))
    assert ds[s.OBJECT].dtype == np.complex64 and ds[s.COVERAGE].dtype == bool
    assert ds[s.DOMAIN].dtype == np.int16 and "flag_meanings" in ds[s.DOMAIN].attrs
    assert ds[s.CONDITION].dims == (s.PARTICLE,) and s.CONDITION not in ds.indexes
    assert np.isnan(ds[s.EDGE_ENERGY][0, 0, 0]) and np.isnan(ds[s.OBJECT].values.real).any()


def test_complex_nan_parts_stay_separate(tmp_path):
    ds = make_reconstruction(np.random.default_rng(2))
    back = open_dataset(to_netcdf(ds, tmp_path / "o.nc"), load=True)
    obj = back[s.OBJECT].values
    assert np.isnan(obj[0, 1, 1].real) and obj[0, 1, 1].imag == 0.0
    assert obj[1, 1, 2].real == np.float32(0.5) and np.isnan(obj[1, 1, 2].imag)
    np.testing.assert_array_equal(obj.view(np.float32), ds[s.OBJECT].values.view(np.float32))  # bitwise (NaN = NaN)


def test_awkward_attrs_round_trip(tmp_path):
    attrs = {
        "flag": True,
        "nothing": None,
        "params": {"a": [1, 2, (3, 4)], "__odd": 1},
        "single_list": [1.0],
        "tuple": (1, "x"),
        "complex": 1 + 2j,
        "one_element": np.array([5.0]),
        "matrix": np.eye(2),
        "f32": np.float32(1.5),
        "npbool": np.bool_(False),
        "json_text": '{"a": 1}',
        "unicode": "μt ≥ Å",
        "empty": "",
        "big": 2**70,
        "int16s": np.arange(3, dtype=np.int16),
        "strings": ["a", "b"],
        "f16": np.float16(0.5),
        "nan": float("nan"),
    }
    ds = xr.Dataset({"v": ("y", np.arange(3.0), dict(attrs))}, attrs=attrs)
    back = open_dataset(to_netcdf(ds, tmp_path / "a.nc"), load=True)
    xr.testing.assert_identical(back, ds)
    for key, value in attrs.items():
        if type(value) in (int, float):  # netCDF numbers come back as numpy scalars (equal values)
            continue
        assert type(back.attrs[key]) is type(value), key
        assert type(back["v"].attrs[key]) is type(value), key


def test_dask_input_is_encoded_lazily_and_round_trips(tmp_path, no_compute):
    ds = make_reconstruction(np.random.default_rng(3)).chunk({s.ENERGY: 1})
    with no_compute("encoding computed a dask array"):  # encoding must not compute anything
        encoded = encode(ds)
    assert isinstance(encoded[s.OBJECT].data, dsa.Array)
    path = to_netcdf(ds, tmp_path / "d.nc")
    assert isinstance(ds[s.OBJECT].data, dsa.Array)  # the input is not loaded in place
    with open_dataset(path, chunks={}) as back:
        assert isinstance(back[s.OBJECT].data, dsa.Array)  # complex variables stay lazy on open
        xr.testing.assert_identical(back.compute(), ds.compute())


def test_foreign_netcdf_opens_as_plain_dataset(tmp_path):
    ds = xr.Dataset({"t": (("a", "b"), np.arange(6.0).reshape(2, 3), {"units": "K"})}, attrs={"title": "x"})
    ds.to_netcdf(tmp_path / "plain.nc", engine="netcdf4")
    with open_dataset(tmp_path / "plain.nc") as back:
        xr.testing.assert_identical(back, ds)


def test_accessor_and_top_level_api(tmp_path):
    ds = make_spectra(np.random.default_rng(4))
    path = ds.ptyxr.to_netcdf(tmp_path / "acc.nc")
    xr.testing.assert_identical(ptyxr.open_dataset(path, load=True), ds)


# ------------------------------------------------------------------------- atomic writes
def test_refuses_to_overwrite_unless_asked(tmp_path):
    ds1 = make_raw(np.random.default_rng(5))
    ds2 = make_raw(np.random.default_rng(6))
    path = to_netcdf(ds1, tmp_path / "r.nc")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        to_netcdf(ds2, path)
    assert path.read_bytes() == before
    to_netcdf(ds2, path, overwrite=True)
    xr.testing.assert_identical(open_dataset(path, load=True), ds2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.nc"]  # no temporary files left


def test_interrupted_write_leaves_old_file_and_no_debris(tmp_path):
    good = make_raw(np.random.default_rng(7))
    path = to_netcdf(good, tmp_path / "r.nc")
    before = path.read_bytes()

    def explode(block, block_info=None):
        if block_info[0]["chunk-location"][0] == 2:  # fails after some chunks were written
            raise KeyboardInterrupt("simulated Ctrl-C while writing")
        return block

    bad = good.copy()
    bad[s.INTENSITY] = bad[s.INTENSITY].copy(
        data=dsa.from_array(good[s.INTENSITY].values, chunks=(1, NS, N, N)).map_blocks(explode, dtype=np.float32)
    )
    with pytest.raises(KeyboardInterrupt):
        to_netcdf(bad, path, overwrite=True)
    assert path.read_bytes() == before
    with pytest.raises(KeyboardInterrupt):
        to_netcdf(bad, tmp_path / "new.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.nc"]


def test_rewrite_the_file_a_lazy_dataset_was_opened_from(tmp_path):
    ds = make_reconstruction(np.random.default_rng(8))
    path = to_netcdf(ds, tmp_path / "r.nc")
    with open_dataset(path) as lazy:  # data still read from the file while it is replaced
        changed = lazy.assign_attrs(note="second version")
        to_netcdf(changed, path, overwrite=True)
    xr.testing.assert_identical(open_dataset(path, load=True), ds.assign_attrs(note="second version"))


def test_new_file_permissions_follow_umask(tmp_path):
    path = to_netcdf(make_raw(np.random.default_rng(9)), tmp_path / "p.nc")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600


def test_reserved_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        to_netcdf(xr.Dataset({"v": ((s.COMPLEX_PART,), [1.0])}), tmp_path / "x.nc")
    with pytest.raises(ValueError, match="reserved"):
        to_netcdf(xr.Dataset(attrs={"ptyxr_dtype": "x"}), tmp_path / "x.nc")
    with pytest.raises(TypeError, match="attr 'bad'"):
        to_netcdf(xr.Dataset(attrs={"bad": object()}), tmp_path / "x.nc")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------- bad files
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.nc"):
        open_dataset(tmp_path / "nothere.nc")


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated_half", "truncated_tail", "text"])
def test_damaged_files_raise_oserror_naming_the_path(tmp_path, damage):
    path = to_netcdf(make_reconstruction(np.random.default_rng(10)), tmp_path / "r.nc")
    data = path.read_bytes()
    damaged = tmp_path / f"{damage}.nc"
    damaged.write_bytes(
        {
            "garbage": np.random.default_rng(0).bytes(4096),
            "empty": b"",
            "truncated_half": data[: len(data) // 2],
            "truncated_tail": data[:-100],
            "text": b"CDF? no, just some text\n" * 10,
        }[damage]
    )
    with pytest.raises(OSError, match=damage):
        open_dataset(damaged, load=True)


def test_simulator_output_round_trips_if_available(tmp_path):
    simulate = pytest.importorskip("ptyxr.simulate")
    if not hasattr(simulate, "demo_dataset"):
        pytest.skip("simulator not available yet")
    raw, truth = simulate.demo_dataset("small", seed=0)
    for name, ds in (("raw", raw), ("truth", truth)):
        back = open_dataset(to_netcdf(ds, tmp_path / f"{name}.nc"), load=True)
        xr.testing.assert_identical(back, ds)
