"""The accessor is registered on import, thin, and exposes the stages' own signatures."""

import inspect

import xarray as xr

import ptyxr
from ptyxr import provenance


def test_accessor_registered_and_binds_stage_signature():
    ds = xr.Dataset()
    bound = ds.ptyxr.validate
    assert bound.func is ptyxr.schema.validate_raw
    assert bound.__doc__ == ptyxr.schema.validate_raw.__doc__


def test_accessor_class_attribute_is_stage_function():
    assert ptyxr.PtyxrAccessor.validate is ptyxr.schema.validate_raw
    # partial drops the bound Dataset from the signature users see
    assert "ds" not in inspect.signature(xr.Dataset().ptyxr.validate).parameters


def test_provenance_prepends_history_and_stores_json():
    ds = xr.Dataset(attrs={"history": "earlier"})
    out = provenance.record(ds, "stage_a", {"alpha": 1.0, "flag": True, "none": None, "k": range(1, 3)})
    assert out.attrs["history"].splitlines()[1] == "earlier"
    assert "stage_a(" in out.attrs["history"].splitlines()[0]
    params = provenance.parameters(out, "stage_a")
    assert params["alpha"] == 1.0 and params["flag"] is True and params["none"] is None and params["k"] == [1, 2]
    assert params["ptyxr_version"] == ptyxr.__version__
    assert "history" not in ds.attrs or ds.attrs["history"] == "earlier"  # input untouched
