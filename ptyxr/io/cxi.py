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
============================================  =====================================

A ``units`` attr on a dataset (``J``/``eV``/``keV``, ``m``/``mm``/``um``/``nm``) overrides
the CXI default unit. Several entries (``entry_1``, ``entry_2`` …) are several energies:
they are sorted by energy and their scans padded with NaN positions (and all-NaN
frames) to a common length.

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
WAVELENGTH_PATH = "instrument_1/source_1/wavelength"
DISTANCE_PATH = "instrument_1/detector_1/distance"
X_PIXEL_PATH = "instrument_1/detector_1/x_pixel_size"
Y_PIXEL_PATH = "instrument_1/detector_1/y_pixel_size"
MASK_PATH = "instrument_1/detector_1/mask"
PROBE_PATHS = ("instrument_1/source_1/probe", "instrument_1/source_1/illumination")
#: Dataset attrs stored as HDF5 attrs of each entry group by :func:`write_cxi` and read back.
ENTRY_ATTRS = (ATTR_PARTICLE, ATTR_CONDITION, ATTR_PROBE_FWHM, ATTR_PROBE_DEFOCUS)
#: Dataset attr recording the file a scan was read from.
ATTR_SOURCE = "source"
CXI_VERSION = 160

_ENTRY = re.compile(r"^entry_(\d+)$")
_ENERGY_UNITS = {"j": 1.0 / const.e, "ev": 1.0, "kev": 1e3}
_LENGTH_UNITS = {"m": 1.0, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "micron": 1e-6, "nm": 1e-9}
#: Plausible photon energies [eV]; outside, the stored unit is almost surely not what we assumed.
_ENERGY_RANGE = (10.0, 1e6)


@dataclass
class _Entry:
    name: str
    energy: np.ndarray  # (n_E,) eV
    frames: np.ndarray  # (n_E, n_scan, ny, nx) float32
    translation: np.ndarray  # (n_E, n_scan, 3) m
    distance: float | None
    pixel_size: float | None
    valid: np.ndarray | None  # (ny, nx) bool, True = valid
    probe: np.ndarray | None  # (n_E, py, px) complex
    attrs: dict[str, Any]


