"""The user path (issue 13): ``ptyxr run``/``demo`` fail early, lose nothing and explain.

Every config mistake and every infeasible data file must be refused *before* any
reconstruction, as a SchemaError (exit code 2, no traceback); a late failure must leave the
finished stages on disk and a rerun must pick up from them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptyxr import cli
from ptyxr.io.cxi import write_cxi
from ptyxr.io.netcdf import open_dataset as cli_open
from ptyxr.schema import ENERGY, SchemaError


@pytest.fixture(scope="module")
def tiny_cxi(tmp_path_factory, tiny_p1):
    """One simulated tiny particle (16 energies, 20 scan points, 32² frames) as a CXI file."""
    folder = tmp_path_factory.mktemp("cxi")
    write_cxi(tiny_p1, folder / "P1.cxi")
    return folder / "P1.cxi", tiny_p1


def _config(tmp_path, body: str, cxi: Path | None = None, particle: str | None = None) -> Path:
    if cxi is not None:
        (tmp_path / "P1.cxi").write_bytes(cxi.read_bytes())
    if particle is None:
        particle = '[[particle]]\nname = "P1"\ncondition = "as-prepared"\npath = "P1.cxi"\n'
    elif not (tmp_path / "P1.cxi").exists():
        (tmp_path / "P1.cxi").write_bytes(b"")
    path = tmp_path / "run.toml"
    path.write_text('[output]\ndir = "out"\n' + particle + body)
    return path


# ------------------------------------------------------------------ config checks
@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("[cluster]\nn_cluster = 4\n", r"'n_cluster' \(did you mean 'n_clusters'\?\)"),
        ('[reconstruct]\niterations = "30"\n', r"iterations = '30' \(str\).*expects int"),
        ("[reconstruct]\niterations = 2.5\n", r"iterations = 2\.5.*expects int"),
        ('[reconstruct]\nkkr = "false"\n', r"kkr = false \(no quotes\)"),
        ('[reconstruct]\nalpha = "0.5"\n', r"alpha .*expects float"),
        ('[reconstruct]\nclient = "tcp://x"\n', r"cannot set \['client'\]"),
        ('[fit_xanes]\nmethod = "lmfi"\n', r"method = 'lmfi'"),
        ("[fit_xanes]\nchunk = 3\n", r"did you mean 'chunks'"),
        ('[elbow]\nk = [1, "2"]\n', r"k = \[1, '2'\]"),
        ("[elbow]\nk = 4\n", r"k = 4 \(int\)"),
        ("[align]\nupsample = true\n", r"upsample = True \(bool\).*expects int"),
        ("[open_scan]\nflip_translation = 1\n", r"flip_translation = 1"),
        ('[open_scan]\npath = "x.cxi"\n', r"cannot set \['path'\]"),
        ('[chemical_state]\ntable = "hanke"\n', r"table = 'hanke'"),
        ('[spectra]\nunwrap = "yes"\n', r"unwrap = 'yes'"),
        ("[reconstrct]\n", r"'reconstrct' \(did you mean 'reconstruct'\?\)"),
    ],
)
def test_stage_sections_are_checked_against_the_stage_signature(tmp_path, body, match):
    with pytest.raises(cli.ConfigError, match=match):
        cli.load_config(_config(tmp_path, body, particle='[[particle]]\npath = "P1.cxi"\n'))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[output]\noverwrite = "false"\n[[particle]]\npath = "P1.cxi"\n', r"overwrite = 'false'.*without quotes"),
        ('[output]\noverwrite = 0\n[[particle]]\npath = "P1.cxi"\n', r"overwrite = 0"),
        ('[output]\ndir = 5\n[[particle]]\npath = "P1.cxi"\n', r"dir = 5"),
        ("[[particle]]\npath = 5\n", r"path = 5 must be text"),
        ('particle = ["P1.cxi"]\n', r"(?s)\[\[particle\]\] table.*got particle = \['P1.cxi'\]"),
        ('particle = "P1.cxi"\n', r"\[\[particle\]\] table"),
        ('[[particle]]\nname = 3\npath = "P1.cxi"\n', r"name = 3"),
        (
            '[[particle]]\nname = "A"\npath = "P1.cxi"\n[[particle]]\nname = "A"\npath = "P1.cxi"\n',
            r"names must differ",
        ),
        ('[output]\ndri = "x"\n[[particle]]\npath = "P1.cxi"\n', r"did you mean 'dir'"),
        ('[[particle]]\npaht = "P1.cxi"\n', r"did you mean 'path'"),
        ('output = 3\n[[particle]]\npath = "P1.cxi"\n', r"\[output\] must be a table"),
        # a folder is a particle's per-energy files (issue 14); one holding no HDF5 file is refused
        ('[[particle]]\npath = "empty"\n', r"folder .*empty holds no HDF5"),
        ('[[particle]]\npath = "missing.cxi"\n', r"missing.cxi does not exist"),
    ],
)
def test_config_values_of_the_wrong_type_are_refused(tmp_path, text, match):
    (tmp_path / "P1.cxi").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(cli.ConfigError, match=match):
        cli.load_config(path)


def test_non_utf8_config_is_a_clear_error(tmp_path):
    path = tmp_path / "run.toml"
    path.write_bytes('[output]\ndir = "r\xe9sultats"\n'.encode("latin-1"))
    with pytest.raises(cli.ConfigError, match="not UTF-8.*save it as UTF-8"):
        cli.load_config(path)


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptyxr.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize(
    "text",
    [
        b'[output]\noverwrite = "false"\n[[particle]]\npath = "P1.cxi"\n',
        b'[output]\ndir = "r\xe9s"\n',
        b'particle = ["P1.cxi"]\n',
        b"[[particle]]\npath = 5\n",
    ],
)
def test_cli_user_errors_exit_2_without_traceback(tmp_path, text):
    (tmp_path / "P1.cxi").write_bytes(b"")
    (tmp_path / "run.toml").write_bytes(text)
    proc = _cli("run", str(tmp_path / "run.toml"))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("ptyxr: error:")


@pytest.mark.parametrize(("value", "match"), [("0", "at least 1"), ("-3", "at least 1"), ("2.5", "not a whole number")])
def test_demo_iterations_must_be_a_positive_integer(value, match):
    proc = _cli("demo", "--iterations", value)
    assert proc.returncode == 2 and match in proc.stderr and "Traceback" not in proc.stderr


def test_demo_function_refuses_zero_iterations(tmp_path):
    with pytest.raises(SchemaError, match="iterations=0 must be ≥ 1"):
        cli.demo("tiny", out=tmp_path, iterations=0, progress=False)


# ------------------------------------------------------------------ data feasibility, before any work
def _write_variant(tmp_path, raw, **changes):
    ds = raw
    if "energies" in changes:
        ds = ds.isel({ENERGY: changes["energies"]})
    if "energy_scale" in changes:
        ds = ds.assign_coords({ENERGY: ds[ENERGY] * changes["energy_scale"]})
    if "attrs" in changes:
        ds = ds.assign_attrs(changes["attrs"])
    write_cxi(ds, tmp_path / "P1.cxi")
    return ds


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"energies": [0]}, r"fit_xanes needs at least 11 energies.*hold 1"),
        ({"energies": list(range(3, 16))}, r"energies below pre_edge_limit"),
        ({"energy_scale": 1e-3}, r"5\.42\] eV.*wrong units"),
        ({"attrs": {"detector_distance": 268.1}}, r"mm: give 0\.2681 m"),
        ({"attrs": {"detector_pixel_size": 75.0}}, r"µm: give 7\.5e-05 m"),
        ({"attrs": {"probe_fwhm": 5e-6}}, r"frames are smaller than the probe"),
    ],
)
def test_infeasible_data_is_refused_before_reconstruction(tmp_path, tiny_cxi, monkeypatch, changes, match):
    import ptyxr.reconstruct.api as api

    _write_variant(tmp_path, tiny_cxi[1], **changes)
    monkeypatch.setattr(api, "_reconstruct_one", _must_not_run)
    path = _config(tmp_path, "")
    with pytest.raises(SchemaError, match=match) as info:
        cli.run(path)
    assert "particle P1" in str(info.value)
    assert not (tmp_path / "out").exists()  # nothing written, nothing replaced


def _must_not_run(*args, **kwargs):
    raise AssertionError("the reconstruction ran although the config/data could be refused beforehand")


def test_existing_results_of_another_run_are_not_replaced(tmp_path, tiny_cxi, monkeypatch):
    import ptyxr.reconstruct.api as api

    path = _config(tmp_path, "", cxi=tiny_cxi[0])
    out = tmp_path / "out"
    out.mkdir()
    (out / "particle-P1.nc").write_bytes(b"precious")
    monkeypatch.setattr(api, "_reconstruct_one", _must_not_run)
    with pytest.raises(cli.ConfigError, match="another run.*overwrite = true"):
        cli.run(path)
    assert (out / "particle-P1.nc").read_bytes() == b"precious"


FAST = (
    "[reconstruct]\niterations = 12\nkkr_start = 6\nkkr_every = 6\nprogress = false\n"
    "[align]\nprogress = false\n[fit_xanes]\nprogress = false\n"
    "[cluster]\nn_clusters = 2\n[elbow]\nk = [1, 2, 3]\nprogress = false\n"
)


def test_late_failure_loses_nothing_and_rerun_picks_up(tmp_path, tiny_cxi, monkeypatch, capsys):
    """A crash in chemical_state keeps reconstruct…fit_xanes on disk; the rerun does not reconstruct again."""
    import ptyxr.chemistry
    import ptyxr.reconstruct.api as api

    path = _config(tmp_path, FAST, cxi=tiny_cxi[0])
    real = ptyxr.chemistry.chemical_state

    def crash(*args, **kwargs):
        raise SchemaError("simulated late failure")

    monkeypatch.setattr(ptyxr.chemistry, "chemical_state", crash)
    with pytest.raises(SchemaError, match="simulated late failure"):
        cli.run(path)
    saved = cli_open(tmp_path / "out" / "particle-P1.nc", load=True)
    record = json.loads(saved.attrs[cli.RUN_ATTR])
    assert record["stages"] == ["reconstruct", "align", "spectra", "fit_xanes"]
    assert "fit_valid" in saved and "object" in saved
    assert "intensity" not in saved  # raw counts stay in the CXI file (RUN_DEFAULTS keep_raw=False)

    monkeypatch.setattr(ptyxr.chemistry, "chemical_state", real)
    monkeypatch.setattr(api, "_reconstruct_one", _must_not_run)
    out = cli.run(path)
    assert "picking up after fit_xanes" in capsys.readouterr().out
    final = cli_open(out / "particle-P1.nc", load=True)
    assert json.loads(final.attrs[cli.RUN_ATTR])["stages"][-1] == "chemical_state"
    np.testing.assert_array_equal(final["object"].values, saved["object"].values)
    assert (out / "domains.nc").exists() and (out / "elbow.nc").exists()
    # nothing a figure needs is lost: every figure can be redrawn from the saved files alone
    pytest.importorskip("matplotlib")
    from ptyxr.pipeline import ChainResult
    from ptyxr.plotting import save_paper_figures

    elbow = cli_open(out / "elbow.nc", load=True)
    redrawn = ChainResult([final], cli_open(out / "domains.nc", load=True), elbow[list(elbow.data_vars)[0]], {})
    assert [p.name for p in save_paper_figures(redrawn, tmp_path / "again")] == [
        "fig1.png",
        "fig2.png",
        "fig3.png",
        "figS3.png",
    ]

    # changed stage options invalidate that stage and the later ones only, and are refused without overwrite
    path.write_text(path.read_text().replace("n_clusters = 2", "n_clusters = 3"))
    with pytest.raises(cli.ConfigError, match="domains.nc holds results of another run"):
        cli.run(path)


# ------------------------------------------------------------------ property-based fuzz of configs
_SECTIONS = [*cli.CONFIG_SECTIONS, "reconstrct", "Output", "clusters"]
_KEYS = [
    "dir",
    "overwrite",
    "name",
    "path",
    "condition",
    "iterations",
    "alpha",
    "seed",
    "n_clusters",
    "k",
    "chunks",
    "method",
    "table",
    "reference_energy",
    "pixel_size",
    "kkr",
    "progress",
    "n_cluster",
    "energy",
    "crop",
    "x y",
]


def _toml_value(draw_value):
    from hypothesis import strategies as st

    scalars = st.one_of(
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.text(max_size=8),
        st.sampled_from(["false", "true", "30", "1e-8", "P1.cxi", "lmfit", "auto", "paper", "."]),
    )
    return st.one_of(scalars, st.lists(scalars, max_size=3))


def _toml_text(value) -> str:
    import json
    import math

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return "[" + ", ".join(_toml_text(v) for v in value) + "]"


_FUZZ_EXAMPLES = int(__import__("os").environ.get("PTYXR_FUZZ_EXAMPLES", "60"))


def test_fuzzed_configs_give_only_schema_or_os_errors(tmp_path_factory):
    """Random configs (valid and misspelt sections/keys, values of every TOML type, raw bytes) through
    ``ptyxr run``: exit code 2 with a message, never another exception (P1.cxi is empty, so no run starts)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "P1.cxi").write_bytes(b"")
    table = st.dictionaries(st.sampled_from(_KEYS), _toml_value(None), max_size=4)
    structured = st.lists(st.tuples(st.sampled_from(_SECTIONS), st.booleans(), table), max_size=5)

    @settings(max_examples=_FUZZ_EXAMPLES, deadline=None)
    @given(structured, st.binary(max_size=64), st.booleans(), st.booleans())
    def run(sections, noise, use_noise, with_particle):
        # a valid particle first lets many configs through to the data (an empty CXI file: OSError)
        lines = ['[[particle]]\npath = "P1.cxi"'] if with_particle else []
        for name, array, entries in sections:
            lines.append(f"[[{name}]]" if array else f"[{name}]")
            lines += [f"{k if ' ' not in k else repr(k)} = {_toml_text(v)}" for k, v in entries.items()]
        data = ("\n".join(lines) + "\n").encode() + (noise if use_noise else b"")
        path = folder / "run.toml"
        path.write_bytes(data)
        try:
            code = cli.main(["run", str(path)])
        except SystemExit as exit_:  # argparse
            code = exit_.code
        assert code == 2, data

    run()
