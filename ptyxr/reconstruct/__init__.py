"""Ptychographic reconstruction: energy-batched ePIE on one common grid, with the KKR constraint.

Modules: :mod:`~ptyxr.reconstruct.epie` (array kernels), :mod:`~ptyxr.reconstruct.grid`
(common grid, detector resampling), :mod:`~ptyxr.reconstruct.probe` (initial probes,
coverage), :mod:`~ptyxr.reconstruct.kkr` (KKR constraint), :mod:`~ptyxr.reconstruct.api`
(the ``reconstruct`` stage).
"""

from __future__ import annotations

from ptyxr.reconstruct.api import kkr_schedule, reconstruct

__all__ = ["kkr_schedule", "reconstruct"]
