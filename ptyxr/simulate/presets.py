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
        Photons per probe position (``Σ|P|²``) [counts].
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

    Variants that break the engine's and the fit model's assumptions (issue 11 point 3;
    the defaults reproduce the original simulator bit for bit):

    probe_shape : {"kb", "gaussian", "fzp", "kb_aberrated"}
        Optic (:mod:`ptyxr.simulate.probes`); the engine's probe guess is always a KB focus
        of ``probe_fwhm``.
    probe_central_stop : float
        FZP central-stop diameter / zone-plate diameter.
    probe_aberration_rms : float
        rms wavefront error of ``"kb_aberrated"`` (astigmatism + coma) [waves].
    edge_shape : {"erf", "arctan"}
        Edge step of f″_V (:class:`~ptyxr.simulate.scattering.NearEdgeShape`); the truth's
        ``edge_energy`` is the step's inflection point b2 for both.
    white_line_shape : {"lorentzian", "split_lorentzian"}
        White line of f″_V; ``white_line_asymmetry`` ∈ (−1, 1) splits its half width.
    white_line_asymmetry : float
        Split-Lorentzian asymmetry (half width c23·(1 ∓ a) below/above the peak).
    edge_width_scale, white_line_width_scale : float
        Factors on every domain type's edge width b3 and white-line half width c23.
    membrane_thickness : float
        Thickness of a film under the whole field, moving with the sample [m] (0: none).
    membrane_formula, membrane_density : str, float
        Its chemical formula and mass density [g/cm³]; optical constants from ``f2_table``.
    membrane_gradient : float
        Relative thickness change per µm along (y + x)/√2 from the coordinate origin
        (a slowly varying film); 0 = uniform.
    dead_rows, dead_columns : tuple of int
        Detector rows/columns that read 0.
    module_gap : (int, int) or None
        (first column, width) of an insensitive band between detector modules (reads 0).
    detector_mask : bool
        Give the raw Dataset a ``detector_mask`` marking the defects; False = the realistic
        user mistake (zeros, no mask).
    scan_pattern : {"raster", "spiral", "hex"}
        Scan geometry (:func:`~ptyxr.simulate.forward.scan_positions`): spiral = Fermat
        spiral with one point per ``scan_step``² of area, hex = hexagonal lattice of
        nearest-neighbour distance ``scan_step``.
    scan_grid : (int, int) or None
        Raster counts (n_y, n_x) centred on the particle, instead of extent + margin.

    Beamline realism (issue 12 point 4; seeded, recorded in the truth, off by default):

    position_error : float
        Rms error per axis of every recorded position [pixels at the highest energy], drawn
        per energy and position: the probe sits at recorded + error (truth
        ``true_position_y``/``_x``), on top of the per-energy drift.
    probe_modes : tuple of float
        Power fractions of mutually incoherent, orthogonal probe modes (normalised; e.g.
        (0.75, 0.17, 0.08)); the frames are the incoherent sum ``Σ_m |F(P_m·O)|²``. Empty =
        one coherent probe. Truth ``true_probe_modes``; ``probe`` holds the first mode.
    flux_jitter : float
        Rms relative per-frame fluctuation of the incident flux (Gaussian, multiplicative).
    flux_decay : float
        Relative flux lost from the first to the last frame of the acquisition (energy by
        energy, positions in order), exponential in the frame index (beam-current decay).
    monitor : bool
        Give the raw Dataset a ``monitor`` (energy, scan) = photons × relative flux [counts]
        (a noise-free ion chamber). Truth ``true_flux`` is recorded either way.

    Detector background (issue 16; seeded from its own stream, recorded in the truth, off by
    default so the default data stay bit-identical):

    detector_background : float
        Mean counts per detector pixel per frame of a flat background that no object and
        probe produce (air scatter, fluorescence, dark counts): the frames are
        Poisson(signal + ``detector_background``). Truth attr ``detector_background``.
    read_noise : float
        Rms of a Gaussian read-noise floor added after the Poisson draw [counts], rounded to
        whole counts and clipped at 0 (the detector reports no negative counts, which lifts
        the floor's mean by ≈ 0.4·``read_noise``). Truth attr ``read_noise``.
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
    probe_shape: str = "kb"
    probe_central_stop: float = 0.5
    probe_aberration_rms: float = 0.25
    edge_shape: str = "erf"
    white_line_shape: str = "lorentzian"
    white_line_asymmetry: float = 0.0
    edge_width_scale: float = 1.0
    white_line_width_scale: float = 1.0
    membrane_thickness: float = 0.0
    membrane_formula: str = "Si3N4"
    membrane_density: float = 3.44
    membrane_gradient: float = 0.0
    dead_rows: tuple[int, ...] = ()
    dead_columns: tuple[int, ...] = ()
    module_gap: tuple[int, int] | None = None
    detector_mask: bool = False
    scan_pattern: str = "raster"
    scan_grid: tuple[int, int] | None = None
    position_error: float = 0.0
    probe_modes: tuple[float, ...] = ()
    flux_jitter: float = 0.0
    flux_decay: float = 0.0
    monitor: bool = False
    detector_background: float = 0.0
    read_noise: float = 0.0


#: Fields that make a simulator variant, with their defaults (today's physics).
VARIANT_FIELDS: tuple[str, ...] = (
    "probe_shape",
    "probe_central_stop",
    "probe_aberration_rms",
    "edge_shape",
    "white_line_shape",
    "white_line_asymmetry",
    "edge_width_scale",
    "white_line_width_scale",
    "membrane_thickness",
    "membrane_formula",
    "membrane_density",
    "membrane_gradient",
    "dead_rows",
    "dead_columns",
    "module_gap",
    "detector_mask",
    "scan_pattern",
    "scan_grid",
    "position_error",
    "probe_modes",
    "flux_jitter",
    "flux_decay",
    "monitor",
    "detector_background",
    "read_noise",
)


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
# issue 11's trial on data ptyxr's engine and fit model do not assume: FZP probe with a
# central stop, a 500 nm Si3N4 membrane, a dead detector row read as 0 with no mask,
# 16 energies, 9×9 jittered raster with per-energy drift, arctan edge + asymmetric white
# line with other widths; small's geometry (64² frames, 20 nm pixels, ~1 µm particle) so
# the main presets' accuracy bounds are a fair test (tiny's 32² frames miss them even with
# every variant off); 16 energies and a 9×9 raster keep the DEFAULT chain (800 iterations)
# near a minute
PRESETS["foreign"] = dataclasses.replace(
    PRESETS["small"],
    name="foreign",
    n_energies=16,
    probe_shape="fzp",
    probe_central_stop=0.5,
    edge_shape="arctan",
    white_line_shape="split_lorentzian",
    white_line_asymmetry=0.4,
    edge_width_scale=1.2,
    white_line_width_scale=0.75,
    membrane_thickness=500e-9,
    membrane_gradient=0.05,
    dead_rows=(9,),
    scan_grid=(9, 9),
)

#: Single-variant overrides on top of a base preset (a test can loop over them):
#: ``demo_dataset(base, **VARIANTS[name])``. Each changes ONE assumption of the engine or
#: the fit model; "foreign" combines several.
VARIANTS: dict[str, dict[str, Any]] = {
    "gaussian_probe": {"probe_shape": "gaussian"},
    "fzp_probe": {"probe_shape": "fzp", "probe_central_stop": 0.5},
    "aberrated_kb_probe": {"probe_shape": "kb_aberrated", "probe_aberration_rms": 0.25},
    "arctan_edge": {"edge_shape": "arctan", "edge_width_scale": 1.2},
    "asymmetric_white_line": {
        "white_line_shape": "split_lorentzian",
        "white_line_asymmetry": 0.4,
        "white_line_width_scale": 0.75,
    },
    "membrane": {"membrane_thickness": 500e-9, "membrane_gradient": 0.05},
    "dead_row_unmasked": {"dead_rows": (9,), "module_gap": (22, 2), "detector_mask": False},
    "dead_row_masked": {"dead_rows": (9,), "module_gap": (22, 2), "detector_mask": True},
    "spiral_scan": {"scan_pattern": "spiral"},
    "hex_scan": {"scan_pattern": "hex"},
    "raster_9x9": {"scan_grid": (9, 9)},
}

#: Issue 12's beamline realism, one at a time (the acceptance cases of issue 12).
REALISM: dict[str, dict[str, Any]] = {
    "position_errors": {"position_error": 1.0},
    "probe_modes": {"probe_modes": (0.75, 0.17, 0.08)},
    "flux_jitter": {"flux_jitter": 0.05, "flux_decay": 0.1},
    "flux_jitter_monitor": {"flux_jitter": 0.05, "flux_decay": 0.1, "monitor": True},
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
    for key in ("dead_rows", "dead_columns", "module_gap", "scan_grid"):
        if key in overrides and overrides[key] is not None:
            overrides[key] = tuple(int(v) for v in overrides[key])
    if overrides.get("probe_modes") is not None and "probe_modes" in overrides:
        overrides["probe_modes"] = tuple(float(v) for v in overrides["probe_modes"])
    out = dataclasses.replace(preset, **overrides)
    if out.placement not in ("nearest", "exact"):
        raise ValueError(f"placement must be 'nearest' or 'exact', got {out.placement!r}")
    if out.f1_reference not in ("paper", "henke", "chantler", "kk"):
        raise ValueError(f"f1_reference must be 'paper', 'henke', 'chantler' or 'kk', got {out.f1_reference!r}")
    if out.f2_table not in ("henke", "chantler"):
        raise ValueError(f"f2_table must be 'henke' or 'chantler', got {out.f2_table!r}")
    _check_variants(out)
    return out


def _check_variants(config: Preset) -> None:
    from ptyxr.simulate.forward import SCAN_PATTERNS
    from ptyxr.simulate.probes import PROBE_SHAPES
    from ptyxr.simulate.scattering import NearEdgeShape

    if config.probe_shape not in PROBE_SHAPES:
        raise ValueError(f"probe_shape must be one of {PROBE_SHAPES}, got {config.probe_shape!r}")
    if not 0.0 <= config.probe_central_stop < 1.0:
        raise ValueError(f"probe_central_stop must lie in [0, 1), got {config.probe_central_stop!r}")
    if config.scan_pattern not in SCAN_PATTERNS:
        raise ValueError(f"scan_pattern must be one of {SCAN_PATTERNS}, got {config.scan_pattern!r}")
    if config.scan_grid is not None and (len(config.scan_grid) != 2 or min(config.scan_grid) < 1):
        raise ValueError(f"scan_grid must be two positive counts (n_y, n_x), got {config.scan_grid!r}")
    if config.module_gap is not None and (len(config.module_gap) != 2 or config.module_gap[1] < 0):
        raise ValueError(f"module_gap must be (first column, width >= 0), got {config.module_gap!r}")
    if config.membrane_thickness < 0:
        raise ValueError(f"membrane_thickness must be >= 0 m, got {config.membrane_thickness!r}")
    if config.edge_width_scale <= 0 or config.white_line_width_scale <= 0:
        raise ValueError("edge_width_scale and white_line_width_scale must be > 0")
    NearEdgeShape(config.edge_shape, config.white_line_shape, config.white_line_asymmetry)  # validates
    if config.position_error < 0 or config.flux_jitter < 0 or not 0 <= config.flux_decay < 1:
        raise ValueError("position_error and flux_jitter must be >= 0 and flux_decay in [0, 1)")
    if config.probe_modes and (min(config.probe_modes) <= 0 or len(config.probe_modes) > 6):
        raise ValueError(f"probe_modes must be 1-6 positive power fractions, got {config.probe_modes!r}")
    if config.detector_background < 0 or config.read_noise < 0:
        raise ValueError(
            f"detector_background and read_noise must be >= 0 counts, got {config.detector_background!r}, "
            f"{config.read_noise!r}"
        )


def variant_settings(config: Preset) -> dict[str, Any]:
    """The variant fields of ``config`` that differ from today's physics (empty = original simulator)."""
    defaults = {f.name: f.default for f in dataclasses.fields(Preset) if f.name in VARIANT_FIELDS}
    return {k: getattr(config, k) for k in VARIANT_FIELDS if getattr(config, k) != defaults[k]}
