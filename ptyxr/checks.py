"""Argument checks shared by every public function: types, ranges, NaN and units plausibility.

Each check returns the value in its canonical type (``int``, ``float``, ``bool`` …) or raises
:class:`ptyxr.schema.SchemaError` naming the argument, the value and the fix. Checks are
strict where a silent conversion would change the result: ``iterations=2.5`` is not 2,
``overwrite="false"`` is not ``True``, a NaN step size is not a step size.

Units plausibility (SI units throughout ptyxr; a slip by 10³ lands in a range of its own):

============================  =====================  ============================
quantity                      accepted               typical slip detected
============================  =====================  ============================
X-ray photon energy           100 eV – 100 keV (eV)  keV given as eV (0.1–100)
detector distance             0.05 – 20 m            mm given as m (50–20000)
detector pixel size           0.1 µm – 10 mm         µm given as m (0.1–10000)
scan extent vs object pixel   ≥ 1 pixel              nm/keV/mm slips (scan on one pixel)
============================  =====================  ============================
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ptyxr.schema import SchemaError

#: Plausible X-ray photon energies [eV] (soft to hard X-rays).
ENERGY_RANGE_EV = (100.0, 100_000.0)
#: Plausible sample–detector distances [m].
DISTANCE_RANGE_M = (0.05, 20.0)
#: Plausible detector pixel sizes [m].
DETECTOR_PIXEL_RANGE_M = (1e-7, 1e-2)


#: Most mutually incoherent probe modes ``reconstruct(probe_modes=K)`` accepts.
MAX_PROBE_MODES = 8


def _where(where: str) -> str:
    return f"{where}: " if where else ""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------ keywords
class UnknownArgumentError(SchemaError, TypeError):
    """A keyword argument the function does not take (a TypeError as Python's own, and a SchemaError)."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def keyword_names(func: Callable[..., Any], skip: int = 0) -> list[str]:
    """Names of the keyword-passable parameters of ``func`` (the first ``skip`` left out)."""
    params = list(inspect.signature(func).parameters.values())[skip:]
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def check_keywords(func: Callable[..., Any], kwargs: Mapping[str, Any], where: str, skip: int = 1) -> None:
    """Refuse keyword arguments ``func`` does not take, with a "did you mean" per unknown name."""
    allowed = keyword_names(func, skip)
    unknown = [k for k in kwargs if k not in allowed]
    if unknown:
        hints = "; ".join(f"{k!r}{did_you_mean(k, allowed)}" for k in unknown)
        raise UnknownArgumentError(f"{_where(where)}unknown argument(s) {hints}. {func.__name__} takes: {allowed}.")


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as read from TOML/JSON: str, int, float, bool, list, dict) fits ``hint``."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_matches(value, a) for a in args)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if hint is bool:
        return isinstance(value, (bool, np.bool_))
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if hint is str:
        return isinstance(value, str)
    if hint is os.PathLike:
        return isinstance(value, os.PathLike)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args, strict=True))
    if origin in (list, Sequence, Iterable) or hint in (list, Sequence):
        if not isinstance(value, (list, tuple, range)):
            return False
        return not args or all(_matches(v, args[0]) for v in value)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation this checker does not understand: the function checks it


def _describe(hint: Any) -> str:
    text = str(hint).replace("typing.", "").replace("collections.abc.", "").replace("<class '", "").replace("'>", "")
    return text.replace("xarray.core.dataarray.", "xr.").replace("NoneType", "None")


def check_types(func: Callable[..., Any], kwargs: Mapping[str, Any], where: str, skip: int = 1) -> None:
    """Check keyword values against ``func``'s annotated types (strict: ``"30"`` is not an int).

    Meant for values from a config file, where every value has a TOML type: unknown
    names get a "did you mean", values of the wrong type a :class:`SchemaError` naming the
    expected type.
    """
    check_keywords(func, kwargs, where, skip)
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable forward references: leave type checks to the function
        hints = {}
    for key, value in kwargs.items():
        hint = hints.get(key, Any)
        if not _matches(value, hint):
            example = ""
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                example = f" Write {key} = {value.strip().lower()} (no quotes)."
            elif isinstance(value, str):
                example = " Numbers and booleans are written without quotes."
            raise SchemaError(
                f"{_where(where)}{key} = {_show(value)} ({type(value).__name__}) has the wrong type; "
                f"{func.__name__} expects {_describe(hint)}.{example}"
            )


