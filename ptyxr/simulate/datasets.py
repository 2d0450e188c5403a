"""Simulated raw scan series with ground truth (xarray assembly of the simulator kernels).

``demo_dataset(preset, seed, condition, particle)`` returns ``(raw, truth)``: ``raw``
follows DESIGN §1a (input of ``reconstruct``); ``truth`` holds the true object on the
common grid (pixel = λz/(Np) at the highest energy, extent = union of the native scanned
fields, i.e. every energy's positions ± half a probe array) together with the true
§1c/§1e quantities, the densities and scattering factors used, and the true drift as
``shift_y``/``shift_x`` in the §1c convention.

Common-grid pixel centres lie at integer multiples of the pixel size, like every native
grid (see :mod:`ptyxr.simulate.forward`), so at the highest energy (drift 0) the truth
object and the simulated native object coincide pixel for pixel.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ptyxr import physics, provenance, schema
from ptyxr.optics import real_space_pixel_size
from ptyxr.progress import progress_bar
from ptyxr.schema import (
    ABSORPTION,
    ANOMALOUS_F1,
    ANOMALOUS_F2,
    ATOMIC_NUMBER,
    ATTR_CONDITION,
    ATTR_DETECTOR_DISTANCE,
    ATTR_DETECTOR_PIXEL_SIZE,
    ATTR_PARTICLE,
    ATTR_PROBE_DEFOCUS,
    ATTR_PROBE_FWHM,
    BACKGROUND,
    DETECTOR_MASK,
    DOMAIN,
    DOMAIN_TYPE,
    EDGE_ENERGY,
    EDGE_JUMP,
    ELECTRON_DENSITY,
    ELECTRONS_PER_VANADIUM,
    ELEMENT,
    ENERGY,
    FIT_PARAMETERS,
    INTENSITY,
    MATERIAL,
    MISSING_DOMAIN,
    MONITOR,
    OBJECT,
    PARTIAL_DENSITY,
    PHASE,
    POSITION_X,
    POSITION_Y,
    PRE_EDGE_RATIO,
    PROBE,
    SHIFT_X,
    SHIFT_Y,
    THICKNESS,
    TRUE_ELECTRONS_PER_VANADIUM,
    TRUE_FLUX,
    TRUE_FRACTION,
    TRUE_POSITION_X,
    TRUE_POSITION_Y,
    TRUE_PRE_EDGE_RATIO,
    TRUE_PREFIX,
    TRUE_PROBE_MODES,
    VANADIUM_DENSITY,
    X,
    Y,
    variable,
)
from ptyxr.simulate import forward, phantom, probes, scattering
from ptyxr.simulate.energies import paper_energy_grid, reduced_energy_grid
from ptyxr.simulate.presets import (
    CONDITIONS,
    DOMAIN_TYPES,
    PAPER_PARTICLES,
    STANDARDS,
    DomainType,
    Preset,
    resolve_preset,
    variant_settings,
)

#: Attr names of the simulation's own constants (truth and raw).
ATTR_PRESET = "simulation_preset"
ATTR_SEED = "simulation_seed"
ATTR_PHOTONS = "photons_per_position"
ATTR_F2_TABLE = "f2_table"
ATTR_F1_REFERENCE = "f1_reference"
ATTR_F1_REFERENCE_ENERGY = "f1_reference_energy"
ATTR_F1_OFFSET = "vanadium_f1_offset"
ATTR_DELTA_F2 = "delta_f2_vanadium"
ATTR_REFERENCE_ENERGY = "reference_energy"
ATTR_COMPOSITIONS = "compositions"
ATTR_DENSITIES = "mass_densities_g_cm3"
ATTR_PLACEMENT = "placement"
ATTR_CLASSICAL_ELECTRON_RADIUS = "classical_electron_radius"
ATTR_PARTICLE_SIZE = "particle_size"
#: JSON of the variant fields that differ from the original simulator ("{}" = none).
ATTR_VARIANTS = "simulation_variants"
#: Uniform part of the membrane (thickness ``membrane_thickness``) per energy: μt [1], φ [rad].
ATTR_MEMBRANE_ABSORPTION = "membrane_absorption"
ATTR_MEMBRANE_PHASE = "membrane_phase"
#: Power fraction of each simulated probe mode (at the highest energy).
ATTR_PROBE_MODE_POWER = "probe_mode_power_fractions"
#: Flat detector background [mean counts per pixel per frame] and read-noise rms [counts].
ATTR_DETECTOR_BACKGROUND = "detector_background"
ATTR_READ_NOISE = "read_noise"

_ELEMENT_ORDER = ("Li", "V", "O")


def energies_of(config: Preset) -> np.ndarray:
    """The energy grid [eV] of a preset."""
    if config.energies is not None:
        energy = np.asarray(config.energies, dtype=float)
        if energy.ndim != 1 or energy.size < 1 or np.any(np.diff(energy) <= 0):
            raise ValueError("energies must be a strictly increasing 1-D sequence (eV)")
        return energy
    return paper_energy_grid() if config.n_energies is None else reduced_energy_grid(config.n_energies)


def _elements(domains: Sequence[DomainType]) -> tuple[str, ...]:
    present = {el for d in domains for el in d.composition}
    return tuple(el for el in _ELEMENT_ORDER if el in present) + tuple(sorted(present - set(_ELEMENT_ORDER)))


def _seed_sequence(seed: int, particle: str) -> np.random.SeedSequence:
    # each particle name gets its own reproducible stream; crc32 is stable across runs
    return np.random.SeedSequence(entropy=int(seed), spawn_key=(zlib.crc32(particle.encode()),))


def _vary_domains(config: Preset, domains: Sequence[DomainType]) -> list[DomainType]:
    """Domain types with the preset's edge / white-line width factors applied."""
    if config.edge_width_scale == 1.0 and config.white_line_width_scale == 1.0:
        return list(domains)
    return [
        dataclasses.replace(
            d,
            edge_width=d.edge_width * config.edge_width_scale,
            white_line_width=d.white_line_width * config.white_line_width_scale,
        )
        for d in domains
    ]


