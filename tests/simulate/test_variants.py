"""Simulator variants that break the engine's and the fit model's assumptions (issue 11 point 3).

Each variant is checked against physics or an independent reference: optics of the probe
shapes (Airy encircled energy, pupil phase), the membrane's transmission against xraydb's
δ/β, detector defects in the frames, the arctan step's inflection, the scan geometries'
spacing, and the default path against the original kernels.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import integrate
from scipy.special import j1

import ptyxr.simulate as sim
from ptyxr import optics, physics
from ptyxr.schema import DETECTOR_MASK, EDGE_ENERGY, ENERGY, INTENSITY, OBJECT, POSITION_X, POSITION_Y, PROBE
from ptyxr.simulate import forward, probes, scattering
from ptyxr.simulate.datasets import ATTR_MEMBRANE_ABSORPTION, ATTR_VARIANTS, _seed_sequence, energies_of
from ptyxr.simulate.presets import VARIANT_FIELDS, Preset


def _run(**overrides):
    return sim.demo_dataset("tiny", seed=0, progress=False, **overrides)


# ------------------------------------------------------------------ default path unchanged
def test_default_path_is_the_original_simulator(tiny):
    """With every variant field at its default the data come from the original kernels.

    Recomputed here from the kernels the original simulator called (kb_probe,
    raster_positions with the scan stream of the seed), not from pasted numbers; and no
    variant attr is added.
    """
    raw, truth = tiny
    config = sim.resolve_preset("tiny")
    energy = energies_of(config)
    n = config.frame_size
    distance = float(raw.attrs["detector_distance"])
    dx = optics.real_space_pixel_size(energy, distance, config.detector_pixel_size, n)
    for e in range(energy.size):
        expected = optics.kb_probe(energy[e], n, dx[e], config.probe_fwhm, config.probe_defocus, config.photons)
        np.testing.assert_array_equal(truth[PROBE].values[e], expected)
    _, scan_ss, _, _ = _seed_sequence(0, "P1").spawn(4)
    material_rows = np.flatnonzero(np.isfinite(truth[EDGE_ENERGY].values).any(axis=1))
    assert material_rows.size  # the particle exists
    # raster_positions' jitter draws are the scan stream's first draws: recompute the jitter
    rng = np.random.default_rng(scan_ss)
    jitter_y = config.jitter * config.scan_step * rng.standard_normal(raw[POSITION_Y].shape)
    nominal = raw[POSITION_Y].values - jitter_y
    np.testing.assert_allclose(nominal - nominal[:1], 0.0, atol=1e-15)  # one raster for every energy
    assert ATTR_VARIANTS not in truth.attrs and DETECTOR_MASK not in raw
    assert sim.presets.variant_settings(config) == {}
    # every variant field defaults to the original physics
    defaults = {f.name: f.default for f in dataclasses.fields(Preset)}
    assert defaults["probe_shape"] == "kb" and defaults["edge_shape"] == "erf"
    assert defaults["membrane_thickness"] == 0 and defaults["scan_pattern"] == "raster"
    assert set(VARIANT_FIELDS) <= set(defaults)


def test_neutral_variants_reproduce_the_default(tiny):
    """Variants at a neutral setting (zero aberration, zero-width gap) give bit-identical data."""
    raw, truth = tiny
    raw2, truth2 = _run(probe_shape="kb_aberrated", probe_aberration_rms=0.0, module_gap=(3, 0))
    np.testing.assert_array_equal(raw2[INTENSITY].values, raw[INTENSITY].values)
    np.testing.assert_array_equal(truth2[OBJECT].values, truth[OBJECT].values)


def test_variants_are_seeded_and_recorded():
    kw = sim.VARIANTS["fzp_probe"] | sim.VARIANTS["spiral_scan"]
    a, ta = _run(**kw)
    b, _ = _run(**kw)
    c, _ = sim.demo_dataset("tiny", seed=1, progress=False, **kw)
    np.testing.assert_array_equal(a[INTENSITY].values, b[INTENSITY].values)
    assert not np.array_equal(a[POSITION_X].values, c[POSITION_X].values)
    assert json.loads(ta.attrs[ATTR_VARIANTS]) == {"probe_shape": "fzp", "scan_pattern": "spiral"}


def test_preset_rejects_bad_variants():
    for bad in (
        {"probe_shape": "lens"},
        {"edge_shape": "tanh"},
        {"white_line_asymmetry": 1.0},
        {"scan_pattern": "lissajous"},
        {"membrane_thickness": -1e-9},
        {"probe_central_stop": 1.0},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            sim.resolve_preset("tiny", **bad)


# ------------------------------------------------------------------ probe shapes
def _annular_outside_fraction(stop: float, r0: float, fc: float) -> float:
    """Power outside radius r0 of the focus of an annular pupil (Hankel transform, analytic)."""

    def amplitude(r: float) -> float:
        inner = stop * fc * j1(2 * np.pi * stop * fc * r) if stop else 0.0
        return (fc * j1(2 * np.pi * fc * r) - inner) / r

    total = np.pi * (1 - stop**2) * fc**2  # Parseval: pupil area
    inside, _ = integrate.quad(lambda r: amplitude(r) ** 2 * 2 * np.pi * r, 1e-12, r0, limit=200)
    return 1.0 - inside / total


@pytest.mark.parametrize("stop", [0.0, 0.5])
def test_fzp_probe_is_an_annular_airy_focus(stop):
    """FZP: dark pupil centre (central stop) and the side-lobe power of an annular Airy focus.

    The pupil has a radius of ~21 frequency pixels, so the discrete focus follows the
    continuous one; the power outside the full disc's first dark ring (0.61/f_c) is the
    Hankel-transform value (0.162 for the full disc, ~0.42 for a stop of half the diameter)
    to 0.02 (pixelated pupil edge).
    """
    n, px, fwhm = 512, 12e-9, 150e-9
    probe = probes.make_probe("fzp", 5500.0, n, px, fwhm, photons=1e6, central_stop=stop)
    assert np.isclose(np.sum(np.abs(probe) ** 2), 1e6, rtol=1e-5)
    pupil = np.abs(optics.far_field(probe.astype(np.complex128)))
    centre = pupil[n // 2, n // 2] / pupil.max()
    assert centre < 1e-5 if stop else centre > 0.99
    fc = 0.5145 / fwhm
    r0 = 0.61 / fc
    c = (np.arange(n) - n // 2) * px
    r = np.hypot(c[:, None], c[None, :])
    intensity = np.abs(probe) ** 2 / np.sum(np.abs(probe) ** 2)
    measured = intensity[r > r0].sum()
    assert abs(measured - _annular_outside_fraction(stop, r0, fc)) < 0.02, measured
    if stop:
        assert measured > 0.3  # strong side lobes: what the engine's KB guess lacks


def test_gaussian_probe_has_the_requested_fwhm_and_no_side_lobes():
    n, px, fwhm = 256, 5e-9, 150e-9
    probe = probes.make_probe("gaussian", 5500.0, n, px, fwhm, photons=1.0)
    c = (np.arange(n) - n // 2) * px
    r2 = c[:, None] ** 2 + c[None, :] ** 2
    expected = np.exp(-4 * np.log(2) * r2 / fwhm**2)
    intensity = np.abs(probe) ** 2
    np.testing.assert_allclose(intensity / intensity.max(), expected, atol=1e-6)
    assert np.allclose(np.angle(probe[np.abs(probe) > 1e-3 * np.abs(probe).max()]), 0.0, atol=1e-6)


def test_aberrated_kb_probe_has_the_stated_pupil_phase():
    """kb_aberrated: KB pupil amplitude, astigmatism + coma phase of the stated rms, asymmetric focus.

    The phase is recomputed here from its definition: W ∝ (u² − v²) + (3(u² + v²) − 2)·u over
    the normalised pupil, weighted rms over the (area-weighted) pupil = 0.05 waves.
    """
    n, px, fwhm, rms = 128, 10e-9, 150e-9, 0.05
    kb = probes.make_probe("kb", 5500.0, n, px, fwhm, photons=1.0)
    ab = probes.make_probe("kb_aberrated", 5500.0, n, px, fwhm, photons=1.0, aberration_rms=rms)
    p_kb = optics.far_field(kb.astype(np.complex128))
    p_ab = optics.far_field(ab.astype(np.complex128))
    np.testing.assert_allclose(np.abs(p_ab), np.abs(p_kb), atol=1e-6 * np.abs(p_kb).max())
    support = np.abs(p_kb) > 1e-6 * np.abs(p_kb).max()  # outside: FFT round-off only
    weight = np.where(support, np.abs(p_kb), 0.0)
    weight /= weight.sum()
    phase = np.angle(p_ab * np.conj(p_kb))
    phase -= np.sum(weight * phase)
    assert np.sqrt(np.sum(weight * phase**2)) == pytest.approx(2 * np.pi * rms, rel=1e-3)
    half = 0.886 / (2 * fwhm)
    f = np.fft.fftshift(np.fft.fftfreq(n, px))
    u, v = np.meshgrid(f / half, f / half, indexing="ij")
    w = (u**2 - v**2) + (3 * (u**2 + v**2) - 2) * u
    w -= np.sum(weight * w)
    w *= rms / np.sqrt(np.sum(weight * w**2))
    np.testing.assert_allclose(phase[support], 2 * np.pi * w[support], atol=1e-4)
    # coma makes the focus asymmetric (a KB sinc is centrosymmetric)
    i_ab = np.abs(ab) ** 2
    flipped = np.roll(i_ab[::-1, ::-1], (1, 1), axis=(0, 1))  # point reflection about pixel (n//2, n//2)
    assert np.abs(i_ab - flipped).sum() > 0.05 * i_ab.sum()


def test_probe_shape_reaches_the_data():
    raw, truth = _run(probe_shape="fzp")
    config = sim.resolve_preset("tiny")
    energy = energies_of(config)
    dx = optics.real_space_pixel_size(energy, raw.attrs["detector_distance"], config.detector_pixel_size, 32)
    expected = probes.make_probe("fzp", energy[0], 32, dx[0], config.probe_fwhm, photons=config.photons)
    np.testing.assert_array_equal(truth[PROBE].values[0], expected)


# ------------------------------------------------------------------ near-edge shapes
def _bare(domain):
    # no pre-edge or white line: f″_V − B(E) is the edge step alone
    return dataclasses.replace(domain, pre_edge_ratio=0.0, white_line_height=0.0)


def test_arctan_edge_has_its_inflection_at_b2():
    """The arctan step of f″_V: half height and inflection at b2, arctan (not erf) shape."""
    domain = _bare(sim.DOMAIN_TYPES["tet_V5"])
    shape = scattering.NearEdgeShape(edge="arctan")
    e = np.arange(5440.0, 5530.0, 0.01)
    step = (scattering.vanadium_f2(e, domain, shape=shape) - scattering.background_f2(e)) / physics.PAPER_DELTA_F2_V
    b2, w = domain.edge_energy, domain.edge_width
    slope = np.gradient(step, e)
    assert abs(e[np.argmax(slope)] - b2) < 0.011  # one grid step
    assert np.interp(b2, e, step) == pytest.approx(0.5, abs=1e-9)
    # same steepness as eq. (1)'s erf of width b3: slope 1/(√π·b3) at b2
    assert slope.max() == pytest.approx(1 / (np.sqrt(np.pi) * w), rel=1e-4)
    # ½ + arctan(1)/π at b2 + b3/√π; the erf step is 0.5(1 + erf(1/√π)) = 0.79 there
    assert np.interp(b2 + w / np.sqrt(np.pi), e, step) == pytest.approx(0.75, abs=1e-6)
    # the heavy tail that eq. (1)'s erf lacks
    assert np.interp(b2 - 10 * w, e, step) == pytest.approx(0.5 - np.arctan(10 * np.sqrt(np.pi)) / np.pi, abs=1e-6)
    assert np.interp(b2 - 10 * w, e, step) > 0.015


def test_split_lorentzian_white_line():
    """Asymmetric white line: peak c21 at c22, half maximum at c22 − c23(1−a) and c22 + c23(1+a)."""
    a = 0.4
    line = scattering.split_lorentzian
    centre, width = 5485.0, 4.0
    assert line(np.array([centre]), 2.0, centre, width, a)[0] == pytest.approx(2.0)
    lo, hi = centre - width * (1 - a), centre + width * (1 + a)
    np.testing.assert_allclose(line(np.array([lo, hi]), 2.0, centre, width, a), 1.0)
    # asymmetry 0 is eq. (1)'s Lorentzian
    e = np.linspace(5460, 5520, 301)
    np.testing.assert_allclose(line(e, 2.0, centre, width, 0.0), scattering.lorentzian(e, 2.0, centre, width))


def test_edge_variants_reach_the_truth():
    """Width scales reach the truth's eq. (1) parameters; truth edge_energy stays b2 (inflection)."""
    kw = sim.VARIANTS["arctan_edge"] | sim.VARIANTS["asymmetric_white_line"]
    _, truth = _run(**kw)
    _, plain = sim.demo_dataset("tiny", seed=0, progress=False)
    np.testing.assert_allclose(truth["true_b3"].values, 1.2 * plain["true_b3"].values)
    np.testing.assert_allclose(truth["true_c23"].values, 0.75 * plain["true_c23"].values)
    np.testing.assert_array_equal(truth[EDGE_ENERGY].values, plain[EDGE_ENERGY].values)
    # f″_V in the truth is the arctan / split-Lorentzian model
    domains = [
        dataclasses.replace(sim.DOMAIN_TYPES[n], edge_width=d * 1.2, white_line_width=c * 0.75)
        for n, d, c in zip(truth["domain_type"].values, plain["true_b3"].values, plain["true_c23"].values, strict=True)
    ]
    shape = scattering.NearEdgeShape("arctan", "split_lorentzian", 0.4)
    v = list(truth["element"].values).index("V")
    e = truth[ENERGY].values
    for t, d in enumerate(domains):
        np.testing.assert_allclose(truth["anomalous_f2"].values[t, v], scattering.vanadium_f2(e, d, shape=shape))


