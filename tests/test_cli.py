"""CLI: argument parsing and strict config checking for ``ptyxr run``."""

import subprocess
import sys

import pytest

from ptyxr import cli


def _write(tmp_path, text, data=True):
    if data:
        (tmp_path / "P1.cxi").write_bytes(b"")
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


GOOD = """
[output]
dir = "out"
[[particle]]
name = "P1"
condition = "as-prepared"
path = "P1.cxi"
[reconstruct]
iterations = 10
"""


def test_load_config_resolves_paths(tmp_path):
    config = cli.load_config(_write(tmp_path, GOOD))
    assert config["particle"][0]["path"] == str((tmp_path / "P1.cxi").resolve())
    assert config["reconstruct"] == {"iterations": 10}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (GOOD + "\n[recontruct]\nalpha = 1\n", r"unknown key\(s\) \['recontruct'\]"),
        (GOOD.replace('dir = "out"', 'dir = "out"\ndirr = 1'), r"\[output\]"),
        (GOOD.replace('name = "P1"', 'name = "P1"\ncolour = "red"'), "particle"),
        ("[output]\ndir='x'\n", "at least one"),
        (GOOD.replace("P1.cxi", "missing.cxi"), "does not exist"),
        ("this is = = not toml", "not valid TOML"),
        ("align = 3\n" + GOOD, r"\[align\] must be a table"),
    ],
)
def test_bad_config_is_clear_error(tmp_path, text, match):
    with pytest.raises(cli.ConfigError, match=match):
        cli.load_config(_write(tmp_path, text))


def test_config_error_is_schema_error():
    import ptyxr

    assert issubclass(cli.ConfigError, ptyxr.SchemaError)


def test_missing_config_file(tmp_path):
    with pytest.raises(cli.ConfigError, match="does not exist"):
        cli.load_config(tmp_path / "nope.toml")


def test_cli_reports_bad_config_without_traceback(tmp_path):
    path = _write(tmp_path, GOOD + "\n[bogus]\n")
    proc = subprocess.run([sys.executable, "-m", "ptyxr.cli", "run", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown key" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_help_lists_commands():
    proc = subprocess.run([sys.executable, "-m", "ptyxr.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "demo" in proc.stdout and "run" in proc.stdout
