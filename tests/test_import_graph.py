"""ptyxr's import graph: no cycles, and no arrow pointing up the layers (docs/design.md, "Module map").

The graph is read from the source with :mod:`ast` (nothing is imported): one node per
module of the ``ptyxr`` package, one edge per ``import``/``from … import`` naming another
ptyxr module, wherever it stands. Imports inside functions are edges like any other: a
deferred import still runs, so it still couples the two modules; deferring one is for
import cost or an optional dependency, never a way to hide a cycle. Imports under
``if TYPE_CHECKING:`` never run and are not edges. ``from package import name`` is an
edge to ``package.name`` when that is a module, else to ``package``.

Layers (a module belongs to the longest matching prefix; unlisted modules — ``io``,
``simulate`` — are free of the layer rules but not of the cycle rule):

- foundation: names, errors, argument checks, provenance, progress bars; importable by all;
- kernels: numpy-only numerics, no xarray; they import foundation and other kernels only;
- stages: xarray in → xarray out (the chain's steps and their helpers);
- top: plotting, widgets, cli, accessor and the package ``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from repo_paths import PACKAGE

FOUNDATION = (
    "ptyxr._version",
    "ptyxr.errors",
    "ptyxr.schema",
    "ptyxr.checks",
    "ptyxr.provenance",
    "ptyxr.progress",
    "ptyxr.stage",  # @stage: binds, checks, validates, records (imports checks and provenance only)
)
KERNELS = (
    "ptyxr.registration",
    "ptyxr.vacuum",
    "ptyxr.physics",
    "ptyxr.optics",
    "ptyxr.reconstruct.epie",
    "ptyxr.reconstruct.epie_numba",
    "ptyxr.reconstruct.grid",
    "ptyxr.reconstruct.probe",
    "ptyxr.reconstruct.kkr",
    "ptyxr.reconstruct.detector",
    "ptyxr.xanes.lineshapes",
    "ptyxr.xanes.starts",
    "ptyxr.xanes.model",
    "ptyxr.xanes.solver",
    "ptyxr.xanes._linalg",
    "ptyxr.xanes._varpro",
    "ptyxr.xanes.globalsearch",
    "ptyxr.xanes._kernels",
    "ptyxr.xanes.uncertainty",
    "ptyxr.domains.kernels",
    "ptyxr.fourier_rings",
)
STAGES = (
    "ptyxr.spectra",
    "ptyxr.reconstruct",  # the package (re-exports api), api, options, validate, particle, checkpoint
    "ptyxr.xanes",  # the package (reference spectra) and fit
    "ptyxr.chemistry",
    "ptyxr.domains",
    "ptyxr.resolution",
    "ptyxr.pipeline",
)
TOP = ("ptyxr", "ptyxr.plotting", "ptyxr.widgets", "ptyxr.cli", "ptyxr.accessor")
#: What a kernel must not import (besides the layers above it): array-labelling libraries.
KERNEL_FORBIDDEN_LIBRARIES = ("xarray", "dask", "pandas")


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


MODULES = _modules()


def _target(name: str) -> str | None:
    """The ptyxr module ``name`` denotes: itself, else its longest importable prefix."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        candidate = ".".join(parts[:k])
        if candidate in MODULES:
            return candidate
    return None


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imports(module: str) -> tuple[set[str], set[str]]:
    """(ptyxr modules, top-level outside libraries) that ``module`` imports anywhere in its body."""
    path, is_package = MODULES[module]
    internal: set[str] = set()
    external: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                for other in child.orelse:  # the else branch does run
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    target = _target(alias.name)
                    (internal.add(target) if target else external.add(alias.name.split(".")[0]))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative import
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    package = package[: len(package) - child.level + 1]
                    base = ".".join([*package, base] if base else package)
                if not base.startswith("ptyxr"):
                    external.add(base.split(".")[0])
                    continue
                for alias in child.names:
                    target = _target(f"{base}.{alias.name}")
                    target = target if target == f"{base}.{alias.name}" else _target(base)
                    if target:
                        internal.add(target)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    internal.discard(module)
    return internal, external


