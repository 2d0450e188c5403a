"""``ptyxr run`` configs for beamline layouts: folder-per-particle and per-energy file globs."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ptyxr import cli
from ptyxr import schema as s
from ptyxr.io import open_scan, scan_from_arrays, write_cxi


def small_scan(name: str, seed: int) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    n_e, n_scan, n = 4, 5, 8
    return scan_from_arrays(
        rng.poisson(20.0, size=(n_e, n_scan, n, n)).astype(np.float32),
        rng.normal(size=(n_e, n_scan)) * 1e-6,
        rng.normal(size=(n_e, n_scan)) * 1e-6,
        5420.0 + 10.0 * np.arange(n_e),
        1.5,
        75e-6,
        particle=name,
        probe_fwhm=1e-7,
    )


def per_energy(ds: xr.Dataset, folder, stem: str = "scan") -> None:
    folder.mkdir(parents=True)
    for i in range(ds.sizes[s.ENERGY]):
        write_cxi(ds.isel({s.ENERGY: [i]}), folder / f"{stem}_{3 - i:02d}.h5")  # names not in energy order
    (folder / "notes.txt").write_text("not a scan")


@pytest.fixture
def layout(tmp_path):
    scans = {name: small_scan(name, i) for i, name in enumerate(("P1", "D1"))}
    for name, ds in scans.items():
        per_energy(ds, tmp_path / "data" / name)
    return tmp_path, scans


def test_folder_per_particle_config(layout):
    tmp_path, scans = layout
    config = tmp_path / "run.toml"
    config.write_text('[particles]\nroot = "data"\nfiles = "scan_*.h5"\ncondition = {D1 = "delithiated"}\n')
    loaded = cli.load_config(config)
    names = [p["name"] for p in loaded["particle"]]
    assert names == ["D1", "P1"]  # sorted sub-folders
    assert loaded["particle"][0]["condition"] == "delithiated" and "condition" not in loaded["particle"][1]
    for particle in loaded["particle"]:
        assert len(particle["path"]) == 4 and all(p.endswith(".h5") for p in particle["path"])
        raw = open_scan(particle["path"])
        xr.testing.assert_equal(raw[s.INTENSITY], scans[particle["name"]][s.INTENSITY])


def test_particle_path_as_folder_glob_or_list(layout):
    tmp_path, scans = layout
    config = tmp_path / "run.toml"
    config.write_text(
        '[[particle]]\nname = "P1"\npath = "data/P1"\n'
        '[[particle]]\nname = "D1"\npath = "data/D1/scan_*.h5"\n'
        '[[particle]]\nname = "X"\npath = ["data/D1/scan_00.h5", "data/D1/scan_01.h5"]\n'
    )
    loaded = cli.load_config(config)
    folder, pattern, listed = (p["path"] for p in loaded["particle"])
    assert len(folder) == 4 and not any(p.endswith(".txt") for p in folder)  # HDF5 suffixes only
    assert len(pattern) == 4 and len(listed) == 2
    xr.testing.assert_equal(open_scan(folder)[s.INTENSITY], scans["P1"][s.INTENSITY])
    assert open_scan(listed).sizes[s.ENERGY] == 2


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[particles]\nroot = "nowhere"\n', "root folder .*nowhere.* does not exist"),
        ('[particles]\nfiles = "*.h5"\n', "needs 'root'"),
        ('[particles]\nroot = "data"\nfile = "*.h5"\n', r"unknown key\(s\) \['file'\]"),
        ('[particles]\nroot = "data"\nfiles = "*.cxi"\n', r"holds no \*\.cxi"),
        ('[particles]\nroot = "data"\ncondition = {Q9 = "x"}\n', "Q9"),
        ('[[particle]]\nname = "P1"\npath = "data/P1/none_*.h5"\n', "no data file matches"),
        ('[[particle]]\nname = "P1"\npath = 3\n', "must be a file, folder or glob"),
    ],
)
def test_bad_layout_configs(layout, text, match):
    tmp_path, _ = layout
    config = tmp_path / "run.toml"
    config.write_text(text)
    with pytest.raises(cli.ConfigError, match=match):
        cli.load_config(config)
