"""Ptychographic reconstruction: energy-batched ePIE on one common grid, with the KKR constraint.

Modules: :mod:`~ptyxr.reconstruct.api` (the ``reconstruct`` stage),
:mod:`~ptyxr.reconstruct.options` (its options, resolved once, and the KKR schedule),
:mod:`~ptyxr.reconstruct.validate` (input checks), :mod:`~ptyxr.reconstruct.particle` (one
particle's run: the iteration loop), :mod:`~ptyxr.reconstruct.checkpoint`; kernels:
:mod:`~ptyxr.reconstruct.epie` (numpy engine and solver), :mod:`~ptyxr.reconstruct.epie_numba`
(numba and fused numba+FFTW kernels), :mod:`~ptyxr.reconstruct.grid` (common grid, detector
resampling, native↔common transfers), :mod:`~ptyxr.reconstruct.probe` (initial probes,
coverage), :mod:`~ptyxr.reconstruct.kkr` (KKR constraint); engine options in
:mod:`~ptyxr.reconstruct.positions`, :mod:`~ptyxr.reconstruct.modes`,
:mod:`~ptyxr.reconstruct.flux`, :mod:`~ptyxr.reconstruct.momentum`, :mod:`~ptyxr.reconstruct.groups`.
"""

from __future__ import annotations

from ptyxr.reconstruct.api import kkr_schedule, reconstruct

__all__ = ["kkr_schedule", "reconstruct"]
