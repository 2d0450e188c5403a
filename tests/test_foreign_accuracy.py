"""Accuracy of the DEFAULT chain on data ptyxr's engine and fit model did not make (issue 11 point 3).

The "foreign" preset (:data:`ptyxr.simulate.PRESETS`) breaks the assumptions of the
engine (KB probe guess → FZP focus with a central stop; vacuum = 1 → 500 nm Si3N4
membrane under the whole field; clean detector → a dead row read as 0, no mask) and of
the fit (eq. (1)'s erf edge and Lorentzian white line → arctan step and split-Lorentzian
line with other widths), with 16 energies and a 9×9 jittered raster with per-energy drift,
on the "small" preset's geometry (64² frames, 20 nm pixels, 200 nm focus, ~1 µm particle;
tiny's 32² frames missed φ and μt even with no variant). The default-run tests share one
default chain (~30–60 s on a loaded core). The single-variant loop changes one assumption at
a time on the same geometry.

Bounds are the SAME as tests/test_accuracy.py asserts on the main presets (see there for
their justification); they are not tuned to today's numbers. Measured with the default
chain (native-grid engine, branch foreign-engine), foreign P1: alignment 0.037 px, μt NRMSE
0.055, φ 0.025, single-domain edge RMSE 0.35 eV (eq. (1)'s floor on the arctan edge 0.54),
all valid 0.44 eV, N_V 3.0 %, Fourier final/min 1.009, probe/frames 1.016. Before (frames
resampled onto the common grid): μt 0.23, φ 0.058, N_V 11 %, Fourier 1.11 — the FZP pupil's
sharp far-field edge interpolated far beyond the noise (docs/design-notes/foreign-engine.md).

Truth definitions on these data: the edge energy is b2, the inflection (and half height)
of the edge step, for the arctan step as for the erf one (the physical edge); the
``*_vs_ideal`` figures compare with eq. (1) fitted to the noise-free truth spectra (the
projected truth: the estimator alone, DESIGN §2c); the truth object excludes the
membrane (a uniform film is part of the background that ``spectra()`` divides out).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import ptyxr  # noqa: F401  (accessor)
from ptyxr import schema as s
from ptyxr import simulate
from ptyxr.pipeline import recommended_options, run_chain
from ptyxr.simulate.accuracy import accuracy_report, ideal_maps, particle_accuracy
from ptyxr.simulate.presets import VARIANT_FIELDS, Preset

#: The foreign preset's geometry with every variant field at today's physics: the base of
#: the single-variant loop ("none" = this base alone, the control).
PLAIN_FOREIGN = simulate.resolve_preset(
    "foreign", **{f.name: f.default for f in dataclasses.fields(Preset) if f.name in VARIANT_FIELDS}
)


def _default_chain(raw):
    """What a new user types: every stage with its defaults."""
    return (
        raw.ptyxr.reconstruct(progress=False)
        .ptyxr.align(progress=False)
        .ptyxr.spectra()
        .ptyxr.fit_xanes(progress=False)
        .ptyxr.chemical_state()
    )


def _stability(rec) -> dict[str, float]:
    """Issue 11 point 1 on these data: final / minimum Fourier error and probe power / frame power."""
    err = rec[s.FOURIER_ERROR].values
    ratio = np.nanmax(err[:, -1] / np.nanmin(err, axis=1))
    power = (np.abs(rec[s.PROBE]) ** 2).sum((s.PROBE_Y, s.PROBE_X))
    if s.PROBE_MODE in power.dims:  # probe modes (reconstruct(probe_modes=K), a leading dim) add up
        power = power.sum(s.PROBE_MODE)
    probe_power = np.asarray(power.transpose(s.ENERGY, ...).values)
    return {"fourier_error_final_over_min": float(ratio), "probe_power_over_frames": probe_power}


def _accuracy(raw, truth) -> dict:
    out = _default_chain(raw)
    row = particle_accuracy(out, truth, ideal_maps(truth))
    stab = _stability(out)
    frames = raw[s.INTENSITY].sum(("det_y", "det_x")).mean("scan").values
    ratio = stab["probe_power_over_frames"] / frames
    row["fourier_error_final_over_min"] = stab["fourier_error_final_over_min"]
    row["probe_power_over_frames_worst"] = float(ratio[np.argmax(np.abs(np.log(ratio)))])
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})  # today's numbers (-s)
    return row


def _assert_object_and_alignment(row):
    # tests/test_accuracy.py::test_reconstructed_object_matches_truth and ::test_alignment_end_to_end
    assert row["alignment_rms_px"] < 0.2, row["alignment_rms_px"]
    assert row["absorption_nrmse"] < 0.10, row["absorption_nrmse"]
    assert row["phase_nrmse"] < 0.04, row["phase_nrmse"]
    assert row["absorption_nrmse_worst_energy"] < 0.2
    assert row["phase_nrmse_worst_energy"] < 0.06


def _assert_edges(row):
    # tests/test_accuracy.py::test_edge_energy_accuracy (the bounds that do not count pixels)
    assert row["edge_energy_rmse_single_domain_eV"] < 0.5, row["edge_energy_rmse_single_domain_eV"]
    assert row["edge_energy_rmse_eV"] < 1.0, row["edge_energy_rmse_eV"]
    assert abs(row["edge_energy_bias_eV"]) < 0.3, row["edge_energy_bias_eV"]
    assert row["edge_energy_median_abs_err_vs_ideal_eV"] < 0.3
    assert row["vanadium_density_rel_err"] < 0.05
    assert row["electrons_per_V_rel_err"] < 0.05


def _assert_stable(row):
    # issue 11 point 1: "the same holds for every simulator variant of point 3"
    assert row["fourier_error_final_over_min"] <= 1.05, row["fourier_error_final_over_min"]
    assert abs(row["probe_power_over_frames_worst"] - 1.0) <= 0.10, row["probe_power_over_frames_worst"]


# ------------------------------------------------------------------ the foreign preset, default chain
@pytest.fixture(scope="module")
def foreign_row():
    raw, truth = simulate.demo_dataset("foreign", seed=0, progress=False)
    return _accuracy(raw, truth)


def test_foreign_default_chain_object_and_alignment(foreign_row):
    """reconstruct() → align() with the defaults on foreign data: drift to 0.2 px, object NRMSE."""
    _assert_object_and_alignment(foreign_row)


def test_foreign_default_chain_edge_energy(foreign_row):
    """fit_xanes() defaults on an arctan edge / asymmetric white line: the main presets' bounds.

    The eq. (1) model floor on these spectra (``ideal_fit_edge_energy_rmse_eV``, the fit of
    the truth's noise-free spectra) is reported next to it.
    """
    _assert_edges(foreign_row)


def test_foreign_default_chain_is_stable(foreign_row):
    _assert_stable(foreign_row)


# ------------------------------------------------------------------ four particles, run_chain
def _options():
    # recommended_options has schedules per preset; the foreign preset has small's geometry
    try:
        return recommended_options("foreign", progress=False)
    except s.SchemaError:
        return recommended_options("small", progress=False)


@pytest.fixture(scope="module")
def foreign_four_chain():
    """run_chain(recommended_options) on the four foreign particles, and their truths (one run)."""
    pairs = [
        simulate.demo_dataset("foreign", seed=0, condition=cond, particle=name, progress=False)
        for name, cond in (("P1", "as-prepared"), ("P2", "as-prepared"), ("D1", "delithiated"), ("D2", "delithiated"))
    ]
    raws, truths = zip(*pairs, strict=True)
    return run_chain(list(raws), _options()), truths


@pytest.fixture(scope="module")
def foreign_four(foreign_four_chain):
    result, truths = foreign_four_chain
    report = accuracy_report(result, truths)
    for row in report.rows:
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    print(report.pooled)
    return report


def _assert_per_particle(rows):
    for row in rows:
        _assert_object_and_alignment(row)
        assert row["edge_energy_rmse_single_domain_eV"] < 0.5, row["particle"]
        assert row["edge_energy_rmse_eV"] < 1.0, row["particle"]
        assert row["edge_energy_median_abs_err_vs_ideal_eV"] < 0.3


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="eq. (1)'s erf step on the arctan edge: D2's single-domain edge RMSE is above 0.5 eV by the "
    "model alone (ideal_maps floor ideal_fit_edge_energy_rmse_single_domain_eV 0.67 eV on D2; its pure "
    "pixels are mostly tet_V5/oct_V4, biased +0.5/+1.0 eV; docs/design-notes/s12-fituncert.md §3). "
    "fit_xanes(edge_step='erf+arctan') meets the bound: test_foreign_four_particles_free_edge_step; "
    "eq. (1) meets it against its own noise-free fit: test_foreign_four_particles_per_particle_vs_ideal.",
)
def test_foreign_four_particles_per_particle(foreign_four):
    """run_chain(recommended_options) on four foreign particles: every particle's figures."""
    _assert_per_particle(foreign_four.rows)


@pytest.mark.slow
def test_foreign_four_particles_per_particle_vs_ideal(foreign_four):
    """The same chain's figures with the edge measured like with like: against eq. (1) fitted to
    each pixel's noise-free truth spectrum (``ideal_maps``, the projected truth), same bounds.

    This is the estimator's accuracy (reconstruction, alignment, noise, solver) on what the
    paper's model means on these spectra; the model's own bias on the arctan edge is
    ``ideal_fit_edge_energy_rmse_single_domain_eV`` (0.54–0.67 eV here), asserted against the
    physical edge by the strict xfail above. Measured (recommended_options, seed 0): single-domain
    RMSE vs ideal 0.21 / 0.28 / 0.18 / 0.25 eV (P1, P2, D1, D2; vs the arctan centre 0.36 / 0.41 /
    0.45 / 0.57), all valid 0.33 / 0.31 / 0.31 / 0.33 eV, bias vs ideal −0.03 to −0.04 eV.
    """
    for row in foreign_four.rows:
        _assert_object_and_alignment(row)
        assert row["edge_energy_rmse_single_domain_vs_ideal_eV"] < 0.5, row["particle"]
        assert row["edge_energy_rmse_vs_ideal_eV"] < 1.0, row["particle"]
        assert row["edge_energy_median_abs_err_vs_ideal_eV"] < 0.3, row["particle"]
        # the comparison keeps (almost) every pixel: an ideal fit that is invalid (NaN) drops
        # its pixel from the *_vs_ideal figures; measured 98.0–99.7 % of the valid pixels kept,
        # every single-domain one
        assert row["vs_ideal_pixels"] >= 0.95 * row["valid_pixels"], row["particle"]
        assert row["single_domain_vs_ideal_pixels"] >= 0.95 * row["single_domain_valid_pixels"], row["particle"]
        # the model floor is reported next to it (the bias that the estimator figure leaves out)
        assert np.isfinite(row["ideal_fit_edge_energy_rmse_single_domain_eV"])


@pytest.mark.slow
def test_foreign_four_particles_free_edge_step(foreign_four_chain):
    """The same four particles' chain with fit_xanes(edge_step="erf+arctan"): the SAME bounds.

    The fixture's reconstructions are refitted (fit_xanes → chemical_state with the chain's
    options plus the free step shape), not reconstructed again. The ideal maps (the model
    floor, ``*_vs_ideal``) use the same fit on the truth's noise-free spectra: like with like.
    """
    result, truths = foreign_four_chain
    options = _options()
    fit_options = {**options.fit_xanes, "edge_step": "erf+arctan", "progress": False}
    rows = []
    for particle, truth in zip(result.particles, truths, strict=True):
        refit = particle.ptyxr.fit_xanes(**fit_options).ptyxr.chemical_state(**options.chemical_state)
        ideal = ideal_maps(truth, fit_options=fit_options, chemistry_options=options.chemical_state)
        rows.append(particle_accuracy(refit, truth, ideal))
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()})
    _assert_per_particle(rows)


