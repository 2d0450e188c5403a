"""Simulation presets, chemical domain types and sample conditions (all plain dataclasses).

Users override any preset field by keyword: ``demo_dataset("small", photons=1e6)`` or
``resolve_preset("paper", frame_size=64)``. Everything here is a documented default,
chosen to resemble Uematsu et al. (PCCP 2023); none of it is measured data.

Domain types
------------
Five chemical domain types of Li-rich DRS vanadium oxide (cf. the paper's clusters 1–6):

=================  ==============  ========  ======  =========  ==========================
name               composition     ρ g/cm³   E0 eV   PE/Δμt eV  meaning
=================  ==============  ========  ======  =========  ==========================
``oct_V3``         Li10/7V6/7O2    3.9       5476.0  0.5        bulk DRS, octahedral V3+
``tet_V3``         LiVO2           4.3       5476.5  1.8        V3+ left on tetrahedral sites
``tet_V5``         Li4/7V6/7O2     3.7       5482.0  2.6        delithiated, tetrahedral V5+
``oct_V4``         LiV6/7O2        3.8       5479.5  1.0        partly oxidised, octahedral
``surface_Li5VO5`` Li5VO5          2.6       5482.5  2.2        Li/O-rich surface shell
=================  ==============  ========  ======  =========  ==========================

With the paper's f′ these give Re[N_e^eff]/N_V ≈ 39.7, 35.0, 36.7, 38.2 and 71.3
electrons per V. Compositions are illustrative (not all charge-balanced at the quoted
valence); what matters for the analysis is that valence (edge energy), site symmetry
(pre-edge area) and composition (electrons per V) differ between types.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ptyxr.physics import PAPER_DELTA_F2_V


@dataclass(frozen=True)
class DomainType:
    """One chemical domain type: composition, density and V K-edge near-edge shape.

    The near-edge model of f″_V (electrons) is paper eq. (1) in f″ units:
    ``Δf″·½(1+erf((E−edge_energy)/edge_width)) + pre-edge Lorentzian + white-line
    Lorentzian`` on top of the tabulated smooth f″ below the K edge.

    Attributes
    ----------
    name : str
        Identifier without spaces (used in ``flag_meanings``).
    composition : mapping
        Atoms per formula unit, e.g. ``{"Li": 1, "V": 1, "O": 2}``.
    density : float
        Mass density [g/cm³].
    edge_energy : float
        Centre of the erf edge step b2 [eV] (rises with V valence).
    edge_width : float
        erf width b3 [eV].
    pre_edge_energy, pre_edge_width : float
        Pre-edge Lorentzian centre c12 and half width c13 [eV].
    pre_edge_ratio : float
        Normalised pre-edge area PE/Δμt = π·c11·c13/b1 [eV] (low: octahedral, high:
        tetrahedral); sets the Lorentzian height.
    white_line_height : float
        White-line Lorentzian height c21 relative to the edge step b1 [1].
    white_line_offset, white_line_width : float
        White-line centre c22 − b2 and half width c23 [eV].
    """

    name: str
    composition: Mapping[str, float]
    density: float
    edge_energy: float
    edge_width: float
    pre_edge_energy: float
    pre_edge_width: float
    pre_edge_ratio: float
    white_line_height: float
    white_line_offset: float
    white_line_width: float

    def __hash__(self) -> int:  # composition is a dict; hash its items (used by caches)
        values = [getattr(self, f.name) for f in dataclasses.fields(self)]
        values[1] = tuple(sorted(self.composition.items()))
        return hash(tuple(values))

    def eq1_parameters(self, delta_f2: float = PAPER_DELTA_F2_V) -> dict[str, float]:
        """Paper eq. (1) parameters of the near-edge part of f″_V, heights in electrons.

        ``a`` is 0 here (the smooth tabulated background is separate); multiply the
        heights by r_e·λ·N_V to get μt units.
        """
        import math

        return {
            "a": 0.0,
            "b1": delta_f2,
            "b2": self.edge_energy,
            "b3": self.edge_width,
            "c11": self.pre_edge_ratio * delta_f2 / (math.pi * self.pre_edge_width),
            "c12": self.pre_edge_energy,
            "c13": self.pre_edge_width,
            "c21": self.white_line_height * delta_f2,
            "c22": self.edge_energy + self.white_line_offset,
            "c23": self.white_line_width,
        }


DOMAIN_TYPES: dict[str, DomainType] = {
    t.name: t
    for t in (
        DomainType("oct_V3", {"Li": 10 / 7, "V": 6 / 7, "O": 2.0}, 3.9, 5476.0, 2.5, 5468.5, 1.2, 0.5, 0.35, 8.0, 4.0),
        DomainType("tet_V3", {"Li": 1.0, "V": 1.0, "O": 2.0}, 4.3, 5476.5, 2.5, 5469.0, 1.2, 1.8, 0.30, 8.0, 4.0),
        DomainType("tet_V5", {"Li": 4 / 7, "V": 6 / 7, "O": 2.0}, 3.7, 5482.0, 2.2, 5470.0, 1.0, 2.6, 0.25, 7.0, 5.0),
        DomainType("oct_V4", {"Li": 1.0, "V": 6 / 7, "O": 2.0}, 3.8, 5479.5, 2.5, 5469.5, 1.2, 1.0, 0.35, 7.0, 5.0),
        DomainType(
            "surface_Li5VO5", {"Li": 5.0, "V": 1.0, "O": 5.0}, 2.6, 5482.5, 2.2, 5470.0, 1.0, 2.2, 0.25, 7.0, 5.0
        ),
    )
}

#: Single-phase standards (uniform particles, paper §2.1 / ESI S6–S7).
STANDARDS: dict[str, DomainType] = {
    "LiVO2": DomainType("LiVO2", {"Li": 1.0, "V": 1.0, "O": 2.0}, 4.3, 5476.0, 2.5, 5468.5, 1.2, 0.5, 0.35, 8.0, 4.0),
    "LiVO3": DomainType("LiVO3", {"Li": 1.0, "V": 1.0, "O": 3.0}, 3.3, 5482.0, 2.2, 5470.0, 1.0, 2.6, 0.25, 7.0, 5.0),
    "Li10/7V6/7O2": dataclasses.replace(DOMAIN_TYPES["oct_V3"], name="Li10/7V6/7O2"),
}


@dataclass(frozen=True)
class Condition:
    """A sample condition: which domain types occur and how much of each.

    Attributes
    ----------
    name : str
        E.g. ``"as-prepared"``.
    fractions : mapping
        Target N_V-weighted fractions of the bulk domain types inside the particle
        (normalised; the surface shell comes on top).
    surface_type : str or None
        Domain type of the patchy surface shell.
    surface_affinity : mapping
        Extra preference of a bulk type for the region near the surface (dimensionless,
        in units of the random field's standard deviation), e.g. the paper's oxidation
        from the surface (P2).
    """

    name: str
    fractions: Mapping[str, float]
    surface_type: str | None = "surface_Li5VO5"
    surface_affinity: Mapping[str, float] = field(default_factory=dict)

    @property
    def types(self) -> tuple[str, ...]:
        """Domain types of this condition: bulk types then the surface type."""
        bulk = tuple(self.fractions)
        return bulk + ((self.surface_type,) if self.surface_type else ())


_BULK = ("oct_V3", "tet_V3", "tet_V5", "oct_V4")

#: As-prepared particles are mostly octahedral V3+; delithiated ones mostly tetrahedral
#: V5+, with V3+ (octahedral and tetrahedral) remaining (paper Fig. 3c).
CONDITIONS: dict[str, Condition] = {
    "as-prepared": Condition(
        "as-prepared", dict(zip(_BULK, (0.62, 0.10, 0.06, 0.22), strict=True)), surface_affinity={"oct_V4": 1.5}
    ),
    "delithiated": Condition(
        "delithiated", dict(zip(_BULK, (0.15, 0.25, 0.45, 0.15), strict=True)), surface_affinity={"tet_V5": 1.0}
    ),
}

#: The paper's particles and their conditions.
PAPER_PARTICLES: dict[str, str] = {
    "P1": "as-prepared",
    "P2": "as-prepared",
    "P3": "as-prepared",
    "D1": "delithiated",
    "D2": "delithiated",
    "D3": "delithiated",
}


@dataclass(frozen=True)
class Preset:
    """All set-up and sample parameters of one simulation (SI units, eV).

    Attributes
    ----------
    name : str
        Preset name.
    n_energies : int or None
        Energies from :func:`~ptyxr.simulate.energies.reduced_energy_grid`; None = the
        40-energy :func:`~ptyxr.simulate.energies.paper_energy_grid`.
    energies : tuple of float or None
        Explicit energies [eV] (overrides ``n_energies``).
    frame_size : int
        Detector frame size N (N × N pixels).
    pixel_size : float
        Real-space pixel λz/(Np) at the highest energy [m]; sets the detector distance
        z = pixel_size·N·p/λ(E_max).
    detector_pixel_size : float
        Detector pixel p [m] (EIGER: 75 µm).
    probe_fwhm, probe_defocus : float
        KB focus FWHM and defocus [m] (:func:`ptyxr.optics.kb_probe`).
    scan_step : float
        Raster step [m].
    scan_margin : float
        Scan beyond the particle's bounding box on each side [m].
    jitter : float
        Rms position jitter (known, recorded) as a fraction of the step, drawn per
        energy and position.
    drift : float
        Rms unknown sample drift per axis [pixels at the highest energy]: a random walk
        over energies, zero at the highest energy.
    photons : float
        Photons per probe position (Σ|P|²) [counts].
    particle_size : float
        Nominal largest diameter [m]; each particle draws a scale in
        [``size_spread``, 1].
    size_spread : float
        Smallest particle scale.
    domain_size : float
        Typical domain size [m] (correlation length of the random domain fields).
    shell_thickness : float
        Mean thickness of the patchy surface shell in projection [m].
    oversample : int
        Master grid pixel = pixel_size / oversample; all grids are bilinear samples
        of the master maps, so truth and data describe the same continuous object.
    placement : {"nearest", "exact"}
        "nearest": each probe centre sits on the native pixel nearest its position
        (native pixel centres at integer multiples of λ(E)z/(Np), index
        ``np.rint(position/dx)``), as the reconstructor does; "exact": each patch is
        sampled at the exact position.
    f2_table : {"chantler", "henke"}
        Table of the smooth tabulated f″ (V background and tails, Li, O).
    f1_reference : {"paper", "henke", "chantler", "kk"}
        Constant offset of f′_V so that f′_V(5420 eV) equals this table's value
        ("kk": no offset); also the source of f′ of Li and O ("kk": Chantler).
    delta_f2 : float
        Height of the erf edge step of f″_V [electrons] (paper: 3.53).
    """

    name: str
    n_energies: int | None
    frame_size: int
    pixel_size: float
    probe_fwhm: float
    scan_step: float
    scan_margin: float
    photons: float
    particle_size: float
    domain_size: float
    shell_thickness: float
    energies: tuple[float, ...] | None = None
    detector_pixel_size: float = 75e-6
    probe_defocus: float = 0.0
    jitter: float = 0.1
    drift: float = 2.0
    size_spread: float = 0.8
    oversample: int = 2
    placement: str = "nearest"
    f2_table: str = "chantler"
    f1_reference: str = "paper"
    delta_f2: float = PAPER_DELTA_F2_V


PRESETS: dict[str, Preset] = {
    # unit tests: seconds; 16 energies, 32² frames, ≤ 25 positions, one ~0.3 µm particle
    "tiny": Preset(
        "tiny",
        n_energies=16,
        frame_size=32,
        pixel_size=25e-9,
        probe_fwhm=120e-9,
        scan_step=90e-9,
        scan_margin=40e-9,
        photons=1e7,
        particle_size=320e-9,
        domain_size=120e-9,
        shell_thickness=25e-9,
        drift=1.0,
        size_spread=0.9,
    ),
    # notebooks / CI demo: 20 energies, 64² frames, ≤ 64 positions, ~1 µm particle
    "small": Preset(
        "small",
        n_energies=20,
        frame_size=64,
        pixel_size=20e-9,
        probe_fwhm=200e-9,
        scan_step=130e-9,
        scan_margin=100e-9,
        photons=1e8,
        particle_size=1.0e-6,
        domain_size=300e-9,
        shell_thickness=40e-9,
        drift=2.0,
        size_spread=0.85,
    ),
    # close to the paper: 40 energies 5420–5540 eV, 128² frames, 15 nm pixels, 300 nm
    # probe, 150 nm steps, particles up to 2 µm
    "paper": Preset(
        "paper",
        n_energies=None,
        frame_size=128,
        pixel_size=15e-9,
        probe_fwhm=300e-9,
        scan_step=150e-9,
        scan_margin=150e-9,
        photons=1e9,
        particle_size=2.0e-6,
        domain_size=400e-9,
        shell_thickness=60e-9,
        drift=3.0,
        size_spread=0.65,
    ),
}


def resolve_preset(preset: str | Preset = "small", **overrides: Any) -> Preset:
    """The :class:`Preset` named ``preset`` (or given) with ``overrides`` applied.

    Raises
    ------
    ValueError
        Unknown preset name or field.
    """
    if isinstance(preset, str):
        try:
            preset = PRESETS[preset]
        except KeyError:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)} or pass a Preset") from None
    names = {f.name for f in dataclasses.fields(Preset)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown preset field(s) {unknown}; valid: {sorted(names)}")
    if "energies" in overrides and overrides["energies"] is not None:
        overrides["energies"] = tuple(float(e) for e in overrides["energies"])
    out = dataclasses.replace(preset, **overrides)
    if out.placement not in ("nearest", "exact"):
        raise ValueError(f"placement must be 'nearest' or 'exact', got {out.placement!r}")
    if out.f1_reference not in ("paper", "henke", "chantler", "kk"):
        raise ValueError(f"f1_reference must be 'paper', 'henke', 'chantler' or 'kk', got {out.f1_reference!r}")
    if out.f2_table not in ("henke", "chantler"):
        raise ValueError(f"f2_table must be 'henke' or 'chantler', got {out.f2_table!r}")
    return out
