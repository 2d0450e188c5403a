"""Provenance: each stage records its call in ``history`` and its parameters as JSON.

netCDF cannot store dicts, None or bool attrs, so parameters are serialised to one JSON
string attr per stage (``ptyxr_<stage>``).
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

import numpy as np
import xarray as xr

from ptyxr._version import __version__
from ptyxr.schema import ATTR_HISTORY

PARAMETER_ATTR_PREFIX = "ptyxr_"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, range)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 1000 else f"<array shape={value.shape}>"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def version() -> str:
    """ptyxr's version string."""
    return __version__


def record(ds: xr.Dataset, stage: str, parameters: dict[str, Any]) -> xr.Dataset:
    """Return ``ds`` with ``stage``'s call prepended to ``history`` and its parameters stored.

    Parameters
    ----------
    ds : xarray.Dataset
        The stage's output (modified attrs on a shallow copy).
    stage : str
        Stage name, e.g. ``"reconstruct"``.
    parameters : dict
        Keyword arguments of the call (converted to JSON; arrays summarised).
    """
    out = ds.copy()
    params = _jsonable(parameters)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    args = ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items())
    line = f"{stamp} ptyxr {version()}: {stage}({args})"
    previous = out.attrs.get(ATTR_HISTORY, "")
    out.attrs[ATTR_HISTORY] = line + ("\n" + previous if previous else "")
    out.attrs[PARAMETER_ATTR_PREFIX + stage] = json.dumps({**params, "ptyxr_version": version()})
    return out


def parameters(ds: xr.Dataset, stage: str) -> dict[str, Any]:
    """The parameters ``stage`` recorded in ``ds`` (KeyError if that stage never ran)."""
    return json.loads(ds.attrs[PARAMETER_ATTR_PREFIX + stage])
