"""Object stacks reconstructed elsewhere → the reconstruction Dataset (DESIGN §1b).

:func:`open_reconstruction` reads what other ptychography codes save, so the spectral half
of ptyxr (``align → spectra → fit_xanes → chemical_state → cluster``) runs on them:

==========  =====================================================================
format      layout read (HDF5; one energy per file or per entry, files may be many)
==========  =====================================================================
``ptyr``    PtyPy ``.ptyr``: ``content/obj/<ID>/data`` (layers, ny, nx) complex, its
            ``_psize`` (pixel (y, x) [m]) and ``_origin`` (coordinate of pixel (0, 0)
            [m]); ``content/probe/<ID>/data`` (modes, py, px); energy [keV] from
            ``_energy`` of the storage or ``content/pars/scans/<scan>/data/energy``.
            Several ``<ID>`` storages (PtyPy's per-geometry ``S00G00``, ``S00G01`` …) are
            several energies.
``cxi``     PyNX CXI results, and :func:`write_reconstruction`'s files: every
            ``entry_<n>`` (or only ``entry_last`` when present): ``object/data``
            ((modes,) ny, nx) complex, ``object/x_pixel_size``/``y_pixel_size`` [m],
            ``probe/data``, ``instrument_1/source_1/energy`` [J]; optional
            ``object/y``/``object/x`` pixel-centre coordinates [m] (else centred on 0)
            and ``object/coverage`` (ptyxr).
``ptylab``  PtyLab reconstruction HDF5: ``object`` (… , No, No) complex (leading
            wavelength/mode/slice axes: index 0, or ``mode`` for the object mode),
            ``probe`` alike, ``dxo`` object pixel [m], ``wavelength`` [m].
``array``   A plain (energy, y, x) complex array with ``energy=`` and ``pixel_size=``.
==========  =====================================================================

The layouts follow the codes' public documentation and file dumps; fields not named
here are ignored. A ``units`` attr on a dataset overrides the default unit.

Energies are sorted. When pixel sizes (or fields) differ between energies, every energy is
resampled (bilinear on real and imaginary parts, :func:`scipy.ndimage.map_coordinates`)
onto one common grid: the finest pixel, on the lattice anchored at 0 m that ptyxr's own
reconstructions use, over the field that every energy covers. Probes are resampled alike
(:func:`ptyxr.reconstruct.grid.resample_probe`). ``coverage`` comes from the file (ptyxr),
the ``coverage=`` argument, or the summed probe intensity at ``positions=`` above
``coverage_threshold`` × its maximum at every energy (as ``reconstruct`` does); with none
of these every pixel is taken as covered (recorded in the provenance).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.constants as const
import xarray as xr

from ptyxr import provenance
from ptyxr.io.cxi import _expand_paths
from ptyxr.io.cxi_layout import _ENERGY_RANGE, _ENERGY_UNITS, _ENTRY, _LENGTH_UNITS, _h5py, _scale, _widen
from ptyxr.schema import (
    ATTR_PARTICLE,
    COVERAGE,
    ENERGY,
    OBJECT,
    PROBE,
    SchemaError,
    X,
    Y,
    energy_coord,
    length_coord,
    validate_reconstruction,
    variable,
)

FORMATS = ("ptyr", "cxi", "ptylab", "array")
_KEV = {"kev": 1e3, "ev": 1.0, "j": 1.0 / const.e}
#: Dataset attr naming the foreign format read.
ATTR_FORMAT = "source_format"


@dataclass
class _Layer:
    """One energy's object as stored: pixel-centre coordinate of pixel (0, 0) and pixel size."""

    source: str
    energy: float | None  # eV
    obj: np.ndarray  # (ny, nx) complex
    pixel: float  # m (square)
    origin: tuple[float, float]  # m, centre of pixel (0, 0)
    probe: np.ndarray | None = None  # (py, px) complex, same pixel as obj
    coverage: np.ndarray | None = None  # (ny, nx) bool
    coords: tuple[np.ndarray, np.ndarray] | None = None  # stored pixel-centre y, x [m], kept exactly

    def extent(self) -> tuple[float, float, float, float]:
        ny, nx = self.obj.shape
        return (
            self.origin[0],
            self.origin[0] + (ny - 1) * self.pixel,
            self.origin[1],
            self.origin[1] + (nx - 1) * self.pixel,
        )