def _membrane_layer(config: Preset, energy: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(μt, φ) per energy of the membrane's uniform part, or None without a membrane."""
    if config.membrane_thickness <= 0:
        return None
    mu, phase = scattering.membrane_optics(energy, config.membrane_formula, config.membrane_density, config.f2_table)
    return mu * config.membrane_thickness, phase * config.membrane_thickness


def _membrane_background(config: Preset, mu_t: float, phase: float):
    """background(y, x) → (μt, φ) of the membrane at one energy for forward.object_patches."""
    gradient = config.membrane_gradient

    def layer(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if gradient == 0:
            return np.full(np.broadcast(y, x).shape, mu_t), np.full(np.broadcast(y, x).shape, phase)
        factor = 1.0 + gradient * (y + x) / (np.sqrt(2.0) * 1e-6)
        return mu_t * factor, phase * factor

    return layer


def _simulate(
    config: Preset,
    domains: Sequence[DomainType],
    fractions: Sequence[float],
    has_surface: bool,
    affinity: Sequence[float],
    particle: str,
    condition: str,
    seed: int,
    progress: bool,
) -> tuple[xr.Dataset, xr.Dataset]:
    energy = energies_of(config)
    domains = _vary_domains(config, domains)
    shape = scattering.NearEdgeShape(config.edge_shape, config.white_line_shape, config.white_line_asymmetry)
    elements = _elements(domains)
    z_numbers = np.array([physics.atomic_number(el) for el in elements], dtype=float)
    # the first four streams are the original simulator's; spawning more leaves them unchanged
    shape_ss, scan_ss, drift_ss, noise_ss, position_ss, flux_ss, background_ss = _seed_sequence(seed, particle).spawn(7)
    shape_rng = np.random.default_rng(shape_ss)

    # ---- sample on the master grid
    size = config.particle_size * shape_rng.uniform(config.size_spread, 1.0)
    master_pixel = config.pixel_size / config.oversample
    atom_density = [scattering.atom_densities(d) for d in domains]
    ph = phantom.make_phantom(
        size,
        master_pixel,
        fractions,
        atom_density,
        elements,
        config.domain_size,
        config.shell_thickness,
        has_surface,
        affinity,
        shape_rng,
    )
    origin = (float(ph.y[0]), float(ph.x[0]))
    f1, f2, offsets = scattering.type_factors(
        energy, domains, elements, config.f2_table, config.f1_reference, config.delta_f2, shape
    )

    # ---- geometry: fixed detector, energy-dependent real-space pixel
    n = config.frame_size
    distance = config.pixel_size * n * config.detector_pixel_size / physics.wavelength(energy.max())
    dx = real_space_pixel_size(energy, distance, config.detector_pixel_size, n)
    rows = np.flatnonzero(ph.thickness.any(axis=1))
    cols = np.flatnonzero(ph.thickness.any(axis=0))
    extent_y = (ph.y[rows[0]], ph.y[rows[-1]])
    extent_x = (ph.x[cols[0]], ph.x[cols[-1]])
    pos_y, pos_x = forward.scan_positions(
        config.scan_pattern,
        extent_y,
        extent_x,
        config.scan_step,
        config.scan_margin,
        config.jitter,
        energy.size,
        np.random.default_rng(scan_ss),
        config.scan_grid,
    )
    drift = forward.random_drift(energy.size, config.drift * dx[-1], np.random.default_rng(drift_ss))
    noise_rng = np.random.default_rng(noise_ss)
    background_rng = np.random.default_rng(background_ss)
    # issue 12's realism: the probe sits at recorded + error; frames see a varying flux
    realism = bool(config.position_error or config.probe_modes or config.flux_jitter or config.flux_decay)
    true_y, true_x = pos_y, pos_x
    if config.position_error:
        err = config.position_error * dx[-1] * np.random.default_rng(position_ss).standard_normal((2, *pos_y.shape))
        true_y, true_x = pos_y + err[0], pos_x + err[1]
    flux = forward.flux_series(
        energy.size, pos_y.shape[1], config.flux_jitter, config.flux_decay, np.random.default_rng(flux_ss)
    )
    membrane = _membrane_layer(config, energy)
    valid_pixels = forward.defect_mask(n, config.dead_rows, config.dead_columns, config.module_gap)

    # ---- per-energy forward model
    intensity = np.empty((energy.size, pos_y.shape[1], n, n), dtype=np.float32)
    probe_stack = np.empty((energy.size, n, n), dtype=np.complex64)
    mode_stack = np.empty((len(config.probe_modes), energy.size, n, n), dtype=np.complex64)
    for e in progress_bar(range(energy.size), enabled=progress, desc=f"simulate {particle}", unit="energy"):
        mu_t, phase = forward.optical_maps(ph.density, f1[:, :, e], f2[:, :, e], z_numbers, energy[e])
        probe_stack[e] = probes.make_probe(
            config.probe_shape,
            energy[e],
            n,
            dx[e],
            config.probe_fwhm,
            config.probe_defocus,
            config.photons,
            config.probe_central_stop,
            config.probe_aberration_rms,
        )
        modes = probes.probe_modes(probe_stack[e], config.probe_modes) if config.probe_modes else probe_stack[e][None]
        if config.probe_modes:
            mode_stack[:, e] = modes
            probe_stack[e] = modes[0]
        background = None if membrane is None else _membrane_background(config, membrane[0][e], membrane[1][e])
        patches = forward.object_patches(
            mu_t,
            phase,
            origin,
            master_pixel,
            true_y[e],
            true_x[e],
            dx[e],
            n,
            tuple(drift[e]),
            config.placement,
            background,
        )
        if realism:
            intensity[e] = forward.diffraction_modes(modes.astype(np.complex128), patches, flux[e], noise_rng)
        else:
            intensity[e] = forward.diffraction(probe_stack[e].astype(np.complex128), patches, noise_rng)
        if config.detector_background or config.read_noise:  # own stream: the signal's draw is unchanged
            intensity[e] = forward.detector_background(
                intensity[e], config.detector_background, config.read_noise, background_rng
            )
        # dead pixels and module gaps read 0 (after the noise draw: the other pixels keep theirs)
        intensity[e][:, ~valid_pixels] = 0.0

    # ---- common grid: union of the native fields, pixel centres at multiples of dx(E_max)
    lo_hi = []
    for pos in (pos_y, pos_x):
        if config.placement == "nearest":
            idx = [forward.nearest_indices(pos[e], dx[e]) for e in range(energy.size)]
            lo = min((i.min() - n // 2) * d for i, d in zip(idx, dx, strict=True))
            hi = max((i.max() - n // 2 + n - 1) * d for i, d in zip(idx, dx, strict=True))
        else:
            lo = float(np.min(pos.min(axis=1) - (n // 2) * dx))
            hi = float(np.max(pos.max(axis=1) + (n - 1 - n // 2) * dx))
        lo_hi.append((lo, hi))
    pixel = float(dx[-1])
    y = np.arange(np.floor(lo_hi[0][0] / pixel + 1e-6), np.ceil(lo_hi[0][1] / pixel - 1e-6) + 1) * pixel
    x = np.arange(np.floor(lo_hi[1][0] / pixel + 1e-6), np.ceil(lo_hi[1][1] / pixel - 1e-6) + 1) * pixel

    truth = _truth(
        config,
        domains,
        elements,
        ph,
        origin,
        master_pixel,
        y,
        x,
        energy,
        f1,
        f2,
        offsets,
        z_numbers,
        probe_stack,
        drift,
        pixel,
    )
    variants = variant_settings(config)
    if config.detector_background or config.read_noise:
        truth.attrs[ATTR_DETECTOR_BACKGROUND] = float(config.detector_background)
        truth.attrs[ATTR_READ_NOISE] = float(config.read_noise)
    if membrane is not None:
        truth.attrs[ATTR_MEMBRANE_ABSORPTION] = membrane[0].astype(float)
        truth.attrs[ATTR_MEMBRANE_PHASE] = membrane[1].astype(float)
    params = {
        "preset": config.name,
        "seed": seed,
        "particle": particle,
        "condition": condition,
        **{f.name: getattr(config, f.name) for f in dataclasses.fields(config)},
    }
    common_attrs = {
        ATTR_DETECTOR_DISTANCE: float(distance),
        ATTR_DETECTOR_PIXEL_SIZE: float(config.detector_pixel_size),
        ATTR_PARTICLE: particle,
        ATTR_CONDITION: condition,
        ATTR_PROBE_FWHM: float(config.probe_fwhm),
        ATTR_PROBE_DEFOCUS: float(config.probe_defocus),
        ATTR_PRESET: config.name,
        ATTR_SEED: int(seed),
        ATTR_PHOTONS: float(config.photons),
        ATTR_PLACEMENT: config.placement,
        ATTR_PARTICLE_SIZE: float(size),
    }
    raw_vars = {
        INTENSITY: variable(INTENSITY, intensity),
        POSITION_Y: variable(POSITION_Y, pos_y),
        POSITION_X: variable(POSITION_X, pos_x),
    }
    if config.detector_mask:
        raw_vars[DETECTOR_MASK] = variable(DETECTOR_MASK, valid_pixels)
    if config.monitor:
        raw_vars[MONITOR] = variable(MONITOR, config.photons * flux)
    if realism or config.monitor:
        truth[TRUE_POSITION_Y] = variable(TRUE_POSITION_Y, true_y)
        truth[TRUE_POSITION_X] = variable(TRUE_POSITION_X, true_x)
        truth[TRUE_FLUX] = variable(TRUE_FLUX, flux)
    if config.probe_modes:
        truth[TRUE_PROBE_MODES] = variable(TRUE_PROBE_MODES, mode_stack)
        truth.attrs[ATTR_PROBE_MODE_POWER] = np.sum(np.abs(mode_stack[:, -1]) ** 2, axis=(-2, -1)) / config.photons
    raw = xr.Dataset(raw_vars, coords={ENERGY: schema.energy_coord(energy)}, attrs=common_attrs)
    truth.attrs.update(common_attrs)
    if variants:  # the original simulator's attrs stay as they were
        truth.attrs[ATTR_VARIANTS] = json.dumps(variants)
    return provenance.record(raw, "simulate", params), provenance.record(truth, "simulate_truth", params)


def _truth(
    config: Preset,
    domains: Sequence[DomainType],
    elements: Sequence[str],
    ph: phantom.Phantom,
    origin: tuple[float, float],
    master_pixel: float,
    y: np.ndarray,
    x: np.ndarray,
    energy: np.ndarray,
    f1: np.ndarray,
    f2: np.ndarray,
    offsets: np.ndarray,
    z_numbers: np.ndarray,
    probes: np.ndarray,
    drift: np.ndarray,
    pixel: float,
) -> xr.Dataset:
    """The truth Dataset on the common grid (y, x)."""
    i_v = list(elements).index("V")
    density = forward.sample(ph.density, origin, master_pixel, y[:, None], x[None, :])  # (T, J, ny, nx)
    thickness = forward.sample(ph.thickness, origin, master_pixel, y[:, None], x[None, :])
    scale = physics.CLASSICAL_ELECTRON_RADIUS * physics.wavelength(energy)  # (E,)
    mu_t = scale[:, None, None] * np.einsum("tje,tjyx->eyx", f2, density)
    phase = -scale[:, None, None] * np.einsum("tje,tjyx->eyx", z_numbers[None, :, None] + f1, density)
    obj = np.exp(-mu_t + 1j * phase).astype(np.complex64)

    n_v_type = density[:, i_v]  # (T, ny, nx)
    n_v = n_v_type.sum(axis=0)
    material = n_v > 0
    safe = np.where(material, n_v, 1.0)
    eq1 = [d.eq1_parameters(config.delta_f2) for d in domains]
    b2 = np.array([p["b2"] for p in eq1])
    ratio = np.array([d.pre_edge_ratio for d in domains])

    def weighted(values: np.ndarray) -> np.ndarray:
        return np.where(material, np.einsum("t,tyx->yx", values, n_v_type) / safe, np.nan)

    ref = int(np.argmin(energy))
    electrons = np.einsum("tj,tjyx->yx", z_numbers[None, :] + f1[:, :, ref], density)
    edge_energy = weighted(b2)
    lam_edge = physics.wavelength(np.where(material, edge_energy, energy[ref]))
    edge_jump = np.where(material, physics.CLASSICAL_ELECTRON_RADIUS * lam_edge * config.delta_f2 * n_v, np.nan)
    domain = np.where(material, np.argmax(n_v_type, axis=0), MISSING_DOMAIN).astype(np.int16)
    per_type_electrons = np.array(
        [
            sum(
                c * (physics.atomic_number(el) + f1[t, list(elements).index(el), ref])
                for el, c in d.composition.items()
            )
            / d.composition["V"]
            for t, d in enumerate(domains)
        ]
    )
    total_v = n_v_type.sum(axis=(1, 2))
    names = [d.name for d in domains]

    data = {
        OBJECT: variable(OBJECT, obj),
        ABSORPTION: variable(ABSORPTION, mu_t),
        PHASE: variable(PHASE, phase),
        PROBE: variable(PROBE, probes),
        MATERIAL: variable(MATERIAL, material),
        THICKNESS: variable(THICKNESS, thickness),
        VANADIUM_DENSITY: variable(VANADIUM_DENSITY, np.where(material, n_v, np.nan)),
        ELECTRON_DENSITY: variable(ELECTRON_DENSITY, np.where(material, electrons, np.nan)),
        ELECTRONS_PER_VANADIUM: variable(ELECTRONS_PER_VANADIUM, np.where(material, electrons / safe, np.nan)),
        EDGE_ENERGY: variable(EDGE_ENERGY, edge_energy),
        EDGE_JUMP: variable(EDGE_JUMP, edge_jump),
        PRE_EDGE_RATIO: variable(PRE_EDGE_RATIO, weighted(ratio)),
        DOMAIN: variable(
            DOMAIN,
            domain,
            dims=(Y, X),
            flag_values=np.arange(len(domains), dtype=np.int16),
            flag_meanings=" ".join(names),
        ),
        SHIFT_Y: variable(SHIFT_Y, -drift[:, 0]),
        SHIFT_X: variable(SHIFT_X, -drift[:, 1]),
        PARTIAL_DENSITY: variable(PARTIAL_DENSITY, density),
        ANOMALOUS_F1: variable(ANOMALOUS_F1, f1),
        ANOMALOUS_F2: variable(ANOMALOUS_F2, f2),
        ATOMIC_NUMBER: variable(ATOMIC_NUMBER, z_numbers.astype(np.int64)),
        TRUE_FRACTION: variable(TRUE_FRACTION, total_v / max(total_v.sum(), 1e-300)),
        TRUE_PRE_EDGE_RATIO: variable(TRUE_PRE_EDGE_RATIO, ratio),
        TRUE_ELECTRONS_PER_VANADIUM: variable(TRUE_ELECTRONS_PER_VANADIUM, per_type_electrons),
    }
    for p in FIT_PARAMETERS:
        data[TRUE_PREFIX + p] = variable(TRUE_PREFIX + p, np.array([q[p] for q in eq1]))
    attrs = {
        ATTR_F2_TABLE: config.f2_table,
        ATTR_F1_REFERENCE: config.f1_reference,
        ATTR_F1_REFERENCE_ENERGY: scattering.F1_REFERENCE_ENERGY,
        ATTR_F1_OFFSET: offsets.astype(float),
        ATTR_DELTA_F2: float(config.delta_f2),
        ATTR_REFERENCE_ENERGY: float(energy[ref]),
        ATTR_CLASSICAL_ELECTRON_RADIUS: physics.CLASSICAL_ELECTRON_RADIUS,
        ATTR_COMPOSITIONS: json.dumps({d.name: dict(d.composition) for d in domains}),
        ATTR_DENSITIES: np.array([d.density for d in domains]),
        schema.ATTR_PIXEL_SIZE: pixel,
    }
    coords = {
        ENERGY: schema.energy_coord(energy),
        Y: schema.length_coord(Y, y, pixel),
        X: schema.length_coord(X, x, pixel),
        DOMAIN_TYPE: variable(DOMAIN_TYPE, np.array(names)),
        ELEMENT: variable(ELEMENT, np.array(list(elements))),
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


def demo_dataset(
    preset: str | Preset = "small",
    seed: int = 0,
    condition: str = "as-prepared",
    particle: str = "P1",
    progress: bool = True,
    **overrides: Any,
) -> tuple[xr.Dataset, xr.Dataset]:
    """Simulate one Li-rich DRS vanadium-oxide particle: raw scan series and ground truth.

    Parameters
    ----------
    preset : {"tiny", "small", "paper"} or Preset
        Set-up and sample size (:data:`ptyxr.simulate.PRESETS`).
    seed : int
        Seed; with ``particle`` it fixes shape, domains, scan jitter, drift and noise.
    condition : {"as-prepared", "delithiated"}
        Domain-type fractions (:data:`ptyxr.simulate.CONDITIONS`).
    particle : str
        Particle name (stored in attrs; different names give different particles).
    progress : bool
        Show a progress bar over energies.
    **overrides
        Any :class:`~ptyxr.simulate.Preset` field, e.g. ``photons=1e6``, ``n_energies=14``.

    Returns
    -------
    raw : xarray.Dataset
        DESIGN §1a: ``intensity`` (energy, scan, det_y, det_x) float32 photon counts,
        ``position_y``/``position_x`` [m]; attrs ``detector_distance``,
        ``detector_pixel_size``, ``particle``, ``condition``, ``probe_fwhm``,
        ``probe_defocus``. No ``probe_guess`` (build one from the set-up).
    truth : xarray.Dataset
        On the common grid (y, x) [m]: ``object`` (energy, y, x) complex64, true
        ``absorption`` μt and ``phase`` φ, ``probe``, ``material``, ``thickness``,
        ``vanadium_density``, ``electron_density``, ``electrons_per_vanadium`` (at the
        lowest energy), ``edge_energy``, ``edge_jump``, ``pre_edge_ratio`` (N_V-weighted
        over the types in a pixel; NaN outside material), ``domain`` (int16 type index,
        −1 outside), ``shift_y``/``shift_x`` (energy) = −drift (§1c convention), and per
        domain type ``partial_density``, ``anomalous_f1``/``anomalous_f2``,
        ``true_<eq. (1) parameter>`` (f″_V, heights in electrons), ``true_fraction``,
        ``true_pre_edge_ratio``, ``true_electrons_per_vanadium``. Attrs record the
        tables, f′ reference and offsets, Δf″ and geometry.
    """
    config = resolve_preset(preset, **overrides)
    try:
        cond = CONDITIONS[condition]
    except KeyError:
        raise ValueError(f"unknown condition {condition!r}; choose one of {sorted(CONDITIONS)}") from None
    domains = [DOMAIN_TYPES[name] for name in cond.types]
    fractions = [cond.fractions[name] for name in cond.fractions]
    affinity = [cond.surface_affinity.get(name, 0.0) for name in cond.fractions]
    return _simulate(
        config, domains, fractions, cond.surface_type is not None, affinity, particle, condition, seed, progress
    )


def standard_dataset(
    material: str = "LiVO2", preset: str | Preset = "small", seed: int = 0, progress: bool = True, **overrides: Any
) -> tuple[xr.Dataset, xr.Dataset]:
    """A uniform single-phase standard particle (LiVO2, LiVO3 or Li10/7V6/7O2).

    Same as :func:`demo_dataset` with one domain type and no surface shell; condition
    ``"standard"``. With ``f1_reference="paper"`` its true ``electrons_per_vanadium`` is
    the paper's 35.0 / 43.1 / 39.7.
    """
    config = resolve_preset(preset, **overrides)
    try:
        domain = STANDARDS[material]
    except KeyError:
        raise ValueError(f"unknown standard {material!r}; choose one of {sorted(STANDARDS)}") from None
    return _simulate(config, [domain], [1.0], False, [0.0], material, "standard", seed, progress)


def paper_particles(
    preset: str | Preset = "small", seed: int = 0, progress: bool = True, **overrides: Any
) -> list[tuple[xr.Dataset, xr.Dataset]]:
    """The paper's six particles: P1–P3 as-prepared and D1–D3 delithiated, as ``(raw, truth)`` pairs."""
    return [
        demo_dataset(preset, seed, condition, name, progress, **overrides)
        for name, condition in PAPER_PARTICLES.items()
    ]


def spectra_from_truth(
    truth: xr.Dataset, noise: float = 0.0, seed: int = 0, phase_noise: float | None = None
) -> xr.Dataset:
    """A DESIGN §1c spectra Dataset made from the true object (no reconstruction).

    Parameters
    ----------
    truth : xarray.Dataset
        Truth from :func:`demo_dataset` / :func:`standard_dataset`.
    noise : float
        Std of white Gaussian noise added to ``absorption`` μt [1].
    seed : int
        Seed of the noise.
    phase_noise : float, optional
        Std of the noise added to ``phase`` [rad]; default ``noise`` × 1 rad (isotropic
        complex noise ``δO/|O|`` gives equal σ in ``ln|O|`` and ``arg O``).

    Returns
    -------
    xarray.Dataset
        ``absorption`` = ``−ln|O|`` and ``phase`` = ``arg O`` (vacuum is 1 + 0j, so no
        background correction), ``background`` = vacuum (outside ``material``),
        ``material``, ``shift_y``/``shift_x`` = 0, coords energy/y/x; attrs of the truth.
    """
    schema.require_variables(
        truth,
        (OBJECT, MATERIAL),
        "spectra_from_truth",
        "Pass the truth Dataset returned by ptyxr.simulate.demo_dataset().",
    )
    sigma_phase = noise if phase_noise is None else phase_noise
    if noise < 0 or sigma_phase < 0:
        raise ValueError("noise levels must be non-negative")
    rng = np.random.default_rng(seed)
    obj = truth[OBJECT].values.astype(np.complex128)
    absorption = -np.log(np.abs(obj))
    phase = np.angle(obj)  # |φ| < π for the simulated particles; no unwrapping needed
    if noise:
        absorption = absorption + noise * rng.standard_normal(absorption.shape)
    if sigma_phase:
        phase = phase + sigma_phase * rng.standard_normal(phase.shape)
    material = truth[MATERIAL].values
    n_e = truth.sizes[ENERGY]
    out = xr.Dataset(
        {
            ABSORPTION: variable(ABSORPTION, absorption),
            PHASE: variable(PHASE, phase),
            BACKGROUND: variable(BACKGROUND, ~material),
            MATERIAL: variable(MATERIAL, material),
            SHIFT_Y: variable(SHIFT_Y, np.zeros(n_e)),
            SHIFT_X: variable(SHIFT_X, np.zeros(n_e)),
        },
        coords={ENERGY: truth[ENERGY], Y: truth[Y], X: truth[X]},
        attrs=dict(truth.attrs),
    )
    return provenance.record(out, "spectra_from_truth", {"noise": noise, "seed": seed, "phase_noise": phase_noise})
