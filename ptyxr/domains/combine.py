"""``combine_particles``: all particles on one pixel grid along a ``particle`` dim."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ptyxr import checks as _checks
from ptyxr import provenance
from ptyxr.domains._common import PIXEL_SIZE_RTOL, UNSPECIFIED_CONDITION, _coord
from ptyxr.schema import (
    ATTR_CONDITION,
    ATTR_PARTICLE,
    ATTR_PIXEL_SIZE,
    CONDITION,
    ENERGY,
    MISSING_DOMAIN,
    PARTICLE,
    SchemaError,
    X,
    Y,
    length_coord,
    require_dataset,
    variable,
)


# ================================================================= combine particles
def _pixel_sizes(ds: xr.Dataset) -> tuple[float | None, float | None]:
    sizes: list[float | None] = []
    for name in (Y, X):
        if name not in ds.coords:
            sizes.append(None)
            continue
        coord = ds[name]
        if ATTR_PIXEL_SIZE in coord.attrs:
            sizes.append(float(coord.attrs[ATTR_PIXEL_SIZE]))
        elif coord.size > 1:
            sizes.append(float(np.median(np.abs(np.diff(coord.values)))))
        else:
            sizes.append(None)
    return sizes[0], sizes[1]


def _split_particles(datasets: Sequence[xr.Dataset]) -> list[tuple[str, str, xr.Dataset]]:
    """(name, condition, Dataset without particle coords) for every particle of ``datasets``."""
    stage = "combine_particles"
    items = []
    for i, ds in enumerate(datasets):
        require_dataset(ds, stage)
        if PARTICLE in ds.dims:
            for j in range(ds.sizes[PARTICLE]):
                one = ds.isel({PARTICLE: j})
                name = str(one[PARTICLE].values) if PARTICLE in one.coords else f"{i}-{j}"
                condition = (
                    str(one[CONDITION].values)
                    if CONDITION in one.coords
                    else str(ds.attrs.get(ATTR_CONDITION, UNSPECIFIED_CONDITION))
                )
                items.append((name, condition, one))
            continue
        if ATTR_PARTICLE not in ds.attrs:
            raise SchemaError(
                f"{stage}: Dataset {i} has no attrs[{ATTR_PARTICLE!r}] naming its particle; set "
                f"ds.attrs[{ATTR_PARTICLE!r}] = 'P1' (and attrs[{ATTR_CONDITION!r}]) before combining."
            )
        items.append((str(ds.attrs[ATTR_PARTICLE]), str(ds.attrs.get(ATTR_CONDITION, UNSPECIFIED_CONDITION)), ds))
    names = [name for name, _, _ in items]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SchemaError(
            f"{stage}: particle names must be unique, {duplicates} occur more than once; "
            f"rename them in attrs[{ATTR_PARTICLE!r}]."
        )
    return [
        (name, cond, ds.drop_vars([c for c in (PARTICLE, CONDITION) if c in ds.coords])) for name, cond, ds in items
    ]


def _fill_value(dtype: np.dtype) -> Any:
    """Padding value of a dtype: NaN for floats/complex, False for bool, −1 for integers."""
    if np.issubdtype(dtype, np.bool_):
        return False
    if np.issubdtype(dtype, np.integer):
        return MISSING_DOMAIN
    if np.issubdtype(dtype, np.inexact):
        return np.nan
    return None


def combine_particles(datasets: Sequence[xr.Dataset] | xr.Dataset) -> xr.Dataset:
    """Stack per-particle Datasets along a new ``particle`` dim on one padded pixel grid.

    Parameters
    ----------
    datasets : sequence of xarray.Dataset
        One Dataset per particle (any stage: typically after ``chemical_state``), each
        naming its particle in ``attrs["particle"]`` and optionally its condition in
        ``attrs["condition"]``. Datasets that already have a ``particle`` dim are split
        into their particles first.

    Returns
    -------
    xarray.Dataset
        Every variable gains a leading ``particle`` dim (coord = particle names, non-dim
        coord ``condition``). y/x are pixel-offset coordinates ``i × pixel_size`` [m]
        from each particle's own first pixel (attr ``pixel_size`` = the first particle's);
        smaller grids are padded at the far end with NaN (float/complex), False (bool)
        or −1 (integers, e.g. ``domain``). Other dims of different lengths (scan points,
        iterations) are padded the same way. Attrs shared by all particles are kept.

    Raises
    ------
    SchemaError
        Missing or duplicate particle names, pixel sizes differing by more than 1 %,
        or different energy grids.
    """
    _checks.particle_datasets(datasets)
    stage = "combine_particles"
    if isinstance(datasets, xr.Dataset):
        datasets = [datasets]
    if len(datasets) == 0:
        raise SchemaError(f"{stage} needs at least one Dataset.")
    items = _split_particles(datasets)

    reference = None
    for name, _, ds in items:
        sizes = _pixel_sizes(ds)
        if reference is None and sizes[0] is not None:
            reference = sizes
        for axis, size, ref in zip((Y, X), sizes, reference or (None, None), strict=True):
            if size is not None and ref is not None and abs(size - ref) > PIXEL_SIZE_RTOL * ref:
                raise SchemaError(
                    f"{stage}: particle {name!r} has {axis} pixel size {size:.4g} m, the first "
                    f"particle {ref:.4g} m (> 1 % apart); resample to a common pixel size "
                    "(reconstruct(pixel_size=...)) before combining."
                )
    energies = [np.asarray(ds[ENERGY].values, float) for _, _, ds in items if ENERGY in ds.coords]
    for e in energies[1:]:
        if e.shape != energies[0].shape or not np.allclose(e, energies[0], rtol=0, atol=1e-6):
            raise SchemaError(
                f"{stage}: particles have different energy grids; interpolate them to one grid "
                "(ds.interp(energy=...)) before combining."
            )

    prepared: list[xr.Dataset] = []
    temporary: set[Any] = set()
    fills: dict[Any, Any] = {}
    for _, _, ds in items:
        coords = {}
        for axis, size in zip((Y, X), reference or (None, None), strict=True):
            if axis in ds.dims and size is not None:
                coords[axis] = length_coord(axis, np.arange(ds.sizes[axis]) * size, size)
        ds = ds.assign_coords(coords)
        bare = [d for d in ds.dims if d not in ds.indexes]  # e.g. scan: give an index so outer join pads
        temporary.update(bare)
        ds = ds.assign_coords({d: np.arange(ds.sizes[d]) for d in bare})
        for var_name, da in ds.data_vars.items():
            fill = _fill_value(da.dtype)
            if fill is not None:
                fills.setdefault(var_name, fill)
        prepared.append(ds)
    combined = xr.concat(
        prepared,
        dim=PARTICLE,
        data_vars="all",
        coords="different",
        compat="equals",
        join="outer",
        fill_value=fills,
        combine_attrs="drop_conflicts",
    )
    combined = combined.drop_vars([d for d in temporary if d in combined.coords])
    origin = "pixel offset from each particle's own first pixel (combine_particles)"
    for axis, size in zip((Y, X), reference or (None, None), strict=True):
        if axis in combined.dims and size is not None:
            combined = combined.assign_coords({axis: length_coord(axis, combined[axis].values, size)})
            combined[axis].attrs["origin"] = origin
    combined = combined.assign_coords(
        {
            PARTICLE: _coord(PARTICLE, [n for n, _, _ in items]),
            CONDITION: variable(CONDITION, np.asarray([c for _, c, _ in items]), dims=(PARTICLE,)),
        }
    )
    for attr in (ATTR_PARTICLE, ATTR_CONDITION):
        combined.attrs.pop(attr, None)
    return provenance.record(
        combined,
        stage,
        {
            "particles": [n for n, _, _ in items],
            "conditions": [c for _, c, _ in items],
            "pixel_size": list(reference) if reference else None,
            "grid": "aligned by pixel index",
        },
    )
