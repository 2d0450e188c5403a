"""Simulated spectro-ptychography of Li-rich DRS vanadium-oxide particles with ground truth.

>>> raw, truth = ptyxr.simulate.demo_dataset("small", seed=0)          # doctest: +SKIP
>>> particles = ptyxr.simulate.paper_particles("small")                # P1–P3, D1–D3
>>> spectra = ptyxr.simulate.spectra_from_truth(truth, noise=2e-3)     # §1c without reconstruction

Layers: :mod:`~ptyxr.simulate.scattering` (f″_V near-edge model and its KK f′),
:mod:`~ptyxr.simulate.phantom` (particle shape and domains) and
:mod:`~ptyxr.simulate.forward` (rendering on native grids, probe, far field, Poisson) are
numpy kernels; :mod:`~ptyxr.simulate.datasets` assembles the xarray Datasets;
:mod:`~ptyxr.simulate.presets` holds the documented, overridable parameters.
"""

from __future__ import annotations

from ptyxr.simulate.datasets import demo_dataset, paper_particles, spectra_from_truth, standard_dataset
from ptyxr.simulate.energies import paper_energy_grid, reduced_energy_grid
from ptyxr.simulate.presets import (
    CONDITIONS,
    DOMAIN_TYPES,
    PAPER_PARTICLES,
    PRESETS,
    STANDARDS,
    VARIANTS,
    Condition,
    DomainType,
    Preset,
    resolve_preset,
)


def __getattr__(name: str):
    # accuracy_report lives in ptyxr.simulate.accuracy (comparison with ground truth); lazy,
    # so importing the simulator never depends on it
    if name == "accuracy_report":
        from ptyxr.simulate.accuracy import accuracy_report

        return accuracy_report
    raise AttributeError(f"module 'ptyxr.simulate' has no attribute {name!r}")


__all__ = [
    "CONDITIONS",
    "DOMAIN_TYPES",
    "PAPER_PARTICLES",
    "PRESETS",
    "STANDARDS",
    "VARIANTS",
    "Condition",
    "DomainType",
    "Preset",
    "accuracy_report",
    "demo_dataset",
    "paper_energy_grid",
    "paper_particles",
    "reduced_energy_grid",
    "resolve_preset",
    "spectra_from_truth",
    "standard_dataset",
]