# ------------------------------------------------------------------------ helpers
def _dataset(group: Any, path: str, where: str, required: bool = True) -> Any:
    h5py = _h5py()
    try:
        obj = group.get(path)
    except (KeyError, OSError, RuntimeError, ValueError):
        obj = None
    if isinstance(obj, h5py.Dataset):
        return obj
    if required:
        raise SchemaError(f"{where}: no dataset {group.name.rstrip('/')}/{path}.")
    return None


def _values(dset: Any, what: str, kinds: str = "iuf") -> np.ndarray:
    if dset.dtype.kind not in kinds:
        raise SchemaError(
            f"{dset.name} ({what}) has dtype {dset.dtype}; expected {'complex ' if 'c' in kinds else ''}numbers."
        )
    try:
        return np.asarray(dset[()])
    except (OSError, RuntimeError) as err:
        raise OSError(f"cannot read {dset.name} ({what}): {err}") from err


def _plane(a: np.ndarray, mode: int, what: str, name: str) -> np.ndarray:
    """A 2-D complex plane from ((…,) modes,) ny, nx: index ``mode`` on the axis before
    (y, x), 0 on any further leading axis."""
    a = np.asarray(a)
    if a.ndim < 2:
        raise SchemaError(f"{name} ({what}) has shape {a.shape}; expected at least (ny, nx).")
    while a.ndim > 3:
        a = a[0]
    if a.ndim == 3:
        if not 0 <= mode < a.shape[0]:
            raise SchemaError(f"{name} ({what}) holds {a.shape[0]} mode(s)/layer(s); mode={mode} is out of range.")
        a = a[mode]
    if 0 in a.shape:
        raise SchemaError(f"{name} ({what}) is empty (shape {a.shape}).")
    return a.astype(np.complex128)


def _pixel(values: np.ndarray, name: str) -> float:
    v = np.atleast_1d(np.asarray(values, dtype=float)).reshape(-1)
    if v.size not in (1, 2) or not np.all(np.isfinite(v) & (v > 0)):
        raise SchemaError(f"{name}: pixel size {v.tolist()} must be one or two positive lengths [m].")
    if v.size == 2 and not np.isclose(v[0], v[1], rtol=1e-6, atol=0):
        raise SchemaError(f"{name}: pixels are not square ({v.tolist()} m); ptyxr needs square object pixels.")
    return float(v[0])


def _check_energy(value: float, name: str) -> float:
    lo, hi = _ENERGY_RANGE
    if not (np.isfinite(value) and lo < value < hi):
        raise SchemaError(f"{name} gives a photon energy of {value!r} eV, outside {lo:g}–{hi:g} eV: wrong units?")
    return float(value)