# ------------------------------------------------------------------ scalars
def boolean(name: str, value: Any, where: str = "") -> bool:
    """A real bool (``"false"`` or ``0`` are refused: ``bool("false")`` is True)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise SchemaError(f"{_where(where)}{name}={_show(value)} must be True or False (a bool, not text or a number).")


def integer(name: str, value: Any, where: str = "", minimum: int | None = None, maximum: int | None = None) -> int:
    """An int (integral floats such as ``1e3`` accepted; ``2.5``, ``"10"``, bools and NaN refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise SchemaError(f"{_where(where)}{name}={_show(value)} must be an integer, e.g. {name}=10 (not text).")
    if not isinstance(value, numbers.Integral):
        if not math.isfinite(float(value)) or not float(value).is_integer():
            raise SchemaError(f"{_where(where)}{name}={_show(value)} must be a whole number, e.g. {name}=10.")
    out = int(value)  # type: ignore[call-overload]  # a Real that is whole (checked above)
    if minimum is not None and out < minimum:
        positive = " (a positive integer)" if minimum == 1 else ""
        raise SchemaError(f"{_where(where)}{name}={out} must be ≥ {minimum}{positive}.")
    if maximum is not None and out > maximum:
        raise SchemaError(f"{_where(where)}{name}={out} must be ≤ {maximum}.")
    return out


def real(
    name: str,
    value: Any,
    where: str = "",
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    unit: str = "",
) -> float:
    """A finite float (NaN, ±inf, text and bools refused) within the given bounds."""
    unit_text = f" [{unit}]" if unit else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise SchemaError(
            f"{_where(where)}{name}={_show(value)} must be a number{unit_text}, not {type(value).__name__} "
            f"(write {name}=1e-8, not {name}='1e-8')."
        )
    out = float(value)
    if not math.isfinite(out):
        raise SchemaError(f"{_where(where)}{name}={out} must be a finite number{unit_text}.")
    if positive and out <= 0:
        raise SchemaError(f"{_where(where)}{name}={out:g} must be positive (> 0){unit_text}.")
    if minimum is not None and out < minimum:
        raise SchemaError(f"{_where(where)}{name}={out:g} must be ≥ {minimum:g}{unit_text}.")
    if maximum is not None and out > maximum:
        raise SchemaError(f"{_where(where)}{name}={out:g} must be ≤ {maximum:g}{unit_text}.")
    return out


def optional_real(name: str, value: Any, where: str = "", **bounds: Any) -> float | None:
    """:func:`real`, or None."""
    return None if value is None else real(name, value, where, **bounds)


def choice(name: str, value: Any, options: Sequence[Any], where: str = "") -> Any:
    """``value`` if it is one of ``options`` (with a "did you mean" otherwise)."""
    scalar = isinstance(value, (str, int, float, bool, type(None)))
    if scalar and any(value == o and type(value) is type(o) for o in options):
        return value
    hint = did_you_mean(value, [str(o) for o in options]) if isinstance(value, str) else ""
    raise SchemaError(f"{_where(where)}{name}={_show(value)} is not one of {list(options)}{hint}.")


def path(name: str, value: Any, where: str = "", allow_none: bool = True) -> str | os.PathLike | None:
    """A file path (str or path-like)."""
    if value is None and allow_none:
        return None
    if isinstance(value, (str, os.PathLike)) and str(value):
        return value
    raise SchemaError(f"{_where(where)}{name}={_show(value)} must be a file path (text), e.g. {name}='data/P1.cxi'.")


def seed(name: str, value: Any, where: str = "") -> int:
    """A non-negative integer seed for :func:`numpy.random.default_rng`."""
    return integer(name, value, where, minimum=0)


# ------------------------------------------------------------------ units plausibility
def energy_ev(name: str, values: Any, where: str = "") -> np.ndarray:
    """X-ray photon energies in eV; refuses values outside 100 eV – 100 keV, hinting keV/J slips."""
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return arr
    lo, hi = ENERGY_RANGE_EV
    if finite.min() >= lo and finite.max() <= hi:
        return arr
    bad = finite[(finite < lo) | (finite > hi)][0]
    hint = ""
    if 0.1 <= bad <= 100:
        hint = f" It looks like keV: multiply by 1000 (e.g. {bad * 1000:g} eV)."
    elif 1e-17 <= bad <= 2e-14:
        hint = " It looks like joules: divide by the elementary charge 1.602e-19."
    raise SchemaError(
        f"{_where(where)}{name} = {bad:g} is not a plausible X-ray energy in eV (expected {lo:g}–{hi:g} eV).{hint}"
    )


def _plausible_metres(
    name: str, value: Any, where: str, bounds: tuple[float, float], what: str, hint: Callable[[float], str]
) -> float:
    """A positive length in metres inside ``bounds``; outside, a SchemaError naming ``what`` and ``hint(value)``."""
    out = real(name, value, where, positive=True, unit="m")
    lo, hi = bounds
    if lo <= out <= hi:
        return out
    raise SchemaError(f"{_where(where)}{name} = {out:g} m is not a plausible {what} ({lo:g}–{hi:g} m).{hint(out)}")


def _distance_hint(out: float) -> str:
    if 50 <= out <= 20_000:
        return f" It looks like mm: give {out / 1000:g} m."
    if DISTANCE_RANGE_M[1] < out < 50:
        return f" If it is in cm, give {out / 100:g} m."
    return ""


def distance_m(name: str, value: Any, where: str = "") -> float:
    """A sample–detector distance in metres (0.05–20 m), hinting mm/cm slips."""
    return _plausible_metres(name, value, where, DISTANCE_RANGE_M, "detector distance", _distance_hint)


def detector_pixel_m(name: str, value: Any, where: str = "") -> float:
    """A detector pixel size in metres (0.1 µm – 10 mm), hinting µm slips."""

    def hint(out: float) -> str:
        return f" It looks like µm: give {out * 1e-6:g} m." if 0.1 <= out <= 10_000 else ""

    return _plausible_metres(name, value, where, DETECTOR_PIXEL_RANGE_M, "detector pixel size", hint)


def scan_extent(
    position_y: Any, position_x: Any, pixel_size: float, where: str = "", minimum_pixels: float = 1.0
) -> None:
    """Refuse a scan whose positions span less than ``minimum_pixels`` object pixels.

    A unit slip in energy (keV), distance (mm) or positions (nm given as m) makes the
    object pixel 10³ too large or the scan 10³ too small: every scan point then lands on
    about one pixel and ePIE runs on garbage without complaint.
    """
    py, px = np.asarray(position_y, dtype=np.float64), np.asarray(position_x, dtype=np.float64)
    ok = np.isfinite(py) & np.isfinite(px)
    if ok.sum() < 2:
        return
    span = max(np.ptp(py[ok]), np.ptp(px[ok]))
    if span == 0:
        return  # a single repeated position is legal (e.g. a stationary probe test)
    if span / pixel_size < minimum_pixels:
        raise SchemaError(
            f"{_where(where)}the scan positions span {span:.3g} m = {span / pixel_size:.2g} object pixel(s) of "
            f"{pixel_size:.3g} m: the whole scan lands on about one pixel. Check the units: energies in eV (not "
            "keV), detector distance and pixel size in m (not mm/µm), positions in m (not nm/µm)."
        )


def finite_array(name: str, values: Any, where: str = "", dtype: Any = np.float32, squared: bool = False) -> np.ndarray:
    """An array that stays finite in ``dtype`` (a finite 1e20 overflows float32 to inf).

    With ``squared`` the sum of ``|values|²`` must fit too (probe intensities are summed).
    """
    arr = np.asarray(values)
    if arr.dtype.kind not in "fciu":
        raise SchemaError(f"{_where(where)}{name} must hold numbers, not {arr.dtype}.")
    if not np.isfinite(arr).all():
        raise SchemaError(f"{_where(where)}{name} holds NaN/inf values.")
    limit = float(np.finfo(np.dtype(dtype)).max)
    if squared:
        limit = math.sqrt(limit / max(arr.size, 1))
    big = float(np.max(np.abs(arr.astype(np.complex128 if arr.dtype.kind == "c" else np.float64)))) if arr.size else 0.0
    if big >= limit:
        raise SchemaError(
            f"{_where(where)}{name} holds values up to {big:.3g}, beyond what {np.dtype(dtype).name} arithmetic "
            f"holds ({limit:.3g}); rescale it (only its shape matters: ptyxr scales it to the measured counts)."
        )
    return arr


def _attr_number(ds: Any, name: str) -> float | None:
    try:
        value = float(ds.attrs[name])
    except (KeyError, TypeError, ValueError):
        return None  # missing or not a number: schema.validate_raw says so
    return value if math.isfinite(value) and value > 0 else None


def raw_units(ds: Any, pixel_size: Any = None, where: str = "") -> None:
    """Units plausibility of a raw scan series (energies, distance, pixel size, scan extent).

    Lenient about structure (a missing attr is left to :func:`ptyxr.schema.validate_raw`),
    strict about magnitudes: each unit slip is named with the likely fix.
    """
    from ptyxr.optics import real_space_pixel_size
    from ptyxr.schema import (
        ATTR_DETECTOR_DISTANCE,
        ATTR_DETECTOR_PIXEL_SIZE,
        DET_Y,
        ENERGY,
        POSITION_X,
        POSITION_Y,
    )

    energy = None
    if ENERGY in getattr(ds, "coords", {}) and np.asarray(ds[ENERGY].values).dtype.kind in "fiu":
        energy = energy_ev(f"{ENERGY} coordinate", ds[ENERGY].values, where)
    z, p = _attr_number(ds, ATTR_DETECTOR_DISTANCE), _attr_number(ds, ATTR_DETECTOR_PIXEL_SIZE)
    if z is not None:
        distance_m(f"attr {ATTR_DETECTOR_DISTANCE!r}", z, where)
    if p is not None:
        detector_pixel_m(f"attr {ATTR_DETECTOR_PIXEL_SIZE!r}", p, where)
    if pixel_size is not None:
        dx = real("pixel_size", pixel_size, where, positive=True, unit="m")
    elif energy is not None and z is not None and p is not None and DET_Y in ds.sizes and energy.size:
        dx = float(np.min(real_space_pixel_size(energy[np.isfinite(energy)], z, p, ds.sizes[DET_Y])))
    else:
        return
    if POSITION_Y in ds and POSITION_X in ds:
        py, px = np.asarray(ds[POSITION_Y].values), np.asarray(ds[POSITION_X].values)
        if py.dtype.kind in "fiu" and px.dtype.kind in "fiu" and py.shape == px.shape:
            scan_extent(py, px, dx, where)


def parse_memory_limit(value: Any) -> int | None:
    """``memory_limit`` in bytes: a number, or text such as ``"1.5GB"``, ``"800 MiB"`` (None stays None).

    Decimal (kB, MB, GB, TB) and binary (KiB, MiB, GiB, TiB) units as in :func:`dask.utils.parse_bytes`.

    Raises
    ------
    ValueError
        Text that is not a size, or a size that is not positive.
    TypeError
        Anything but a number or text.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating, str)):
        raise TypeError(f"memory_limit must be a number of bytes or text like '1.5GB', got {type(value).__name__}")
    if isinstance(value, str):
        from dask.utils import parse_bytes

        try:
            size = float(parse_bytes(value.strip()))
        except (ValueError, TypeError) as err:
            raise ValueError(f"memory_limit={value!r} is not a size; write bytes or text like '1.5GB'") from err
    else:
        size = float(value)
    if not (math.isfinite(size) and size > 0):
        raise ValueError(f"memory_limit must be a positive size in bytes, got {value!r}")
    return int(size)


def byte_size(name: str, value: Any, where: str = "") -> int:
    """A memory size in bytes: a positive number, or text such as ``"1.5GB"`` / ``"800MiB"``."""
    try:
        size = parse_memory_limit(value)
        if size is None:
            raise ValueError("a size is needed here, not None")
        return size
    except (TypeError, ValueError) as err:
        raise SchemaError(f"{_where(where)}{name}={_show(value)}: {err}.") from err


#: ``reconstruct`` arguments: (kind, bounds) for :func:`reconstruct_arguments`.
_RECONSTRUCT_INTS = {
    "iterations": 1,
    "probe_update_start": 0,
    "checkpoint_every": 1,
    "interpolation": 1,
    "position_correction_every": 1,
}
#: ``reconstruct(recentre_probe=...)`` modes (ptyxr.reconstruct.centring); the bools are the
#: earlier spelling: True = "centre", False = "off"
RECENTRE_MODES: tuple[str, ...] = ("relative", "centre", "off")
RECENTRE_FROM_BOOL: dict[bool, str] = {True: "centre", False: "off"}
RECENTRE_PROBE_OPTIONS = (*RECENTRE_MODES, True, False)
#: ``fit_xanes(edge_step=...)``: eq. (1)'s erf step (default), or the free erf+arctan shape
EDGE_STEPS: tuple[str, ...] = ("erf", "erf+arctan")
#: optional ints (None = a default derived from ``iterations``)
_RECONSTRUCT_OPTIONAL_INTS = {"kkr_start": 0, "kkr_every": 1, "position_correction_start": 1}
_RECONSTRUCT_BOOLS = (
    "kkr",
    "kkr_skip_last",
    "use_monitor",
    "refine_flux",
    "update_probe",
    "progress",
    "keep_raw",
    "pin_scale",
    "mask_dead_pixels",
    "native_grids",
    "position_correction",
)


def reconstruct_arguments(ds: Any, **kwargs: Any) -> None:
    """Check every argument of :func:`ptyxr.reconstruct.api.reconstruct` (types, ranges, NaN, units)."""
    from ptyxr.schema import PROBE_GUESS

    where = "reconstruct"
    from ptyxr.schema import PARTICLE

    if PARTICLE in getattr(ds, "dims", ()) and ds.sizes[PARTICLE] == 0:
        raise SchemaError(f"{where}: the {PARTICLE!r} dim has length 0 (no particle to reconstruct).")
    for name, minimum in _RECONSTRUCT_INTS.items():
        if name in kwargs:
            integer(name, kwargs[name], where, minimum=minimum)
    for name, minimum in _RECONSTRUCT_OPTIONAL_INTS.items():
        if kwargs.get(name) is not None:
            integer(name, kwargs[name], where, minimum=minimum)
    if "interpolation" in kwargs:
        choice("interpolation", int(kwargs["interpolation"]), (1, 3), where)
    if "probe_modes" in kwargs:
        integer("probe_modes", kwargs["probe_modes"], where, minimum=1, maximum=MAX_PROBE_MODES)
    if "algorithm" in kwargs:  # its step options are checked by ptyxr.reconstruct.momentum.resolve
        choice("algorithm", kwargs["algorithm"], ("epie", "mpie"), where)
    for name in _RECONSTRUCT_BOOLS:
        if name in kwargs:
            boolean(name, kwargs[name], where)
    if "recentre_probe" in kwargs:
        choice("recentre_probe", kwargs["recentre_probe"], RECENTRE_PROBE_OPTIONS, where)
    for name in ("alpha", "beta"):
        if name in kwargs:
            real(name, kwargs[name], where, minimum=0.0, maximum=2.0)  # ePIE is stable for steps in (0, 2]
    if "kkr_weight" in kwargs:
        real("kkr_weight", kwargs["kkr_weight"], where, minimum=0.0, maximum=1.0)
    if "coverage_threshold" in kwargs:
        real("coverage_threshold", kwargs["coverage_threshold"], where, minimum=0.0, maximum=1.0)
    if "position_max_shift" in kwargs:
        # pixels; beyond ~50 px a "position error" is a wrong scan file, and the grid is padded by it
        real("position_max_shift", kwargs["position_max_shift"], where, positive=True, maximum=50.0, unit="px")
    if "seed" in kwargs:
        seed("seed", kwargs["seed"], where)
    for name in ("checkpoint", "resume_from"):
        if name in kwargs:
            path(name, kwargs[name], where)
    for name in ("engine", "fft_backend", "kkr_element", "kkr_table"):
        if name in kwargs and not isinstance(kwargs[name], str):
            raise SchemaError(f"{where}: {name}={_show(kwargs[name])} must be text, e.g. {name}='auto'.")
    if kwargs.get("memory_limit") is not None:
        byte_size("memory_limit", kwargs["memory_limit"], where)
    pixel_size = kwargs.get("pixel_size")
    if pixel_size is not None:
        pixel_size = real("pixel_size", pixel_size, where, positive=True, unit="m")
    if hasattr(ds, "attrs"):
        raw_units(ds, pixel_size, where)
        if PROBE_GUESS in getattr(ds, "data_vars", {}):
            finite_array(repr(PROBE_GUESS), ds[PROBE_GUESS].values, where, dtype=np.complex64, squared=True)


# ------------------------------------------------------------------ per-stage argument tables
def _int_at_least(minimum: int) -> Callable[[str, Any, str], Any]:
    return lambda name, value, where: integer(name, value, where, minimum=minimum)


def _real_between(lo: float | None = None, hi: float | None = None, positive: bool = False, unit: str = ""):
    return lambda name, value, where: real(name, value, where, minimum=lo, maximum=hi, positive=positive, unit=unit)


def _optional(check: Callable[[str, Any, str], Any]) -> Callable[[str, Any, str], Any]:
    return lambda name, value, where: None if value is None else check(name, value, where)


def _one_of(*options: Any) -> Callable[[str, Any, str], Any]:
    return lambda name, value, where: choice(name, value, options, where)


def _energy_scalar(name: str, value: Any, where: str) -> float:
    out = real(name, value, where, unit="eV")
    energy_ev(name, out, where)
    return out


def _chunks(name: str, value: Any, where: str) -> None:
    if value is None or value == "auto":
        return
    if isinstance(value, dict):
        for key, size in value.items():
            if size is not None and size != "auto":
                integer(f"{name}[{key!r}]", size, where, minimum=1)
        return
    integer(name, value, where, minimum=1)


def _mask_like(name: str, value: Any, where: str, ds: Any) -> None:
    """A boolean (y, x) DataArray on the Dataset's own grid."""
    import xarray as xr

    from ptyxr.schema import ABSORPTION, X, Y

    if value is None:
        return
    if not isinstance(value, xr.DataArray):
        raise SchemaError(f"{where}: {name} must be a boolean xarray.DataArray on dims (y, x), got {type(value)}.")
    if value.dtype != bool:
        raise SchemaError(f"{where}: {name} must be boolean (True inside a particle), got dtype {value.dtype}.")
    if set(value.dims) != {Y, X}:
        raise SchemaError(f"{where}: {name} has dims {value.dims}, expected ({Y!r}, {X!r}).")
    if isinstance(ds, xr.Dataset) and ABSORPTION in ds:
        want = {d: ds[ABSORPTION].sizes[d] for d in (Y, X) if d in ds[ABSORPTION].dims}
        got = {d: value.sizes[d] for d in (Y, X)}
        if want and got != want:
            raise SchemaError(
                f"{where}: {name} is {got} but the maps are {want}; give a mask of the same grid "
                f"(e.g. ds.{name} or a mask computed from this Dataset)."
            )


def _features(name: str, value: Any, where: str) -> None:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise SchemaError(
            f"{where}: {name}={_show(value)} must be a non-empty list of variable names (at least one feature)."
        )
    for v in value:
        if not isinstance(v, str):
            raise SchemaError(f"{where}: {name} holds {_show(v)}; give variable names (text).")


def _ks(name: str, value: Any, where: str) -> None:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, range, np.ndarray)) or not len(value):
        raise SchemaError(
            f"{where}: {name}={_show(value)} must be a non-empty list of cluster counts (at least one), "
            "e.g. k=[1, 2, 3]."
        )
    for v in value:
        integer(f"{name} entry", v, where, minimum=1)


