"""The ipywidgets explorers, under their first name: this *is* :mod:`ptyxr.plotting.widgets`.

The explorers moved into the plotting package (they draw with its helpers, and the
``ds.ptyxr.plot`` methods open them), so that ``plotting`` and ``widgets`` no longer import
each other. ``import ptyxr.widgets`` still works and gives the very same module object
(not a copy), so every name, private ones included, and any patching of them are shared.
"""

from __future__ import annotations

import sys

from ptyxr.plotting import widgets as _widgets

sys.modules[__name__] = _widgets
