"""Checkpoints carry a fingerprint of the input data and the result-determining settings (issue 13, item 3)."""

from __future__ import annotations

import numpy as np
import pytest

from ptyxr.reconstruct.api import reconstruct
from ptyxr.schema import ENERGY, INTENSITY, SchemaError

KW = dict(iterations=6, kkr=False, progress=False, seed=3, checkpoint_every=3)


@pytest.fixture(scope="module")
def raw(tiny_p1):
    return tiny_p1.isel({ENERGY: [0, 1, 2]})


@pytest.fixture(scope="module")
def checkpoint(raw, tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "state.nc"
    reconstruct(raw, **KW, checkpoint=path)
    return path


def test_same_data_resumes(raw, checkpoint):
    reconstruct(raw, **{**KW, "iterations": 8}, resume_from=checkpoint)


def test_other_counts_of_the_same_scan_are_refused(raw, checkpoint):
    """Same scan geometry, other counts (one frame changed by one photon): the data differ."""
    other = raw.copy(deep=True)
    other[INTENSITY].values[1, 4, 10, 10] += 1.0
    with pytest.raises(SchemaError, match=r"does not match this run: it differs in the input data"):
        reconstruct(other, **{**KW, "iterations": 8}, resume_from=checkpoint)


def test_other_positions_are_refused(raw, checkpoint):
    other = raw.copy(deep=True)
    other["position_x"].values[:, 3] += 1e-9  # a sub-pixel change that keeps the grid
    with pytest.raises(SchemaError, match=r"input data"):
        reconstruct(other, **{**KW, "iterations": 8}, resume_from=checkpoint)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"seed": 4}, r"seed \(checkpoint 3, this run 4\)"),
        ({"alpha": 0.5}, r"alpha \(checkpoint 1\.0, this run 0\.5\)"),
        ({"update_probe": False}, r"update_probe \(checkpoint True, this run False\)"),
        ({"coverage_threshold": 0.2}, r"coverage_threshold"),
        ({"interpolation": 3}, r"interpolation \(checkpoint 1, this run 3\)"),
    ],
)
def test_other_settings_are_named(raw, checkpoint, change, match):
    with pytest.raises(SchemaError, match=match):
        reconstruct(raw, **{**KW, "iterations": 8, **change}, resume_from=checkpoint)


def test_fewer_iterations_than_the_checkpoint_are_refused(raw, checkpoint):
    """The checkpoint's state (6 iterations) must not come back labelled as a 4-iteration result."""
    with pytest.raises(SchemaError, match=r"holds 6 iterations, more than iterations=4"):
        reconstruct(raw, **{**KW, "iterations": 4}, resume_from=checkpoint)


def test_resume_at_the_checkpoint_end_is_its_state(raw, checkpoint):
    full = reconstruct(raw, **KW)
    same = reconstruct(raw, **KW, resume_from=checkpoint)
    np.testing.assert_array_equal(same["object"].values, full["object"].values)
