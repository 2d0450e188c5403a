"""The test tree mirrors the package, and the docs name test files that exist.

The folders under tests/ mirror ptyxr's subpackages (tests/reconstruct/ tests
ptyxr/reconstruct/ …). They hold no ``__init__.py``: pytest's "prepend" import mode imports a
test file by its bare name, so two test files of the same name in two folders would collide
at collection ("import file mismatch"); this test says which ones instead.
"""

from __future__ import annotations

import re
from collections import Counter

from repo_paths import PACKAGE, ROOT, TESTS


def _test_files():
    return sorted(TESTS.rglob("test_*.py"))


def test_test_file_names_are_unique():
    counts = Counter(path.name for path in _test_files())
    clashes = {
        name: [str(p.relative_to(TESTS)) for p in _test_files() if p.name == name]
        for name, n in counts.items()
        if n > 1
    }
    assert not clashes, f"test files of the same name collide in pytest's prepend import mode: {clashes}"


def test_helper_module_names_are_unique():
    """Helper modules (``checkpoint_runs``, ``fixtures_chain`` …) are imported by bare name too: one
    name in two folders would give every importer whichever was imported first."""
    modules = [p for p in TESTS.rglob("*.py") if p.name != "conftest.py"]
    counts = Counter(path.name for path in modules)
    clashes = sorted(str(p.relative_to(TESTS)) for p in modules if counts[p.name] > 1)
    assert not clashes, f"modules of the same name under tests/: {clashes}"
    assert (TESTS / "reconstruct" / "checkpoint_runs.py") in modules  # the search reaches the folders


def test_test_folders_mirror_subpackages():
    folders = {p.parent.relative_to(TESTS) for p in _test_files()} - {TESTS.relative_to(TESTS)}
    for folder in folders:
        assert (PACKAGE / folder / "__init__.py").is_file(), f"tests/{folder}/ mirrors no ptyxr subpackage"
        assert not (TESTS / folder / "__init__.py").exists(), f"tests/{folder}/__init__.py changes how pytest imports"


def test_reliability_table_names_existing_tests():
    """Every ``file.py::test_name`` in docs/reliability.md is a test function in that file (paths
    relative to tests/), so moving or renaming a test cannot leave the table pointing nowhere."""
    text = (ROOT / "docs" / "reliability.md").read_text()
    cited = re.findall(r"`(?:tests/)?((?:[a-z_]+/)?test_[a-z_]+\.py)(?:::(test_\w+))?", text)
    assert len(cited) > 30  # the table's rows
    for file, name in cited:
        path = TESTS / file
        assert path.is_file(), f"docs/reliability.md cites tests/{file}, which does not exist"
        if name:
            assert re.search(rf"^def {name}\(", path.read_text(), re.M), f"tests/{file} has no {name}"
