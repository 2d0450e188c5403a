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

Modules: the layout (paths, units) and the reading of one entry are in
:mod:`ptyxr.io.cxi_layout`, the writer in :mod:`ptyxr.io.cxi_write`; this module
assembles entries into a raw Dataset (:func:`open_scan`) and re-exports the rest.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ptyxr import checks as _checks
from ptyxr import provenance
from ptyxr.io.arrays import build_raw

# the layout constants and the writer stay importable from here (cxi_layout, cxi_write)
from ptyxr.io.cxi_layout import (  # noqa: F401
    _ENTRY,
    ATTR_SOURCE,
    CXI_VERSION,
    DATA_PATHS,
    DISTANCE_PATH,
    ENERGY_PATH,
    ENERGY_PATHS,
    ENTRY_ATTRS,
    LAZY_BYTES,
    MASK_PATH,
    MASK_PATHS,
    MONITOR_PATHS,
    NX_DEFINITION,
    NX_X_PATH,
    NX_Y_PATH,
    PROBE_PATHS,
    TRANSLATION_PATHS,
    WAVELENGTH_PATH,
    X_PIXEL_PATH,
    Y_PIXEL_PATH,
    _find,
    _h5py,
    _is_nxcxi,
    _read_entry,
)
from ptyxr.io.cxi_write import COMPRESSIONS, write_cxi  # noqa: F401
from ptyxr.schema import (
    ATTR_CONDITION,
    ATTR_PARTICLE,
    ATTR_PROBE_DEFOCUS,
    ATTR_PROBE_FWHM,
    INTENSITY,
    SchemaError,
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
