"""Fixtures shared by the test files (pytest finds them by name; nothing imports this module).

Simulations are run once per session and each test module gets its own deep copy, so a
module that edits its data in place cannot change what another module sees (the same
isolation the former per-module fixtures gave, at the cost of one simulation per session).

- ``tiny``: the simulator's "tiny" preset, seed 0 (16 energies × 16 scan points × 32² frames),
  as ``(raw, truth)``.
- ``tiny_p1``: the "tiny" preset for particle P1 as-prepared, seed 1, raw scans only.
- ``chain`` / ``chain_particles``: the hand-built DESIGN §1c–§1f Datasets of
  ``tests/fixtures_chain.py`` (one particle with a particle dim / the list of particles).
- ``no_compute``: a context manager that fails the test if a dask graph is computed inside it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import dask
import fixtures_chain as fc  # tests/ is on sys.path (pytest's "prepend" import mode)
import pytest
import xarray as xr
from dask.callbacks import Callback

from ptyxr import simulate


def _copied(value):
    """A deep copy of a Dataset or of a tuple/list of them."""
    if isinstance(value, xr.Dataset | xr.DataArray):
        return value.copy(deep=True)
    return type(value)(_copied(v) for v in value)


# ---------------------------------------------------------------- simulations (once per session)
@pytest.fixture(scope="session")
def _tiny_session():
    return simulate.demo_dataset("tiny", seed=0, progress=False)


@pytest.fixture(scope="session")
def _tiny_p1_session():
    raw, _ = simulate.demo_dataset("tiny", seed=1, particle="P1", condition="as-prepared", progress=False)
    return raw


@pytest.fixture(scope="module")
def tiny(_tiny_session):
    """The simulator's "tiny" preset (16 energies × 16 scan points × 32² frames) and its truth."""
    return _copied(_tiny_session)


@pytest.fixture(scope="module")
def tiny_p1(_tiny_p1_session):
    """Raw scans of the "tiny" preset for particle P1, as-prepared, seed 1."""
    return _copied(_tiny_p1_session)


# ---------------------------------------------------------------- hand-built chain Datasets
@pytest.fixture(scope="module")
def chain():
    """Two particles after fit_xanes → chemical_state → cluster (tests/fixtures_chain.py)."""
    return fc.chain_dataset()


@pytest.fixture(scope="module")
def chain_particles():
    """The particles of ``chain`` as a list of single-particle Datasets."""
    return fc.particle_datasets()


# ---------------------------------------------------------------- dask laziness
class _RefuseCompute(Callback):
    def __init__(self, message: str):
        super().__init__()
        self.message = message

    def _start(self, dsk):
        raise AssertionError(self.message)


@contextlib.contextmanager
def _no_compute(message: str = "a dask array was computed although the code must stay lazy") -> Iterator[None]:
    def refuse(*args, **kwargs):
        raise AssertionError(message)

    # the scheduler catches computes on the default scheduler, the callback those that name
    # a local scheduler explicitly (compute(scheduler="threads") inside the block)
    with dask.config.set(scheduler=refuse), _RefuseCompute(message):
        yield


@pytest.fixture
def no_compute() -> Callable[..., contextlib.AbstractContextManager[None]]:
    """``with no_compute("what must stay lazy"):`` fails the test if dask computes inside."""
    return _no_compute
