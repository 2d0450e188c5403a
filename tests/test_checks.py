"""One argument-checking layer (ptyxr.checks) used by every public function (issue 13, item 2).

Each bad argument must raise a SchemaError naming the argument and the value, before any
work; unit slips by 10³ must be named with the likely fix.
"""

from __future__ import annotations

import fixtures_chain as fc  # tests/ is on sys.path (pytest's "prepend" import mode)
import numpy as np
import pytest
import xarray as xr

import ptyxr
from ptyxr import checks
from ptyxr.schema import ENERGY, PARTICLE, PROBE_GUESS, SchemaError


@pytest.fixture(scope="module")
def raw(tiny_p1):
    return tiny_p1


@pytest.fixture(scope="module")
def particle():
    return fc.particle_dataset()


def _must_not_run(*args, **kwargs):
    raise AssertionError("the reconstruction started although an argument was bad")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": float("nan")}, r"alpha=nan must be a finite number"),
        ({"beta": float("nan")}, r"beta=nan must be a finite number"),
        ({"alpha": -0.5}, r"alpha=-0\.5 must be ≥ 0"),
        ({"beta": -1.0}, r"beta=-1 must be ≥ 0"),
        ({"alpha": 50.0}, r"alpha=50 must be ≤ 2"),
        ({"iterations": 2.5}, r"iterations=2\.5 must be a whole number"),
        ({"iterations": "10"}, r"iterations='10' must be an integer"),
        ({"iterations": 0}, r"iterations=0 must be ≥ 1"),
        ({"iterations": True}, r"iterations=True must be an integer"),
        ({"seed": "abc"}, r"seed='abc' must be an integer"),
        ({"seed": -1}, r"seed=-1 must be ≥ 0"),
        ({"pixel_size": "1e-8"}, r"pixel_size='1e-8' must be a number \[m\]"),
        ({"pixel_size": float("inf")}, r"pixel_size=inf must be a finite"),
        ({"pixel_size": 0.0}, r"pixel_size=0 must be positive"),
        ({"pixel_size": 1.0}, r"scan positions span .* object pixel"),
        ({"kkr": "false"}, r"kkr='false' must be True or False"),
        ({"keep_raw": 0}, r"keep_raw=0 must be True or False"),
        ({"kkr_every": 0}, r"kkr_every=0 must be ≥ 1"),
        ({"kkr_weight": 1.5}, r"kkr_weight=1\.5 must be ≤ 1"),
        ({"coverage_threshold": float("nan")}, r"coverage_threshold=nan"),
        ({"checkpoint_every": 2.5}, r"checkpoint_every=2\.5"),
        ({"interpolation": 2}, r"interpolation=2 is not one of \[1, 3\]"),
        ({"checkpoint": 5}, r"checkpoint=5 must be a file path"),
        ({"engine": 3}, r"engine=3 must be text"),
        # issue 11's switches: the text "false" would be truthy
        ({"native_grids": "false"}, r"native_grids='false' must be True or False"),
        ({"pin_scale": "no"}, r"pin_scale='no' must be True or False"),
        ({"mask_dead_pixels": 1}, r"mask_dead_pixels=1 must be True or False"),
        ({"kkr_start": 2.5}, r"kkr_start=2\.5"),
    ],
)
def test_reconstruct_arguments(raw, monkeypatch, kwargs, match):
    import ptyxr.reconstruct.api as api

    monkeypatch.setattr(api, "_reconstruct_one", _must_not_run)
    with pytest.raises(SchemaError, match=match):
        raw.ptyxr.reconstruct(progress=False, **kwargs)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda ds: ds.assign_coords({ENERGY: ds[ENERGY] / 1000}), r"keV: multiply by 1000 \(e\.g\. 5420 eV\)"),
        (lambda ds: ds.assign_coords({ENERGY: ds[ENERGY] * 1.602e-19}), r"joules"),
        (lambda ds: ds.assign_attrs(detector_distance=ds.attrs["detector_distance"] * 1e3), r"mm: give 0\.268"),
        (lambda ds: ds.assign_attrs(detector_distance=30.0), r"cm, give 0\.3 m"),
        (lambda ds: ds.assign_attrs(detector_pixel_size=75.0), r"µm: give 7\.5e-05 m"),
        # positions in nm given as metres ×1e-9: the whole scan on a fraction of a pixel
        (lambda ds: ds.assign(position_y=ds.position_y * 1e-9, position_x=ds.position_x * 1e-9), r"span .* pixel"),
    ],
)
def test_unit_slips_are_named_even_with_a_probe_guess(raw, monkeypatch, change, match):
    """With a probe guess nothing else stops a unit slip: the scan would land on ~one pixel."""
    import ptyxr.reconstruct.api as api

    monkeypatch.setattr(api, "_reconstruct_one", _must_not_run)
    n = raw.sizes["det_y"]
    probe = np.ones((raw.sizes[ENERGY], n, n), np.complex64)
    bad = change(raw.assign({PROBE_GUESS: ((ENERGY, "probe_y", "probe_x"), probe)}))
    with pytest.raises(SchemaError, match=match):
        bad.ptyxr.reconstruct(progress=False)
    bad = change(raw)  # and without one (the probe-size message used to come first)
    with pytest.raises(SchemaError, match=match):
        bad.ptyxr.reconstruct(progress=False)


