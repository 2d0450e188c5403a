"""Top-level API: the real functions, loaded lazily (SPEC 1); environment files match pyproject (issue 13: 5, 7)."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import xarray as xr
from repo_paths import ROOT

import ptyxr


@pytest.mark.parametrize(
    ("name", "module", "first"),
    [
        ("open_scan", "ptyxr.io.cxi", "path"),
        ("scan_from_arrays", "ptyxr.io.arrays", "intensity"),
        ("open_dataset", "ptyxr.io.netcdf", "path"),
        ("combine_particles", "ptyxr.domains", "datasets"),
    ],
)
def test_top_level_functions_are_the_real_ones(name, module, first):
    import importlib

    func = getattr(ptyxr, name)
    assert func is getattr(importlib.import_module(module), name)
    assert next(iter(inspect.signature(func).parameters)) == first
    assert "Parameters" in func.__doc__ and not func.__doc__.startswith("See")
    assert name in dir(ptyxr)


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_import_is_lazy_and_submodules_reachable():
    out = _fresh(
        "import sys, ptyxr; heavy = [m for m in ('ptyxr.simulate', 'ptyxr.io.cxi', 'ptyxr.reconstruct.api', "
        "'ptyxr.xanes.fit', 'matplotlib') if m in sys.modules]; print(heavy); "
        "print(ptyxr.simulate.__name__, ptyxr.reconstruct.__name__, ptyxr.open_scan.__module__)"
    )
    assert out.splitlines() == ["[]", "ptyxr.simulate ptyxr.reconstruct ptyxr.io.cxi"]


def test_unknown_top_level_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'open_scna'"):
        ptyxr.open_scna  # noqa: B018


def test_plot_methods_show_the_real_options():
    plot = xr.Dataset().ptyxr.plot
    assert "absorption_energy" in inspect.signature(plot.figure1).parameters
    assert "maps" in inspect.signature(plot.chemical_maps).parameters
    assert "features" in inspect.signature(plot.domains).parameters


def test_accessor_keeps_stage_signature_and_docstring():
    bound = xr.Dataset().ptyxr.fit_xanes
    assert "chunks" in inspect.signature(bound).parameters and "ds" not in inspect.signature(bound).parameters
    assert bound.__doc__ == ptyxr.xanes.fit.fit_xanes.__doc__


# ------------------------------------------------------------------ environment files
_CONDA_NAMES = {"netcdf4": "netcdf4", "dask": "dask"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _names(requirements: list[str]) -> set[str]:
    out = set()
    for req in requirements:
        name = re.match(r"[A-Za-z0-9_.\-]+", req).group(0).lower()
        if name != "ptyxr":
            out.add(_CONDA_NAMES.get(name, name))
    return out


def _conda_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*-\s+([A-Za-z0-9_.\-]+)", line)
        if m:
            names.add(m.group(1).lower())
    return names


def test_environment_yml_has_every_dependency_and_extra():
    project = _pyproject()["project"]
    wanted = _names(project["dependencies"])
    for extra, reqs in project["optional-dependencies"].items():
        if extra != "all":
            wanted |= _names(reqs)
    missing = sorted(wanted - _conda_names(ROOT / "environment.yml"))
    assert not missing, f"environment.yml lacks {missing} (pyproject dependencies/extras)"
    assert {"numba", "pyfftw"} <= _conda_names(ROOT / "environment.yml")  # the fast extra


def test_binder_has_runtime_viz_fast_and_voila():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    wanted = _names(project["dependencies"]) | _names(extras["viz"]) | _names(extras["fast"]) | {"voila"}
    missing = sorted(wanted - _conda_names(ROOT / "binder" / "environment.yml"))
    assert not missing, f"binder/environment.yml lacks {missing}"


def test_readme_describes_the_markers_as_configured():
    addopts = _pyproject()["tool"]["pytest"]["ini_options"]["addopts"]
    readme = (ROOT / "README.md").read_text()
    for marker in ("slow", "benchmark", "browser"):
        deselected = f"not {marker}" in addopts
        if deselected:
            assert f"-m {marker}" in readme, f"README should say how to run the {marker} tests"
        else:
            assert re.search(rf"{marker}[^.]*run by default", readme, re.I | re.S), (
                f"README: {marker} tests run by default"
            )