# ------------------------------------------------------------------ low-level reads
def _h5py() -> Any:
    import h5py

    return h5py


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
    value = _read(dset, what)
    if value.size != 1:
        raise SchemaError(f"{dset.name} ({what}) should be a scalar, got shape {value.shape}.")
    value = float(_widen(value).reshape(-1)[0]) * _scale(dset, table, default_unit, what)
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
def _read_entry(
    group: Any, energy_override: np.ndarray | None, distance: float | None, pixel_size: float | None
) -> _Entry:
    name = group.name.lstrip("/")
    _, dset = _find(group, DATA_PATHS)
    if dset is None:
        raise SchemaError(
            f"{name} has no diffraction frames: expected a dataset at one of {[f'{name}/{p}' for p in DATA_PATHS]}."
        )
    if dset.ndim not in (3, 4):
        raise SchemaError(f"{dset.name} has shape {dset.shape}; expected (scan, ny, nx) or (energy, scan, ny, nx).")
    stacked = dset.ndim == 4
    frames = _read(dset, "frames").astype(np.float32)
    if not stacked:
        frames = frames[None]
    n_energy, n_scan = frames.shape[:2]
    if n_scan == 0 or n_energy == 0 or 0 in frames.shape[2:]:
        raise SchemaError(f"{dset.name} holds no frames (shape {dset.shape}).")

    # ---- energy [eV]
    if energy_override is not None:
        energy = energy_override
    else:
        _, e_dset = _find(group, (ENERGY_PATH,))
        if e_dset is not None:
            energy = _widen(_read(e_dset, "photon energy")).reshape(-1)
            energy = energy * _scale(e_dset, _ENERGY_UNITS, "j", "photon energy")
            where = e_dset.name
        else:
            _, w_dset = _find(group, (WAVELENGTH_PATH,))
            if w_dset is None:
                raise SchemaError(f"{name} has neither {ENERGY_PATH} nor {WAVELENGTH_PATH}; pass energy=... [eV].")
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
        raise SchemaError(
            f"{name} has no sample translations: expected one of "
            f"{[f'{name}/{p}' for p in TRANSLATION_PATHS]} (scan, 3) in metres."
        )
    translation = _widen(_read(t_dset, "sample translation"))
    translation = translation * _scale(t_dset, _LENGTH_UNITS, "m", "sample translation")
    if translation.ndim == 2 and stacked:
        translation = np.broadcast_to(translation, (n_energy, *translation.shape))
    elif translation.ndim == 2:
        translation = translation[None]
    if translation.ndim != 3 or translation.shape[:2] != (n_energy, n_scan) or translation.shape[2] < 2:
        raise SchemaError(
            f"{t_dset.name} has shape {t_dset.shape}; expected ({n_scan}, 3) (x, y, z per frame of "
            f"{dset.name}) or ({n_energy}, {n_scan}, 3)."
        )
    if np.isinf(translation).any():
        raise SchemaError(f"{t_dset.name} holds ±inf translations.")

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
        pix = px if px is not None else py

    # ---- mask: CXI marks bad pixels with nonzero bits
    valid = None
    _, m_dset = _find(group, (MASK_PATH,))
    if m_dset is not None:
        mask = _read(m_dset, "detector mask", kinds="biuf")
        if mask.shape != frames.shape[2:]:
            raise SchemaError(f"{m_dset.name} has shape {mask.shape}; expected the frame shape {frames.shape[2:]}.")
        valid = mask == 0

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
        name, np.asarray(energy, dtype=np.float64).reshape(-1), frames, translation, dist, pix, valid, probe, attrs
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
    names = sorted((k for k in f.keys() if _ENTRY.match(k)), key=lambda k: int(_ENTRY.match(k).group(1)))
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


def _same(values: list[float | None], what: str, argument: str) -> float:
    present = [v for v in values if v is not None]
    if len(present) < len(values):
        raise SchemaError(f"the {what} is missing from the file; pass {argument}=... [m].")
    if not np.allclose(present, present[0], rtol=1e-6, atol=0):
        raise SchemaError(f"entries disagree on the {what} ({sorted(set(present))}); pass {argument}=... to use one.")
    return float(present[0])


def _assemble(
    path: Path,
    f: Any,
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
) -> xr.Dataset:
    names = _entry_names(f, entry)
    for value, arg in ((distance, "distance"), (pixel_size, "pixel_size")):
        if value is not None and not (np.isfinite(float(value)) and float(value) > 0):
            raise SchemaError(f"{arg} must be a positive number [m], got {value!r}.")
    groups = []
    for n in names:
        g = f[n]
        if not isinstance(g, _h5py().Group):
            raise SchemaError(f"{n} is not an HDF5 group.")
        groups.append(g)

    # energy override: one value per energy, in entry order
    overrides: list[np.ndarray | None] = [None] * len(groups)
    if energy is not None:
        values = np.atleast_1d(np.asarray(energy, dtype=np.float64))
        counts = []
        for g in groups:
            _, d = _find(g, DATA_PATHS)
            counts.append(d.shape[0] if d is not None and d.ndim == 4 else 1)
        if values.size != sum(counts):
            raise SchemaError(f"energy= gives {values.size} value(s) for {sum(counts)} energies in {names}.")
        if not (np.all(np.isfinite(values)) and np.all(values > 0)):
            raise SchemaError(f"energy= must hold positive finite energies [eV], got {values.tolist()[:5]}.")
        overrides = list(np.split(values, np.cumsum(counts)[:-1]))

    entries = [_read_entry(g, o, distance, pixel_size) for g, o in zip(groups, overrides, strict=True)]
    shapes = {e.frames.shape[2:] for e in entries}
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
    n_scan = max(e.frames.shape[1] for e in entries)
    frames, trans, probes = [], [], []
    for e in entries:
        pad = n_scan - e.frames.shape[1]
        frames.append(np.pad(e.frames, ((0, 0), (0, pad), (0, 0), (0, 0)), constant_values=np.nan))
        trans.append(np.pad(e.translation, ((0, 0), (0, pad), (0, 0)), constant_values=np.nan))
        probes.append(e.probe)
    frames_all = np.concatenate(frames)[order]
    trans_all = np.concatenate(trans)[order]
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
    win = _crop_window(frames_all.shape[2:], crop, center)
    frames_all = np.ascontiguousarray(frames_all[..., win[0], win[1]])
    if valid is not None:
        valid = np.ascontiguousarray(valid[win[0], win[1]])
    if probe_all is not None and probe_all.shape[1:] != frames_all.shape[2:]:
        raise SchemaError(f"the stored probe is {probe_all.shape[1:]} but the frames are {frames_all.shape[2:]}.")

    # ---- intensity checks; detector flags (negative, inf) under bad pixels become NaN
    if np.isinf(frames_all).any() or (frames_all < 0).any():
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
        extra_attrs={ATTR_SOURCE: str(path)},
    )


