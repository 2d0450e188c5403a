"""Where the repository's parts are, for tests in any folder under tests/.

Test files sit in folders that mirror the package (tests/reconstruct/, tests/io/, …), so a
file's own ``Path(__file__).parents[n]`` depends on how deep it stands; these constants do
not. Importable from every test module: tests/ is on sys.path (pytest's "prepend" import
mode puts the folder of tests/conftest.py there).
"""

from __future__ import annotations

from pathlib import Path

#: the repository root (the folder holding pyproject.toml)
ROOT = Path(__file__).resolve().parents[1]
#: the tests folder
TESTS = ROOT / "tests"
#: the package's source
PACKAGE = ROOT / "ptyxr"
#: the tutorial notebooks
NOTEBOOKS = ROOT / "notebooks"
