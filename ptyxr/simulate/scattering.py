"""Scattering factors of the simulated sample: a V K-edge model for f″ and its KK f′.

f″_V(E) of one domain type (electrons)::

    f″_V = B(E) + Δf″·½[1 + erf((E − b2)/b3)]·g(E) + L(E; c11, c12, c13) + L(E; c21, c22, c23)

* B(E): the table's smooth f″ below the K edge (nodes more than 40 eV below the
  tabulated edge), continued across and above the edge by the power law fitted to the
  last 600 eV of those nodes;
* the erf step of height Δf″ (paper: 3.53) at the domain's edge energy b2 — flat up to
  ``E_FLAT`` = 5600 eV, beyond which g(E) makes the step follow the table's post-edge
  decay (A(E) − B(E), normalised to 1 at ``E_FLAT``), so far from the edge f″_V returns
  to the tabulated f″ (within Δf″/(A−B) at E_FLAT, ≈ 5 %);
* Lorentzians L(E) = c/(1 + ((E − centre)/half width)²): pre-edge and white line.

Over the measured window μt = r_e λ Σ N_j f″_j therefore has paper eq. (1)'s shape up
to the smooth λ(E) factor and the tabulated pre-edge slope.

f′_V is the Kramers–Kronig transform of this f″ (:func:`ptyxr.physics.kramers_kronig_matrix`
over the table's nodes plus a dense grid around the edge, piecewise linear, exact) plus
:func:`ptyxr.physics.relativistic_correction`, then shifted by ONE constant per domain
type so that f′_V(``F1_REFERENCE_ENERGY`` = 5420 eV) equals the chosen reference:
``"paper"`` −7.14 (default), ``"henke"``/``"chantler"`` that table's value, ``"kk"`` no
shift (≈ −4.6 with Chantler tails). A constant f′ is invisible to the KKR constraint (it
fits one constant per pixel); with ``"paper"`` the standards' Re[N_e^eff]/N_V at 5420 eV
equals the paper's 35.0 (LiVO2) / 43.1 (LiVO3) / 39.7 (Li10/7V6/7O2) when analysed with
``table="paper"``.

Li and O: f″ from the table; f′ from ``f1_reference`` (``"paper"``: the paper's
constants; ``"kk"``: Chantler, whose f′ is KK-consistent).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ptyxr import physics
from ptyxr.xanes import lineshapes as _lineshapes

if TYPE_CHECKING:  # annotations only: presets imports this module to validate NearEdgeShape
    from ptyxr.simulate.presets import DomainType

#: Above this energy [eV] the edge step follows the table's post-edge decay.
E_FLAT: float = 5600.0
#: Energy at which f′_V is matched to the reference table [eV] (the paper's E_ref).
F1_REFERENCE_ENERGY: float = physics.PAPER_REFERENCE_ENERGY


def _k_edge() -> float:
    return physics.k_edge_energy("V")


def _table_parts(table: str) -> dict[str, Any]:
    return physics.k_edge_table_parts("V", table)


def background_f2(energy: np.ndarray, table: str = "chantler") -> np.ndarray:
    """B(E): the table's below-edge f″_V continued by a power law above the edge [e]
    (:func:`ptyxr.physics.below_edge_f2`)."""
    return physics.below_edge_f2(energy, "V", table)  # type: ignore[arg-type]  # a Table name


def _post_edge_decay(energy: np.ndarray, table: str) -> np.ndarray:
    """g(E): 1 up to E_FLAT, then (A − B)/(A − B)(E_FLAT) with A the table above the edge."""
    parts = _table_parts(table)
    g = np.ones_like(energy)
    high = energy > E_FLAT
    if np.any(high):

        def jump(e: np.ndarray) -> np.ndarray:
            return physics.loglog_interp(e, parts["e_hi"], parts["f_hi"]) - background_f2(e, table)

        g[high] = jump(energy[high]) / jump(np.array([E_FLAT]))[0]
    return g


#: Edge-step shapes of the near-edge model.
EDGE_SHAPES = ("erf", "arctan")
#: White-line shapes of the near-edge model.
WHITE_LINE_SHAPES = ("lorentzian", "split_lorentzian")


@dataclass(frozen=True)
class NearEdgeShape:
    """Shape of f″_V's near-edge model; the default is paper eq. (1) (erf step, Lorentzian line).

    Attributes
    ----------
    edge : {"erf", "arctan"}
        Edge step: ``½[1 + erf((E − b2)/b3)]`` or ``½ + arctan(√π·(E − b2)/b3)/π``. Both are
        odd about b2, so b2 is the step's half height AND its inflection point (the truth's
        ``edge_energy``), and both rise with the same slope 1/(√π·b3) there (b3 means the
        same steepness). The arctan step has Lorentzian-like tails (at b2 − 10·b3 it is
        still 1.8 % of the jump, where the erf's is 1e-45): not eq. (1)'s shape.
    white_line : {"lorentzian", "split_lorentzian"}
        White line: eq. (1)'s Lorentzian, or a split Lorentzian of peak ``c21`` at ``c22``
        with half width ``c23·(1 − asymmetry)`` below and ``c23·(1 + asymmetry)`` above the
        peak (an asymmetric line with a long high-energy tail).
    asymmetry : float
        Asymmetry of the split Lorentzian, in (−1, 1).
    """

    edge: str = "erf"
    white_line: str = "lorentzian"
    asymmetry: float = 0.0

    def __post_init__(self) -> None:
        if self.edge not in EDGE_SHAPES:
            raise ValueError(f"edge_shape must be one of {EDGE_SHAPES}, got {self.edge!r}")
        if self.white_line not in WHITE_LINE_SHAPES:
            raise ValueError(f"white_line_shape must be one of {WHITE_LINE_SHAPES}, got {self.white_line!r}")
        if not -1.0 < self.asymmetry < 1.0:
            raise ValueError(f"white_line_asymmetry must lie in (-1, 1), got {self.asymmetry!r}")


#: Paper eq. (1)'s shape (the simulator's default).
EQ1_SHAPE = NearEdgeShape()


def edge_step(energy: np.ndarray, centre: float, width: float, shape: str = "erf") -> np.ndarray:
    """Unit edge step at ``centre`` [eV] of width ``width`` [eV] (:class:`NearEdgeShape`).

    Both shapes have their inflection and half height at ``centre`` and the slope
    1/(√π·``width``) there.
    """
    if shape == "erf":
        return _lineshapes.step(energy, centre, width)
    if shape == "arctan":
        # same slope 1/(√π·width) at the centre as the erf step
        return 0.5 + np.arctan(np.sqrt(np.pi) * (energy - centre) / width) / np.pi
    raise ValueError(f"edge_shape must be one of {EDGE_SHAPES}, got {shape!r}")


def split_lorentzian(
    energy: np.ndarray, height: float, centre: float, half_width: float, asymmetry: float
) -> np.ndarray:
    """Lorentzian of peak ``height`` at ``centre`` with half width ``half_width``·(1 ∓ ``asymmetry``) below/above."""
    width = np.where(energy < centre, half_width * (1.0 - asymmetry), half_width * (1.0 + asymmetry))
    return height * _lineshapes.lorentzian(energy, centre, width)


def lorentzian(energy: np.ndarray, height: float, centre: float, half_width: float) -> np.ndarray:
    """height / (1 + ((E − centre)/half_width)²): paper eq. (1)'s :func:`ptyxr.xanes.lineshapes.lorentzian`."""
    return height * _lineshapes.lorentzian(energy, centre, half_width)


def vanadium_f2(
    energy: np.ndarray,
    domain: DomainType,
    table: str = "chantler",
    delta_f2: float = physics.PAPER_DELTA_F2_V,
    shape: NearEdgeShape = EQ1_SHAPE,
) -> np.ndarray:
    """f″_V(E) of ``domain`` [electrons] (module docstring), at any energies [eV].

    ``shape`` replaces eq. (1)'s erf step / Lorentzian white line (:class:`NearEdgeShape`).
    """
    energy = np.asarray(energy, dtype=float)
    p = domain.eq1_parameters(delta_f2)
    step = edge_step(energy, p["b2"], p["b3"], shape.edge)  # eq. (1): erf → xanes.lineshapes.step
    if shape.white_line == "lorentzian":
        white_line = lorentzian(energy, p["c21"], p["c22"], p["c23"])
    else:
        white_line = split_lorentzian(energy, p["c21"], p["c22"], p["c23"], shape.asymmetry)
    return (
        background_f2(energy, table)
        + p["b1"] * step * _post_edge_decay(energy, table)
        + lorentzian(energy, p["c11"], p["c12"], p["c13"])
        + white_line
    )


@functools.lru_cache(maxsize=4)
def kk_nodes(table: str = "chantler") -> np.ndarray:
    """Energies [eV] on which f″_V is represented piecewise linearly for the KK transform.

    The table's nodes far from the edge, 0.25 eV steps over edge − 300 … edge + 400 eV and
    0.05 eV steps over 5440–5520 eV (Lorentzians of ≥ 1 eV half width to < 0.1 %).
    """
    energy, _ = physics.tabulated_f2("V", table)  # type: ignore[arg-type]  # a Table name
    edge = _k_edge()
    lo, hi = edge - 300.0, edge + 400.0
    dense = np.concatenate([np.arange(lo, hi, 0.25), np.arange(5440.0, 5520.0, 0.05)])
    return np.unique(np.concatenate([energy[(energy < lo) | (energy > hi)], dense]))


@functools.lru_cache(maxsize=64)
def _kk_f1_cached(
    energy: tuple[float, ...], domain: DomainType, table: str, delta_f2: float, shape: NearEdgeShape = EQ1_SHAPE
) -> np.ndarray:
    nodes = kk_nodes(table)
    matrix = physics.kramers_kronig_matrix(nodes, np.asarray(energy))
    f1 = matrix @ vanadium_f2(nodes, domain, table, delta_f2, shape) + physics.relativistic_correction("V")
    f1.setflags(write=False)
    return f1


def vanadium_f1_kk(
    energy: np.ndarray,
    domain: DomainType,
    table: str = "chantler",
    delta_f2: float = physics.PAPER_DELTA_F2_V,
    shape: NearEdgeShape = EQ1_SHAPE,
) -> np.ndarray:
    """f′_V(E) = KK[f″_V] + relativistic correction, with no reference offset [electrons]."""
    key = tuple(float(e) for e in np.atleast_1d(energy))
    if shape == EQ1_SHAPE:  # the cache key of today's calls stays what it was
        return np.array(_kk_f1_cached(key, domain, table, float(delta_f2)))
    return np.array(_kk_f1_cached(key, domain, table, float(delta_f2), shape))


def reference_f1(element: str, energy: np.ndarray, f1_reference: str) -> np.ndarray:
    """f′ of ``element`` from the reference table (``"kk"`` → Chantler) [electrons]."""
    table = "chantler" if f1_reference == "kk" else f1_reference
    return physics.scattering_factors(element, np.asarray(energy, dtype=float), table)[0]  # type: ignore[arg-type]


def vanadium_f1_offset(
    domain: DomainType,
    table: str = "chantler",
    f1_reference: str = "paper",
    delta_f2: float = physics.PAPER_DELTA_F2_V,
    shape: NearEdgeShape = EQ1_SHAPE,
) -> float:
    """The constant added to the KK f′_V so that f′_V(5420 eV) matches ``f1_reference``."""
    if f1_reference == "kk":
        return 0.0
    e_ref = np.array([F1_REFERENCE_ENERGY])
    return float(reference_f1("V", e_ref, f1_reference)[0] - vanadium_f1_kk(e_ref, domain, table, delta_f2, shape)[0])


def type_factors(
    energy: np.ndarray,
    domains: Sequence[DomainType],
    elements: Sequence[str],
    table: str = "chantler",
    f1_reference: str = "paper",
    delta_f2: float = physics.PAPER_DELTA_F2_V,
    shape: NearEdgeShape = EQ1_SHAPE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """f′ and f″ of every element in every domain type at ``energy``.

    ``shape``: near-edge shape of f″_V (:class:`NearEdgeShape`; default paper eq. (1)).

    Returns
    -------
    f1, f2 : ndarray, shape (n_types, n_elements, n_energies)
        Anomalous factors [electrons] (total real factor Z + f′).
    offsets : ndarray, shape (n_types,)
        The constant added to each type's KK f′_V [electrons].
    """
    energy = np.asarray(energy, dtype=float)
    f1 = np.zeros((len(domains), len(elements), energy.size))
    f2 = np.zeros_like(f1)
    offsets = np.zeros(len(domains))
    for j, element in enumerate(elements):
        if element == "V":
            continue
        ref1 = reference_f1(element, energy, f1_reference)
        tab2 = physics.scattering_factors(element, energy, table)[1]  # type: ignore[arg-type]
        f1[:, j], f2[:, j] = ref1, tab2
    if "V" in elements:
        j = list(elements).index("V")
        for t, domain in enumerate(domains):
            offsets[t] = vanadium_f1_offset(domain, table, f1_reference, delta_f2, shape)
            f1[t, j] = vanadium_f1_kk(energy, domain, table, delta_f2, shape) + offsets[t]
            f2[t, j] = vanadium_f2(energy, domain, table, delta_f2, shape)
    return f1, f2, offsets


def atom_densities(domain: DomainType) -> dict[str, float]:
    """Number density of each element in ``domain`` [atoms m⁻³] from composition and ρ."""
    return composition_densities(domain.composition, domain.density)  # type: ignore[arg-type]


def composition_densities(composition: dict[str, float], density: float) -> dict[str, float]:
    """Number density of each element [atoms m⁻³] of a material of ``composition`` and ρ [g/cm³]."""
    import periodictable
    from scipy.constants import Avogadro

    molar_mass = sum(n * periodictable.elements.symbol(el).mass for el, n in composition.items())  # g/mol
    formula_units = density * 1e6 / molar_mass * Avogadro  # (g/m³)/(g/mol)·N_A
    return {el: n * formula_units for el, n in composition.items()}


def formula_composition(formula: str) -> dict[str, float]:
    """Atoms per formula unit of a chemical formula, e.g. ``"Si3N4"`` → {"Si": 3, "N": 4}."""
    import periodictable

    try:
        atoms = periodictable.formula(formula).atoms
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"cannot parse the membrane formula {formula!r}: {err}") from None
    return {str(el): float(n) for el, n in atoms.items()}


def membrane_optics(
    energy: np.ndarray, formula: str = "Si3N4", density: float = 3.44, table: str = "chantler"
) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude attenuation and phase per metre of a homogeneous film, from tabulated f′, f″.

    μt/t = r_e λ Σ_j n_j f″_j and φ/t = −r_e λ Σ_j n_j (Z_j + f′_j), the convention of
    :func:`ptyxr.simulate.forward.optical_maps` (μt is the amplitude attenuation −ln|O|).

    Parameters
    ----------
    energy : array
        Photon energies [eV].
    formula : str
        Chemical formula (periodictable syntax), e.g. ``"Si3N4"``.
    density : float
        Mass density [g/cm³] (LPCVD Si3N4: ≈ 3.44 stoichiometric, 3.0–3.2 low-stress).
    table : {"chantler", "henke"}
        Scattering-factor table.

    Returns
    -------
    mu_per_m, phase_per_m : ndarray (n_energies,)
        [1/m] and [rad/m]; multiply by the thickness.
    """
    energy = np.asarray(energy, dtype=float)
    densities = composition_densities(formula_composition(formula), density)
    scale = physics.CLASSICAL_ELECTRON_RADIUS * physics.wavelength(energy)
    mu = np.zeros_like(energy)
    phase = np.zeros_like(energy)
    for element, n in densities.items():
        f1, f2 = physics.scattering_factors(element, energy, table)  # type: ignore[arg-type]
        mu += scale * n * f2
        phase -= scale * n * (physics.atomic_number(element) + f1)
    return mu, phase
