"""The XDI reader (ptyxr.io.xdi): columns, absorption and header of a bundled reference file."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest

from ptyxr.io.xdi import read_xdi
from ptyxr.schema import SchemaError


def _xdi_path(name: str):
    return resources.files("ptyxr") / "data" / "xanes" / f"{name}.xdi"


def test_read_xdi_columns_mu_and_header():
    with resources.as_file(_xdi_path("V2O5")) as path:
        ds = read_xdi(path)
        table = np.loadtxt(path)  # independent parse of the numeric block
    np.testing.assert_array_equal(ds["energy"].values, table[:, 0])
    np.testing.assert_allclose(ds["mu"].values, np.log(table[:, 2] / table[:, 3]), rtol=1e-14)
    assert ds.attrs["xdi_Sample.name"] == "V2O5" and ds.attrs["xdi_Element.symbol"] == "V"
    assert ds["energy"].attrs["units"] == "eV" and ds["mu"].attrs["units"] == "1"
    assert "13BMD" not in ds.attrs["xdi_Beamline.I0_sensitivity_value"]  # EPICS PV names stripped
    assert ";" in ds.attrs["xdi_Beamline.I0_sensitivity_value"]  # repeated key kept, not lost


def test_read_xdi_rejects_non_xdi(tmp_path):
    bad = tmp_path / "bad.xdi"
    bad.write_text("energy i0\n1 2\n")
    with pytest.raises(SchemaError, match="not an XDI file"):
        read_xdi(bad)
    noenergy = tmp_path / "noenergy.xdi"
    noenergy.write_text("# XDI/1.0\n# Column.1: angle deg\n# Column.2: i0\n#---\n1 2\n2 3\n")
    with pytest.raises(SchemaError, match="no column named 'energy'"):
        read_xdi(noenergy)
