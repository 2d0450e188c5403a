"""The @stage decorator (ptyxr/stage.py): argument checks, schema validation, provenance from the call."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import xarray as xr

import ptyxr
from ptyxr import provenance
from ptyxr import schema as s
from ptyxr.stage import Recorded, stage, summarise


def _validate(ds, where):
    ds = s.require_dataset(ds, where)
    s.require_variables(ds, ("v",), where)
    if not hasattr(ds["v"].data, "dask") and (ds["v"].values < 0).any():  # values only when in memory
        raise s.SchemaError(f"{where}: v must be non-negative.")
    return ds


@stage("toy", validate=_validate, exclude=("progress",))
def toy(ds: xr.Dataset, scale: float = 2.0, mask: xr.DataArray | None = None, progress: bool = True) -> Recorded:
    """A toy stage: ``v`` times ``scale``."""
    return Recorded(ds.assign(w=ds["v"] * scale), {"scale": float(scale), "n_pixels": int(ds["v"].size)})


def _data():
    return xr.Dataset({"v": (("y", "x"), np.arange(6.0).reshape(2, 3))})


def test_signature_and_docstring_are_the_functions():
    sig = inspect.signature(toy)
    assert list(sig.parameters) == ["ds", "scale", "mask", "progress"]
    assert sig.parameters["scale"].default == 2.0
    assert sig.return_annotation is xr.Dataset  # Recorded never leaves the decorator
    assert toy.__doc__.startswith("A toy stage")


def test_records_bound_parameters_defaults_and_facts():
    mask = xr.DataArray(np.ones((2, 3), bool), dims=("y", "x"))
    out = toy(_data(), 3, mask=mask)
    assert isinstance(out, xr.Dataset)
    np.testing.assert_array_equal(out["w"].values, 3 * _data()["v"].values)
    params = provenance.parameters(out, "toy")
    # positional 3 bound to its name; facts added; data argument and excluded names left out
    assert params["scale"] == 3.0 and params["n_pixels"] == 6
    assert params["mask"] == "<DataArray bool (y: 2, x: 3)>"  # summarised, never the values
    assert "ds" not in params and "progress" not in params
    assert params["ptyxr_version"] == ptyxr.__version__
    assert (
        out.attrs[s.ATTR_HISTORY]
        .splitlines()[0]
        .endswith('toy(scale=3.0, mask="<DataArray bool (y: 2, x: 3)>", n_pixels=6)')
    )
    defaults = provenance.parameters(toy(_data()), "toy")
    assert defaults["scale"] == 2.0 and defaults["mask"] is None


def test_validation_runs_before_the_stage_numpy_and_dask(no_compute):
    with pytest.raises(s.SchemaError, match="toy needs an xarray.Dataset"):
        toy(_data()["v"])
    with pytest.raises(s.SchemaError, match="non-negative"):
        toy(-_data())
    with no_compute("validation or the stage computed a dask array"):
        lazy = toy(_data().chunk({"y": 1}))  # structure checked, values left to compute time
    assert hasattr(lazy["w"].data, "dask")
    xr.testing.assert_identical(lazy.compute()["w"], toy(_data())["w"])


def test_summarise_leaves_plain_values_and_shortens_arrays():
    assert summarise({"a": (1, 2.5), "b": "x"}) == {"a": [1, 2.5], "b": "x"}
    assert summarise(range(2, 5)) == [2, 3, 4]
    assert summarise(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]
    assert summarise(np.zeros((50, 50))) == "<array float64 shape=(50, 50)>"
    assert summarise(xr.Dataset({"v": ("x", [1.0])})) == "<Dataset v>"
