"""ptyxr: X-ray spectroscopic ptychography in labelled xarray Datasets.

From raw diffraction patterns at many X-ray energies to chemical-state and domain maps
(Uematsu et al., PCCP 2023). Importing ptyxr registers the ``.ptyxr`` Dataset accessor.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _pkg_version

try:
    __version__ = _pkg_version("ptyxr")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

from ptyxr import physics, schema  # noqa: E402
from ptyxr.accessor import PtyxrAccessor  # noqa: E402
from ptyxr.api import (  # noqa: E402
    combine_particles,
    open_dataset,
    open_reconstruction,
    open_scan,
    scan_from_arrays,
)
from ptyxr.schema import SchemaError  # noqa: E402

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
