"""Sphinx configuration of the ptyxr documentation site.

Build locally (one command, from the repository root)::

    python -m sphinx -W -b html docs docs/_build/html

The tutorial notebooks (``notebooks/``, committed without outputs) are copied into
``docs/notebooks/`` and executed by myst-nb through a jupyter-cache under
``docs/_build/.jupyter_cache``: the first build runs each notebook once (4.5 min in all
on the loaded 2-core machine), later builds (≈ 35 s) reuse the stored outputs until a notebook's code changes.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document this checkout, whichever ptyxr is installed

import ptyxr  # noqa: E402

project = "ptyxr"
author = "the ptyxr developers"
copyright = "2026, the ptyxr developers"
release = ptyxr.__version__
version = release

extensions = [
    "myst_nb",  # Markdown pages (MyST) and notebooks; loads myst_parser itself
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx.ext.intersphinx",
    "numpydoc",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "notebooks/.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]

# --- MyST ------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "colon_fence"]
# GitHub-style anchors for headings, so "design.md#2-physics-conventions" links work here too
myst_heading_anchors = 3

# --- tutorials: copied from notebooks/ and executed through a cache --------------------
#: the numbered tutorials (notebooks/explorer-app.ipynb is a voila app, not a tutorial)
TUTORIALS = sorted(p for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
#: a folder holding the tutorials already executed (same names): rendered as they are, not
#: executed again (tests/test_docs.py passes the runs of its test session)
EXECUTED = os.environ.get("PTYXR_DOCS_EXECUTED")
if EXECUTED:
    TUTORIALS = [Path(EXECUTED) / p.name for p in TUTORIALS]


def _copy_tutorials() -> None:
    """Copy the tutorials into docs/notebooks, touching only those whose content changed.

    Unchanged files keep their mtime so Sphinx does not re-read them.
    """
    target = DOCS / "notebooks"
    target.mkdir(exist_ok=True)
    wanted = {p.name for p in TUTORIALS}
    for stale in target.glob("*.ipynb"):
        if stale.name not in wanted:
            stale.unlink()
    for source in TUTORIALS:
        dest = target / source.name
        if not dest.exists() or dest.read_bytes() != source.read_bytes():
            shutil.copyfile(source, dest)


_copy_tutorials()

# PTYXR_DOCS_EXECUTE=off: a quick build without running the tutorials (no outputs)
nb_execution_mode = "off" if EXECUTED else os.environ.get("PTYXR_DOCS_EXECUTE", "cache")
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
nb_execution_in_temp = True  # notebooks write files (netCDF, figures): keep them out of the tree
nb_execution_timeout = 450  # per cell [s], as tests/test_notebooks.py allows per notebook
nb_execution_raise_on_error = True  # a failing tutorial fails the build
nb_merge_streams = True

# --- API reference -----------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "none"  # numpydoc docstrings already state types (with units)
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

intersphinx_mapping = {}  # offline builds: no inventories fetched

# --- HTML --------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"ptyxr {release}"
html_static_path: list[str] = []

suppress_warnings = [
    # holoviews/bokeh outputs carry, besides their HTML, the JavaScript mime types
    # application/vnd.holoviews_load.v0+json and _exec.v0+json that link them to a live
    # kernel; myst-nb has no renderer for them and warns while parsing every mime type of a
    # bundle (before it selects text/html, which renders). Meaningless on a static page.
    "mystnb.unknown_mime_type",
]

#: Docstring fixes applied at build time, object → [(text, replacement)]: a stop-gap while a
#: docstring cannot be edited; fix the docstring itself and drop the entry (none at present).
#: Typical case: a bare "|O|" reads as a reStructuredText substitution; write ``|O|``.
DOCSTRING_FIXES: dict[str, list[tuple[str, str]]] = {}


# --- "DESIGN §1a" → a link to that section of the design document ------------------------
#: a numbered heading of docs/design.md ("## 2b. Performance notes …", "### 1a. Raw scan …")
DESIGN_HEADING = re.compile(r"^(#{2,4})\s+(\d+[a-z]?)\.\s", re.MULTILINE)
#: a citation in a docstring; an undefined section then fails the -W build ("undefined label")
DESIGN_CITATION = re.compile(r"DESIGN §(\d+[a-z]?)")


def _label_design_sections(app, docname, source):
    """Give each numbered heading of the design document the label ``design-<number>``.

    Added when Sphinx reads the page, so docs/design.md stays plain Markdown on GitHub.
    """
    if docname == "design":
        source[0] = DESIGN_HEADING.sub(lambda m: f"(design-{m.group(2)})=\n{m.group(0)}", source[0])


def _process_docstring(app, what, name, obj, options, lines):
    for old, new in DOCSTRING_FIXES.get(name, []):
        lines[:] = [line.replace(old, new) for line in lines]
    # link citations in prose; examples (">>>", "...") are code and keep the plain text
    lines[:] = [
        line
        if line.lstrip().startswith((">>>", "..."))
        else DESIGN_CITATION.sub(r":ref:`DESIGN §\1 <design-\1>`", line)
        for line in lines
    ]


def setup(app):
    app.connect("source-read", _label_design_sections)
    app.connect("autodoc-process-docstring", _process_docstring)
