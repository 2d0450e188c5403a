"""The ``.ptyxr`` Dataset accessor: thin, stateless, one line per stage.

Each attribute is a stage function from a stage module bound to the Dataset, with the
stage's own signature and docstring (``help(ds.ptyxr.reconstruct)`` shows them).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any

import xarray as xr

from ptyxr import checks


class _Stage:
    """Descriptor binding ``module.function(ds, ...)`` as ``ds.ptyxr.<name>(...)``."""

    def __init__(self, module: str, function: str) -> None:
        self.module, self.function = module, function

    def __get__(self, accessor: Any, owner: type) -> Any:
        func = getattr(importlib.import_module(self.module), self.function)
        if accessor is None:
            return func
        obj = accessor._obj
        signature = inspect.signature(functools.partial(func, obj))  # without the Dataset argument
        takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        names = set(signature.parameters)

        @functools.wraps(func)
        def bound(*args: Any, **kwargs: Any) -> Any:
            if not takes_any and not names.issuperset(kwargs):  # a typo gets a "did you mean", not a bare TypeError
                checks.check_keywords(func, kwargs, f"ds.ptyxr.{self.function}")
            return func(obj, *args, **kwargs)

        del bound.__wrapped__  # else inspect follows it back to the unbound signature
        bound.__signature__ = signature  # type: ignore[attr-defined]
        bound.func = func  # type: ignore[attr-defined]  # the stage function, as functools.partial exposes it
        return bound


@xr.register_dataset_accessor("ptyxr")
class PtyxrAccessor:
    """ptyxr stages on a Dataset: ``ds.ptyxr.reconstruct().ptyxr.align().ptyxr.spectra()`` …"""

    def __init__(self, ds: xr.Dataset) -> None:
        self._obj = ds

    reconstruct = _Stage("ptyxr.reconstruct.api", "reconstruct")
    align = _Stage("ptyxr.spectra", "align")
    spectra = _Stage("ptyxr.spectra", "spectra")
    fit_xanes = _Stage("ptyxr.xanes.fit", "fit_xanes")
    chemical_state = _Stage("ptyxr.chemistry", "chemical_state")
    cluster = _Stage("ptyxr.domains", "cluster")
    elbow = _Stage("ptyxr.domains", "elbow")
    choose_k = _Stage("ptyxr.domains", "choose_k")
    resolution = _Stage("ptyxr.resolution", "resolution")
    to_netcdf = _Stage("ptyxr.io.netcdf", "to_netcdf")
    validate = _Stage("ptyxr.schema", "validate_raw")

    @property
    def plot(self) -> Any:
        """Paper figures and interactive views of this Dataset (``ds.ptyxr.plot.chemical_maps()`` …)."""
        from ptyxr.plotting.methods import PlotMethods

        return PlotMethods(self._obj)
