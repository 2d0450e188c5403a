"""eq. (1)'s edge-energy floor on the foreign preset's spectra, and what a free step shape gives.

For every domain type, the noise-free V f″ spectrum of the "foreign" preset (arctan step,
split-Lorentzian white line, its widths) is fitted on the preset's 16 energies and on the
paper's 40, with eq. (1) (``fit_batch``) and with a step of free shape
(1 − η)·erf(z) + η·arctan-step(√π z), η ∈ [0, 1] (scipy per spectrum, starts η = 0 and 1
from the eq. (1) fit). Prints b2 − truth [eV] per domain type, and the truth's own
inflection (max dμ/dE of the true spectrum within ±5 eV of b2) − b2, which shows that the truth definition
(the step's centre) is the spectrum's edge. Seconds. Not a test
(docs/design-notes/s12-fituncert.md, section 3).

    python benchmarks/edge_shape_floor.py
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares
from scipy.special import erf

from ptyxr import simulate
from ptyxr.simulate import datasets, scattering
from ptyxr.simulate.energies import paper_energy_grid
from ptyxr.simulate.presets import DOMAIN_TYPES
from ptyxr.xanes import fit_batch


def free_shape(q: np.ndarray, e: np.ndarray) -> np.ndarray:
    """eq. (1) with the step (1 − η)·erf + η·arctan (same slope at b2); q = 10 params + η."""
    a, b1, b2, b3, c11, c12, c13, c21, c22, c23, eta = q
    z = (e - b2) / b3
    step = (1 - eta) * 0.5 * (1 + erf(z)) + eta * (0.5 + np.arctan(np.sqrt(np.pi) * z) / np.pi)
    return a + b1 * step + c11 / (1 + ((e - c12) / c13) ** 2) + c21 / (1 + ((e - c22) / c23) ** 2)


def main() -> None:
    config = simulate.resolve_preset("foreign")
    domains = datasets._vary_domains(config, list(DOMAIN_TYPES.values()))
    shape = scattering.NearEdgeShape(config.edge_shape, config.white_line_shape, config.white_line_asymmetry)
    fine = np.arange(5465.0, 5495.0, 0.01)
    for d in domains:
        curve = scattering.vanadium_f2(fine, d, config.f2_table, shape=shape)
        rise = np.abs(fine - d.edge_energy) < 5.0  # the edge's rise, not the pre-edge peak's
        inflection = fine[rise][np.argmax(np.gradient(curve, fine)[rise])]
        offset = inflection - d.edge_energy
        print(f"{d.name:16s} truth b2 {d.edge_energy:.2f} eV, true spectrum's inflection − b2 {offset:+.2f} eV")
    grids = (("16 energies (preset)", datasets.energies_of(config)), ("40 energies (paper)", paper_energy_grid()))
    for label, energy in grids:
        spectra = np.array([scattering.vanadium_f2(energy, d, config.f2_table, shape=shape) for d in domains])
        res = fit_batch(energy, spectra, pre_edge_limit=5466.0)
        print(label)
        for d, p, y, lo, hi in zip(domains, res.params, spectra, res.lower, res.upper, strict=True):
            best = None
            lb, ub = np.append(lo, 0.0), np.append(hi, 1.0)
            for eta in (0.0, 1.0):
                q0 = np.clip(np.append(p, eta), lb + 1e-9, ub - 1e-9)
                sol = least_squares(lambda q, y=y, energy=energy: free_shape(q, energy) - y, q0, bounds=(lb, ub))
                best = sol if best is None or sol.cost < best.cost else best
            print(
                f"  {d.name:16s} eq. (1) b2 − truth {p[2] - d.edge_energy:+.2f} eV | "
                f"free step shape {best.x[2] - d.edge_energy:+.2f} eV (η {best.x[10]:.2f})"
            )


if __name__ == "__main__":
    main()