def test_probe_guess_overflowing_float32_is_refused(raw, monkeypatch):
    import ptyxr.reconstruct.api as api

    monkeypatch.setattr(api, "_reconstruct_one", _must_not_run)
    n = raw.sizes["det_y"]
    probe = np.full((raw.sizes[ENERGY], n, n), 1e20, np.complex128)
    bad = raw.assign({PROBE_GUESS: ((ENERGY, "probe_y", "probe_x"), probe)})
    with pytest.raises(SchemaError, match=r"'probe_guess' holds values up to 1e\+20.*rescale"):
        bad.ptyxr.reconstruct(progress=False)


def test_particle_dim_of_length_zero(raw):
    empty = raw.expand_dims({PARTICLE: 1}).isel({PARTICLE: slice(0, 0)})
    with pytest.raises(SchemaError, match="'particle' dim has length 0"):
        empty.ptyxr.reconstruct(progress=False)
    with pytest.raises(SchemaError, match="'particle' dim of length 0"):
        ptyxr.combine_particles([empty])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda ds: ds.ptyxr.fit_xanes(chunks=0, progress=False), r"chunks=0 must be ≥ 1"),
        (lambda ds: ds.ptyxr.fit_xanes(chunks="big", progress=False), r"chunks='big' must be an integer"),
        (lambda ds: ds.ptyxr.fit_xanes(chunks={"y": -2}, progress=False), r"chunks\['y'\]=-2 must be ≥ 1"),
        (lambda ds: ds.ptyxr.fit_xanes(pre_edge_limit=5.466, progress=False), r"keV: multiply by 1000"),
        (lambda ds: ds.ptyxr.fit_xanes(method="lmfi", progress=False), r"did you mean 'lmfit'"),
        (lambda ds: ds.ptyxr.fit_xanes(max_edge_stderr=float("nan"), progress=False), r"max_edge_stderr=nan"),
        (lambda ds: ds.ptyxr.fit_xanes(progress="no"), r"progress='no' must be True or False"),
        (
            lambda ds: ds.ptyxr.fit_xanes(
                material=xr.DataArray(np.ones((3, 3), bool), dims=("y", "x")), progress=False
            ),
            r"material is \{'y': 3, 'x': 3\} but the maps are \{'y': 10, 'x': 12\}",
        ),
        (
            lambda ds: ds.ptyxr.fit_xanes(material=ds.material.astype(float), progress=False),
            r"material must be boolean",
        ),
        (lambda ds: ds.ptyxr.chemical_state(reference_energy="low"), r"reference_energy='low' must be a number"),
        (lambda ds: ds.ptyxr.chemical_state(reference_energy=5.5), r"keV"),
        (lambda ds: ds.ptyxr.chemical_state(table="hnke"), r"did you mean 'henke'"),
        (lambda ds: ds.ptyxr.chemical_state(delta_f2=float("nan")), r"delta_f2=nan"),
        (lambda ds: ds.ptyxr.cluster(n_clusters=None), r"n_clusters=None must be an integer"),
        (lambda ds: ds.ptyxr.cluster(n_clusters=0), r"n_clusters=0 must be ≥ 1"),
        (lambda ds: ds.ptyxr.cluster(n_clusters=2.5), r"n_clusters=2\.5"),
        (lambda ds: ds.ptyxr.cluster(features="edge_energy"), r"features='edge_energy' must be a non-empty list"),
        (lambda ds: ds.ptyxr.cluster(seed=None), r"seed=None must be an integer"),
        (lambda ds: ds.ptyxr.elbow(k=5), r"k=5 must be a non-empty list"),
        (lambda ds: ds.ptyxr.elbow(k=[1, 0]), r"k entry=0 must be ≥ 1"),
        (lambda ds: ds.ptyxr.elbow(sample=0), r"sample=0 must be ≥ 1"),
        (lambda ds: ds.ptyxr.align(upsample=2.5), r"upsample=2\.5"),
        (lambda ds: ds.ptyxr.align(image="phse"), r"did you mean 'phase'"),
        (lambda ds: ds.ptyxr.align(reference="5420"), r"reference='5420' must be a number"),
        (lambda ds: ds.ptyxr.spectra(reference_energy=float("nan")), r"reference_energy=nan"),
        (lambda ds: ds.ptyxr.spectra(material_sigma=-1.0), r"material_sigma=-1 must be positive"),
    ],
)
def test_stage_arguments(particle, call, match):
    with pytest.raises(SchemaError, match=match):
        call(particle)


