"""ptyxr: X-ray spectroscopic ptychography in labelled xarray Datasets.

From raw diffraction patterns at many X-ray energies to chemical-state and domain maps
(Uematsu et al., PCCP 2023). Importing ptyxr registers the ``.ptyxr`` Dataset accessor.

Top-level functions and submodules load on first use (Scientific Python SPEC 1): ``import
ptyxr`` stays light, yet ``ptyxr.open_scan`` *is* :func:`ptyxr.io.cxi.open_scan` (its own
signature and docstring) and ``ptyxr.simulate`` is reachable without importing it first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ptyxr import physics, schema  # noqa: E402
from ptyxr._version import __version__
from ptyxr.accessor import PtyxrAccessor  # noqa: E402
from ptyxr.schema import SchemaError  # noqa: E402

#: Top-level functions: name → module defining it (imported on first attribute access).
_FUNCTIONS = {
    "open_scan": "ptyxr.io.cxi",
    "scan_from_arrays": "ptyxr.io.arrays",
    "open_dataset": "ptyxr.io.netcdf",
    "open_reconstruction": "ptyxr.io.foreign",
    "combine_particles": "ptyxr.domains",
}
#: Submodules reachable as ``ptyxr.<name>`` without an explicit import.
_SUBMODULES = (
    "checks",
    "chemistry",
    "cli",
    "domains",
    "io",
    "optics",
    "pipeline",
    "plotting",
    "provenance",
    "reconstruct",
    "registration",
    "resolution",
    "simulate",
    "spectra",
    "widgets",
    "xanes",
)

if TYPE_CHECKING:  # static tools see the real objects
    from ptyxr import (  # noqa: F401
        checks,
        chemistry,
        cli,
        domains,
        io,
        optics,
        pipeline,
        plotting,
        provenance,
        reconstruct,
        registration,
        resolution,
        simulate,
        spectra,
        widgets,
        xanes,
    )
    from ptyxr.domains import combine_particles
    from ptyxr.io.arrays import scan_from_arrays
    from ptyxr.io.cxi import open_scan
    from ptyxr.io.foreign import open_reconstruction
    from ptyxr.io.netcdf import open_dataset


def __getattr__(name: str) -> Any:
    if name in _FUNCTIONS:
        value = getattr(importlib.import_module(_FUNCTIONS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'ptyxr' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_FUNCTIONS, *_SUBMODULES})


__all__ = [
    "PtyxrAccessor",
    "SchemaError",
    "__version__",
    "combine_particles",
    "open_dataset",
    "open_reconstruction",
    "open_scan",
    "physics",
    "scan_from_arrays",
    "schema",
]
