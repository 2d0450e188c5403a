"""ptyxr's version string, in a module of its own so that any module can read it without
importing the package ``__init__`` (which imports the accessor and, through it, the stages)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _pkg_version

try:
    __version__ = _pkg_version("ptyxr")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"
