"""Reading and writing ptyxr data: CXI/HDF5 scans, numpy arrays, exact netCDF storage.

* :func:`open_scan` / :func:`write_cxi` — CXI / NeXus-style HDF5 ↔ raw scan series (§1a)
* :func:`open_reconstruction` / :func:`write_reconstruction` — PtyPy / PyNX / PtyLab results ↔ §1b
* :func:`scan_from_arrays` — raw scan series from numpy arrays
* :func:`to_netcdf` / :func:`open_dataset` — atomic, exact netCDF round trip of any stage
* :func:`siemens_star`, :func:`cxi_example_path` — packaged real data
"""

from __future__ import annotations

from ptyxr.io.arrays import scan_from_arrays
from ptyxr.io.cxi import open_scan, write_cxi
from ptyxr.io.foreign import open_reconstruction, write_reconstruction
from ptyxr.io.netcdf import open_dataset, to_netcdf
from ptyxr.io.real_data import cxi_example_path, siemens_star

__all__ = [
    "cxi_example_path",
    "open_dataset",
    "open_reconstruction",
    "open_scan",
    "scan_from_arrays",
    "siemens_star",
    "to_netcdf",
    "write_cxi",
    "write_reconstruction",
]
