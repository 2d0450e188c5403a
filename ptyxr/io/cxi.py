"""CXI / NeXus-style HDF5 ptychography files ↔ raw scan series (DESIGN §1a).

Layout read (per ``entry_<n>``; CXI 1.6, https://www.cxidb.org/cxi.html):

============================================  =====================================
``data_1/data`` or ``instrument_1/detector_1/data``  frames (scan, ny, nx), or (energy, scan, ny, nx)
``sample_1/geometry_1/translation`` or ``data_1/translation``  sample translation (scan, 3) [m], columns x, y, z
                                                    (or (energy, scan, 3) with 4-D frames)
``instrument_1/source_1/energy``              photon energy [J] (scalar, or 1-D with 4-D frames);
                                              ``wavelength`` [m] is used if energy is absent
``instrument_1/detector_1/distance``          sample–detector distance [m]
``instrument_1/detector_1/x_pixel_size``, ``y_pixel_size``  pixel pitch [m]
``instrument_1/detector_1/mask`` (optional)  nonzero = bad pixel (CXI bit flags)
``instrument_1/source_1/probe`` or ``illumination`` (optional)  initial probe
``instrument_1/monitor_1/data`` (optional)   incident flux I0 per frame → ``monitor``
============================================  =====================================

NeXus ``NXcxi_ptycho`` entries (``definition`` = "NXcxi_ptycho") are read with its names
too: raster frames (npts_x, npts_y, ny, nx) flattened in C order, positions from
``data_1/x`` and ``data_1/y`` (per point, or the raster's 1-D axes), energy from
``instrument_1/beam_1/energy``, mask from ``instrument_1/detector_1/pixel_mask``, I0
from ``monitor_reference/data``.

A ``units`` attr on a dataset (``J``/``eV``/``keV``, ``m``/``mm``/``um``/``nm``) overrides
the CXI default unit. Several entries (``entry_1``, ``entry_2`` …), and several files
(a list or glob: one scan per energy, as beamlines write them), are several energies:
they are sorted by energy and their scans padded with NaN positions (and all-NaN
frames) to a common length. Frames compressed with HDF5 filter plugins (bitshuffle/LZ4,
Blosc …) are decoded through :mod:`hdf5plugin`; with ``lazy`` they stay on disk as a dask
array (:mod:`ptyxr.io.lazy`) until computed.

Conventions applied: the probe position is the negative of the stored *sample*
translation (``flip_translation=True``), position_y from the translation's y column and
position_x from its x column; frames are used as stored (rows along y), with optional
``transpose``/``flip_y``/``flip_x`` for detectors mounted otherwise, applied to frames and
mask (not to a stored probe, which lives in real space). Rectangular frames are not
silently cropped: pass ``crop=N`` (and ``center=`` if the zero frequency is not at the
frame centre) to cut an N×N window whose pixel (N//2, N//2) is the zero frequency.

Every problem with the file's content raises :class:`ptyxr.SchemaError`, an unreadable
file :class:`OSError`; both name the file and what is wrong.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.constants as const
import xarray as xr

from ptyxr import checks as _checks
from ptyxr import provenance
from ptyxr.io.arrays import build_raw
from ptyxr.io.lazy import filter_hint, h5py_module, lazy_frames
from ptyxr.io.netcdf import atomic_path
from ptyxr.schema import (
    ATTR_CONDITION,
    ATTR_DETECTOR_DISTANCE,
    ATTR_DETECTOR_PIXEL_SIZE,
    ATTR_PARTICLE,
    ATTR_PROBE_DEFOCUS,
    ATTR_PROBE_FWHM,
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

DATA_PATHS = ("data_1/data", "instrument_1/detector_1/data")
TRANSLATION_PATHS = ("sample_1/geometry_1/translation", "data_1/translation")
ENERGY_PATH = "instrument_1/source_1/energy"
#: Further places of the photon energy: NeXus NXbeam / NXmonochromator fields (NXcxi_ptycho).
ENERGY_PATHS = (
    ENERGY_PATH,
    "instrument_1/beam_1/energy",
    "instrument_1/beam_1/incident_energy",
    "instrument_1/monochromator_1/energy",
)
WAVELENGTH_PATH = "instrument_1/source_1/wavelength"
DISTANCE_PATH = "instrument_1/detector_1/distance"
X_PIXEL_PATH = "instrument_1/detector_1/x_pixel_size"
Y_PIXEL_PATH = "instrument_1/detector_1/y_pixel_size"
MASK_PATH = "instrument_1/detector_1/mask"
#: Bad-pixel masks: CXI ``mask``, NeXus NXdetector ``pixel_mask`` (nonzero = bad, both).
MASK_PATHS = (MASK_PATH, "instrument_1/detector_1/pixel_mask")
#: Incident-flux monitor (I0) per frame: NXcxi_ptycho ``monitor_reference``, CXI/NeXus monitors.
MONITOR_PATHS = (
    "monitor_reference/data",
    "instrument_1/monitor_1/data",
    "monitor_1/data",
    "data_1/monitor",
)
#: NXcxi_ptycho positions of the scan points (NXdata axes), metres unless a units attr says otherwise.
NX_X_PATH, NX_Y_PATH = "data_1/x", "data_1/y"
NX_DEFINITION = "NXcxi_ptycho"
PROBE_PATHS = ("instrument_1/source_1/probe", "instrument_1/source_1/illumination")
#: Dataset attrs stored as HDF5 attrs of each entry group by :func:`write_cxi` and read back.
ENTRY_ATTRS = (ATTR_PARTICLE, ATTR_CONDITION, ATTR_PROBE_FWHM, ATTR_PROBE_DEFOCUS)
#: Dataset attr recording the file a scan was read from.
ATTR_SOURCE = "source"
CXI_VERSION = 160

#: ``open_scan(lazy=None)`` reads frames lazily when they would take more memory than this [bytes].
LAZY_BYTES = 512 * 2**20

_ENTRY = re.compile(r"^entry_(\d+)$")
_ENERGY_UNITS = {"j": 1.0 / const.e, "ev": 1.0, "kev": 1e3}
_LENGTH_UNITS = {"m": 1.0, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "micron": 1e-6, "nm": 1e-9}
#: Plausible photon energies [eV]; outside, the stored unit is almost surely not what we assumed.
_ENERGY_RANGE = (10.0, 1e6)


@dataclass
class _Entry:
    name: str
    energy: np.ndarray  # (n_E,) eV
    frames: Any  # (n_E, n_scan, ny, nx) float32, numpy or dask
    translation: np.ndarray  # (n_E, n_scan, 3) m
    distance: float | None
    pixel_size: float | None
    valid: np.ndarray | None  # (ny, nx) bool, True = valid
    probe: np.ndarray | None  # (n_E, py, px) complex
    attrs: dict[str, Any]
    monitor: np.ndarray | None = None  # (n_E, n_scan) counts


# ------------------------------------------------------------------ low-level reads
def _h5py() -> Any:
    return h5py_module()


def _find(group: Any, paths: Sequence[str]) -> tuple[str, Any] | tuple[None, None]:
    """First of ``paths`` present in ``group`` as an HDF5 dataset (soft links followed)."""
    h5py = _h5py()
    for path in paths:
        try:
            obj = group.get(path)
        except (KeyError, OSError, RuntimeError, ValueError):  # dangling link, broken object header
            obj = None
        if isinstance(obj, h5py.Dataset):
            return path, obj
        if obj is not None:
            raise SchemaError(f"{group.name}/{path} is a {type(obj).__name__}, expected an HDF5 dataset.")
    return None, None


def _read(dset: Any, what: str, kinds: str = "iuf") -> np.ndarray:
    """Read an HDF5 dataset as numpy, checking its dtype kind; I/O failures become OSError."""
    if dset.dtype.kind not in kinds:
        raise SchemaError(f"{dset.name} ({what}) has dtype {dset.dtype}; expected numbers.")
    try:
        return np.asarray(dset[()])
    except (OSError, RuntimeError) as err:
        raise OSError(f"cannot read {dset.name} ({what}): {err}") from err
    except (TypeError, ValueError) as err:
        raise SchemaError(f"{dset.name} ({what}) cannot be read as numbers: {err}") from err


def _widen(a: np.ndarray) -> np.ndarray:
    """float64 copy of metadata; float32 values go through their shortest decimal repr, so a
    stored float32 1.12 m becomes 1.12, not 1.1200000047683716 (the value the writer meant)."""
    if a.dtype == np.float32 and a.size <= 1_000_000:
        return np.array([float(str(v)) for v in a.reshape(-1)], dtype=np.float64).reshape(a.shape)
    return a.astype(np.float64)


def _units(dset: Any) -> str | None:
    try:
        value = dset.attrs.get("units")
    except (OSError, RuntimeError, KeyError, TypeError):
        return None
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value.strip().lower() if isinstance(value, str) else None


def _scale(dset: Any, table: dict[str, float], default: str, what: str) -> float:
    unit = _units(dset) or default
    if unit not in table:
        raise SchemaError(f"{dset.name} ({what}) has units {unit!r}; ptyxr understands {sorted(table)}.")
    return table[unit]


def _scalar(group: Any, path: str, what: str, table: dict[str, float], default_unit: str) -> float | None:
    _, dset = _find(group, (path,))
    if dset is None:
        return None
    raw = _read(dset, what)
    if raw.size != 1:
        raise SchemaError(f"{dset.name} ({what}) should be a scalar, got shape {raw.shape}.")
    value = float(_widen(raw).reshape(-1)[0]) * _scale(dset, table, default_unit, what)
    if not (np.isfinite(value) and value > 0):
        raise SchemaError(f"{dset.name} ({what}) must be a positive finite number, got {value!r}.")
    return value


def _attr_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------- one entry
def _is_nxcxi(group: Any) -> bool:
    """True when the entry declares the NeXus NXcxi_ptycho application definition."""
    try:
        value = group.get("definition")
        value = value[()] if value is not None else group.attrs.get("definition")
    except (OSError, RuntimeError, KeyError, TypeError, ValueError):
        return False
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return isinstance(value, str) and value.strip() == NX_DEFINITION


def _frames(path: Path, dset: Any, lazy: bool) -> Any:
    """The stored frames as float32: a lazy dask array or read into memory."""
    if dset.dtype.kind not in "iuf":
        raise SchemaError(f"{dset.name} (frames) has dtype {dset.dtype}; expected numbers.")
    if lazy:
        return lazy_frames(path, dset.name, dset.shape)
    try:
        return _read(dset, "frames").astype(np.float32)
    except OSError as err:
        raise OSError(f"{err}{filter_hint(err)}") from err


def _nx_translation(group: Any, n_scan: int, raster: tuple[int, int] | None) -> np.ndarray | None:
    """(n_scan, 3) sample translation from NXcxi_ptycho ``data_1/x`` and ``data_1/y`` [m]."""
    _, x_dset = _find(group, (NX_X_PATH,))
    _, y_dset = _find(group, (NX_Y_PATH,))
    if x_dset is None or y_dset is None:
        return None
    x = _widen(_read(x_dset, "x positions")) * _scale(x_dset, _LENGTH_UNITS, "m", "x positions")
    y = _widen(_read(y_dset, "y positions")) * _scale(y_dset, _LENGTH_UNITS, "m", "y positions")
    if x.size == n_scan and y.size == n_scan:
        x, y = x.reshape(-1), y.reshape(-1)
    elif raster is not None and x.ndim == 1 and y.ndim == 1 and (x.size, y.size) == raster:
        x, y = (a.reshape(-1) for a in np.meshgrid(x, y, indexing="ij"))  # raster data is (npts_x, npts_y, …)
    else:
        expect = f"({n_scan},)" + ("" if raster is None else f" or ({raster[0]},) and ({raster[1]},)")
        raise SchemaError(
            f"{x_dset.name} / {y_dset.name} have shapes {x_dset.shape} / {y_dset.shape}; expected {expect}."
        )
    return np.stack([x, y, np.zeros_like(x)], axis=-1)


def _read_entry(
    group: Any,
    energy_override: np.ndarray | None,
    distance: float | None,
    pixel_size: float | None,
    path: Path | None = None,
    lazy: bool = False,
) -> _Entry:
    name = group.name.lstrip("/")
    _, dset = _find(group, DATA_PATHS)
    if dset is None:
        raise SchemaError(
            f"{name} has no diffraction frames: expected a dataset at one of {[f'{name}/{p}' for p in DATA_PATHS]}."
        )
    if dset.ndim not in (3, 4):
        raise SchemaError(f"{dset.name} has shape {dset.shape}; expected (scan, ny, nx) or (energy, scan, ny, nx).")
    # NXcxi_ptycho raster scans store (npts_x, npts_y, ny, nx); CXI 4-D frames are (energy, scan, ny, nx)
    raster = tuple(int(v) for v in dset.shape[:2]) if dset.ndim == 4 and _is_nxcxi(group) else None
    stacked = dset.ndim == 4 and raster is None
    if 0 in dset.shape:
        raise SchemaError(f"{dset.name} holds no frames (shape {dset.shape}).")
    frames = _frames(path, dset, lazy)  # type: ignore[arg-type]  # None: no file to reopen (in memory)
    if raster is not None:
        frames = frames.reshape(raster[0] * raster[1], *dset.shape[2:])
    if not stacked:
        frames = frames[None]
    n_energy, n_scan = (int(v) for v in frames.shape[:2])

    # ---- energy [eV]
    if energy_override is not None:
        energy = energy_override
    else:
        _, e_dset = _find(group, ENERGY_PATHS)
        if e_dset is not None:
            energy = _widen(_read(e_dset, "photon energy")).reshape(-1)
            energy = energy * _scale(e_dset, _ENERGY_UNITS, "j", "photon energy")
            where = e_dset.name
        else:
            _, w_dset = _find(group, (WAVELENGTH_PATH,))
            if w_dset is None:
                raise SchemaError(
                    f"{name} has no photon energy (none of {list(ENERGY_PATHS)}) and no {WAVELENGTH_PATH}; "
                    "pass energy=... [eV]."
                )
            wl = _widen(_read(w_dset, "wavelength")).reshape(-1)
            wl = wl * _scale(w_dset, _LENGTH_UNITS, "m", "wavelength")
            with np.errstate(divide="ignore", invalid="ignore"):
                energy = const.h * const.c / const.e / wl
            where = w_dset.name
        if energy.size != n_energy:
            raise SchemaError(f"{where} holds {energy.size} value(s) for {n_energy} energies of {dset.name}.")
        lo, hi = _ENERGY_RANGE
        if not (np.all(np.isfinite(energy)) and np.all((energy > lo) & (energy < hi))):
            raise SchemaError(
                f"{where} gives photon energies {energy.tolist()[:5]} eV, outside {lo:g}–{hi:g} eV: "
                "wrong units? CXI stores joules; set a 'units' attr or pass energy=... [eV]."
            )
    if stacked and energy.size > 1 and np.any(np.diff(energy) <= 0):
        raise SchemaError(
            f"{name}: the energies of the stacked frames {energy.tolist()[:8]} are not strictly "
            "increasing (unsorted or duplicate); fix the file or pass energy=... [eV]."
        )

    # ---- translations [m] (x, y, z)
    _, t_dset = _find(group, TRANSLATION_PATHS)
    if t_dset is None:
        translation = _nx_translation(group, n_scan, raster)  # type: ignore[arg-type]  # 2 values
        if translation is None:
            raise SchemaError(
                f"{name} has no sample translations: expected one of "
                f"{[f'{name}/{p}' for p in TRANSLATION_PATHS]} (scan, 3), or {name}/{NX_X_PATH} and "
                f"{name}/{NX_Y_PATH} (NXcxi_ptycho), in metres."
            )
        t_name = f"{name}/{NX_X_PATH}"
        t_shape = translation.shape
    else:
        translation = _widen(_read(t_dset, "sample translation"))
        translation = translation * _scale(t_dset, _LENGTH_UNITS, "m", "sample translation")
        t_name, t_shape = t_dset.name, t_dset.shape
        if raster is not None and translation.ndim == 3 and translation.shape[:2] == raster:
            translation = translation.reshape(n_scan, -1)
    if translation.ndim == 2 and stacked:
        translation = np.broadcast_to(translation, (n_energy, *translation.shape))
    elif translation.ndim == 2:
        translation = translation[None]
    if translation.ndim != 3 or translation.shape[:2] != (n_energy, n_scan) or translation.shape[2] < 2:
        raise SchemaError(
            f"{t_name} has shape {t_shape}; expected ({n_scan}, 3) (x, y, z per frame of "
            f"{dset.name}) or ({n_energy}, {n_scan}, 3)."
        )
    if np.isinf(translation).any():
        raise SchemaError(f"{t_name} holds ±inf translations.")

    # ---- detector geometry [m]
    dist = distance if distance is not None else _scalar(group, DISTANCE_PATH, "detector distance", _LENGTH_UNITS, "m")
    if pixel_size is not None:
        pix = pixel_size
    else:
        px = _scalar(group, X_PIXEL_PATH, "x pixel size", _LENGTH_UNITS, "m")
        py = _scalar(group, Y_PIXEL_PATH, "y pixel size", _LENGTH_UNITS, "m")
        if px is not None and py is not None and not np.isclose(px, py, rtol=1e-6, atol=0):
            raise SchemaError(
                f"{name}: x_pixel_size {px:g} m differs from y_pixel_size {py:g} m; ptyxr needs "
                "square pixels (rebin the frames, then pass pixel_size=...)."
            )
        pix = px if px is not None else py  # type: ignore[assignment]  # None is reported below

    # ---- mask: CXI marks bad pixels with nonzero bits
    valid = None
    _, m_dset = _find(group, MASK_PATHS)
    if m_dset is not None:
        mask = _read(m_dset, "detector mask", kinds="biuf")
        if mask.shape != tuple(frames.shape[2:]):
            raise SchemaError(
                f"{m_dset.name} has shape {mask.shape}; expected the frame shape {tuple(frames.shape[2:])}."
            )
        valid = mask == 0

    # ---- incident flux monitor (I0) per frame
    monitor = None
    _, i0_dset = _find(group, MONITOR_PATHS)
    if i0_dset is not None:
        monitor = _widen(_read(i0_dset, "monitor (I0)"))
        if monitor.size == n_energy * n_scan:
            monitor = monitor.reshape(n_energy, n_scan)
        else:
            raise SchemaError(
                f"{i0_dset.name} (monitor) has shape {i0_dset.shape}; expected one value per frame of "
                f"{dset.name}, ({n_scan},) or ({n_energy}, {n_scan})."
            )
        if not np.all(np.isfinite(monitor) & (monitor > 0)):
            raise SchemaError(f"{i0_dset.name} (monitor) must hold positive finite counts; got {monitor.min():g}.")

    probe = None
    _, p_dset = _find(group, PROBE_PATHS)
    if p_dset is not None:
        probe = _read(p_dset, "probe", kinds="iufc").astype(np.complex64)
        if probe.ndim == 2:
            probe = np.broadcast_to(probe, (n_energy, *probe.shape))
        if probe.ndim != 3 or probe.shape[0] != n_energy:
            raise SchemaError(f"{p_dset.name} has shape {p_dset.shape}; expected (py, px) or ({n_energy}, py, px).")

    attrs = {}
    for key in ENTRY_ATTRS:
        if key in group.attrs:
            attrs[key] = _attr_value(group.attrs[key])
    return _Entry(
        name,
        np.asarray(energy, dtype=np.float64).reshape(-1),
        frames,
        translation,
        dist,
        pix,
        valid,
        probe,
        attrs,
        monitor,
    )


# ----------------------------------------------------------------- frame geometry
def _orient(a: np.ndarray, transpose: bool, flip_y: bool, flip_x: bool) -> np.ndarray:
    """Re-orient detector-plane arrays (last two axes): transpose first, then flips."""
    if transpose:
        a = np.swapaxes(a, -1, -2)
    if flip_y:
        a = a[..., ::-1, :]
    if flip_x:
        a = a[..., :, ::-1]
    return a


def _crop_window(shape: tuple[int, int], crop: int | None, center: Sequence[int] | None) -> tuple[slice, slice]:
    n_y, n_x = shape
    if crop is None:
        if n_y != n_x:
            raise SchemaError(
                f"frames are {n_y}x{n_x}, not square; pass crop=N (e.g. crop={min(n_y, n_x)}) and, "
                "if the zero frequency is not at the frame centre, center=(row, col)."
            )
        if center is None:
            return slice(None), slice(None)
        crop = n_y
    crop = int(crop)
    cy, cx = (n_y // 2, n_x // 2) if center is None else (int(center[0]), int(center[1]))
    y0, x0 = cy - crop // 2, cx - crop // 2
    if crop < 1 or y0 < 0 or x0 < 0 or y0 + crop > n_y or x0 + crop > n_x:
        raise SchemaError(f"a {crop}x{crop} window centred on pixel ({cy}, {cx}) does not fit in {n_y}x{n_x} frames.")
    return slice(y0, y0 + crop), slice(x0, x0 + crop)


def _entry_names(f: Any, entry: Any) -> list[str]:
    names = sorted((k for k in f.keys() if _ENTRY.match(k)), key=lambda k: int(_ENTRY.match(k).group(1)))  # type: ignore[union-attr]
    if entry is None:
        if not names:
            raise SchemaError(f"no entry_<n> group found (top level holds {sorted(f.keys())}).")
        return names
    wanted = [entry] if isinstance(entry, (str, int, np.integer)) else list(entry)
    out = []
    for item in wanted:
        key = f"entry_{int(item)}" if isinstance(item, (int, np.integer)) else str(item).strip("/")
        if key not in names:
            raise SchemaError(f"entry {item!r} not found; the file has {names}.")
        out.append(key)
    return out


def _with_file(path: Path, func: Any, *args: Any) -> Any:
    """Call ``func``; a SchemaError it raises names ``path`` (several files are read at once)."""
    try:
        return func(*args)
    except SchemaError as err:
        text = str(err)
        raise SchemaError(text if text.startswith(str(path)) else f"{path}: {text}") from None


def _same(values: list[float | None], what: str, argument: str) -> float:
    present = [v for v in values if v is not None]
    if len(present) < len(values):
        raise SchemaError(f"the {what} is missing from the file; pass {argument}=... [m].")
    if not np.allclose(present, present[0], rtol=1e-6, atol=0):
        raise SchemaError(f"entries disagree on the {what} ({sorted(set(present))}); pass {argument}=... to use one.")
    return float(present[0])


def _assemble(
    files: list[tuple[Path, Any]],
    entry: Any,
    flip_translation: bool,
    energy: Any,
    transpose: bool,
    flip_y: bool,
    flip_x: bool,
    distance: float | None,
    pixel_size: float | None,
    crop: int | None,
    center: Sequence[int] | None,
    particle: str | None,
    condition: str | None,
    probe_fwhm: float | None,
    probe_defocus: float | None,
    lazy: bool | None = False,
) -> xr.Dataset:
    for value, arg in ((distance, "distance"), (pixel_size, "pixel_size")):
        if value is not None and not (np.isfinite(float(value)) and float(value) > 0):
            raise SchemaError(f"{arg} must be a positive number [m], got {value!r}.")
    groups, where = [], []  # where: the file of each group, for messages
    names = []
    for path, f in files:
        for n in _with_file(path, _entry_names, f, entry):
            g = f[n]
            if not isinstance(g, _h5py().Group):
                raise SchemaError(f"{path}: {n} is not an HDF5 group.")
            groups.append(g)
            where.append(path)
            names.append(n if len(files) == 1 else f"{path.name}:{n}")
    if lazy is None:  # auto: lazy when the frames would take more than LAZY_BYTES of memory
        total = 0
        for g in groups:
            _, d = _find(g, DATA_PATHS)
            total += 0 if d is None else 4 * int(np.prod(d.shape))
        lazy = total > LAZY_BYTES

    # energy override: one value per energy, in entry order
    overrides: list[np.ndarray | None] = [None] * len(groups)
    if energy is not None:
        values = np.atleast_1d(np.asarray(energy, dtype=np.float64))
        counts = []
        for g in groups:
            _, d = _find(g, DATA_PATHS)
            counts.append(d.shape[0] if d is not None and d.ndim == 4 and not _is_nxcxi(g) else 1)
        if values.size != sum(counts):
            raise SchemaError(f"energy= gives {values.size} value(s) for {sum(counts)} energies in {names}.")
        if not (np.all(np.isfinite(values)) and np.all(values > 0)):
            raise SchemaError(f"energy= must hold positive finite energies [eV], got {values.tolist()[:5]}.")
        overrides = list(np.split(values, np.cumsum(counts)[:-1]))

    entries = [
        _with_file(p, _read_entry, g, o, distance, pixel_size, p, lazy)
        for p, g, o in zip(where, groups, overrides, strict=True)
    ]
    shapes = {tuple(e.frames.shape[2:]) for e in entries}
    if len(shapes) > 1:
        raise SchemaError(f"entries have different frame shapes {sorted(shapes)}; read them separately.")
    dist = _same([e.distance for e in entries], "detector distance (instrument_1/detector_1/distance)", "distance")
    pix = _same([e.pixel_size for e in entries], "detector pixel size (x_pixel_size/y_pixel_size)", "pixel_size")

    # ---- energies: concatenate, sort (entries need not be numbered by energy), no duplicates
    energy_all = np.concatenate([e.energy for e in entries])
    order = np.argsort(energy_all, kind="stable")
    energy_sorted = energy_all[order]
    if np.any(np.diff(energy_sorted) <= 0):
        dup = energy_sorted[1:][np.diff(energy_sorted) <= 0]
        raise SchemaError(
            f"duplicate photon energies {dup.tolist()[:5]} eV across {names}; select entries with "
            "entry=[...] or pass distinct energy=... values."
        )

    # ---- pad scans to a common length with NaN positions and all-NaN frames
    xp: Any
    if lazy:
        import dask.array as xp
    else:
        xp = np
    n_scan = max(e.frames.shape[1] for e in entries)
    frames, trans, probes, monitors = [], [], [], []
    for e in entries:
        pad = n_scan - e.frames.shape[1]
        frames.append(xp.pad(e.frames, ((0, 0), (0, pad), (0, 0), (0, 0)), constant_values=np.nan) if pad else e.frames)
        trans.append(np.pad(e.translation, ((0, 0), (0, pad), (0, 0)), constant_values=np.nan))
        probes.append(e.probe)
        if e.monitor is not None:
            monitors.append(np.pad(e.monitor, ((0, 0), (0, pad)), constant_values=np.nan))
    frames_all = xp.concatenate(frames) if len(frames) > 1 else frames[0]
    if np.any(order != np.arange(order.size)):
        frames_all = frames_all[order]
    trans_all = np.concatenate(trans)[order]
    monitor_all = None
    if monitors:
        if len(monitors) < len(entries):
            raise SchemaError(
                f"only some entries hold a monitor (I0) at {list(MONITOR_PATHS)}; ptyxr needs one for every "
                "energy or none."
            )
        monitor_all = np.concatenate(monitors)[order]
    valid = None
    for e in entries:
        if e.valid is not None:  # a pixel bad in any entry is invalid (one detector_mask for all energies)
            valid = e.valid if valid is None else valid & e.valid
    probe_all = None
    if any(p is not None for p in probes):
        if any(p is None for p in probes) or len({p.shape[1:] for p in probes}) > 1:
            raise SchemaError("only some entries hold a probe, or their shapes differ; ptyxr needs one per energy.")
        probe_all = np.concatenate(probes)[order]

    # ---- detector orientation and crop
    frames_all = _orient(frames_all, transpose, flip_y, flip_x)
    valid = None if valid is None else _orient(valid, transpose, flip_y, flip_x)
    win = _crop_window(tuple(frames_all.shape[2:]), crop, center)
    frames_all = frames_all[..., win[0], win[1]]
    if not lazy:
        frames_all = np.ascontiguousarray(frames_all)
    if valid is not None:
        valid = np.ascontiguousarray(valid[win[0], win[1]])
    if probe_all is not None and probe_all.shape[1:] != frames_all.shape[2:]:
        raise SchemaError(f"the stored probe is {probe_all.shape[1:]} but the frames are {frames_all.shape[2:]}.")

    # ---- intensity checks; detector flags (negative, inf) under bad pixels become NaN
    if lazy:
        # no value checks here (they would read every frame): reconstruct checks a lazy
        # intensity blockwise; detector flags under the mask still become NaN, lazily
        if valid is not None:
            flagged = ~valid & (xp.isinf(frames_all) | (frames_all < 0))
            frames_all = xp.where(flagged, np.float32(np.nan), frames_all)
    elif np.isinf(frames_all).any() or (frames_all < 0).any():
        if valid is not None:
            flagged = ~valid & (np.isinf(frames_all) | (frames_all < 0))
            frames_all = np.where(flagged, np.float32(np.nan), frames_all)
        if np.isinf(frames_all).any():
            raise SchemaError("the frames hold ±inf at valid pixels; mark them in the detector mask.")
        if (frames_all < 0).any():
            raise SchemaError(
                f"the frames hold negative counts (min {np.nanmin(frames_all):g}) at valid pixels; "
                "mark them in the detector mask or subtract the dark level and clip at zero."
            )

    # ---- probe positions [m]: CXI stores the sample translation (x, y, z)
    sign = -1.0 if flip_translation else 1.0
    pos_y, pos_x = sign * trans_all[..., 1], sign * trans_all[..., 0]

    attrs: dict[str, Any] = {}
    for e in entries:
        for key, value in e.attrs.items():
            attrs.setdefault(key, value)
    path = files[0][0]
    source = "; ".join(str(p) for p, _ in files)
    return build_raw(
        frames_all,
        pos_y,
        pos_x,
        energy_sorted,
        dist,
        pix,
        detector_mask=valid,
        probe_guess=probe_all,
        particle=particle if particle is not None else attrs.get(ATTR_PARTICLE, path.stem),
        condition=condition if condition is not None else attrs.get(ATTR_CONDITION),
        probe_fwhm=probe_fwhm if probe_fwhm is not None else attrs.get(ATTR_PROBE_FWHM),
        probe_defocus=probe_defocus if probe_defocus is not None else attrs.get(ATTR_PROBE_DEFOCUS),
        monitor=monitor_all,
        extra_attrs={ATTR_SOURCE: source},
    )


def _expand_paths(path: Any) -> list[Path]:
    """One file, a list of files, or a glob pattern → the files, sorted for a pattern."""
    if isinstance(path, (list, tuple)):
        paths = [Path(p) for p in path]
        if not paths:
            raise SchemaError("open_scan got an empty list of files; pass at least one CXI/HDF5 file.")
        return paths
    path = Path(path)
    if not path.exists() and any(c in str(path) for c in "*?["):
        matches = sorted(Path(p) for p in glob.glob(str(path)))
        if not matches:
            raise FileNotFoundError(f"no file matches the pattern {path}")
        return matches
    return [path]


def open_scan(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    entry: str | int | Sequence[str | int] | None = None,
    flip_translation: bool = True,
    energy: float | Sequence[float] | None = None,
    transpose: bool = False,
    flip_y: bool = False,
    flip_x: bool = False,
    distance: float | None = None,
    pixel_size: float | None = None,
    crop: int | None = None,
    center: tuple[int, int] | None = None,
    particle: str | None = None,
    condition: str | None = None,
    probe_fwhm: float | None = None,
    probe_defocus: float | None = None,
    lazy: bool | None = None,
) -> xr.Dataset:
    """Read CXI / NeXus (NXcxi_ptycho) HDF5 ptychography files as a raw scan series (DESIGN §1a).

    Parameters
    ----------
    path : str, path-like, sequence of them, or glob pattern
        One ``.cxi`` / ``.h5`` / ``.nxs`` file (layout in the module docstring), a list of
        files, or a pattern such as ``"scans/P1_*.h5"`` (sorted matches). Several files are
        read as one series: typically one scan per energy and file, energies read from each
        file and sorted, each energy's positions kept, shorter scans padded (§1a).
    entry : str, int or sequence, optional
        Entries to read (``"entry_2"``, ``2`` or a list), in every file; default all
        ``entry_<n>`` groups, one or more energies each.
    flip_translation : bool
        The file stores the sample translation; the probe position is its negative
        (default). False takes the stored values as probe positions.
    energy : float or sequence, optional
        Photon energies [eV] replacing the file's (one per energy, in file then entry order).
    transpose, flip_y, flip_x : bool
        Re-orient detector frames and mask (transpose first, then flips) so rows run
        along y and columns along x as ptyxr's far-field convention expects.
    distance, pixel_size : float, optional
        Sample–detector distance and detector pixel pitch [m], replacing (or supplying
        missing) file values.
    crop : int, optional
        Cut N×N frames (needed for rectangular detectors) around ``center``.
    center : (int, int), optional
        Detector pixel (row, col) of zero frequency after re-orienting; default the
        frame centre (ny//2, nx//2). It becomes pixel (N//2, N//2).
    particle, condition, probe_fwhm, probe_defocus : optional
        Dataset attrs (DESIGN §1a); default the values :func:`write_cxi` stored in the
        entry attrs, and the (first) file's stem for ``particle``.
    lazy : bool, optional
        True: ``intensity`` is a dask array read straight from the files, one chunk per
        energy and block of frames, when computed (opening costs no memory; frames are
        decoded through the hdf5plugin filters). False: read into memory now, with the
        counts checked here. None (default): lazy when the frames exceed
        :data:`LAZY_BYTES` (512 MiB) as float32. Lazy counts are checked by ``reconstruct``.

    Returns
    -------
    xarray.Dataset
        Validated §1a Dataset with attrs ``detector_distance``, ``detector_pixel_size``,
        ``particle``, ``source`` (the file(s), ``"; "``-separated) and a ``history`` line;
        ``monitor`` (energy, scan) when the files hold an I0 monitor.

    Raises
    ------
    FileNotFoundError
        No such file, or no file matches the pattern.
    OSError
        Not HDF5, truncated or otherwise unreadable (message names the file).
    ptyxr.SchemaError
        Missing datasets, wrong shapes/dtypes, non-finite or negative values at valid
        pixels, implausible or duplicate energies, inconsistent entries or files, missing
        distance or pixel size (unless given), non-square frames without ``crop``.

    Examples
    --------
    >>> from ptyxr.io import open_scan, cxi_example_path
    >>> raw = open_scan(cxi_example_path())
    >>> round(float(raw.energy[0]))
    12658
    """
    _checks.arguments("open_scan", locals())
    paths = _expand_paths(path)
    h5py = _h5py()
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"no such CXI/HDF5 file: {p}")
        if p.is_dir():
            raise IsADirectoryError(f"{p} is a directory, not a CXI/HDF5 file.")
    label = (
        paths[0]
        if len(paths) == 1
        else f"{paths[0].parent}/{{{', '.join(p.name for p in paths[:4])}{', …' if len(paths) > 4 else ''}}}"
    )
    with contextlib.ExitStack() as stack:
        files = []
        for p in paths:
            try:
                files.append((p, stack.enter_context(h5py.File(p, "r"))))
            except (OSError, RuntimeError, ValueError) as err:
                raise OSError(f"cannot open {p} as HDF5/CXI (not HDF5, truncated or corrupt): {err}") from err
        try:
            ds = _assemble(
                files,
                entry,
                flip_translation,
                energy,
                transpose,
                flip_y,
                flip_x,
                distance,
                pixel_size,
                crop,
                center,
                particle,
                condition,
                probe_fwhm,
                probe_defocus,
                lazy,
            )
        except SchemaError as err:
            text = str(err)
            raise SchemaError(text if any(text.startswith(str(p)) for p in paths) else f"{label}: {text}") from None
        except OSError as err:
            text = str(err)
            raise OSError(text if any(str(p) in text for p in paths) else f"{label}: {text}") from err
        except (RuntimeError, KeyError, TypeError, IndexError) as err:  # h5py internals on a damaged file
            raise OSError(f"{label}: cannot read the file ({type(err).__name__}: {err}); is it damaged?") from err
        except ValueError as err:  # numpy/h5py refusing the stored content
            raise SchemaError(f"{label}: unexpected content ({err}).") from err
    return provenance.record(
        ds,
        "open_scan",
        {
            "path": str(paths[0]) if len(paths) == 1 else [str(p) for p in paths],
            "entry": entry,
            "flip_translation": flip_translation,
            "energy": energy,
            "transpose": transpose,
            "flip_y": flip_y,
            "flip_x": flip_x,
            "distance": distance,
            "pixel_size": pixel_size,
            "crop": crop,
            "center": center,
            "lazy": hasattr(ds[INTENSITY].data, "dask"),
        },
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