@pytest.mark.parametrize(
    ("datasets", "match"),
    [
        (None, r"datasets=None must be a list of xarray.Datasets"),
        ("P1.nc", r"datasets='P1.nc'"),
        (5, r"datasets=5"),
        ([xr.DataArray([1.0])], r"item 0 is a DataArray"),
    ],
)
def test_combine_particles_input(datasets, match):
    with pytest.raises(SchemaError, match=match):
        ptyxr.combine_particles(datasets)


def test_combine_particles_without_energy_coordinate_is_refused(particle):
    """xarray would align by position and stack two energy axes (issue 13: 'doubles the energy axis')."""
    other = fc.particle_dataset("D1", "delithiated", seed=1).drop_vars(ENERGY)
    with pytest.raises(SchemaError, match=r"Dataset\(s\) \[1\] have an 'energy' dim without an 'energy' coordinate"):
        ptyxr.combine_particles([particle, other])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"energy": np.linspace(5.42, 5.54, 4)}, r"keV: multiply by 1000"),
        ({"detector_distance": 268.0}, r"mm: give 0\.268 m"),
        ({"detector_distance": "0.3"}, r"detector_distance='0\.3' must be a number"),
        ({"detector_pixel_size": 75.0}, r"µm: give 7\.5e-05 m"),
        ({"detector_pixel_size": float("nan")}, r"detector_pixel_size=nan"),
        ({"positions_in": "microns"}, r"positions_in='microns' is not one of"),
        ({"probe_fwhm": -1e-7}, r"probe_fwhm=-1e-07 must be positive"),
    ],
)
def test_scan_from_arrays_units(kwargs, match):
    args = {
        "intensity": np.ones((4, 5, 8, 8), np.float32),
        "position_y": np.linspace(0, 1e-6, 5),
        "position_x": np.linspace(0, 1e-6, 5),
        "energy": np.linspace(5420.0, 5540.0, 4),
        "detector_distance": 0.3,
        "detector_pixel_size": 75e-6,
        **kwargs,
    }
    with pytest.raises(SchemaError, match=match):
        ptyxr.scan_from_arrays(**args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"energy": 5.42}, r"keV"),
        ({"distance": 500.0}, r"mm: give 0\.5 m"),
        ({"pixel_size": 55.0}, r"µm"),
        ({"crop": 0}, r"crop=0 must be ≥ 1"),
        ({"flip_translation": "no"}, r"flip_translation='no' must be True or False"),
    ],
)
def test_open_scan_overrides(tmp_path, kwargs, match):
    with pytest.raises(SchemaError, match=match):
        ptyxr.open_scan(tmp_path / "whatever.cxi", **kwargs)  # checked before the file is opened


def test_plausible_values_pass():
    assert checks.distance_m("d", 0.3) == 0.3
    assert checks.detector_pixel_m("p", 75e-6) == 75e-6
    np.testing.assert_array_equal(checks.energy_ev("e", [5420.0, 5540.0]), [5420.0, 5540.0])
    assert checks.integer("n", 1e3) == 1000 and checks.integer("n", np.int64(3)) == 3
    assert checks.real("a", np.float32(0.5)) == 0.5
    assert checks.boolean("b", np.bool_(True)) is True


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"iteration": 3}, r"'iteration' \(did you mean 'iterations'\?\)"),
        ({"kkr_strat": 3}, r"did you mean 'kkr_start'"),
    ],
)
def test_unknown_keyword_to_a_stage_gets_did_you_mean(raw, kwargs, match):
    with pytest.raises(TypeError, match=match):
        raw.ptyxr.reconstruct(**kwargs)
