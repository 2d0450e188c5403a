"""Physical constants, X-ray scattering factors and the Kramers–Kronig transform.

Conventions (DESIGN §2): O = exp(−μt)·exp(iφ) with μt = r_e λ Σ N_j f″_j(E) (the
*amplitude* attenuation) and φ = −r_e λ Σ N_j (Z_j + f′_j(E)). Energies in eV, lengths in
metres, projected densities in m⁻².

Tables: ``"henke"`` (Henke, Gullikson & Davis 1993 via ``periodictable.xsf``; reproduces
the paper's constants) and ``"chantler"`` (Chantler 2000 via ``xraydb``). ``"paper"``
returns the constants printed in Uematsu et al. (PCCP 2023) where it defines them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal, overload

import numpy as np
from scipy import constants as _c

#: Classical electron radius (Thomson scattering length) r_e [m].
CLASSICAL_ELECTRON_RADIUS: float = _c.physical_constants["classical electron radius"][0]
#: Planck constant × speed of light [eV·m].
HC_EV_M: float = _c.h * _c.c / _c.e

Table = Literal["paper", "henke", "chantler"]
TABLES: tuple[str, ...] = ("paper", "henke", "chantler")

#: Paper's constants (Uematsu et al. 2023, §2.3): Δf″_V across the V K edge and f′ at the
#: pre-edge reference energy 5420 eV. Note f′_V = −7.14 is Henke's linear interpolation
#: between sparse nodes; a KK-consistent value is ≈ −4.6 (Chantler), see DESIGN §1e.
PAPER_DELTA_F2_V: float = 3.53
PAPER_F1: dict[str, float] = {"Li": 0.00278, "V": -7.14, "O": 0.0757}
PAPER_REFERENCE_ENERGY: float = 5420.0
#: Paper's pre-edge limit: energies below it are pre-edge points for the noise estimate [eV].
PAPER_PRE_EDGE_LIMIT: float = 5466.0
#: Paper's energy window [eV].
PAPER_ENERGY_RANGE: tuple[float, float] = (5420.0, 5540.0)

#: Compositions of the paper's materials (atoms per formula unit).
COMPOSITIONS: dict[str, dict[str, float]] = {
    "Li10/7V6/7O2": {"Li": 10 / 7, "V": 6 / 7, "O": 2.0},
    "LiVO2": {"Li": 1.0, "V": 1.0, "O": 2.0},
    "LiVO3": {"Li": 1.0, "V": 1.0, "O": 3.0},
}


def paper_energy_grid() -> np.ndarray:
    """The paper-like 40-energy grid over 5420–5540 eV [eV].

    Four pre-edge points below 5466 eV (the noise estimate, paper §2.3), 1 eV steps over
    the pre-edge peak, 0.5 eV steps across the edge (the paper's smallest gap), then
    coarser steps through the white line and post edge. Used by the analysis (the default
    grid of :func:`ptyxr.xanes.reference_spectra`) and the simulator
    (:mod:`ptyxr.simulate.energies`, which re-exports it).
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


@overload
def wavelength(energy: float) -> float: ...
@overload
def wavelength(energy: np.ndarray) -> np.ndarray: ...
@overload
def wavelength(energy: float | np.ndarray) -> float | np.ndarray: ...
def wavelength(energy: float | np.ndarray) -> float | np.ndarray:
    """X-ray wavelength λ = hc/E [m] of photon energy ``energy`` [eV]."""
    energy = np.asarray(energy, dtype=float)
    if np.any(energy <= 0):
        raise ValueError("photon energies must be positive (eV)")
    return HC_EV_M / energy


def atomic_number(element: str) -> int:
    """Atomic number Z of ``element`` (symbol, e.g. ``"V"``)."""
    import periodictable

    try:
        return int(periodictable.elements.symbol(element).number)
    except ValueError:
        raise ValueError(f"unknown element symbol {element!r}") from None


def _check_table(table: str) -> None:
    if table not in TABLES:
        raise ValueError(f"table must be one of {TABLES}, got {table!r}")


def scattering_factors(
    element: str, energy: float | np.ndarray, table: Table = "henke"
) -> tuple[np.ndarray, np.ndarray]:
    """Anomalous scattering factors (f′, f″) of ``element`` at ``energy`` [eV].

    Parameters
    ----------
    element : str
        Element symbol.
    energy : float or array
        Photon energy [eV].
    table : {"henke", "chantler", "paper"}
        Source. ``"paper"`` returns the paper's f′ (Li, V, O at 5420 eV, any energy) and
        Henke's f″.

    Returns
    -------
    f1, f2 : ndarray
        f′ (anomalous part only: the total real factor is Z + f′) and f″ [electrons].
    """
    _check_table(table)
    energy = np.asarray(energy, dtype=float)
    if table == "chantler":
        import xraydb

        flat = energy.ravel()  # xraydb accepts scalars and 1-D arrays only
        f1 = np.asarray(xraydb.f1_chantler(element, flat), dtype=float)  # already f′ (anomalous)
        f2 = np.asarray(xraydb.f2_chantler(element, flat), dtype=float)
        return f1.reshape(energy.shape), f2.reshape(energy.shape)
    import periodictable

    el = periodictable.elements.symbol(element)
    f1_total, f2 = el.xray.scattering_factors(energy=energy / 1000.0)
    f1 = np.asarray(f1_total, dtype=float) - el.number
    f2 = np.asarray(f2, dtype=float)
    if table == "paper":
        if element not in PAPER_F1:
            raise ValueError(f"the paper gives f′ only for {sorted(PAPER_F1)}, not {element!r}")
        f1 = np.full(energy.shape, PAPER_F1[element])
    return f1.reshape(energy.shape), f2.reshape(energy.shape)


def tabulated_f2(
    element: str, table: Literal["henke", "chantler"] = "chantler", energy_range: tuple[float, float] = (10.0, 1e6)
) -> tuple[np.ndarray, np.ndarray]:
    """The table's own f″ nodes of ``element``: (energy [eV], f″), for KK integrals.

    Duplicate energies (edge jumps) are kept in order; zero-width segments are handled
    by :func:`kramers_kronig_matrix`.
    """
    if table == "chantler":
        import xraydb

        energy = np.asarray(xraydb.chantler_energies(element, *energy_range), dtype=float)
        f2 = np.asarray(xraydb.f2_chantler(element, energy), dtype=float)
    elif table == "henke":
        import periodictable

        nodes = periodictable.elements.symbol(element).xray.sftable
        energy, f2 = nodes[0] * 1000.0, nodes[2]
        keep = (energy >= energy_range[0]) & (energy <= energy_range[1])
        energy, f2 = energy[keep], f2[keep]
    else:
        raise ValueError(f"tabulated_f2 takes table 'henke' or 'chantler', got {table!r}")
    return energy, f2


#: Tabulated nodes closer than this below the K edge belong to the edge (Chantler broadens
#: its step over ~30 eV) and are replaced by the power-law continuation [eV].
BELOW_EDGE_GAP: float = 40.0
#: Nodes closer than this above the K edge belong to the edge [eV].
ABOVE_EDGE_GAP: float = 15.0


def k_edge_energy(element: str = "V") -> float:
    """K-edge energy of ``element`` [eV] (xraydb; V: 5465 eV)."""
    import xraydb

    return float(xraydb.xray_edge(element, "K").energy)


def loglog_interp(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Interpolation linear in log(x)–log(y) (power laws between nodes; positive values)."""
    return np.exp(np.interp(np.log(x), np.log(xp), np.log(fp)))


@functools.lru_cache(maxsize=8)
def k_edge_table_parts(element: str = "V", table: Literal["henke", "chantler"] = "chantler") -> dict[str, Any]:
    """The table's f″ nodes of ``element`` split at its K edge, for smooth continuations.

    Returns a dict with ``edge`` [eV], ``e_lo``/``f_lo`` (nodes more than
    :data:`BELOW_EDGE_GAP` below the edge), ``slope`` (log–log slope of the last 600 eV of
    those, the power law continuing them) and ``e_hi``/``f_hi`` (nodes more than
    :data:`ABOVE_EDGE_GAP` above the edge).
    """
    energy, f2 = tabulated_f2(element, table)
    edge = k_edge_energy(element)
    ok = f2 > 0
    energy, f2 = energy[ok], f2[ok]
    below = energy < edge - BELOW_EDGE_GAP
    above = energy > edge + ABOVE_EDGE_GAP
    e_lo, f_lo = energy[below], f2[below]
    fit = e_lo > e_lo[-1] - 600.0
    slope = float(np.polyfit(np.log(e_lo[fit]), np.log(f_lo[fit]), 1)[0])
    return {"edge": edge, "e_lo": e_lo, "f_lo": f_lo, "slope": slope, "e_hi": energy[above], "f_hi": f2[above]}


def below_edge_f2(energy: float | np.ndarray, element: str = "V", table: Table = "chantler") -> np.ndarray:
    """f″ of ``element`` without its K edge: the table's below-edge f″ continued across it [e].

    The smooth L-shell (and outer-shell) absorption of the atom under its K edge, log–log
    interpolated between the table's nodes below the edge and continued above the last of
    them by the power law fitted to its last 600 eV. ``table="paper"`` uses Henke (the
    source of the paper's constants).
    """
    _check_table(table)
    parts = k_edge_table_parts(element, "henke" if table == "paper" else table)
    energy = np.asarray(energy, dtype=float)
    e_lo, f_lo = parts["e_lo"], parts["f_lo"]
    out = loglog_interp(np.minimum(energy, e_lo[-1]), e_lo, f_lo)
    high = energy > e_lo[-1]
    out[high] = f_lo[-1] * (energy[high] / e_lo[-1]) ** parts["slope"]
    return out


def delta_f2(
    element: str = "V",
    edge_energy: float = 5465.0,
    table: Table = "paper",
    below: float = 5420.0,
    above: float = 5540.0,
) -> float:
    """Jump of f″ across an absorption edge: f″(above) − f″(below) [electrons].

    ``table="paper"`` returns the paper's Δf″_V = 3.53 (Henke); other tables evaluate f″
    at ``below`` and ``above`` [eV] (defaults: the paper's window).
    """
    _check_table(table)
    if table == "paper":
        if element != "V":
            raise ValueError("the paper gives Δf″ for V only")
        return PAPER_DELTA_F2_V
    _, f2 = scattering_factors(element, np.array([below, above]), table)
    return float(f2[1] - f2[0])


def _lnabs(d: np.ndarray) -> np.ndarray:
    # ln|d| with ln|0| := 0: at a node that coincides with the evaluation energy the two
    # adjacent segments' singular logs cancel exactly (principal value of a continuous f″).
    a = np.abs(d)
    return np.log(np.where(a > 0, a, 1.0))


def _segment_weights(nodes: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Matrix W (len(c) × len(nodes)) with Σ_j W_ij f_j = P∫ f(ε)/(ε − c_i) dε, f piecewise linear."""
    e0, e1 = nodes[:-1], nodes[1:]
    h = e1 - e0
    c = c[:, None]
    log_ratio = _lnabs(e1 - c) - _lnabs(e0 - c)
    with np.errstate(invalid="ignore", divide="ignore"):
        w_lower = (e1 - c) * log_ratio / h - 1.0
        w_upper = -(e0 - c) * log_ratio / h + 1.0
    zero = h[None, :] <= 0  # duplicated node (tabulated jump): a zero-width segment adds nothing
    w_lower = np.where(zero, 0.0, w_lower)
    w_upper = np.where(zero, 0.0, w_upper)
    weights = np.zeros((c.shape[0], nodes.size))
    weights[:, :-1] += w_lower
    weights[:, 1:] += w_upper
    return weights


def kramers_kronig_matrix(nodes: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Matrix K with f′(E_i) = Σ_j K_ij f″(ε_j) by the Kramers–Kronig relation.

    f′(E) = (2/π) P∫ ε f″(ε) / (E² − ε²) dε, with f″ piecewise linear between ``nodes``
    and zero outside them; integrated exactly segment by segment, so the principal value
    needs no grid trick. Linear in f″, hence one precomputed matrix serves all pixels
    (KKR constraint). Zero-width segments (a tabulated jump) are allowed.

    Parameters
    ----------
    nodes : array, shape (n,)
        Non-decreasing energies [eV] where f″ (or any g = E·μt) is known.
    energy : array, shape (m,)
        Energies [eV] at which f′ is wanted (positive).

    Returns
    -------
    ndarray, shape (m, n)

    Notes
    -----
    Truncation: f″ outside [nodes[0], nodes[-1]] is taken as zero; over a narrow window
    (the paper's 5420–5540 eV) this biases f′ by ≈1 e and diverges logarithmically at the
    window ends. Extend the window with tabulated f″ first (:func:`extend_with_table`).
    """
    nodes = np.asarray(nodes, dtype=float)
    energy = np.atleast_1d(np.asarray(energy, dtype=float))
    if nodes.ndim != 1 or nodes.size < 2 or np.any(np.diff(nodes) < 0):
        raise ValueError("nodes must be a non-decreasing 1-D array of at least 2 energies")
    # ε/(E²−ε²) = −½[1/(ε−E) + 1/(ε+E)]  ⇒  f′ = −(1/π) P∫ f [1/(ε−E) + 1/(ε+E)] dε
    return -(_segment_weights(nodes, energy) + _segment_weights(nodes, -energy)) / np.pi


def kramers_kronig_f1(nodes: np.ndarray, f2: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """f′(``energy``) from f″ known at ``nodes`` (see :func:`kramers_kronig_matrix`)."""
    return kramers_kronig_matrix(nodes, energy) @ np.asarray(f2, dtype=float)


def relativistic_correction(element: str) -> float:
    """High-energy limit of f′ (relativistic term, Henke's approximation −(Z/82.5)^2.37)."""
    return -((atomic_number(element) / 82.5) ** 2.37)


def extend_with_table(
    energy: np.ndarray,
    f2: np.ndarray,
    element: str = "V",
    table: Literal["henke", "chantler"] = "chantler",
    pre_edge_limit: float | None = None,
    post_edge_limit: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Extend an f″-like spectrum measured on a narrow window with scaled tabulated tails.

    Below the window the table's f″ is scaled to the measured pre-edge points, above it
    to the post-edge points, each scale by least squares over those points (more robust
    than matching one end point). Any quantity proportional to f″ (e.g. g = E·μt per
    pixel, with an additive non-resonant background absorbed in the pre-edge scale) can
    be extended.

    Parameters
    ----------
    energy : array (n,)
        Measured energies [eV], increasing.
    f2 : array (..., n)
        Spectra to extend (last axis energy).
    pre_edge_limit, post_edge_limit : float, optional
        Points below ``pre_edge_limit`` define the lower scale and points above
        ``post_edge_limit`` the upper scale [eV]; defaults: the first and last quarter.

    Returns
    -------
    nodes : array (m,)
        Energies of the extended spectrum [eV] (table nodes outside the window).
    extended : array (..., m)
    """
    energy = np.asarray(energy, dtype=float)
    f2 = np.asarray(f2, dtype=float)
    t_energy, t_f2 = tabulated_f2(element, table)
    lo_nodes = t_energy < energy[0] - 1e-9
    hi_nodes = t_energy > energy[-1] + 1e-9
    quarter = max(1, energy.size // 4)
    lo_pts = energy < pre_edge_limit if pre_edge_limit is not None else np.arange(energy.size) < quarter
    hi_pts = (
        energy > post_edge_limit if post_edge_limit is not None else np.arange(energy.size) >= energy.size - quarter
    )
    ref = np.interp(energy, t_energy, t_f2)

    def scale(points: np.ndarray) -> np.ndarray:
        r = ref[points]
        return (f2[..., points] @ r) / (r @ r)

    s_lo, s_hi = scale(lo_pts), scale(hi_pts)
    nodes = np.concatenate([t_energy[lo_nodes], energy, t_energy[hi_nodes]])
    extended = np.concatenate([s_lo[..., None] * t_f2[lo_nodes], f2, s_hi[..., None] * t_f2[hi_nodes]], axis=-1)
    return nodes, extended


def electrons_per_formula(
    composition: Mapping[str, float], energy: float = PAPER_REFERENCE_ENERGY, table: Table = "paper"
) -> float:
    """Σ_j n_j (Z_j + f′_j(E)) for a composition ``{element: atoms}`` [electrons]."""
    total = 0.0
    for element, count in composition.items():
        f1, _ = scattering_factors(element, np.array([energy]), table)
        total += float(count) * (atomic_number(element) + float(f1[0]))
    return total


def electrons_per_vanadium(
    composition: Mapping[str, float] | str, table: Table = "paper", energy: float = PAPER_REFERENCE_ENERGY
) -> float:
    """Theoretical Re[N_e^eff]/N_V of a composition (paper eqs. 4–5).

    Parameters
    ----------
    composition : mapping or str
        Atoms per formula unit, e.g. ``{"Li": 10/7, "V": 6/7, "O": 2}``, or a key of
        :data:`COMPOSITIONS`.
    table : {"paper", "henke", "chantler"}
        Source of f′. ``"paper"`` gives 39.7, 35.0, 43.1 for Li10/7V6/7O2, LiVO2, LiVO3.
    energy : float
        Energy of the phase image [eV] (the paper's 5420 eV).

    Returns
    -------
    float
        Electrons per V atom [1].
    """
    if isinstance(composition, str):
        try:
            composition = COMPOSITIONS[composition]
        except KeyError:
            raise ValueError(f"unknown composition {composition!r}; known: {sorted(COMPOSITIONS)}") from None
    n_v = float(composition.get("V", 0.0))
    if n_v <= 0:
        raise ValueError("the composition contains no vanadium")
    return electrons_per_formula(composition, energy, table) / n_v