# ------------------------------------------------------------------ membrane
def test_membrane_constants_match_xraydb():
    """μt and φ of 500 nm Si3N4 from the simulator's tables equal xraydb's δ, β (2πβt/λ, −2πδt/λ)."""
    import xraydb

    e = np.array([5420.0, 5470.0, 5480.0, 5540.0])
    mu, phase = scattering.membrane_optics(e, "Si3N4", 3.44)
    delta, beta, _ = xraydb.xray_delta_beta("Si3N4", 3.44, e)
    lam = physics.wavelength(e)
    np.testing.assert_allclose(mu * 500e-9, 2 * np.pi * beta * 500e-9 / lam, rtol=1e-3)
    np.testing.assert_allclose(phase * 500e-9, -2 * np.pi * delta * 500e-9 / lam, rtol=1e-3)


def test_membrane_transmission_in_the_data(tiny):
    """A uniform membrane scales every frame's total counts by |T|² = exp(−2μt) (energy conservation).

    Σ over a frame of |FFT(P·O·T)|² = |T|² Σ|P·O|²; with ~1.6e8 counts per energy the Poisson
    noise of the ratio is ~1e-4, against a membrane effect of ~2e-2: tolerance 1e-3.
    The truth object excludes the membrane (the background spectra() removes).
    """
    raw, truth = tiny
    raw_m, truth_m = _run(membrane_thickness=500e-9)
    mu_t = truth_m.attrs[ATTR_MEMBRANE_ABSORPTION]
    ratio = raw_m[INTENSITY].sum(("scan", "det_y", "det_x")).values / raw[INTENSITY].sum(("scan", "det_y", "det_x"))
    np.testing.assert_allclose(ratio, np.exp(-2 * mu_t), atol=1e-3)
    assert np.all(mu_t > 0.004)  # the test has something to see
    np.testing.assert_array_equal(truth_m[OBJECT].values, truth[OBJECT].values)