# ------------------------------------------------------------------------ readers
def _read_ptyr(path: Path, f: Any, mode: int) -> list[_Layer]:
    h5py = _h5py()
    content = f.get("content")
    if not isinstance(content, h5py.Group) or not isinstance(content.get("obj"), h5py.Group):
        raise SchemaError(f"{path}: not a PtyPy .ptyr file: no content/obj group.")
    ids = sorted(content["obj"].keys())
    if not ids:
        raise SchemaError(f"{path}: content/obj holds no storage.")
    scan_energy = None
    pars = content.get("pars/scans")
    if isinstance(pars, h5py.Group):
        found = []
        for scan in pars.values():
            d = scan.get("data/energy") if isinstance(scan, h5py.Group) else None
            if isinstance(d, h5py.Dataset):
                found.append(float(_widen(_values(d, "energy")).reshape(-1)[0]) * _scale(d, _KEV, "kev", "energy"))
        if len(set(found)) == 1:
            scan_energy = found[0]
    layers = []
    for sid in ids:
        g = content["obj"][sid]
        where = f"{path}: content/obj/{sid}"
        obj = _plane(_values(_dataset(g, "data", where), "object", "iufc"), mode, "object", f"{where}/data")
        ps = _dataset(g, "_psize", where, required=False)
        ps = _dataset(g, "psize", where, required=False) if ps is None else ps
        if ps is None:
            raise SchemaError(f"{where}: no _psize (object pixel size [m]); pass pixel_size=... [m].")
        pixel = _pixel(_values(ps, "pixel size") * _scale(ps, _LENGTH_UNITS, "m", "pixel size"), f"{where}/_psize")
        og = _dataset(g, "_origin", where, required=False)
        origin = (0.0, 0.0)
        if og is not None:
            o = np.asarray(_values(og, "origin"), dtype=float).reshape(-1) * _scale(og, _LENGTH_UNITS, "m", "origin")
            origin = (float(o[0]), float(o[-1]))
        e_dset = _dataset(g, "_energy", where, required=False)
        energy = scan_energy
        if e_dset is not None:
            energy = float(_widen(_values(e_dset, "energy")).reshape(-1)[0]) * _scale(e_dset, _KEV, "kev", "energy")
        probe = None
        probes = content.get("probe")
        if isinstance(probes, h5py.Group) and len(probes):
            pid = sid if sid in probes else sorted(probes.keys())[min(ids.index(sid), len(probes) - 1)]
            pd = _dataset(probes[pid], "data", f"{path}: content/probe/{pid}", required=False)
            if pd is not None:
                probe = _plane(_values(pd, "probe", "iufc"), 0, "probe", pd.name)
        layers.append(_Layer(f"{path}:{sid}", energy, obj, pixel, origin, probe))
    return layers


