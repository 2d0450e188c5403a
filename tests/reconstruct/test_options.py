"""The reconstruct stage's option objects (ptyxr.reconstruct.options) and what they keep stable.

``reconstruct`` resolves its keyword arguments once into a frozen ``RunOptions`` that travels
unchanged to each particle's run; the provenance record and the checkpoint settings are read
off it. Checkpoints written before the options became dataclasses must still resume, so the
settings they hold are kept here as written by that version (commit 6ebf180, 6 energies of the
tiny preset, 3 iterations, kkr_start=3, kkr_every=2) — without the values that depend on the
simulated data rather than on the options (fingerprint, grid shape/origin, pixel, KKR shifts).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from repo_paths import TESTS

from ptyxr import provenance
from ptyxr.errors import SchemaError
from ptyxr.reconstruct import checkpoint as ckpt
from ptyxr.reconstruct import kkr_schedule, reconstruct
from ptyxr.reconstruct.options import KKROptions, PositionOptions, ProbeOptions, RunOptions

OLD_SETTINGS = json.loads((TESTS / "data" / "checkpoint_settings_6ebf180.json").read_text())
DATA_DEPENDENT = ("data_fingerprint", "shape", "origin", "pixel_size", "kkr_shifts")
VARIANTS = {
    "default": {},
    "positions": {"position_correction": True, "position_correction_start": 2, "position_correction_every": 2},
    "modes": {"probe_modes": 2},
    "flux": {"refine_flux": True},
    "mpie": {"algorithm": "mpie"},
}
# the stored settings were written with the then default recentre_probe=True, today "centre",
# and with every energy KK-projected, today kkr_skip_last=False (the default since session 13 is True)
RUN = {
    "iterations": 3,
    "kkr_start": 3,
    "kkr_every": 2,
    "progress": False,
    "recentre_probe": "centre",
    "kkr_skip_last": False,
}


@pytest.fixture(scope="module")
def raw(tiny):
    return tiny[0].isel(energy=slice(0, 6))


def test_options_are_frozen_and_resolve_their_defaults():
    options = RunOptions(iterations=80, pixel_size=2e-8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.iterations = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.kkr.weight = 0.5  # type: ignore[misc]
    # the schedule is kkr_schedule's (paper proportions by default), empty when KKR is off
    assert options.kkr.schedule(80) == kkr_schedule(80) == [50, 55, 60, 65, 70, 75, 80]
    assert KKROptions(start=7, every=3).schedule(12) == kkr_schedule(12, 7, 3) == [7, 10, 12]
    assert KKROptions(enabled=False).schedule(80) == []
    # position refinement: off = no settings and no grid margin; on = the refiner's own defaults
    assert PositionOptions().settings(100) is None and PositionOptions().margin == 0
    on = PositionOptions(enabled=True, max_shift=2.5)
    assert on.settings(100)["start"] == 30 and on.margin == 4  # 30 % of the iterations; ceil(2.5) + 1
    assert ProbeOptions(update_start=5).updates_at(5) and not ProbeOptions(update_start=5).updates_at(4)
    assert not ProbeOptions(update=False).updates_at(10)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_checkpoint_settings_are_those_of_the_previous_version(raw, tmp_path, name):
    """Same keys and values as before the options dataclasses: old checkpoints resume."""
    path = tmp_path / "state.nc"
    out = reconstruct(raw, **RUN, **VARIANTS[name], checkpoint=path, checkpoint_every=3)
    saved = ckpt.read_checkpoint(path)["params"]
    settings = {k: v for k, v in saved.items() if k not in DATA_DEPENDENT}
    old = {**OLD_SETTINGS[name], "recentre_probe": "centre"}  # True then (a bool), a mode name since session 12
    assert OLD_SETTINGS[name]["recentre_probe"] is True
    assert settings == old
    assert list(settings) == list(OLD_SETTINGS[name])  # written in the same order, too
    # and such a state resumes: the checkpoint's settings are what check_resume compares
    resumed = reconstruct(raw, **RUN, **VARIANTS[name], resume_from=path)
    assert provenance.parameters(resumed, "reconstruct")["resumed_at"] == 3
    np.testing.assert_array_equal(resumed["object"].values, out["object"].values)


def test_provenance_is_read_off_the_options(raw):
    """The record holds the resolved options under reconstruct's argument names."""
    out = reconstruct(raw, iterations=6, kkr_start=5, progress=False, position_correction=True)
    recorded = provenance.parameters(out, "reconstruct")
    assert recorded["kkr"] is True and recorded["kkr_requested"] is True
    assert recorded["kkr_start"] == 5 and recorded["kkr_every"] is None
    assert recorded["kkr_options"] == {"element": "V", "table": "chantler", "skip_last": True}  # the default
    assert recorded["position_options"] == PositionOptions(enabled=True).settings(6)
    assert recorded["object_regularization"] == 1.0 and recorded["momentum"] == 0.0  # ePIE's resolved steps
    assert recorded["algorithm_name"] == "epie"
    for absent in ("progress", "client", "kkr_element", "kkr_table", "kkr_skip_last", "position_correction_start"):
        assert absent not in recorded


