"""Top-level functions of the public API, imported lazily from their stage modules."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """A function that imports ``module.name`` on first call (keeps ``import ptyxr`` light)."""

    @functools.wraps(lambda *a, **k: None)
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"See :func:`{module}.{name}`."
    return call


open_scan = _lazy("ptyxr.io.cxi", "open_scan")
scan_from_arrays = _lazy("ptyxr.io.arrays", "scan_from_arrays")
open_dataset = _lazy("ptyxr.io.netcdf", "open_dataset")
open_reconstruction = _lazy("ptyxr.io.foreign", "open_reconstruction")
combine_particles = _lazy("ptyxr.domains", "combine_particles")
