"""Energy grids for V K-edge spectro-ptychography (paper-like sampling)."""

from __future__ import annotations

import numpy as np

from ptyxr.physics import paper_energy_grid

__all__ = ["paper_energy_grid", "reduced_energy_grid"]  # paper_energy_grid: defined in ptyxr.physics


def reduced_energy_grid(n_energies: int = 20) -> np.ndarray:
    """A subset of :func:`paper_energy_grid` with ``n_energies`` points (≥ 14) [eV].

    Keeps the four pre-edge points and both window ends and thins the edge region
    evenly, so the 10-parameter XANES model stays determined.
    """
    full = paper_energy_grid()
    if not 14 <= n_energies <= full.size:
        raise ValueError(f"n_energies must be between 14 and {full.size}, got {n_energies}")
    pre, rest = full[:4], full[4:]
    keep = np.unique(np.round(np.linspace(0, rest.size - 1, n_energies - 4)).astype(int))
    return np.concatenate([pre, rest[keep]])