def open_scan(
    path: str | os.PathLike,
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
) -> xr.Dataset:
    """Read a CXI / NeXus-style HDF5 ptychography file as a raw scan series (DESIGN §1a).

    Parameters
    ----------
    path : str or path-like
        The ``.cxi`` / ``.h5`` file (layout in the module docstring).
    entry : str, int or sequence, optional
        Entries to read (``"entry_2"``, ``2`` or a list); default all ``entry_<n>``
        groups, one or more energies each.
    flip_translation : bool
        The file stores the sample translation; the probe position is its negative
        (default). False takes the stored values as probe positions.
    energy : float or sequence, optional
        Photon energies [eV] replacing the file's (one per energy, in entry order).
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
        entry attrs, and the file's stem for ``particle``.

    Returns
    -------
    xarray.Dataset
        Validated §1a Dataset with attrs ``detector_distance``, ``detector_pixel_size``,
        ``particle``, ``source`` (the file) and a ``history`` line.

    Raises
    ------
    FileNotFoundError
        No such file.
    OSError
        Not HDF5, truncated or otherwise unreadable (message names the file).
    ptyxr.SchemaError
        Missing datasets, wrong shapes/dtypes, non-finite or negative values at valid
        pixels, implausible or duplicate energies, inconsistent entries, missing distance
        or pixel size (unless given), non-square frames without ``crop``.

    Examples
    --------
    >>> from ptyxr.io import open_scan, cxi_example_path
    >>> raw = open_scan(cxi_example_path())
    >>> round(float(raw.energy[0]))
    12658
    """
    _checks.arguments("open_scan", locals())
    h5py = _h5py()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such CXI/HDF5 file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a CXI/HDF5 file.")
    try:
        f = h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError) as err:
        raise OSError(f"cannot open {path} as HDF5/CXI (not HDF5, truncated or corrupt): {err}") from err
    try:
        with f:
            ds = _assemble(
                path,
                f,
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
            )
    except SchemaError as err:
        raise SchemaError(f"{path}: {err}") from None
    except OSError as err:
        raise OSError(f"{path}: {err}") from err
    except (RuntimeError, KeyError, TypeError, IndexError) as err:  # h5py internals on a damaged file
        raise OSError(f"{path}: cannot read the file ({type(err).__name__}: {err}); is it damaged?") from err
    except ValueError as err:  # numpy/h5py refusing the stored content
        raise SchemaError(f"{path}: unexpected content ({err}).") from err
    return provenance.record(
        ds,
        "open_scan",
        {
            "path": str(path),
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
        },
    )


