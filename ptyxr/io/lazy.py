"""Lazy, picklable reads of HDF5 datasets as dask arrays (large detector stacks).

A :class:`H5Dataset` holds only the file path, the dataset's name, shape and dtype; every
``__getitem__`` opens the file read-only, reads the requested slab and closes it. So the
object pickles (dask.distributed workers, processes), holds no open handle between reads,
and is safe from several threads (h5py serialises its calls behind one global lock; each
read uses its own file id). :func:`lazy_frames` wraps it in a dask array chunked per
(energy,) scan block so ``reconstruct`` pulls one energy at a time.

Compressed frames (bitshuffle/LZ4, Blosc, Zstd … as written by EIGER/Pilatus pipelines)
are decoded by the HDF5 filter plugins that :mod:`hdf5plugin` registers on import;
:func:`h5py_module` imports it whenever it is installed.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

#: Target size of one dask chunk of frames [bytes]: large enough that per-chunk overhead
#: (file open ≈ 0.1 ms, task scheduling ≈ 0.2 ms) is negligible, small enough for 2 cores.
CHUNK_BYTES = 64 * 2**20


def h5py_module() -> Any:
    """h5py, with the hdf5plugin compression filters registered when available."""
    import h5py

    try:  # registers bitshuffle/LZ4, Blosc, Zstd … filters with libhdf5 (no-op when absent)
        import hdf5plugin  # noqa: F401
    except ImportError:  # pragma: no cover - hdf5plugin is a dependency; kept optional for old installs
        pass
    return h5py


def filter_hint(err: BaseException) -> str:
    """Extra advice when an HDF5 read failed on a compression filter."""
    text = str(err).lower()
    if "filter" in text or "plugin" in text:
        try:
            import hdf5plugin  # noqa: F401
        except ImportError:
            return " The frames are compressed with an HDF5 filter plugin: `pip install hdf5plugin`."
        return " The frames use an HDF5 filter that hdf5plugin does not provide."
    return ""


class H5Dataset:
    """Read-only, picklable array-like view of one HDF5 dataset, read as float32.

    Parameters
    ----------
    path : str or path-like
        The HDF5 file.
    name : str
        Absolute name of the dataset inside the file (soft links resolved by the caller).
    shape : tuple of int
        Its shape (read once when the file was opened).
    """

    def __init__(self, path: str | os.PathLike, name: str, shape: tuple[int, ...]) -> None:
        self.path = os.fspath(path)
        self.name = str(name)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(np.float32)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        h5py = h5py_module()
        try:
            with h5py.File(self.path, "r") as f:
                return np.asarray(f[self.name][key], dtype=np.float32)
        except (OSError, RuntimeError, KeyError) as err:
            raise OSError(
                f"{self.path}: cannot read {self.name}{_fmt(key)} (file changed, truncated or moved since "
                f"open_scan?): {err}.{filter_hint(err)}"
            ) from err

    def __repr__(self) -> str:
        return f"H5Dataset({self.path!r}, {self.name!r}, shape={self.shape})"


def _fmt(key: Any) -> str:
    return f"[{key}]" if not isinstance(key, tuple) else "[" + ", ".join(str(k) for k in key) + "]"


def scan_chunk(n_scan: int, frame_shape: tuple[int, ...], chunk_bytes: int = CHUNK_BYTES) -> int:
    """Frames per dask chunk: about ``chunk_bytes`` of float32, at least 1, at most ``n_scan``."""
    per_frame = 4 * int(np.prod(frame_shape))
    return int(max(1, min(n_scan, chunk_bytes // max(per_frame, 1))))


def lazy_frames(path: str | os.PathLike, name: str, shape: tuple[int, ...]) -> Any:
    """Dask array (float32) of an HDF5 frame stack (scan, ny, nx) or (energy, scan, ny, nx).

    One chunk per energy and block of scan points (:func:`scan_chunk`); nothing is read
    until the array is computed.
    """
    import dask.array as da
    from dask.base import tokenize

    reader = H5Dataset(path, name, shape)
    lead = (1,) if len(shape) == 4 else ()
    chunks = (*lead, scan_chunk(shape[-3], shape[-2:]), *shape[-2:])
    meta = np.empty((0,) * len(shape), dtype=np.float32)
    token = "h5frames-" + tokenize(os.path.abspath(reader.path), name, os.path.getmtime(reader.path), shape)
    return da.from_array(reader, chunks=chunks, name=token, lock=False, asarray=True, meta=meta)
