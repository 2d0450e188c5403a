"""The tutorial notebooks, each executed at most once per test session.

``tests/test_notebooks.py`` asserts that every tutorial runs; ``tests/test_docs.py`` renders
the same executed notebooks into the documentation site. Whichever asks first executes a
notebook (headless, nbclient, a fresh ``python3`` kernel — the same interpreter, so the
editable ptyxr install — in a temporary directory); the other reuses that run instead of
paying for it twice (≈ 1.5–4 min for all five on 2 shared cores).
"""

from __future__ import annotations

import functools
import tempfile
import time
from pathlib import Path

from repo_paths import NOTEBOOKS

NOTEBOOK_DIR = NOTEBOOKS
#: the numbered tutorials (other notebooks there, e.g. an app served in the browser test,
#: are tested where they are used)
TUTORIALS = (
    "01-quickstart.ipynb",
    "02-reconstruction.ipynb",
    "03-chemical-state-and-domains.ipynb",
    "04-real-xanes-references.ipynb",
    "05-scaling.ipynb",
)
#: per-notebook limit [s]: each runs in < 35 s here (< 110 s with the plain-numpy ePIE
#: engine); 4× head-room for a loaded CI machine
TIMEOUT = 450


@functools.cache
def executed(path: Path):
    """Execute a notebook once per session: (executed notebook, wall time [s]).

    Raises nbclient's ``CellExecutionError`` naming the failing cell (not cached: a later
    call executes again and raises again). Callers must not modify the returned notebook.
    """
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="ptyxr-notebook-") as workdir:
        client = nbclient.NotebookClient(
            nb, timeout=TIMEOUT, kernel_name="python3", resources={"metadata": {"path": workdir}}
        )
        start = time.perf_counter()
        client.execute()
        elapsed = time.perf_counter() - start
    return nb, elapsed