def test_graded_membrane_moves_with_the_sample():
    """The graded film in the patches: T(r) = exp(−μt0·f(r) + iφ0·f(r)), f = 1 + g·(y + x)/(√2 µm),
    evaluated at sample coordinates (native pixel of the position minus the drift)."""
    from ptyxr.simulate.datasets import _membrane_background

    config = sim.resolve_preset("tiny", membrane_thickness=500e-9, membrane_gradient=2.0)
    mu0, ph0 = 0.01, -0.3
    zero = np.zeros((8, 8))
    pos_y, pos_x = np.array([-0.3e-6, 0.2e-6]), np.array([0.1e-6, 0.4e-6])
    dx, n, drift = 20e-9, 16, (30e-9, -50e-9)
    patches = forward.object_patches(
        zero, zero, (0.0, 0.0), 10e-9, pos_y, pos_x, dx, n, drift, "nearest", _membrane_background(config, mu0, ph0)
    )
    for k in range(2):
        y = (np.rint(pos_y[k] / dx) + np.arange(n) - n // 2) * dx - drift[0]
        x = (np.rint(pos_x[k] / dx) + np.arange(n) - n // 2) * dx - drift[1]
        f = 1.0 + 2.0 * (y[:, None] + x[None, :]) / (np.sqrt(2) * 1e-6)
        np.testing.assert_allclose(patches[k], np.exp(-mu0 * f + 1j * ph0 * f), rtol=1e-12)


# ------------------------------------------------------------------ detector defects
@pytest.mark.parametrize("masked", [False, True])
def test_dead_rows_and_module_gap(tiny, masked):
    raw0, _ = tiny
    raw, _ = _run(dead_rows=(9,), dead_columns=(3,), module_gap=(22, 2), detector_mask=masked)
    frames = raw[INTENSITY].values
    dead = np.zeros((32, 32), bool)
    dead[9], dead[:, 3], dead[:, 22:24] = True, True, True
    assert np.all(frames[..., dead] == 0)
    # the other pixels keep their counts (defects are applied after the noise draw)
    np.testing.assert_array_equal(frames[..., ~dead], raw0[INTENSITY].values[..., ~dead])
    if masked:
        np.testing.assert_array_equal(raw[DETECTOR_MASK].values, ~dead)
    else:
        assert DETECTOR_MASK not in raw  # the realistic mistake: zeros, no mask


# ------------------------------------------------------------------ scan geometry
def _nearest_neighbour(y, x):
    d = np.hypot(y[:, None] - y[None, :], x[:, None] - x[None, :])
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1)


def test_spiral_scan_density_and_spacing():
    """Fermat spiral: exactly one point per step² of area around the centre; neighbours ~ a step apart.

    r_k = c√k with πc² = step², so a disc of radius R holds ⌊R²/c²⌋ + 1 points. Hexagonal packing
    of the same density has neighbours 1.075·step apart, a square one 1.0·step; the spiral is
    locally close to both, so its median nearest-neighbour distance lies in [0.9, 1.15]·step.
    """
    step = 50e-9
    y, x = forward.scan_positions("spiral", (-1e-6, 1e-6), (-1e-6, 1e-6), step, 0.0, 0.0, 1, np.random.default_rng(0))
    y, x = y[0], x[0]
    r = np.hypot(y, x)
    for radius in (0.3e-6, 0.6e-6, 0.9e-6):
        assert (r <= radius).sum() == int(np.floor(radius**2 * np.pi / step**2 + 1e-9)) + 1
    assert np.all(np.abs(y) <= 1e-6 + 1e-15) and np.all(np.abs(x) <= 1e-6 + 1e-15)
    assert 0.9 * step < np.median(_nearest_neighbour(y, x)) < 1.15 * step


def test_hex_scan_spacing():
    step = 50e-9
    y, x = forward.scan_positions(
        "hex", (-0.4e-6, 0.4e-6), (-0.5e-6, 0.5e-6), step, 0.0, 0.0, 1, np.random.default_rng(0)
    )
    y, x = y[0], x[0]
    np.testing.assert_allclose(_nearest_neighbour(y, x), step, rtol=1e-9)
    rows = np.unique(np.round(y / 1e-15))
    np.testing.assert_allclose(np.diff(rows) * 1e-15, step * np.sqrt(3) / 2, rtol=1e-6)
    # six neighbours at one step for an inner point
    d = np.hypot(y - y[np.argmin(np.hypot(y, x))], x - x[np.argmin(np.hypot(y, x))])
    assert np.sum(np.isclose(d, step, rtol=1e-9)) == 6


def test_nxm_raster_with_jitter_and_drift():
    raw, truth = _run(scan_grid=(9, 7), jitter=0.1)
    config = sim.resolve_preset("tiny")
    assert raw.sizes["scan"] == 63
    _, scan_ss, _, _ = _seed_sequence(0, "P1").spawn(4)
    rng = np.random.default_rng(scan_ss)
    jy = 0.1 * config.scan_step * rng.standard_normal(raw[POSITION_Y].shape)
    jx = 0.1 * config.scan_step * rng.standard_normal(raw[POSITION_X].shape)
    ny = (raw[POSITION_Y] - jy).values.reshape(-1, 9, 7)
    nx = (raw[POSITION_X] - jx).values.reshape(-1, 9, 7)
    np.testing.assert_allclose(np.diff(ny, axis=1), config.scan_step, rtol=1e-9)
    np.testing.assert_allclose(np.diff(nx, axis=2), config.scan_step, rtol=1e-9)
    assert np.std(truth["shift_y"].values) > 0  # per-energy drift as for the default raster


@pytest.mark.parametrize("pattern", ["spiral", "hex"])
def test_patterns_cover_the_particle(pattern):
    raw, truth = _run(scan_pattern=pattern)
    y, x = raw[POSITION_Y].values, raw[POSITION_X].values
    material = truth["material"].values
    yy, xx = np.meshgrid(truth["y"].values, truth["x"].values, indexing="ij")
    # every material pixel lies within one step of a scan position
    d = np.hypot(yy[material][:, None] - y[-1][None], xx[material][:, None] - x[-1][None]).min(axis=1)
    assert d.max() < sim.resolve_preset("tiny").scan_step


# ------------------------------------------------------------------ energies and the foreign preset
def test_any_energy_count():
    raw, truth = _run(energies=np.linspace(5440.0, 5520.0, 9))
    assert raw.sizes[ENERGY] == 9 and truth.sizes[ENERGY] == 9


def test_foreign_preset_combines_the_variants():
    raw, truth = sim.demo_dataset("foreign", seed=0, progress=False)
    variants = json.loads(truth.attrs[ATTR_VARIANTS])
    assert variants["probe_shape"] == "fzp" and variants["edge_shape"] == "arctan"
    assert variants["white_line_shape"] == "split_lorentzian" and variants["membrane_thickness"] > 0
    assert raw.sizes[ENERGY] == 16 and raw.sizes["scan"] == 81
    assert np.all(raw[INTENSITY].values[..., 9, :] == 0) and DETECTOR_MASK not in raw
    assert np.sqrt(np.mean(truth["shift_y"].values ** 2)) > 0  # per-energy drift
    # what accuracy_report needs
    for name in ("edge_energy", "vanadium_density", "domain", "shift_x", "true_fraction"):
        assert name in truth


# ------------------------------------------------------------------ issue 12 point 4: beamline realism
def test_realism_is_off_by_default(tiny):
    raw, truth = tiny
    for name in ("monitor", "true_position_y", "true_flux", "true_probe_modes"):
        assert name not in raw and name not in truth


def test_position_errors(tiny):
    """Recorded positions stay the plain scan; the probe sits at recorded + error of the stated rms.

    800 draws per axis (16 energies × 25 positions × 2): the rms estimate is good to ~3 %, bound 10 %.
    """
    raw0, _ = tiny
    raw, truth = _run(position_error=1.0)
    np.testing.assert_array_equal(raw[POSITION_Y].values, raw0[POSITION_Y].values)
    pixel = truth.attrs["pixel_size"]
    err = np.stack(
        [(truth["true_position_y"] - raw[POSITION_Y]).values, (truth["true_position_x"] - raw[POSITION_X]).values]
    )
    assert np.sqrt(np.mean(err**2)) / pixel == pytest.approx(1.0, rel=0.1)
    assert abs(np.mean(err)) / pixel < 0.1  # no common offset: errors, not drift
    assert not np.array_equal(raw[INTENSITY].values, raw0[INTENSITY].values)
    assert truth["true_position_y"].attrs["units"] == "m"


def test_probe_modes_are_orthogonal_with_the_stated_power():
    # an aberrated (asymmetric) probe: its polynomial modes overlap until orthogonalised
    raw, truth = _run(probe_modes=(0.75, 0.17, 0.08, 0.05), probe_shape="kb_aberrated")
    modes = truth["true_probe_modes"].values.astype(np.complex128)  # (mode, energy, y, x)
    assert modes.shape[:2] == (4, truth.sizes[ENERGY])
    fractions = np.array([0.75, 0.17, 0.08, 0.05]) / 1.05
    for e in (0, -1):
        m = modes[:, e].reshape(4, -1)
        gram = m.conj() @ m.T
        power = np.real(np.diag(gram))
        np.testing.assert_allclose(power / power.sum(), fractions, atol=1e-6)
        np.testing.assert_allclose(power.sum(), 1e7, rtol=1e-5)  # photons per position
        off = np.abs(gram - np.diag(np.diag(gram))).max() / power.max()
        assert off < 1e-5
    np.testing.assert_allclose(truth.attrs["probe_mode_power_fractions"], fractions, atol=1e-6)
    np.testing.assert_array_equal(truth[PROBE].values, truth["true_probe_modes"].values[0])


def test_incoherent_modes_add_in_intensity():
    """The frames are Σ_m |F(P_m·O)|², not |F(Σ_m P_m·O)|²."""
    rng = np.random.default_rng(1)
    modes = probes.probe_modes(optics.kb_probe(5500.0, 32, 20e-9, 100e-9, photons=1e6), (0.6, 0.4))
    obj = np.exp(0.1j * rng.standard_normal((2, 32, 32)))
    frames = forward.diffraction_modes(modes.astype(np.complex128), obj, np.array([1.0, 2.0]), None)
    for k, f in enumerate((1.0, 2.0)):
        expected = sum(np.abs(optics.far_field(m.astype(np.complex128) * obj[k])) ** 2 for m in modes) * f
        np.testing.assert_allclose(frames[k], expected, rtol=1e-12)
    coherent = np.abs(optics.far_field(modes.sum(axis=0).astype(np.complex128) * obj[0])) ** 2
    assert np.abs(coherent - frames[0]).max() > 1e-3 * frames[0].max()


def test_flux_jitter_decay_and_monitor(tiny):
    """Frame totals follow the true flux; the decay loses the stated fraction; the monitor reads it.

    Same seed with and without flux variation: the ratio of frame totals is the flux up to the
    Poisson noise of ~1e7-count frames (3e-4), tolerance 3e-3.
    """
    raw0, _ = tiny
    raw, truth = _run(flux_jitter=0.05, flux_decay=0.2, monitor=True)
    flux = truth["true_flux"].values
    totals = raw[INTENSITY].sum(("det_y", "det_x")).values / raw0[INTENSITY].sum(("det_y", "det_x")).values
    np.testing.assert_allclose(totals, flux, rtol=3e-3)
    trend = forward.flux_series(*flux.shape, 0.0, 0.2, None)
    assert trend[-1, -1] / trend[0, 0] == pytest.approx(0.8)
    assert np.std(flux / trend - 1) == pytest.approx(0.05, rel=0.2)  # 400 frames: ±7 % on the std
    np.testing.assert_allclose(raw["monitor"].values, 1e7 * flux)
    assert raw["monitor"].attrs["units"] == "counts"
    _, no_monitor = _run(flux_jitter=0.05)
    assert "true_flux" in no_monitor


def test_raw_with_monitor_reconstructs(tiny):
    """reconstruct() accepts a raw Dataset with a monitor and normalises by it (tests/reconstruct/test_flux.py)."""
    raw, _ = _run(monitor=True, flux_jitter=0.05)
    rec = raw.ptyxr.reconstruct(iterations=2, kkr=False, progress=False)
    assert np.all(np.isfinite(rec[OBJECT].values))
    assert "relative_flux" in rec
