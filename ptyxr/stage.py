"""The ``@stage`` decorator: argument checks, schema validation and provenance in one place.

A pipeline stage is a plain function ``f(ds, ...) -> xr.Dataset``. Decorated with
``@stage("name", validate=schema.validate_...)`` it

1. binds the call to its signature (``inspect.signature(f).bind`` + ``apply_defaults``), so
   every parameter is known by name whether it was passed or defaulted;
2. runs :func:`ptyxr.checks.arguments` on the bound arguments (types and ranges of the
   parameters, when ``checks.ARGUMENTS`` has an entry for the stage);
3. validates the data argument (the first parameter) through the schema validator, which
   treats numpy- and dask-backed Datasets alike: structure (variables, dims, dtypes, coords,
   attrs) is checked on both, values only where they are in memory, so a lazy input is never
   computed by validation;
4. calls the function with the validated Dataset;
5. records provenance (:func:`ptyxr.provenance.record`): every bound parameter except the
   data argument, in signature order, summarised where it is not JSON (arrays, masks,
   Datasets: see :func:`summarise`), updated with the facts the stage itself computed and
   returned through :class:`Recorded` (the energy actually used, constants and their
   sources, counts...). Facts override parameters of the same name (e.g. the nearest grid
   energy replaces the requested one).

The stage's public signature, docstring and return value are unchanged: ``functools.wraps``
keeps them, and :class:`Recorded` never leaves the decorator (a stage that returns one is
annotated ``-> Recorded``; the wrapper's signature says ``-> xarray.Dataset``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, ParamSpec

import numpy as np
import xarray as xr

from ptyxr import checks, provenance

P = ParamSpec("P")

#: Arrays up to this many elements are recorded as lists; larger ones as a summary.
MAX_RECORDED_ELEMENTS = 1000


class Recorded(NamedTuple):
    """What a decorated stage returns: its output and the facts to record next to its parameters."""

    output: Any
    facts: Mapping[str, Any]


def summarise(value: Any) -> Any:
    """A JSON-friendly stand-in for a parameter value that is not plain data.

    xarray objects become ``"<DataArray bool (y: 10, x: 12)>"``-like strings (never their
    values: masks and stacks do not belong in an attr), numpy arrays up to
    :data:`MAX_RECORDED_ELEMENTS` elements are kept as lists, larger ones summarised by shape;
    everything else is left to :func:`ptyxr.provenance.record` (``repr`` of non-JSON objects).
    """
    if isinstance(value, xr.DataArray):
        dims = ", ".join(f"{d}: {n}" for d, n in value.sizes.items())
        return f"<DataArray {value.dtype} ({dims})>"
    if isinstance(value, xr.Dataset):
        return f"<Dataset {', '.join(str(n) for n in value.data_vars)}>"
    if isinstance(value, np.ndarray) and value.size > MAX_RECORDED_ELEMENTS:
        return f"<array {value.dtype} shape={value.shape}>"
    if isinstance(value, Mapping):
        return {k: summarise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [summarise(v) for v in value]
    if isinstance(value, range):
        return list(value)
    return value


def stage(
    name: str,
    *,
    validate: Callable[[Any, str], Any] | None = None,
    exclude: Iterable[str] = (),
    check_arguments: bool = True,
) -> Callable[[Callable[P, Any]], Callable[P, xr.Dataset]]:
    """Decorate a pipeline stage: check arguments, validate its data, record its provenance.

    Parameters
    ----------
    name : str
        Stage name: the ``ptyxr_<name>`` attr, the ``history`` line and the prefix of errors.
    validate : callable ``(data, stage) -> data``, optional
        Schema validator applied to the first argument (e.g. :func:`ptyxr.schema.validate_fit`);
        it raises :class:`ptyxr.SchemaError` and returns the (possibly normalised) data.
    exclude : iterable of str
        Parameters left out of the record besides the data argument.
    check_arguments : bool
        Run :func:`ptyxr.checks.arguments` on the bound arguments first.

    Returns
    -------
    callable
        The decorator. The decorated function returns either a Dataset (recorded with its
        bound parameters) or :class:`Recorded` ``(output, facts)``.
    """
    skip = set(exclude)

    def decorate(function: Callable[P, Any]) -> Callable[P, xr.Dataset]:
        signature = inspect.signature(function)
        data_name = next(iter(signature.parameters))
        checked = check_arguments and name in checks.ARGUMENTS

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> xr.Dataset:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            if checked:
                checks.arguments(name, bound.arguments)
            if validate is not None:
                bound.arguments[data_name] = validate(bound.arguments[data_name], name)
            result = function(*bound.args, **bound.kwargs)
            output, facts = result if isinstance(result, Recorded) else (result, {})
            parameters = {
                key: summarise(value) for key, value in bound.arguments.items() if key != data_name and key not in skip
            }
            parameters.update(facts)
            return provenance.record(output, name, parameters)

        # the public signature: the function's own, returning the Dataset (never Recorded)
        wrapper.__signature__ = signature.replace(return_annotation=xr.Dataset)  # type: ignore[attr-defined]
        return wrapper

    return decorate
