"""Everything the package and the notebooks import is declared for pip and for Binder.

Imports are collected with ``ast`` from every module of ``ptyxr`` and every code cell of
the notebooks (IPython magics stripped), reduced to top-level names, minus the standard
library (``sys.stdlib_module_names``) and ptyxr itself, then mapped to distribution
names. Each distribution must appear in ``pyproject.toml`` (dependencies or an extra)
and in ``binder/environment.yml`` (which must also install ptyxr itself).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib

import pytest
from repo_paths import ROOT

#: import name → distribution name where they differ
DISTRIBUTION = {
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "netCDF4": "netcdf4",
    "IPython": "ipython",
    "mpl_toolkits": "matplotlib",
    "dask": "dask",
}
#: imports provided by a required dependency of a declared distribution (never imported
#: without it): llvmlite ships with numba, threadpoolctl with scikit-learn, pandas with
#: xarray, IPython with ipykernel/ipywidgets
PROVIDED_BY = {"llvmlite": "numba", "threadpoolctl": "scikit-learn", "pandas": "xarray", "ipython": "ipykernel"}
#: distributions whose import appears only as a sub-module (dask.distributed → distributed)
SUBMODULES = {"dask.distributed": "distributed"}


def _names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.add(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _notebook_sources() -> list[tuple[str, str]]:
    import nbformat

    out = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                lines = [ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
                out.append((path.name, "\n".join(lines)))
    return out


def imported_distributions(sources: list[tuple[str, str]]) -> dict[str, set[str]]:
    """Distribution name → files importing it (stdlib and ptyxr excluded)."""
    found: dict[str, set[str]] = {}
    for name, source in sources:
        for module in _names(ast.parse(source)):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top == "ptyxr":
                continue
            dists = {DISTRIBUTION.get(top, top)}
            dists |= {d for prefix, d in SUBMODULES.items() if module == prefix or module.startswith(prefix + ".")}
            for dist in dists:
                found.setdefault(PROVIDED_BY.get(dist.lower(), dist).lower(), set()).add(name)
    return found


def _package_sources() -> list[tuple[str, str]]:
    return [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8")) for p in sorted((ROOT / "ptyxr").rglob("*.py"))]


def _requirement_name(req: str) -> str:
    return re.split(r"[\s\[<>=!~;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [r for r in extra if not r.startswith("ptyxr")]
    return {_requirement_name(r) for r in reqs}


def binder_lines() -> list[str]:
    return (ROOT / "binder" / "environment.yml").read_text().splitlines()


def binder_distributions() -> set[str]:
    names = set()
    for line in binder_lines():
        m = re.match(r"^\s*-\s+([A-Za-z0-9_.\-]+)", line)
        if m and not line.strip().startswith("- pip:"):
            names.add(_requirement_name(m.group(1)))
    return names


def test_collector_sees_known_imports():
    # the checker must be able to fail: it finds what these modules import, mapped and filtered
    found = imported_distributions(
        [
            (
                "x",
                "import numpy as np\nfrom sklearn.cluster import KMeans\nimport os\n"
                "from dask.distributed import Client\nimport ptyxr\n",
            )
        ]
    )
    assert set(found) == {"numpy", "scikit-learn", "dask", "distributed"}


SOURCES = {"package": _package_sources, "notebooks": _notebook_sources}


@pytest.mark.parametrize("which", sorted(SOURCES))
def test_imports_declared_in_pyproject(which):
    found = imported_distributions(SOURCES[which]())
    assert found, "no imports found: the collector is broken"
    missing = {d: sorted(files)[:3] for d, files in found.items() if d not in pyproject_distributions()}
    assert not missing, f"imported but not declared in pyproject.toml (dependencies or extras): {missing}"


@pytest.mark.parametrize("which", sorted(SOURCES))
def test_imports_declared_in_binder(which):
    found = imported_distributions(SOURCES[which]())
    missing = {d: sorted(files)[:3] for d, files in found.items() if d not in binder_distributions()}
    assert not missing, f"imported but missing from binder/environment.yml: {missing}"


def test_binder_installs_ptyxr_itself():
    lines = [ln.strip() for ln in binder_lines()]
    assert "- pip:" in lines
    after_pip = lines[lines.index("- pip:") + 1 :]
    # the repository root (binder/..) installed by pip: ptyxr plus its declared dependencies
    assert any(ln in ("- ..", "- -e ..", "- ../", "- .") for ln in after_pip), after_pip
    assert any(ln.startswith("- python=3.1") for ln in lines)


def test_readme_has_binder_badge_and_tutorials():
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"\[!\[Binder\]\(https://mybinder\.org/badge_logo\.svg\)\]\(https://mybinder\.org/v2/gh/", readme)
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb")):  # the numbered tutorials
        assert f"notebooks/{path.name}" in readme, f"README's Tutorials list lacks {path.name}"


@pytest.mark.parametrize("doc", ["README.md", "docs/paper-preset.md", "docs/reliability.md"])
def test_relative_links_of_docs_resolve(doc):
    """Every relative link and image of the docs names a file that is in the repository."""
    path = ROOT / doc
    targets = re.findall(r"\]\(([^)#\s]+)\)", path.read_text())
    local = [t for t in targets if "://" not in t]
    assert local or doc != "docs/paper-preset.md"  # the paper-preset page does link its figures
    missing = [t for t in local if not (path.parent / t).exists()]
    assert not missing, f"{doc} links to missing files: {missing}"