# ------------------------------------------------------------------------- writer
def write_cxi(ds: xr.Dataset, path: str | os.PathLike, layout: str = "entries", overwrite: bool = False) -> Path:
    """Write a raw scan series (DESIGN §1a) as a CXI file that :func:`open_scan` reads back.

    Parameters
    ----------
    ds : xarray.Dataset
        One particle's §1a Dataset (validated first).
    path : str or path-like
        Output file; written atomically (temporary file renamed when complete).
    layout : {"entries", "stacked"}
        "entries": one ``entry_<n>`` per energy holding only its real scan points (NaN
        padding dropped). "stacked": one ``entry_1`` with 4-D frames (energy, scan, N, N),
        a 1-D energy array and (energy, scan, 3) translations, padding kept as NaN.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The written file.

    Notes
    -----
    Energies are written in joules, translations as the sample translation (x, y, 0) =
    −(probe position), the mask as CXI flags (1 = bad pixel); ``probe_guess`` goes to
    ``instrument_1/source_1/probe`` and the attrs ``particle``, ``condition``,
    ``probe_fwhm``, ``probe_defocus`` to HDF5 attrs of each entry.
    """
    h5py = _h5py()
    if isinstance(ds, xr.Dataset) and PARTICLE in ds.dims:
        raise SchemaError(f"write_cxi writes one particle per file; select one with ds.isel({PARTICLE}=i).")
    validate_raw(ds)
    if layout not in ("entries", "stacked"):
        raise ValueError(f"layout={layout!r}; use 'entries' or 'stacked'.")
    energy = np.asarray(ds[ENERGY].values, dtype=np.float64)
    frames = np.asarray(ds[INTENSITY].values, dtype=np.float32)
    pos_y = np.asarray(ds[POSITION_Y].values, dtype=np.float64)
    pos_x = np.asarray(ds[POSITION_X].values, dtype=np.float64)
    translation = np.stack([-pos_x, -pos_y, np.zeros_like(pos_x)], axis=-1)
    bad = None if DETECTOR_MASK not in ds else (~ds[DETECTOR_MASK].values).astype(np.uint32)
    probe = None if PROBE_GUESS not in ds else np.asarray(ds[PROBE_GUESS].values, dtype=np.complex64)
    distance = float(ds.attrs[ATTR_DETECTOR_DISTANCE])
    pixel = float(ds.attrs[ATTR_DETECTOR_PIXEL_SIZE])
    entry_attrs = {k: ds.attrs[k] for k in ENTRY_ATTRS if k in ds.attrs}

    def entry(f: Any, name: str, data: np.ndarray, energy_j: Any, trans: np.ndarray, prb: np.ndarray | None) -> None:
        g = f.create_group(name)
        for key, value in entry_attrs.items():
            g.attrs[key] = value
        det = g.create_group("instrument_1/detector_1")
        det.create_dataset("data", data=data, chunks=(1, *data.shape[1:]) if data.ndim == 3 else None)
        det["distance"] = distance
        det["x_pixel_size"] = pixel
        det["y_pixel_size"] = pixel
        if bad is not None:
            det["mask"] = bad
        src = g.create_group("instrument_1/source_1")
        src["energy"] = energy_j
        src["energy"].attrs["units"] = "J"
        if prb is not None:
            src["probe"] = prb
        g.create_group("sample_1/geometry_1")["translation"] = trans
        data_1 = g.create_group("data_1")
        data_1["data"] = h5py.SoftLink(det["data"].name)
        data_1["translation"] = h5py.SoftLink(g["sample_1/geometry_1/translation"].name)

    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp, h5py.File(tmp, "w") as f:
        f["cxi_version"] = CXI_VERSION
        if layout == "entries":
            for i, e in enumerate(energy):
                keep = np.isfinite(pos_y[i]) & np.isfinite(pos_x[i])
                entry(
                    f,
                    f"entry_{i + 1}",
                    frames[i][keep],
                    e * const.e,
                    translation[i][keep],
                    None if probe is None else probe[i],
                )
            f["number_of_entries"] = energy.size
        else:
            entry(f, "entry_1", frames, energy * const.e, translation, probe)
            f["number_of_entries"] = 1
    return path
