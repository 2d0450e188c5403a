"""The shared fixtures of tests/conftest.py do what the tests relying on them assume."""

import dask.array as da
import numpy as np
import pytest

from ptyxr.schema import INTENSITY


def test_no_compute_fails_on_default_and_named_schedulers(no_compute):
    x = da.ones(4, chunks=2)
    with pytest.raises(AssertionError, match="stay lazy"), no_compute("must stay lazy"):
        x.sum().compute()
    with pytest.raises(AssertionError, match="stay lazy"), no_compute("must stay lazy"):
        x.sum().compute(scheduler="synchronous")
    with no_compute("must stay lazy"):
        y = x + 1  # building a graph is fine
    assert float(y.sum().compute()) == 8.0  # and computing after the block too


def test_module_copies_are_independent(tiny, _tiny_session):
    raw, truth = tiny
    assert raw is not _tiny_session[0] and truth is not _tiny_session[1]
    before = _tiny_session[0][INTENSITY].values.copy()
    raw[INTENSITY].values[...] = -1.0  # an in-place edit in one module ...
    np.testing.assert_array_equal(_tiny_session[0][INTENSITY].values, before)  # ... leaves the session's alone