_BOOL = boolean
_SEED = seed
#: domains' feature scaling: True/False or a named method (see ptyxr.domains.standardise)
_STANDARDIZE = _one_of(True, False, "zscore", "robust", "none")

#: Checks per public function: argument name → check(name, value, where).
ARGUMENTS: dict[str, dict[str, Callable[[str, Any, str], Any]]] = {
    "align": {
        "reference": _optional(_energy_scalar),
        "upsample": _int_at_least(1),
        "image": _one_of("phase", "absorption"),
        "progress": _BOOL,
        "edges": _BOOL,
        "smooth": _real_between(lo=0.0),
    },
    "spectra": {
        "material_sigma": _real_between(positive=True),
        "reference_energy": _optional(_energy_scalar),
        "unwrap": _BOOL,
        "background_sigma": _real_between(positive=True),
    },
    "fit_xanes": {
        "method": _one_of("batch", "lmfit"),
        "noise": _one_of("paper", "detrended"),
        "pre_edge_limit": _energy_scalar,
        "progress": _BOOL,
        "chunks": _chunks,
        "keep_fit_curve": _BOOL,
        "min_edge_significance": _real_between(lo=0.0),
        "max_edge_stderr": _real_between(positive=True, unit="eV"),
        "edge_step": _one_of(*EDGE_STEPS),
    },
    "chemical_state": {
        "table": _one_of("paper", "henke", "chantler"),
        "reference_energy": _optional(_energy_scalar),
        "delta_f2": _optional(_real_between()),
        "edge_jump_correction": _BOOL,
    },
    "cluster": {
        "n_clusters": _int_at_least(1),
        "features": _features,
        "seed": _SEED,
        "standardize": _STANDARDIZE,
        "weighted_fit": _BOOL,
        "outlier_threshold": _optional(_real_between(positive=True)),
        "bootstrap": _int_at_least(0),
        "confidence": _real_between(0.0, 1.0, positive=True),
    },
    "elbow": {
        "k": _ks,
        "features": _features,
        "seed": _SEED,
        "standardize": _STANDARDIZE,
        "sample": _optional(_int_at_least(1)),
        "progress": _BOOL,
    },
    "scan_from_arrays": {
        "detector_distance": distance_m,
        "detector_pixel_size": detector_pixel_m,
        "probe_fwhm": _optional(_real_between(positive=True, unit="m")),
        "probe_defocus": _optional(_real_between(unit="m")),
        "positions_in": _one_of("m", "mm", "um", "µm", "nm", "pixels"),
    },
    "open_scan": {
        "energy": _optional(lambda name, value, where: energy_ev(name, value, where)),
        "distance": _optional(distance_m),
        "pixel_size": _optional(detector_pixel_m),
        "crop": _optional(_int_at_least(1)),
        "flip_translation": _BOOL,
        "transpose": _BOOL,
        "flip_y": _BOOL,
        "flip_x": _BOOL,
        "probe_fwhm": _optional(_real_between(positive=True, unit="m")),
        "probe_defocus": _optional(_real_between(unit="m")),
    },
    # checked as a whole by reconstruct_arguments (its checks depend on each other and on the data)
    "reconstruct": {},
}