def _read_cxi(path: Path, f: Any, mode: int) -> list[_Layer]:
    h5py = _h5py()
    if isinstance(f.get("entry_last"), h5py.Group):
        names = ["entry_last"]
    else:
        names = sorted((n for n in f if _ENTRY.match(n)), key=lambda n: int(_ENTRY.match(n).group(1)))  # type: ignore[union-attr]
    if not names:
        raise SchemaError(f"{path}: no entry_<n> group: not a CXI result file.")
    layers = []
    for n in names:
        g = f[n]
        where = f"{path}: {n}"
        o_group = g.get("object") if isinstance(g.get("object"), h5py.Group) else g.get("image_1")
        if not isinstance(o_group, h5py.Group):
            raise SchemaError(f"{where}: no object/data (reconstructed object) in the entry.")
        obj = _plane(
            _values(_dataset(o_group, "data", where), "object", "iufc"), mode, "object", f"{where}/object/data"
        )
        pix = []
        for axis in ("y_pixel_size", "x_pixel_size"):
            d = _dataset(o_group, axis, where, required=False)
            if d is not None:
                pix.append(float(_widen(_values(d, axis)).reshape(-1)[0]) * _scale(d, _LENGTH_UNITS, "m", axis))
        if not pix:
            raise SchemaError(f"{where}: no object/x_pixel_size or y_pixel_size [m]; pass pixel_size=... [m].")
        pixel = _pixel(np.array(pix), f"{where}/object")
        ny, nx = obj.shape
        origin = (-(ny // 2) * pixel, -(nx // 2) * pixel)  # PyNX: object centred on 0
        coords = None
        yc, xc = _dataset(o_group, "y", where, required=False), _dataset(o_group, "x", where, required=False)
        if yc is not None and xc is not None:
            y, x = _widen(_values(yc, "y")).reshape(-1), _widen(_values(xc, "x")).reshape(-1)
            if (y.size, x.size) != obj.shape:
                raise SchemaError(f"{where}: object/y, object/x have {y.size}, {x.size} values for {obj.shape}.")
            origin, coords = (float(y[0]), float(x[0])), (y, x)
        energy = None
        e_dset = _dataset(g, "instrument_1/source_1/energy", where, required=False)
        if e_dset is not None:
            energy = float(_widen(_values(e_dset, "energy")).reshape(-1)[0]) * _scale(
                e_dset, _ENERGY_UNITS, "j", "energy"
            )
        probe = None
        p_group = g.get("probe")
        pd = _dataset(p_group, "data", where, required=False) if isinstance(p_group, h5py.Group) else None
        if pd is not None:
            probe = _plane(_values(pd, "probe", "iufc"), 0, "probe", pd.name)
        cov = _dataset(o_group, "coverage", where, required=False)
        coverage = None
        if cov is not None:
            coverage = _values(cov, "coverage", "biu").astype(bool)
            if coverage.shape != obj.shape:
                raise SchemaError(f"{where}: object/coverage has shape {coverage.shape}, the object {obj.shape}.")
        layers.append(_Layer(f"{path}:{n}", energy, obj, pixel, origin, probe, coverage, coords))
    return layers


def _read_ptylab(path: Path, f: Any, mode: int) -> list[_Layer]:
    where = str(path)
    obj_dset = _dataset(f, "object", where)
    obj = _plane(_values(obj_dset, "object", "iufc"), mode, "object", f"{path}: object")
    dxo = _dataset(f, "dxo", where, required=False)
    if dxo is None:
        raise SchemaError(f"{path}: no dxo (object pixel size [m]); pass pixel_size=... [m].")
    pixel = _pixel(_values(dxo, "dxo") * _scale(dxo, _LENGTH_UNITS, "m", "dxo"), f"{path}: dxo")
    energy = None
    wl = _dataset(f, "wavelength", where, required=False)
    if wl is not None:
        lam = np.asarray(_widen(_values(wl, "wavelength")), dtype=float).reshape(-1)
        lam = lam[0] * _scale(wl, _LENGTH_UNITS, "m", "wavelength")
        energy = const.h * const.c / const.e / lam if lam > 0 else float("nan")
    probe = None
    pd = _dataset(f, "probe", where, required=False)
    if pd is not None:
        probe = _plane(_values(pd, "probe", "iufc"), 0, "probe", f"{path}: probe")
    ny, nx = obj.shape
    return [_Layer(str(path), energy, obj, pixel, (-(ny // 2) * pixel, -(nx // 2) * pixel), probe)]


_READERS = {"ptyr": _read_ptyr, "cxi": _read_cxi, "ptylab": _read_ptylab}


def _detect(path: Path, f: Any) -> str:
    h5py = _h5py()
    if isinstance(f.get("content/obj"), h5py.Group):
        return "ptyr"
    if any(_ENTRY.match(n) for n in f) or "entry_last" in f:
        return "cxi"
    if isinstance(f.get("object"), h5py.Dataset):
        return "ptylab"
    raise SchemaError(
        f"{path}: not a known reconstruction layout (no content/obj for PtyPy, entry_<n>/object for CXI/PyNX, "
        f"object dataset for PtyLab); pass format= one of {FORMATS[:3]} or read the arrays yourself and pass them."
    )


# ------------------------------------------------------------------- common grid
def _sample(a: np.ndarray, layer: _Layer, y: np.ndarray, x: np.ndarray, order: int) -> np.ndarray:
    from scipy.ndimage import map_coordinates

    iy = (y - layer.origin[0]) / layer.pixel
    ix = (x - layer.origin[1]) / layer.pixel
    coords = np.meshgrid(iy, ix, indexing="ij")
    if np.iscomplexobj(a):
        return map_coordinates(a.real, coords, order=order, mode="nearest") + 1j * map_coordinates(
            a.imag, coords, order=order, mode="nearest"
        )
    return map_coordinates(a.astype(float), coords, order=order, mode="nearest")


def _axis(origin: float, n: int, pixel: float) -> np.ndarray:
    """Pixel centres origin + i·pixel; on ptyxr's lattice (index × pixel, anchored at 0 m) when
    the origin sits on it, so maps combine exactly with ptyxr's own reconstructions."""
    start = origin / pixel
    if abs(start - round(start)) < 1e-6:
        return (round(start) + np.arange(n)) * pixel
    return origin + np.arange(n) * pixel


def _common(
    layers: list[_Layer], pixel_size: float | None, order: int
) -> tuple[np.ndarray, np.ndarray, float, list[Any]]:
    """Pixel-centre coordinates (y, x) and pixel size of the common grid, and each energy's object on it."""
    same = all(
        np.isclose(lay.pixel, layers[0].pixel, rtol=1e-9, atol=0)
        and lay.obj.shape == layers[0].obj.shape
        and np.allclose(lay.origin, layers[0].origin, rtol=0, atol=1e-6 * lay.pixel)
        for lay in layers
    )
    if same and pixel_size is None:
        lay = layers[0]
        if lay.coords is not None:
            y, x = lay.coords
        else:
            y, x = (_axis(o, n, lay.pixel) for o, n in zip(lay.origin, lay.obj.shape, strict=True))
        return y, x, lay.pixel, [lay.obj for lay in layers]
    dx = float(pixel_size) if pixel_size is not None else min(lay.pixel for lay in layers)
    ext = np.array([lay.extent() for lay in layers])
    y_lo, y_hi, x_lo, x_hi = ext[:, 0].max(), ext[:, 1].min(), ext[:, 2].max(), ext[:, 3].min()
    iy = np.arange(np.ceil(y_lo / dx - 1e-6), np.floor(y_hi / dx + 1e-6) + 1)
    ix = np.arange(np.ceil(x_lo / dx - 1e-6), np.floor(x_hi / dx + 1e-6) + 1)
    if iy.size < 2 or ix.size < 2:
        raise SchemaError(
            "the energies' objects do not overlap (fields (y0, y1, x0, x1) "
            f"{[tuple(np.round(e, 9)) for e in ext.tolist()[:4]]} m); check their origins and pixel sizes."
        )
    y, x = iy * dx, ix * dx
    return y, x, dx, [_sample(lay.obj, lay, y, x, order) for lay in layers]


def _illumination_coverage(
    probe: np.ndarray, py: np.ndarray, px: np.ndarray, y: np.ndarray, x: np.ndarray, threshold: float
) -> np.ndarray:
    """Σ_k|P(r − r_k)|² ≥ threshold × max at every energy; probe centre (N//2) at each position."""
    dx = float(y[1] - y[0])
    n_e = probe.shape[0]
    out = np.ones((y.size, x.size), bool)
    for e in range(n_e):
        illum = np.zeros((y.size, x.size))
        p2 = np.abs(probe[e]) ** 2
        n_y, n_x = p2.shape
        for pos_y, pos_x in zip(py[e], px[e], strict=True):
            if not (np.isfinite(pos_y) and np.isfinite(pos_x)):
                continue
            oy = int(np.floor((pos_y - y[0]) / dx + 0.5)) - n_y // 2
            ox = int(np.floor((pos_x - x[0]) / dx + 0.5)) - n_x // 2
            y0, x0 = max(oy, 0), max(ox, 0)
            y1, x1 = min(oy + n_y, y.size), min(ox + n_x, x.size)
            if y1 > y0 and x1 > x0:
                illum[y0:y1, x0:x1] += p2[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
        peak = illum.max()
        out &= illum >= threshold * peak if peak > 0 else False
    return out


# -------------------------------------------------------------------------- public
def open_reconstruction(
    source: Any,
    format: str | None = None,
    *,
    energy: float | Sequence[float] | None = None,
    pixel_size: float | Sequence[float] | None = None,
    probe: Any = None,
    coverage: Any = None,
    positions: tuple[Any, Any] | None = None,
    coverage_threshold: float = 0.1,
    mode: int = 0,
    interpolation: int = 1,
    particle: str | None = None,
) -> xr.Dataset:
    """Object stacks reconstructed by another code as a ptyxr reconstruction (DESIGN §1b).

    Parameters
    ----------
    source : path, sequence of paths, glob pattern, or array
        Reconstruction file(s) (layouts in the module docstring; typically one per energy),
        or a complex array (energy, y, x) / (y, x).
    format : {"ptyr", "cxi", "ptylab", "array"}, optional
        Layout; default detected from the file's content (``"array"`` for arrays).
    energy : float or sequence, optional
        Photon energies [eV], one per object in file/entry order (replacing or supplying
        the stored ones); required for arrays.
    pixel_size : float or sequence, optional
        Object pixel size [m]. For arrays: one value, or one per energy (then the stack
        is resampled). For files: the common-grid pixel (default the finest stored one).
    probe : array, optional
        For arrays: the probe (energy, py, px) or (py, px), same pixel as the object.
    coverage : array of bool (y, x), optional
        Region illuminated at every energy on the output grid (overrides any other).
    positions : (position_y, position_x), optional
        Probe-centre positions [m], (energy, scan) or (scan,), in the objects' frame:
        with a probe they give ``coverage`` as ``reconstruct`` computes it.
    coverage_threshold : float
        Fraction of the peak summed probe intensity that counts as covered.
    mode : int
        Object mode / layer to read when several are stored.
    interpolation : {1, 3}
        Order of the resampling onto the common grid (bilinear or cubic).
    particle : str, optional
        Particle name (attr); default the first file's stem.

    Returns
    -------
    xarray.Dataset
        ``object`` (energy, y, x) complex64, ``probe`` (energy, probe_y, probe_x) when
        every energy has one of one shape, ``coverage`` (y, x); coords ``energy`` [eV],
        ``y``/``x`` [m] with attr ``pixel_size``; attrs ``particle``, ``source``,
        ``source_format`` and a provenance record.

    Raises
    ------
    FileNotFoundError, OSError
        Missing, unreadable or truncated files (message names the file).
    ptyxr.SchemaError
        Unknown layout, missing object / pixel size / energy (naming the file and the
        dataset), non-square pixels, duplicate energies, non-overlapping fields.
    """
    if interpolation not in (1, 3):
        raise SchemaError(f"interpolation={interpolation!r}; use 1 (bilinear) or 3 (cubic).")
    is_array = (
        format == "array"
        or not isinstance(source, (str, os.PathLike, list, tuple))
        or (isinstance(source, (list, tuple)) and len(source) > 0 and not isinstance(source[0], (str, os.PathLike)))
    )
    if is_array:
        layers, fmt, label = _array_layers(source, energy, pixel_size, probe), "array", "array"
        grid_pixel = None
    else:
        if format is not None and format not in FORMATS[:3]:
            raise SchemaError(f"format={format!r}; use one of {FORMATS}.")
        paths = _expand_paths(source)
        layers, fmts = [], set()
        h5py = _h5py()
        for p in paths:
            if not p.exists():
                raise FileNotFoundError(f"no such reconstruction file: {p}")
            with contextlib.ExitStack() as stack:
                try:
                    f = stack.enter_context(h5py.File(p, "r"))
                except (OSError, RuntimeError, ValueError) as err:
                    raise OSError(f"cannot open {p} as HDF5 (not HDF5, truncated or corrupt): {err}") from err
                fmt = format or _detect(p, f)
                fmts.add(fmt)
                try:
                    layers.extend(_READERS[fmt](p, f, int(mode)))
                except OSError as err:
                    raise OSError(f"{p}: {err}") from err
                except (RuntimeError, KeyError, TypeError, IndexError) as err:
                    raise OSError(f"{p}: cannot read the file ({type(err).__name__}: {err}); is it damaged?") from err
        fmt = "+".join(sorted(fmts))
        label = "; ".join(str(p) for p in paths)
        if energy is not None:
            values = np.atleast_1d(np.asarray(energy, dtype=float))
            if values.size != len(layers):
                raise SchemaError(f"energy= gives {values.size} value(s) for {len(layers)} object(s) in {label}.")
            for lay, e in zip(layers, values, strict=True):
                lay.energy = float(e)
        grid_pixel = None if pixel_size is None else float(np.atleast_1d(pixel_size)[0])
        default_particle = paths[0].stem
    for lay in layers:
        if lay.energy is None:
            raise SchemaError(f"{lay.source}: no photon energy stored; pass energy=[...] [eV], one per object.")
        lay.energy = _check_energy(lay.energy, lay.source)
    layers.sort(key=lambda lay: float(lay.energy))  # type: ignore[arg-type]  # checked just above
    energies = np.array([lay.energy for lay in layers])
    if np.any(np.diff(energies) <= 0):
        dup = energies[1:][np.diff(energies) <= 0]
        raise SchemaError(
            f"duplicate photon energies {dup.tolist()[:5]} eV among {[lay.source for lay in layers][:6]}."
        )

    y, x, dx, planes = _common(layers, grid_pixel, interpolation)
    obj = np.stack(planes).astype(np.complex64)
    data_vars = {OBJECT: variable(OBJECT, obj, pixel_size=dx)}

    probes = [lay.probe for lay in layers]
    probe_arr = None
    if all(p is not None for p in probes) and len({p.shape for p in probes}) == 1:  # type: ignore[union-attr]
        from ptyxr.reconstruct.grid import resample_probe

        probe_arr = np.stack(
            [resample_probe(p, lay.pixel / dx) for p, lay in zip(probes, layers, strict=True)]  # type: ignore[arg-type]
        )
        data_vars[PROBE] = variable(PROBE, probe_arr.astype(np.complex64), pixel_size=dx)

    how = "all pixels (no coverage, positions or ptyxr coverage given)"
    if coverage is not None:
        cov = np.asarray(coverage)
        if cov.shape != obj.shape[1:] or cov.dtype.kind not in "biu":
            raise SchemaError(f"coverage= must be a boolean (y, x) array of shape {obj.shape[1:]}, got {cov.shape}.")
        cov, how = cov.astype(bool), "given"
    elif positions is not None:
        if probe_arr is None:
            raise SchemaError("positions= gives coverage only with a probe per energy (in the files or probe=).")
        py, px = (np.asarray(a, dtype=float) for a in positions)
        py, px = (np.broadcast_to(a, (energies.size, a.shape[-1])) for a in (py, px))
        cov = _illumination_coverage(probe_arr, py, px, y, x, float(coverage_threshold))
        how = f"summed probe intensity >= {coverage_threshold} x peak at every energy"
    elif all(lay.coverage is not None for lay in layers):
        cov = np.ones(obj.shape[1:], bool)
        for lay in layers:
            cov &= _sample(lay.coverage.astype(float), lay, y, x, 0) > 0.5  # type: ignore[union-attr]
        how = "stored"
    else:
        cov = np.ones(obj.shape[1:], bool)
    data_vars[COVERAGE] = variable(COVERAGE, cov)

    ds = xr.Dataset(
        data_vars,
        coords={ENERGY: energy_coord(energies), Y: length_coord(Y, y, dx), X: length_coord(X, x, dx)},
        attrs={
            ATTR_PARTICLE: str(particle if particle is not None else ("P1" if is_array else default_particle)),
            "source": label,
            ATTR_FORMAT: fmt,
        },
    )
    validate_reconstruction(ds, stage="open_reconstruction")
    return provenance.record(
        ds,
        "open_reconstruction",
        {
            "source": label,
            "format": fmt,
            "energy": energy,
            "pixel_size": pixel_size,
            "mode": mode,
            "interpolation": interpolation,
            "coverage": how,
            "coverage_threshold": coverage_threshold,
            "resampled": bool(not np.allclose([lay.pixel for lay in layers], dx, rtol=1e-9, atol=0)),
        },
    )


def _array_layers(source: Any, energy: Any, pixel_size: Any, probe: Any) -> list[_Layer]:
    obj = np.asarray(source)
    if obj.dtype.kind not in "iufc":
        raise SchemaError(f"the object array must be complex numbers, got dtype {obj.dtype}.")
    if obj.ndim == 2:
        obj = obj[None]
    if obj.ndim != 3:
        raise SchemaError(f"the object array has shape {obj.shape}; expected (energy, y, x) or (y, x).")
    if energy is None or pixel_size is None:
        raise SchemaError("an object array needs energy=[...] [eV] and pixel_size= [m] (one, or one per energy).")
    energies = np.atleast_1d(np.asarray(energy, dtype=float))
    pixels = np.atleast_1d(np.asarray(pixel_size, dtype=float))
    if energies.size != obj.shape[0]:
        raise SchemaError(f"energy= gives {energies.size} value(s) for {obj.shape[0]} object(s).")
    if pixels.size == 1:
        pixels = np.full(obj.shape[0], pixels[0])
    if pixels.size != obj.shape[0] or not np.all(np.isfinite(pixels) & (pixels > 0)):
        raise SchemaError(f"pixel_size= must be one positive length [m] or one per energy, got {pixels.tolist()[:5]}.")
    probes: list[Any] = [None] * obj.shape[0]
    if probe is not None:
        p = np.asarray(probe)
        if p.ndim == 2:
            p = np.broadcast_to(p, (obj.shape[0], *p.shape))
        if p.ndim != 3 or p.shape[0] != obj.shape[0]:
            raise SchemaError(f"probe= has shape {p.shape}; expected (py, px) or ({obj.shape[0]}, py, px).")
        probes = list(p.astype(np.complex128))
    ny, nx = obj.shape[1:]
    return [
        _Layer(
            f"array[{i}]", float(e), obj[i].astype(np.complex128), float(d), (-(ny // 2) * d, -(nx // 2) * d), probes[i]
        )
        for i, (e, d) in enumerate(zip(energies, pixels, strict=True))
    ]


def write_reconstruction(ds: xr.Dataset, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a reconstruction (DESIGN §1b) as a CXI result file, one entry per energy.

    The layout is the one PyNX writes and :func:`open_reconstruction` (``format="cxi"``)
    reads: ``entry_<n>/object/data`` (y, x) complex64 with ``x_pixel_size``/``y_pixel_size``
    [m], ``entry_<n>/probe/data``, ``entry_<n>/instrument_1/source_1/energy`` [J], plus
    ptyxr's ``object/y``, ``object/x`` pixel-centre coordinates [m] and ``object/coverage``
    (so the grid and the covered region survive the round trip exactly). ``entry_<n>/data_1``
    links to the object (CXI's default image). One particle per file.

    Parameters
    ----------
    ds : xarray.Dataset
        Output of ``reconstruct`` or :func:`open_reconstruction` (one particle).
    path : str or path-like
        Output file, written atomically.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    from ptyxr.io.cxi_layout import ATTR_SOURCE, CXI_VERSION
    from ptyxr.io.netcdf import atomic_path
    from ptyxr.schema import ATTR_CONDITION, ATTR_PIXEL_SIZE, PARTICLE

    h5py = _h5py()
    if isinstance(ds, xr.Dataset) and PARTICLE in ds.dims:
        raise SchemaError(f"write_reconstruction writes one particle per file; select one with ds.isel({PARTICLE}=i).")
    validate_reconstruction(ds, stage="write_reconstruction")
    y, x = np.asarray(ds[Y].values, float), np.asarray(ds[X].values, float)
    dx = float(ds[Y].attrs.get(ATTR_PIXEL_SIZE, y[1] - y[0] if y.size > 1 else np.nan))
    if not (np.isfinite(dx) and dx > 0):
        raise SchemaError(f"write_reconstruction: coord {Y!r} needs a pixel_size attr [m] (or two values).")
    obj = np.asarray(ds[OBJECT].values, dtype=np.complex64)
    # energy first; probe modes (reconstruct(probe_modes=K)) go into each entry as (K, N, N), as PyNX writes them
    probe = None if PROBE not in ds else np.asarray(ds[PROBE].transpose(ENERGY, ...).values, dtype=np.complex64)
    cov = None if COVERAGE not in ds else np.asarray(ds[COVERAGE].values, dtype=bool)
    energy = np.asarray(ds[ENERGY].values, dtype=float)
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp, h5py.File(tmp, "w") as f:
        f["cxi_version"] = CXI_VERSION
        for key in (ATTR_PARTICLE, ATTR_CONDITION, ATTR_SOURCE):
            if key in ds.attrs:
                f.attrs[key] = str(ds.attrs[key])
        for i, e in enumerate(energy):
            g = f.create_group(f"entry_{i + 1}")
            o = g.create_group("object")
            o.create_dataset("data", data=obj[i])
            o["x_pixel_size"] = o["y_pixel_size"] = dx
            o["y"], o["x"] = y, x
            for name in ("x_pixel_size", "y_pixel_size", "y", "x"):
                o[name].attrs["units"] = "m"
            if cov is not None:
                o["coverage"] = cov.astype(np.uint8)
            if probe is not None:
                g.create_group("probe")["data"] = probe[i]
            g.create_group("instrument_1/source_1")["energy"] = e * const.e
            g["instrument_1/source_1/energy"].attrs["units"] = "J"
            g.create_group("data_1")["data"] = h5py.SoftLink(o["data"].name)
        f["number_of_entries"] = energy.size
    return path