def test_a_checkpoint_of_the_previous_version_resumes(raw, tmp_path):
    """A state whose settings record ``recentre_probe=True`` (as before session 12) resumes a
    ``recentre_probe="centre"`` run; the new default ("relative") is a different run and is refused."""
    path = tmp_path / "state.nc"
    out = reconstruct(raw, **RUN, checkpoint=path, checkpoint_every=3)
    state = ckpt.read_checkpoint(path)
    state["params"]["recentre_probe"] = True  # what the previous version wrote
    params = dict(state["params"], recentre_probe="centre")
    assert ckpt.check_resume(state, params, state["energy"], 3, path) == 3
    with pytest.raises(SchemaError, match="recentre_probe"):
        ckpt.check_resume(state, dict(params, recentre_probe="relative"), state["energy"], 3, path)
    assert out.sizes["energy"] == 6


def test_kkr_skip_last_leaves_the_highest_energy_to_the_reconstruction(raw):
    """``kkr_skip_last=True`` with one projection (after the last iteration): the highest energy
    is exactly the run without KKR, every other energy exactly the default run; recorded in
    ``kkr_options`` only when on (off = the record of earlier versions)."""
    run = {**RUN, "kkr_start": 3}
    on = reconstruct(raw, **{**run, "kkr_skip_last": True})
    off = reconstruct(raw, **run)  # RUN: kkr_skip_last=False
    without = reconstruct(raw, **{**run, "kkr": False})
    # the highest energy to complex64 rounding: the engine still multiplies it by exp(i·0), whose
    # zero is arg(z·conj z) of equal numbers (≈ 1 ulp of a value near 1: 6e-8)
    np.testing.assert_allclose(on["object"].values[-1], without["object"].values[-1], rtol=0, atol=2e-7)
    np.testing.assert_array_equal(on["object"].values[:-1], off["object"].values[:-1])
    moved = np.abs(off["object"].values[-1] - without["object"].values[-1]).max()
    assert moved > 1e-4, moved  # where the default run's projection does move it
    assert provenance.parameters(on, "reconstruct")["kkr_options"]["skip_last"] is True
    assert "skip_last" not in provenance.parameters(off, "reconstruct")["kkr_options"]


def test_a_checkpoint_without_skip_last_resumes_as_false(raw, tmp_path):
    """Checkpoints of earlier versions record ``kkr_options`` without ``skip_last``: they projected
    every energy, so they resume a ``kkr_skip_last=False`` run and a default run (skip_last on
    since session 13) refuses them, naming ``kkr_options``; with KKR off the key never appears."""
    path = tmp_path / "state.nc"
    reconstruct(raw, **RUN, checkpoint=path, checkpoint_every=3)
    state = ckpt.read_checkpoint(path)
    assert state["params"]["kkr_options"] == OLD_SETTINGS["default"]["kkr_options"]  # what they wrote
    resumed = reconstruct(raw, **RUN, resume_from=path)
    assert provenance.parameters(resumed, "reconstruct")["resumed_at"] == 3
    default = {k: v for k, v in RUN.items() if k != "kkr_skip_last"}
    with pytest.raises(SchemaError, match="kkr_options"):
        reconstruct(raw, **default, resume_from=path)
    assert "skip_last" not in KKROptions(enabled=False).projection()
    assert KKROptions().projection()["skip_last"] is True
