"""Notebook-aware progress bars (tqdm.auto) with one switch, ``progress=False``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs: Any):
    """A tqdm.auto bar over ``iterable`` (disabled when ``enabled`` is False)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not enabled, **kwargs)
