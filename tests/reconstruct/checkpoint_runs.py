"""Checkpoint/resume runs shared by the reconstruct tests (imported by name: this folder is on sys.path).

Each option that carries state between iterations (flux, positions, probe modes, momentum, the
plain engine) is checked the same way: the run stopped or killed part-way and resumed from its
checkpoint equals the uninterrupted run bit for bit. The runs are built here once; the tests keep
their own parameters, the arrays they compare and what they assert about the checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from ptyxr.reconstruct import reconstruct

#: File name of the checkpoint inside the test's ``tmp_path``.
CHECKPOINT = "state.nc"


def full_and_checkpoint(raw: xr.Dataset, tmp_path: Path, stop_after: int, kw: dict) -> tuple[xr.Dataset, Path]:
    """The uninterrupted run of ``reconstruct(raw, **kw)`` and the checkpoint of the same run
    stopped after ``stop_after`` iterations (checkpoints every ``kw["checkpoint_every"]`` and at
    the end)."""
    full = reconstruct(raw, **kw)
    ck = tmp_path / CHECKPOINT
    reconstruct(raw, **{**kw, "iterations": stop_after}, checkpoint=ck)
    return full, ck


def killed_run(
    raw: xr.Dataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    owner: type,
    when: Callable[..., bool],
    kw: dict,
) -> Path:
    """Run ``reconstruct(raw, **kw)`` with checkpoints until ``owner.refine(self, *args)`` is
    called with ``when(self, *args)`` true, where a RuntimeError "killed" stops it (asserted);
    ``owner.refine`` is restored and the checkpoint path returned."""
    refine = owner.refine

    def crash(self: Any, *args: Any) -> Any:
        if when(self, *args):
            raise RuntimeError("killed")
        return refine(self, *args)

    ck = tmp_path / CHECKPOINT
    monkeypatch.setattr(owner, "refine", crash)
    with pytest.raises(RuntimeError, match="killed"):
        reconstruct(raw, **kw, checkpoint=ck)
    monkeypatch.setattr(owner, "refine", refine)
    return ck


def assert_resume_equals(raw: xr.Dataset, ck: Path, full: xr.Dataset, names: Iterable[str], kw: dict) -> xr.Dataset:
    """Resume ``reconstruct(raw, **kw)`` from ``ck``; assert the variables ``names`` equal the
    uninterrupted run's bit for bit; return the resumed run."""
    resumed = reconstruct(raw, **kw, resume_from=ck)
    for name in names:
        np.testing.assert_array_equal(resumed[name].values, full[name].values)
    return resumed