@pytest.mark.slow
def test_foreign_four_particles_domains(foreign_four):
    """Pooled domain scores with tests/test_accuracy.py's bounds (ARI 0.8 single-domain, fractions 0.05)."""
    pooled = foreign_four.pooled
    assert pooled["edge_energy_rmse_single_domain_eV (all particles)"] < 0.5
    assert pooled["domain_adjusted_rand_index_single_domain"] >= 0.8
    assert pooled["domain_adjusted_rand_index"] > 0.6
    fractions = [v for k, v in pooled.items() if k.startswith("fraction_max_abs_err")]
    assert len(fractions) == 2 and max(fractions) < 0.05


# ------------------------------------------------------------------ one variant at a time
@pytest.mark.slow
@pytest.mark.parametrize("variant", ["none", *simulate.VARIANTS])
def test_single_variant_default_chain(variant):
    """The default chain on the plain foreign geometry with ONE variant (``none``: the control)."""
    overrides = {} if variant == "none" else simulate.VARIANTS[variant]
    raw, truth = simulate.demo_dataset(PLAIN_FOREIGN, seed=0, progress=False, **overrides)
    row = _accuracy(raw, truth)
    failures = []
    for check in (_assert_object_and_alignment, _assert_edges, _assert_stable):
        try:
            check(row)
        except AssertionError as err:  # report every group, not only the first to fail
            failures.append(f"{check.__name__}: {err}")
    assert not failures, failures


# ------------------------------------------------------------------ issue 12's realism, one at a time
@pytest.mark.slow
@pytest.mark.parametrize("case", list(simulate.REALISM))
def test_realism_default_chain(case):
    """The default chain on the plain foreign geometry with one of issue 12's realism cases.

    Today's engine has no position refinement, probe modes or flux normalisation; these
    give the baseline that issue 12's options must beat (same bounds as above).
    """
    raw, truth = simulate.demo_dataset(PLAIN_FOREIGN, seed=0, progress=False, **simulate.REALISM[case])
    row = _accuracy(raw, truth)
    failures = []
    for check in (_assert_object_and_alignment, _assert_edges, _assert_stable):
        try:
            check(row)
        except AssertionError as err:
            failures.append(f"{check.__name__}: {err}")
    assert not failures, failures
