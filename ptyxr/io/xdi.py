"""Reader for XDI 1.x transmission XAFS files (XAS Data Library format).

XDI is a plain-text format: header lines start with ``#`` and hold ``Family.member: value``
fields (``Column.N: name units`` names the data columns), a line of dashes ends the
header, and whitespace-separated numeric columns follow. Specification:
https://github.com/XraySpectroscopy/XAS-Data-Interchange.

:func:`read_xdi` returns an xarray Dataset with the ``energy`` coordinate [eV], every
data column as a variable (the file's own column names), and — when the file has
``i0`` and ``itrans`` columns — the transmission absorption ``mu = ln(i0/itrans)``.
"""

from __future__ import annotations

import os
import re

import numpy as np
import xarray as xr

from ptyxr import schema
from ptyxr.schema import ENERGY, XDI_I0, XDI_ITRANS, XDI_MU, SchemaError

_FIELD = re.compile(r"^#\s*([A-Za-z0-9_]+\.[A-Za-z0-9_]+)\s*:\s*(.*)$")
_COLUMN = re.compile(r"^column\.(\d+)$", re.IGNORECASE)

#: Attr prefix of header fields in the returned Dataset (``xdi_Sample.name`` …).
ATTR_PREFIX = "xdi_"


def _parse_header(lines: list[str], path: str) -> tuple[dict[str, str], dict[int, tuple[str, str]], int]:
    """Header fields, column names/units by 1-based index, and the first data line index."""
    if not lines or not lines[0].lstrip("#").strip().upper().startswith("XDI/"):
        raise SchemaError(f"{path}: not an XDI file (first line must start with '#XDI/1.x').")
    fields: dict[str, str] = {}
    columns: dict[int, tuple[str, str]] = {}
    first_data = len(lines)
    for i, line in enumerate(lines[1:], start=1):
        if not line.startswith("#"):
            first_data = i
            break
        match = _FIELD.match(line)
        if not match:
            continue  # separators, free-text comments and the column-label line
        key, value = match.group(1), match.group(2).split("||")[0].strip()
        column = _COLUMN.match(key)
        if column:
            parts = value.split()
            if parts:
                columns[int(column.group(1))] = (parts[0], parts[1] if len(parts) > 1 else "")
            continue
        # repeated keys (e.g. two Beamline.I0_sensitivity_value lines) are joined, not lost
        fields[key] = f"{fields[key]}; {value}" if key in fields else value
    return fields, columns, first_data


def read_xdi(path: str | os.PathLike) -> xr.Dataset:
    """Read an XDI transmission XAFS file into a Dataset.

    Parameters
    ----------
    path : str or path-like
        The ``.xdi`` file.

    Returns
    -------
    xarray.Dataset
        Coordinate ``energy`` [eV] (sorted, strictly increasing), one variable per data
        column named as in the file's ``Column.N`` fields (``i0``, ``itrans`` [counts] …),
        ``mu`` = ln(i0/itrans) when both columns exist, and the header fields as string
        attrs prefixed ``xdi_`` (e.g. ``xdi_Sample.name``) plus ``source`` (file name).

    Raises
    ------
    SchemaError
        Not an XDI file, no energy column, no data, or repeated energies.
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = fh.read().splitlines()
    fields, columns, first_data = _parse_header(lines, path)
    rows = [line.split() for line in lines[first_data:] if line.strip() and not line.startswith("#")]
    if not rows:
        raise SchemaError(f"{path}: XDI file holds no data rows.")
    try:
        data = np.array(rows, dtype=np.float64)
    except ValueError:
        raise SchemaError(f"{path}: data rows are not all numeric with the same number of columns.") from None
    names = {index: columns.get(index, (f"column_{index}", ""))[0] for index in range(1, data.shape[1] + 1)}
    energy_index = next((i for i, name in names.items() if name.lower() == ENERGY), None)
    if energy_index is None:
        raise SchemaError(f"{path}: no column named {ENERGY!r} in the header (columns: {list(names.values())}).")
    energy_units = columns.get(energy_index, ("", ""))[1]
    if energy_units and energy_units.lower() != schema.EV.lower():
        raise SchemaError(f"{path}: energy column is in {energy_units!r}; only eV is supported.")
    order = np.argsort(data[:, energy_index - 1], kind="stable")
    data = data[order]
    energy = data[:, energy_index - 1]
    if np.any(np.diff(energy) <= 0):
        raise SchemaError(f"{path}: repeated energies in the data; average or drop duplicates first.")

    ds = xr.Dataset(coords={ENERGY: schema.energy_coord(energy)})
    for index, name in names.items():
        if index == energy_index:
            continue
        units = columns.get(index, ("", ""))[1] or schema.DIMENSIONLESS
        if name in schema.SPECS:
            ds[name] = schema.variable(name, data[:, index - 1], dims=(ENERGY,))
        else:  # file-defined column (counttime, ifluor …): the file's own name and units
            ds[name] = xr.DataArray(
                data[:, index - 1], dims=(ENERGY,), attrs={schema.ATTR_UNITS: units, schema.ATTR_LONG_NAME: name}
            )
    if XDI_I0 in ds and XDI_ITRANS in ds:
        with np.errstate(divide="ignore", invalid="ignore"):
            mu = np.log(ds[XDI_I0].values / ds[XDI_ITRANS].values)
        ds[XDI_MU] = schema.variable(XDI_MU, mu, dims=(ENERGY,))
    ds.attrs = {ATTR_PREFIX + key: value for key, value in fields.items()}
    ds.attrs["source"] = os.path.basename(path)
    return ds
