"""ptyxr's exception types (no dependencies, so numpy-only kernels can raise them too)."""

from __future__ import annotations


class SchemaError(ValueError):
    """A Dataset does not follow ptyxr's data model; the message says what and how to fix it."""
