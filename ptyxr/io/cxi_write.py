"""``write_cxi``: a raw scan Dataset as a CXI file (one entry per energy), see :mod:`ptyxr.io.cxi`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.constants as const
import xarray as xr

from ptyxr.io.cxi_layout import CXI_VERSION, ENTRY_ATTRS, NX_DEFINITION, _h5py
from ptyxr.io.netcdf import atomic_path
from ptyxr.schema import (
    ATTR_DETECTOR_DISTANCE,
    ATTR_DETECTOR_PIXEL_SIZE,
    DETECTOR_MASK,
    ENERGY,
    INTENSITY,
    MONITOR,
    PARTICLE,
    POSITION_X,
    POSITION_Y,
    PROBE_GUESS,
    SchemaError,
    validate_raw,
)

# ------------------------------------------------------------------------- writer
#: ``write_cxi(compression=...)`` names → h5py dataset keyword arguments (hdf5plugin filters).
COMPRESSIONS = ("bitshuffle-lz4", "blosc-lz4", "gzip")


def _compression(name: str | None) -> dict[str, Any]:
    if name is None:
        return {}
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    import hdf5plugin

    if name == "bitshuffle-lz4":  # the EIGER/DECTRIS filter
        return dict(hdf5plugin.Bitshuffle(cname="lz4"))
    if name == "blosc-lz4":
        return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))
    raise SchemaError(f"compression={name!r}; use None or one of {COMPRESSIONS}.")


def write_cxi(
    ds: xr.Dataset,
    path: str | os.PathLike,
    layout: str = "entries",
    overwrite: bool = False,
    compression: str | None = None,
) -> Path:
    """Write a raw scan series (DESIGN §1a) as a CXI file that :func:`open_scan` reads back.

    Parameters
    ----------
    ds : xarray.Dataset
        One particle's §1a Dataset (validated first); a lazy intensity is written one
        energy at a time.
    path : str or path-like
        Output file; written atomically (temporary file renamed when complete).
    layout : {"entries", "stacked", "nxcxi"}
        "entries": one ``entry_<n>`` per energy holding only its real scan points (NaN
        padding dropped). "stacked": one ``entry_1`` with 4-D frames (energy, scan, N, N),
        a 1-D energy array and (energy, scan, 3) translations, padding kept as NaN.
        "nxcxi": like "entries" but each entry follows NeXus NXcxi_ptycho (``definition``,
        ``NX_class`` attrs, positions in ``data_1/x``/``data_1/y``, energy in
        ``instrument_1/beam_1/energy``, mask as ``pixel_mask``, I0 in
        ``monitor_reference/data``), with no CXI ``translation`` dataset.
    overwrite : bool
        Replace an existing file.
    compression : {None, "bitshuffle-lz4", "blosc-lz4", "gzip"}
        Filter of the frames, one HDF5 chunk per frame; the first two need hdf5plugin
        (as beamline EIGER/Pilatus files do).

    Returns
    -------
    pathlib.Path
        The written file.

    Notes
    -----
    Energies are written in joules, translations as the sample translation (x, y, 0) =
    −(probe position), the mask as CXI flags (1 = bad pixel); ``probe_guess`` goes to
    ``instrument_1/source_1/probe``, ``monitor`` to ``instrument_1/monitor_1/data`` and
    the attrs ``particle``, ``condition``, ``probe_fwhm``, ``probe_defocus`` to HDF5
    attrs of each entry.
    """
    h5py = _h5py()
    if isinstance(ds, xr.Dataset) and PARTICLE in ds.dims:
        raise SchemaError(f"write_cxi writes one particle per file; select one with ds.isel({PARTICLE}=i).")
    validate_raw(ds)
    if layout not in ("entries", "stacked", "nxcxi"):
        raise ValueError(f"layout={layout!r}; use 'entries', 'stacked' or 'nxcxi'.")
    filters = _compression(compression)
    energy = np.asarray(ds[ENERGY].values, dtype=np.float64)
    intensity = ds[INTENSITY]
    pos_y = np.asarray(ds[POSITION_Y].values, dtype=np.float64)
    pos_x = np.asarray(ds[POSITION_X].values, dtype=np.float64)
    translation = np.stack([-pos_x, -pos_y, np.zeros_like(pos_x)], axis=-1)
    bad = None if DETECTOR_MASK not in ds else (~ds[DETECTOR_MASK].values).astype(np.uint32)
    probe = None if PROBE_GUESS not in ds else np.asarray(ds[PROBE_GUESS].values, dtype=np.complex64)
    monitor = None if MONITOR not in ds else np.asarray(ds[MONITOR].values, dtype=np.float64)
    distance = float(ds.attrs[ATTR_DETECTOR_DISTANCE])
    pixel = float(ds.attrs[ATTR_DETECTOR_PIXEL_SIZE])
    entry_attrs = {k: ds.attrs[k] for k in ENTRY_ATTRS if k in ds.attrs}
    nexus = layout == "nxcxi"

    def frames_of(i: int, keep: np.ndarray | None = None) -> np.ndarray:
        a = np.asarray(intensity.isel({ENERGY: i}).values, dtype=np.float32)
        return a if keep is None else a[keep]

    def entry(
        f: Any,
        name: str,
        data: Any,
        energy_j: Any,
        trans: np.ndarray,
        prb: np.ndarray | None,
        i0: np.ndarray | None,
    ) -> None:
        g = f.create_group(name)
        for key, value in entry_attrs.items():
            g.attrs[key] = value
        det = g.create_group("instrument_1/detector_1")
        if callable(data):  # (energy, scan, N, N) written one energy at a time: bounded memory
            shape = (energy.size, *intensity.shape[1:])
            dset = det.create_dataset("data", shape=shape, dtype=np.float32, chunks=(1, 1, *shape[2:]), **filters)
            for i in range(energy.size):
                dset[i] = data(i)
        else:
            det.create_dataset("data", data=data, chunks=(1, *data.shape[1:]), **filters)
        det["distance"] = distance
        det["x_pixel_size"] = pixel
        det["y_pixel_size"] = pixel
        if bad is not None:
            det["pixel_mask" if nexus else "mask"] = bad
        src = g.create_group("instrument_1/source_1")
        if nexus:
            g["definition"] = NX_DEFINITION
            beam = g.create_group("instrument_1/beam_1")
            beam["energy"] = energy_j / const.e
            beam["energy"].attrs["units"] = "eV"
            for group, cls in (
                (g, "NXentry"),
                (g["instrument_1"], "NXinstrument"),
                (det, "NXdetector"),
                (src, "NXsource"),
                (beam, "NXbeam"),
            ):
                group.attrs["NX_class"] = cls
        else:
            src["energy"] = energy_j
            src["energy"].attrs["units"] = "J"
        if prb is not None:
            src["probe"] = prb
        if i0 is not None:
            if nexus:
                mon = g.create_group("monitor_reference")
                mon.attrs["NX_class"] = "NXmonitor"
                mon["data"] = i0
            else:
                g.create_group("instrument_1/monitor_1")["data"] = i0
        data_1 = g.create_group("data_1")
        data_1["data"] = h5py.SoftLink(det["data"].name)
        if nexus:
            data_1.attrs["NX_class"] = "NXdata"
            data_1.attrs["signal"] = "data"
            data_1["x"] = trans[..., 0]
            data_1["y"] = trans[..., 1]
            data_1["x"].attrs["units"] = data_1["y"].attrs["units"] = "m"
        else:
            g.create_group("sample_1/geometry_1")["translation"] = trans
            data_1["translation"] = h5py.SoftLink(g["sample_1/geometry_1/translation"].name)

    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp, h5py.File(tmp, "w") as f:
        f["cxi_version"] = CXI_VERSION
        if layout in ("entries", "nxcxi"):
            for i, e in enumerate(energy):
                keep = np.isfinite(pos_y[i]) & np.isfinite(pos_x[i])
                entry(
                    f,
                    f"entry_{i + 1}",
                    frames_of(i, keep),
                    e * const.e,
                    translation[i][keep],
                    None if probe is None else probe[i],
                    None if monitor is None else monitor[i][keep],
                )
            f["number_of_entries"] = energy.size
        else:
            entry(f, "entry_1", frames_of, energy * const.e, translation, probe, monitor)
            f["number_of_entries"] = 1
    return path