GRAPH = {module: _imports(module) for module in MODULES}


def _layer(module: str) -> str | None:
    best, layer = "", None
    for name, prefixes in (("foundation", FOUNDATION), ("kernel", KERNELS), ("stage", STAGES), ("top", TOP)):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > len(best):
                best, layer = prefix, name
    return layer


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _path(graph: dict[str, set[str]], start: str, members: set[str]) -> list[str]:
    """One cycle through ``start`` inside ``members`` (for the failure message)."""
    previous = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & members):
            if child == start:
                path = [node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, node, start]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    return [start]


def test_the_graph_is_read():
    # the reader sees the package: known edges are there (guards against a silently empty graph)
    assert len(MODULES) > 40
    assert "ptyxr.vacuum" in GRAPH["ptyxr.spectra"][0]
    assert "ptyxr.vacuum" in GRAPH["ptyxr.reconstruct.kkr"][0]
    assert "ptyxr.xanes.starts" in GRAPH["ptyxr.xanes.solver"][0]
    assert "ptyxr.xanes.solver" in GRAPH["ptyxr.xanes.model"][0]  # a function-level import counts
    assert "numpy" in GRAPH["ptyxr.vacuum"][1]
    assert "TYPE_CHECKING" not in str(GRAPH["ptyxr.simulate.scattering"])
    assert "ptyxr.simulate.presets" not in GRAPH["ptyxr.simulate.scattering"][0]  # under TYPE_CHECKING


def test_every_listed_layer_module_exists():
    for prefix in (*FOUNDATION, *KERNELS, *STAGES, *TOP):
        assert prefix in MODULES, f"{prefix} is listed in a layer but is not a ptyxr module"


def test_no_import_cycles():
    graph = {module: internal for module, (internal, _) in GRAPH.items()}
    cycles = _cycles(graph)
    messages = [" -> ".join(_path(graph, component[0], set(component))) for component in cycles]
    assert not cycles, "import cycles between ptyxr modules:\n" + "\n".join(messages)


def test_cycle_finder_finds_cycles():
    # the checker itself can fail: a planted cycle and a planted self-free chain
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(planted) == [["a", "b", "c"]]
    assert _path(planted, "a", {"a", "b", "c"}) == ["a", "b", "c", "a"]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("kernel", sorted(m for m in MODULES if _layer(m) == "kernel"))
def test_kernels_import_no_stage_plotting_widgets_or_cli(kernel):
    internal, external = GRAPH[kernel]
    upward = sorted(t for t in internal if _layer(t) in ("stage", "top"))
    assert not upward, f"kernel {kernel} imports {upward} (a stage, plotting, widgets, cli or the accessor)"
    simulator = sorted(t for t in internal if t.startswith("ptyxr.simulate"))
    assert not simulator, f"kernel {kernel} imports the simulator: {simulator}"
    labelled = sorted(external & set(KERNEL_FORBIDDEN_LIBRARIES))
    assert not labelled, f"kernel {kernel} imports {labelled}: kernels are numpy only"


@pytest.mark.parametrize("stage", sorted(m for m in MODULES if _layer(m) == "stage"))
def test_stages_do_not_import_the_simulator_or_plotting(stage):
    internal, _ = GRAPH[stage]
    bad = sorted(
        t for t in internal if t.startswith(("ptyxr.simulate", "ptyxr.plotting", "ptyxr.widgets", "ptyxr.cli"))
    )
    assert not bad, f"stage {stage} imports {bad}: analysis must not depend on the simulator or the figures"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) == "foundation"))
def test_foundation_imports_only_foundation(module):
    internal, _ = GRAPH[module]
    # checks validates units with the optics/physics formulas (kernels that import nothing above them)
    bad = sorted(t for t in internal if _layer(t) != "foundation" and t not in ("ptyxr.optics", "ptyxr.physics"))
    assert not bad, f"{module} is imported by every layer and must not import {bad}"
