"""The tutorial notebooks: stored without outputs, and each runs top to bottom.

Each notebook is executed headless with nbclient in a fresh ``python3`` kernel (the
same interpreter, so the editable ptyxr install) inside a temporary directory. The
notebooks use small simulated data and shortened schedules: together they took 115 s
(5–32 s each) on 2 shared cores, well inside the 10-minute CI budget. Each is executed once
per session (``tests/notebook_runs.py``): the documentation build of ``tests/test_docs.py``
renders the same run.
"""

from __future__ import annotations

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from notebook_runs import NOTEBOOK_DIR, TIMEOUT, TUTORIALS, executed  # noqa: E402  (tests/ is on sys.path)

NOTEBOOKS = [NOTEBOOK_DIR / name for name in TUTORIALS]


def test_all_tutorials_present():
    assert all(p.is_file() for p in NOTEBOOKS)


@pytest.mark.parametrize("path", sorted(NOTEBOOK_DIR.glob("*.ipynb")), ids=lambda p: p.name)
def test_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a code cell has stored outputs (clear them before committing)"
            assert cell.execution_count is None, f"{path.name}: a code cell has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path):
    nb, elapsed = executed(path)  # raises CellExecutionError naming the failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert elapsed < TIMEOUT
