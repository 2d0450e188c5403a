"""Schema: names, units and validators raise SchemaError with helpful messages."""

import numpy as np
import pytest
import xarray as xr

import ptyxr
from ptyxr import schema as s


def _raw(n_energy=3, n_scan=4, n=8, seed=0):
    rng = np.random.default_rng(seed)
    ds = xr.Dataset(
        {
            s.INTENSITY: s.variable(s.INTENSITY, rng.poisson(5.0, (n_energy, n_scan, n, n)).astype(np.float32)),
            s.POSITION_Y: s.variable(s.POSITION_Y, rng.uniform(0, 1e-6, (n_energy, n_scan))),
            s.POSITION_X: s.variable(s.POSITION_X, rng.uniform(0, 1e-6, (n_energy, n_scan))),
        },
        coords={s.ENERGY: s.energy_coord(np.linspace(5420, 5540, n_energy))},
        attrs={s.ATTR_DETECTOR_DISTANCE: 3.0, s.ATTR_DETECTOR_PIXEL_SIZE: 75e-6},
    )
    return ds


def test_schema_error_is_value_error():
    assert issubclass(ptyxr.SchemaError, ValueError)


def test_every_spec_has_units_and_long_name():
    for name, spec in s.SPECS.items():
        assert spec.units, name
        assert spec.long_name, name
        assert spec.name == name


def test_fit_parameter_specs_complete():
    for p in s.FIT_PARAMETERS:
        assert p in s.SPECS and p + s.STDERR_SUFFIX in s.SPECS


def test_variable_attaches_contract_attrs_and_particle_dim():
    da = s.variable(s.EDGE_ENERGY, np.zeros((2, 3, 4)))
    assert da.dims == (s.PARTICLE, s.Y, s.X)
    assert da.attrs["units"] == "eV" and "edge" in da.attrs["long_name"]


def test_with_attrs_replaces_inherited_units():
    da = xr.DataArray(np.ones(3), dims=s.ENERGY, attrs={"units": "wrong", "foo": 1})
    out = s.with_attrs(da, s.SHIFT_Y)
    assert out.attrs == s.attrs_of(s.SHIFT_Y)


def test_validate_raw_accepts_good_input():
    ds = _raw()
    assert s.validate_raw(ds) is ds
    assert s.check_attrs(ds) == []


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda ds: ds.drop_vars(s.INTENSITY), "intensity"),
        (lambda ds: ds.assign_attrs({s.ATTR_DETECTOR_DISTANCE: None}), "detector_distance"),
        (lambda ds: ds.assign_attrs(detector_distance=-1.0), "positive"),
        (lambda ds: ds.assign_coords(energy=ds.energy.values[::-1]), "increasing"),
        (lambda ds: ds.assign_coords(energy=np.array([5420.0, 5420.0, 5430.0])), "increasing"),
        (lambda ds: ds.assign({s.INTENSITY: ds[s.INTENSITY].where(ds.scan != 1, np.inf)}), "inf"),
        (lambda ds: ds.assign({s.INTENSITY: ds[s.INTENSITY] - 100}), "negative"),
        (lambda ds: ds.assign({s.POSITION_Y: ds[s.POSITION_Y].where(ds.scan != 0)}), "NaN positions"),
        (lambda ds: ds.assign({s.INTENSITY: ds[s.INTENSITY].transpose(s.SCAN, s.ENERGY, ...)}), "dims"),
        (lambda ds: ds.isel(det_x=slice(0, 6)), "square"),
        (lambda ds: ds.assign({s.INTENSITY: ds[s.INTENSITY].where(ds.scan != 2)}), "no valid pixel"),
    ],
)
def test_validate_raw_rejects_bad_input(mutate, match):
    with pytest.raises(s.SchemaError, match=match):
        s.validate_raw(mutate(_raw()))


def test_validate_raw_allows_nan_padding():
    ds = _raw()
    pad = ds.scan == 3
    ds = ds.assign(
        {
            s.POSITION_Y: ds[s.POSITION_Y].where(~pad),
            s.POSITION_X: ds[s.POSITION_X].where(~pad),
            s.INTENSITY: ds[s.INTENSITY].where(~pad),
        }
    )
    s.validate_raw(ds)


def test_validate_raw_rejects_non_dataset():
    with pytest.raises(s.SchemaError, match="Dataset"):
        s.validate_raw(np.zeros(3))


def test_validate_spectra_rejects_all_nan():
    ds = xr.Dataset(
        {s.ABSORPTION: s.variable(s.ABSORPTION, np.full((3, 2, 2), np.nan))},
        coords={s.ENERGY: s.energy_coord([1.0, 2.0, 3.0])},
    )
    with pytest.raises(s.SchemaError, match="NaN everywhere"):
        s.validate_spectra(ds)


def test_require_energy_minimum():
    ds = xr.Dataset(coords={s.ENERGY: s.energy_coord([1.0, 2.0])})
    with pytest.raises(s.SchemaError, match="at least 11"):
        s.require_energy(ds, "fit", minimum=11)
