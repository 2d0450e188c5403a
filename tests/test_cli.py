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


def test_run_config_on_cxi_files_writes_results(tmp_path):
    """`ptyxr run` end to end: simulated particles written as CXI, read back, whole chain."""
    from ptyxr import simulate
    from ptyxr.io.cxi import write_cxi

    lines = ['[output]\ndir = "results"\n']
    for name, condition in (("P1", "as-prepared"), ("D1", "delithiated")):
        raw, _ = simulate.demo_dataset("tiny", seed=1, particle=name, condition=condition, progress=False)
        write_cxi(raw, tmp_path / f"{name}.cxi")
        lines.append(f'[[particle]]\nname = "{name}"\ncondition = "{condition}"\npath = "{name}.cxi"\n')
    lines.append("[reconstruct]\niterations = 20\nkkr_start = 10\nkkr_every = 10\nprogress = false\n")
    lines.append("[cluster]\nn_clusters = 3\n[elbow]\nk = [1, 2, 3, 4]\nprogress = false\n")
    config = tmp_path / "run.toml"
    config.write_text("\n".join(lines))
    out = cli.run(config)
    assert out.resolve() == (tmp_path / "results").resolve()
    import ptyxr

    domains = ptyxr.open_dataset(out / "domains.nc")
    assert list(domains["particle"].values) == ["P1", "D1"]
    assert set(domains["condition"].values) == {"as-prepared", "delithiated"}
    assert "domain" in domains and "fraction" in domains
    for name in ("P1", "D1"):
        assert (out / f"particle-{name}.nc").stat().st_size > 0
    for figure in ("fig1.png", "fig2.png", "fig3.png", "figS3.png"):
        assert (out / figure).stat().st_size > 10_000
