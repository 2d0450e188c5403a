"""The documentation site builds with warnings as errors, and every "DESIGN §" cited exists.

The build is the README's command (``python -m sphinx -W -b html docs <out>``) into a fresh
temporary directory, so every page is read and every warning reported. The tutorials it
renders are this test session's runs of them (``tests/notebook_runs.py``, shared with
tests/test_notebooks.py, so each runs once per session), passed to ``docs/conf.py`` through
``PTYXR_DOCS_EXECUTED``; the build itself adds ≈ 35 s on 2 shared cores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from repo_paths import ROOT

DESIGN = ROOT / "docs" / "design.md"

#: "DESIGN §1a", "DESIGN §2b", "DESIGN.md §1", "`DESIGN.md` §1", "docs/design.md §1e" …
CITATION = re.compile(r"(?:DESIGN|design)(?:\.md)?`?\s*§\s*(\d+[a-z]?)")
#: "## 2b. Performance notes …", "### 1a. Raw scan series …"
HEADING = re.compile(r"^#{2,4}\s+(\d+[a-z]?)\.\s", re.MULTILINE)


def design_sections(text: str) -> set[str]:
    """Section numbers of the design document's headings ("0", "1", "1a", … "2b", …)."""
    return set(HEADING.findall(text))


def citations(text: str) -> list[str]:
    """Section numbers cited as "DESIGN §N" in a text."""
    return CITATION.findall(text)


def _cited_files() -> list[Path]:
    files = sorted((ROOT / "ptyxr").rglob("*.py"))
    files += [ROOT / "README.md", *sorted((ROOT / "notebooks").glob("*.ipynb"))]
    files += sorted((ROOT / "docs").glob("*.md"))
    return files


def _text(path: Path) -> str:
    if path.suffix == ".ipynb":  # cell sources only (no outputs are stored anyway)
        return "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text(encoding="utf-8"))["cells"])
    return path.read_text(encoding="utf-8")


def test_citation_pattern_finds_the_forms_in_use():
    text = "see DESIGN §1a, DESIGN §2b. and `DESIGN.md` §1 or docs/design.md §1e; not §3 alone"
    assert citations(text) == ["1a", "2b", "1", "1e"]
    assert design_sections("## 2. Physics\n### 2b. Notes\n## 10. Later\n#### x. no\n") == {"2", "2b", "10"}


def test_every_design_reference_names_an_existing_section():
    sections = design_sections(DESIGN.read_text(encoding="utf-8"))
    assert {"0", "1", "1a", "1g", "2", "3", "4", "5"} <= sections  # the blueprint's numbering
    missing = [
        f"{path.relative_to(ROOT)}: DESIGN §{number}"
        for path in _cited_files()
        for number in citations(_text(path))
        if number not in sections
    ]
    assert not missing, "cited sections missing from docs/design.md:\n" + "\n".join(missing)
    assert sum(len(citations(_text(p))) for p in _cited_files()) > 50  # the scan does find them


def test_docs_build_without_warnings(tmp_path):
    for module in ("sphinx", "myst_nb", "numpydoc", "furo", "nbformat", "nbclient", "ipykernel"):
        pytest.importorskip(module, reason="documentation tools missing: pip install -e '.[docs,test]'")
    import nbformat
    from notebook_runs import NOTEBOOK_DIR, TUTORIALS, executed  # tests/ is on sys.path

    assert sorted(TUTORIALS) == sorted(p.name for p in NOTEBOOK_DIR.glob("[0-9][0-9]-*.ipynb"))
    notebooks = tmp_path / "executed"
    notebooks.mkdir()
    for name in TUTORIALS:
        nbformat.write(executed(NOTEBOOK_DIR / name)[0], notebooks / name)
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    command += ["-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "html")]
    env = {**os.environ, "PTYXR_DOCS_EXECUTED": str(notebooks)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-10000:]
    html = tmp_path / "html"
    for page in ("index", "readme", "design", "paper-preset", "reliability", "api/index", "api/accessor"):
        assert (html / f"{page}.html").is_file(), page
    # API pages generated from the docstrings, and tutorials rendered with their outputs
    assert "Raw scan series" in (html / "design.html").read_text(encoding="utf-8")
    reconstruct = html / "api" / "generated" / "ptyxr.reconstruct.api.reconstruct.html"
    assert "Parameters" in reconstruct.read_text(encoding="utf-8")
    pages = sorted((html / "notebooks").glob("[0-9][0-9]-*.html"))
    assert [p.stem for p in pages] == [Path(name).stem for name in sorted(TUTORIALS)]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert 'class="cell_output' in text, f"{page.name}: no outputs rendered"
        assert "<img" in text, f"{page.name}: no figure rendered"
