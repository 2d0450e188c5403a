"""Energy grids for V K-edge spectro-ptychography (paper-like sampling)."""

from __future__ import annotations

import numpy as np

from ptyxr.physics import PAPER_PRE_EDGE_LIMIT


def paper_energy_grid() -> np.ndarray:
    """The paper-like 40-energy grid over 5420–5540 eV [eV].

    Four pre-edge points below 5466 eV (the noise estimate, paper §2.3), 1 eV steps over
    the pre-edge peak, 0.5 eV steps across the edge (the paper's smallest gap), then
    coarser steps through the white line and post edge.
    """
    grid = np.concatenate(
        [
            [5420.0, 5440.0, 5455.0, 5462.0],  # pre-edge: noise estimate and constant a
            np.arange(5466.0, 5471.0, 1.0),  # pre-edge peak
            np.arange(5471.0, 5480.5, 0.5),  # edge, 0.5 eV steps
            np.arange(5481.0, 5491.0, 1.0),  # white line
            [5515.0, 5540.0],  # post edge
        ]
    )
    assert grid.size == 40 and np.sum(grid < PAPER_PRE_EDGE_LIMIT) == 4
    return grid


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
