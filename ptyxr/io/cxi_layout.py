"""The CXI / NXcxi_ptycho layout ptyxr reads and writes, and the reading of one entry.

HDF5 paths, units and the low-level reads shared by :func:`ptyxr.io.cxi.open_scan`
(which assembles entries into a raw Dataset) and :func:`ptyxr.io.cxi.write_cxi`; see
:mod:`ptyxr.io.cxi` for the format.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.constants as const

from ptyxr.io.lazy import filter_hint, h5py_module, lazy_frames
from ptyxr.schema import (
    ATTR_CONDITION,
    ATTR_PARTICLE,
    ATTR_PROBE_DEFOCUS,
    ATTR_PROBE_FWHM,
    SchemaError,
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