def arguments(function: str, values: Mapping[str, Any]) -> None:
    """Check the arguments of public function ``function`` (call as ``arguments("cluster", locals())``)."""
    for name, check in ARGUMENTS[function].items():
        if name in values:
            check(name, values[name], function)
    if function == "reconstruct":
        data = next(iter(values.values()), None)  # the data argument comes first
        reconstruct_arguments(data, **{k: v for k, v in list(values.items())[1:]})
    if function == "fit_xanes" and "material" in values and "ds" in values:
        _mask_like("material", values["material"], function, values["ds"])
    if function == "scan_from_arrays" and "energy" in values:
        try:
            energy = np.asarray(values["energy"], dtype=np.float64)
        except (TypeError, ValueError):
            return  # not numbers: build_raw says so
        energy_ev("energy", energy, function)


def particle_datasets(datasets: Any) -> None:
    """Input of :func:`ptyxr.combine_particles`: Datasets (or one), each with a non-empty particle dim if any.

    Refuses Datasets without an ``energy`` coordinate when others have one: xarray would
    align them by position and silently stack two energy axes.
    """
    import xarray as xr

    from ptyxr.schema import ENERGY, PARTICLE

    where = "combine_particles"
    if isinstance(datasets, xr.Dataset):
        datasets = [datasets]
    if isinstance(datasets, (str, bytes, Mapping)) or not isinstance(datasets, Iterable):
        raise SchemaError(
            f"{where}: datasets={_show(datasets)} must be a list of xarray.Datasets (one per particle), e.g. "
            "combine_particles([p1, p2])."
        )
    datasets = list(datasets)
    for i, ds in enumerate(datasets):
        if not isinstance(ds, xr.Dataset):
            raise SchemaError(f"{where}: item {i} is a {type(ds).__name__}, not an xarray.Dataset.")
        if PARTICLE in ds.dims and ds.sizes[PARTICLE] == 0:
            raise SchemaError(f"{where}: Dataset {i} has a {PARTICLE!r} dim of length 0 (no particle in it).")
    with_energy = [ENERGY in ds.dims for ds in datasets]
    with_coord = [ENERGY in ds.coords for ds in datasets]
    if any(with_energy) and not all(c for c, e in zip(with_coord, with_energy, strict=True) if e):
        missing = [i for i, (c, e) in enumerate(zip(with_coord, with_energy, strict=True)) if e and not c]
        raise SchemaError(
            f"{where}: Dataset(s) {missing} have an {ENERGY!r} dim without an {ENERGY!r} coordinate [eV]; "
            f"the energies could not be matched. Assign it: ds.assign_coords({ENERGY}=energies_in_eV)."
        )
