"""Checkpoints of the ``reconstruct`` stage: atomic netCDF solver state, fingerprinted.

A checkpoint holds the solver state (object, probe, Fourier errors, iteration count, RNG
state) and, in attr ``ptyxr_checkpoint``, the settings that determine the result and a
fingerprint of the input data (BLAKE2b of the intensities, positions, energies, detector
mask, probe guess, monitor and geometry attrs). ``resume_from`` refuses a checkpoint whose
fingerprint or settings differ from the run's, naming what differs, and one that holds
more iterations than asked for (its state is later than the run's end).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ptyxr.checks import RECENTRE_FROM_BOOL
from ptyxr.reconstruct.grid import Grid
from ptyxr.schema import (
    ATTR_CHECKPOINT,
    ATTR_DETECTOR_DISTANCE,
    ATTR_DETECTOR_PIXEL_SIZE,
    ATTR_ITERATIONS_DONE,
    ATTR_PIXEL_SIZE,
    ATTR_PROBE_DEFOCUS,
    ATTR_PROBE_FWHM,
    ATTR_RNG_STATE,
    DETECTOR_MASK,
    ENERGY,
    FOURIER_ERROR,
    IMAG_SUFFIX,
    INTENSITY,
    ITERATION,
    MONITOR,
    OBJECT,
    POSITION_X,
    POSITION_Y,
    PROBE,
    PROBE_GUESS,
    PROBE_MODE,
    PROBE_X,
    PROBE_Y,
    REAL_SUFFIX,
    SchemaError,
    X,
    Y,
)

STAGE = "reconstruct"
#: Key of the data fingerprint in the checkpoint's settings.
DATA_KEY = "data_fingerprint"


def data_fingerprint(ds: xr.Dataset) -> str:
    """BLAKE2b digest of everything in a raw scan that the reconstruction reads.

    Intensities are hashed one energy at a time (bounded memory, dask-friendly), as
    float32 with the values the solver sees, so the same counts stored as int or float
    give the same fingerprint.
    """
    digest = hashlib.blake2b(digest_size=16)
    for e in range(ds.sizes[ENERGY]):
        frames = np.ascontiguousarray(np.asarray(ds[INTENSITY].isel({ENERGY: e}).values, dtype=np.float32))
        digest.update(frames.tobytes())
    for name in (POSITION_Y, POSITION_X, DETECTOR_MASK, PROBE_GUESS, MONITOR):
        if name in ds:
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(ds[name].values).tobytes())
    digest.update(np.ascontiguousarray(ds[ENERGY].values, dtype=np.float64).tobytes())
    attrs = [ATTR_DETECTOR_DISTANCE, ATTR_DETECTOR_PIXEL_SIZE, ATTR_PROBE_FWHM, ATTR_PROBE_DEFOCUS]
    digest.update(json.dumps({a: str(ds.attrs.get(a)) for a in attrs}).encode())
    return digest.hexdigest()


#: settings whose recorded values were renamed: a checkpoint of an earlier version records
#: ``recentre_probe`` as a bool (True = today's "centre", False = "off"; session 12)
_LEGACY_VALUES: dict[str, dict[bool, str]] = {"recentre_probe": RECENTRE_FROM_BOOL}


def check_resume(state: dict[str, Any], params: dict[str, Any], energy: np.ndarray, iterations: int, path: Any) -> int:
    """Iterations to skip when resuming from ``state``; refuses a state of other data, settings or a later end."""
    saved = {k: _LEGACY_VALUES.get(k, {}).get(v, v) if isinstance(v, bool) else v for k, v in state["params"].items()}
    differs = [k for k, v in params.items() if saved.get(k) != v]
    if not np.array_equal(state["energy"], energy):
        differs.append("energy")
    if differs:
        what = []
        for k in differs:
            if k == DATA_KEY:
                what.append("the input data (intensities, positions, energies, mask or probe guess differ)")
            elif k == "energy":
                what.append("the energies")
            else:
                what.append(f"{k} (checkpoint {saved.get(k)!r}, this run {params[k]!r})")
        raise SchemaError(
            f"{STAGE}: checkpoint {path} does not match this run: it differs in {'; '.join(what)}. Resume with the "
            "data and settings that wrote it, or start afresh without resume_from."
        )
    if state["done"] > iterations:
        raise SchemaError(
            f"{STAGE}: checkpoint {path} holds {state['done']} iterations, more than iterations={iterations}; its "
            f"state is later than this run's end. Ask for iterations ≥ {state['done']}, or rerun without resume_from "
            "(the checkpoint written at that iteration, if any, is the state you want)."
        )
    return int(state["done"])


def write_checkpoint(
    path: Path,
    energy: np.ndarray,
    grid: Grid,
    obj: np.ndarray,
    probe: np.ndarray,
    errors: np.ndarray,
    done: int,
    rng: np.random.Generator,
    params: dict[str, Any],
    extra: dict[str, tuple[tuple[str, ...], np.ndarray]] | None = None,
) -> None:
    """Write the solver state to ``path`` atomically (temp file in the same dir + os.replace).

    ``extra``: further state arrays ``{name: (dims, values)}`` (e.g. the flux refinement's
    history); :func:`read_checkpoint` returns them under ``"extra"``.
    A mixed-state probe (n_energy, K, N, N) is stored with its ``probe_mode`` dim.
    """
    probe_dims = (ENERGY, PROBE_Y, PROBE_X) if probe.ndim == 3 else (ENERGY, PROBE_MODE, PROBE_Y, PROBE_X)
    ds = xr.Dataset(
        {
            OBJECT + REAL_SUFFIX: ((ENERGY, Y, X), obj.real),
            OBJECT + IMAG_SUFFIX: ((ENERGY, Y, X), obj.imag),
            PROBE + REAL_SUFFIX: (probe_dims, probe.real),
            PROBE + IMAG_SUFFIX: (probe_dims, probe.imag),
            FOURIER_ERROR: ((ENERGY, ITERATION), errors[:, :done]),
            **(extra or {}),
        },
        coords={ENERGY: energy, Y: grid.y, X: grid.x, ITERATION: np.arange(1, done + 1)},
        attrs={
            ATTR_ITERATIONS_DONE: int(done),
            ATTR_RNG_STATE: json.dumps(rng.bit_generator.state),
            ATTR_CHECKPOINT: json.dumps(params),
            ATTR_PIXEL_SIZE: grid.pixel_size,
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4")
        os.replace(tmp, path)  # atomic on POSIX: a crash never leaves a half-written checkpoint
    finally:
        if tmp.exists():
            tmp.unlink()


def read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            ds = ds.load()
    except FileNotFoundError:
        raise FileNotFoundError(f"{STAGE}: checkpoint {path} does not exist.") from None
    except (OSError, ValueError) as err:
        raise OSError(f"{STAGE}: cannot read checkpoint {path} (damaged or not netCDF): {err}") from err
    parts = (OBJECT + REAL_SUFFIX, OBJECT + IMAG_SUFFIX, PROBE + REAL_SUFFIX, PROBE + IMAG_SUFFIX, FOURIER_ERROR)
    missing = [n for n in parts if n not in ds] + [
        a for a in (ATTR_ITERATIONS_DONE, ATTR_RNG_STATE, ATTR_CHECKPOINT) if a not in ds.attrs
    ]
    if missing:
        raise SchemaError(
            f"{STAGE}: {path} is not a ptyxr reconstruct checkpoint (lacks {missing}); pass a file written by "
            "reconstruct(..., checkpoint=path)."
        )
    obj = (ds[OBJECT + REAL_SUFFIX].values + 1j * ds[OBJECT + IMAG_SUFFIX].values).astype(np.complex64)
    probe = (ds[PROBE + REAL_SUFFIX].values + 1j * ds[PROBE + IMAG_SUFFIX].values).astype(np.complex64)
    return {
        "object": obj,
        "probe": probe,
        "errors": ds[FOURIER_ERROR].values.astype(np.float32),
        "done": int(ds.attrs[ATTR_ITERATIONS_DONE]),
        "rng_state": json.loads(ds.attrs[ATTR_RNG_STATE]),
        "params": json.loads(ds.attrs[ATTR_CHECKPOINT]),
        "energy": ds[ENERGY].values,
        "y": ds[Y].values,
        "x": ds[X].values,
        "extra": {name: ds[name].values for name in ds.data_vars if name not in parts},
    }


#: Keys of :meth:`ptyxr.reconstruct.options.RunOptions.record` besides seed/pixel size/steps that change
#: the result (the names of earlier versions: their checkpoints resume; tests/reconstruct/test_options.py).
SETTINGS = (
    "kkr",
    "kkr_start",
    "kkr_every",
    "kkr_weight",
    "update_probe",
    "probe_update_start",
    "coverage_threshold",
    "interpolation",
    "recentre_probe",
    "kkr_options",
)


def settings(ds: xr.Dataset, arguments: dict[str, Any]) -> dict[str, Any]:
    """The data fingerprint and the result-determining settings among ``arguments`` (JSON-able; a run's record)."""
    out: dict[str, Any] = {DATA_KEY: data_fingerprint(ds)}
    for name in SETTINGS:
        if name in arguments:
            out[name] = json.loads(json.dumps(arguments[name], default=str))
    return out
