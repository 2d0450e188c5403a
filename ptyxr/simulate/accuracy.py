"""Compare any stage's output with the simulation's ground truth (DESIGN §0, issue 6).

Each comparison puts the truth on the result's grid first (the reconstruction's common
grid and the truth's need not coincide pixel for pixel, and the aligned stack sits in
the reference energy's frame): the truth is shifted by the sub-pixel offset that best
registers the reconstructed phase image at the reference energy onto the true one.

Two references for the chemical-state maps
------------------------------------------
The truth's ``edge_energy`` (and PE/Δμt) of a pixel holding several domain types is the
N_V-weighted mean of the types' eq. (1) parameters. Eq. (1) has ONE erf edge, so its
least-squares fit to a mixed pixel's spectrum (two edges a few eV apart) is not that
mean: on the simulator's own noise-free spectra the fit misses it by ~1.4 eV rms on
mixed pixels and by < 0.1 eV on pure ones (small preset, P1). :func:`ideal_maps` therefore
fits eq. (1) to the truth's noise-free spectra (:func:`~ptyxr.simulate.spectra_from_truth`)
— what a perfect measurement would give — and the report lists both the error against
the weighted truth (``edge_energy_rmse_eV``: model + measurement) and against that ideal
fit (``edge_energy_rmse_vs_ideal_eV``: what reconstruction, alignment and noise add),
plus the ideal fit's own error (``ideal_fit_edge_energy_rmse_eV``: the model floor; on
single-domain pixels ``edge_energy_rmse_single_domain_vs_ideal_eV`` against
``ideal_fit_edge_energy_rmse_single_domain_eV``: the estimator and the model's bias on a
non-erf edge, DESIGN §2c), and
the error on pixels whose own fitted b2 uncertainty is below :data:`EDGE_STDERR_LIMIT`
(``edge_energy_rmse_confident_eV``, with ``confident_fraction`` of the valid pixels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from ptyxr import schema as s


@dataclass
class AccuracyReport:
    """Per-particle and pooled error figures; ``str()`` gives the table."""

    rows: list[dict[str, float | str]] = field(default_factory=list)
    pooled: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = ["ptyxr accuracy against simulation ground truth", ""]
        if self.rows:
            keys = [k for k in self.rows[0] if k != "particle"]
            lines.append("particle  " + "  ".join(f"{k:>22s}" for k in keys))
            for row in self.rows:
                lines.append(f"{row['particle']!s:8s}  " + "  ".join(_fmt(row.get(k)) for k in keys))
        if self.pooled:
            lines += ["", "pooled over particles:"]
            lines += [f"  {k:40s} {_fmt(v).strip()}" for k, v in self.pooled.items()]
        if self.timings:
            lines += ["", "wall time per stage [s]:"]
            lines += [f"  {k:40s} {v:10.2f}" for k, v in self.timings.items()]
        return "\n".join(lines)


def _fmt(value) -> str:
    if value is None:
        return f"{'-':>22s}"
    if isinstance(value, str):
        return f"{value:>22s}"
    return f"{value:22.4g}"


def _register_truth(result: xr.Dataset, truth: xr.Dataset) -> tuple[float, float]:
    """Offset (dy, dx) [m] such that truth(y − dy, x − dx) best matches the result."""
    from ptyxr.registration import register_pair

    ref = float(result[s.ENERGY].values[-1])
    rec = result[s.PHASE].sel({s.ENERGY: ref}) if s.PHASE in result else np.angle(result[s.OBJECT].sel({s.ENERGY: ref}))
    tru_full = truth[s.PHASE].sel({s.ENERGY: ref}, method="nearest")
    tru = tru_full.interp({s.Y: result[s.Y], s.X: result[s.X]})
    a = np.nan_to_num(np.asarray(rec, dtype=float))
    b = np.nan_to_num(np.asarray(tru, dtype=float))
    shift = register_pair(a, b, upsample=20)
    pixel = float(result[s.Y].attrs.get(s.ATTR_PIXEL_SIZE, abs(float(result[s.Y][1] - result[s.Y][0]))))
    return float(shift[0]) * pixel, float(shift[1]) * pixel


def _truth_on_result_grid(
    result: xr.Dataset, truth: xr.Dataset, names: Sequence[str], method: str, shift: tuple[float, float] | None = None
) -> xr.Dataset:
    dy, dx = _register_truth(result, truth) if shift is None else shift
    moved = truth[list(names)].assign_coords({s.Y: truth[s.Y] + dy, s.X: truth[s.X] + dx})
    return moved.interp({s.Y: result[s.Y], s.X: result[s.X]}, method=method)  # type: ignore[arg-type]


#: Near-edge band [eV] of the KKR benefit metric (issue 11: the energy-varying phase near the edge).
NEAR_EDGE_BAND = (5465.0, 5490.0)


def varying_phase_error(
    result: xr.Dataset,
    truth: xr.Dataset,
    energies: tuple[float, float] = NEAR_EDGE_BAND,
    reference: str = "mean",
) -> float:
    """Rms error [rad] of the energy-varying phase on covered pixels at ``energies`` [eV].

    The varying part is φ(E) minus a reference: ``"mean"`` over all energies (issue 11's
    metric), ``"last"`` the highest energy's φ, ``"band"`` the mean over ``energies``; the
    truth's phase (on the result's grid) is referred alike, and a global phase per energy is
    removed (it is arbitrary).
    """
    phase = np.angle(result[s.OBJECT].values)
    probe = result.assign({s.PHASE: (result[s.OBJECT].dims, phase)})
    true = _truth_on_result_grid(probe, truth, [s.PHASE], "linear")[s.PHASE].values
    e = result[s.ENERGY].values
    near = (e >= energies[0]) & (e <= energies[1])
    refs: dict[str, slice | np.ndarray] = {"mean": slice(None), "last": slice(-1, None), "band": near}
    if reference not in refs:
        raise ValueError(f"reference must be one of {sorted(refs)}, got {reference!r}")
    pick = refs[reference]
    err = ((phase - phase[pick].mean(axis=0)) - (true - true[pick].mean(axis=0)))[near][:, result[s.COVERAGE].values]
    err -= err.mean(axis=1, keepdims=True)  # a global phase per energy is arbitrary
    return float(np.sqrt(np.mean(err**2)))


def _rms(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(np.sqrt(np.mean(a**2))) if a.size else float("nan")


def _mean(a: np.ndarray) -> float:
    # NaN without a warning when nothing is valid (a chain that lost the particle)
    a = a[np.isfinite(a)]
    return float(np.mean(a)) if a.size else float("nan")


def _median_abs(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(np.median(np.abs(a))) if a.size else float("nan")


#: Largest fitted b2 standard error [eV] of the "confident" pixels: the 0.5 eV edge-energy
#: target of issue 6 is then ≥ 1.6 σ of each pixel's own fit uncertainty. A measured
#: selection (the fit's covariance), no truth involved; it drops the bistable mixed pixels.
EDGE_STDERR_LIMIT = 0.3

#: Share of a pixel's N_V that one domain type must hold for the pixel to count as
#: single-domain: there its true spectrum has one edge, so eq. (1)'s b2 has one true value
#: (the N_V-weighted mean of a mixed pixel is not what a one-edge fit measures; see the
#: module docstring). 0.95 keeps the weighted-mean edge within ~0.3 eV of the major type's.
SINGLE_DOMAIN_PURITY = 0.95


def single_domain(truth: xr.Dataset, purity: float = SINGLE_DOMAIN_PURITY) -> xr.DataArray:
    """(y, x) True where one domain type holds ≥ ``purity`` of the true N_V (truth grid)."""
    n_v_type = truth[s.PARTIAL_DENSITY].sel({s.ELEMENT: "V"})
    n_v = n_v_type.sum(s.DOMAIN_TYPE)
    share = (n_v_type / n_v.where(n_v > 0)).max(s.DOMAIN_TYPE)
    return (share >= purity).rename("single_domain")


def _single_domain_on_grid(result: xr.Dataset, truth: xr.Dataset, shift: tuple[float, float] | None = None):
    """:func:`single_domain` of ``truth`` on ``result``'s grid (nearest pixel), as a bool array."""
    if s.PARTIAL_DENSITY not in truth:
        return None
    shift = _register_truth(result, truth) if shift is None else shift
    mask = single_domain(truth).astype(float).to_dataset(name="single_domain")
    return _truth_on_result_grid(result, mask, ["single_domain"], "nearest", shift)["single_domain"].values > 0.5


#: Chemical-state maps compared with the truth (and with the ideal fit).
MAP_NAMES = (s.EDGE_ENERGY, s.PRE_EDGE_RATIO, s.ELECTRONS_PER_VANADIUM, s.VANADIUM_DENSITY)


def ideal_maps(truth: xr.Dataset, fit_options: dict | None = None, chemistry_options: dict | None = None) -> xr.Dataset:
    """Chemical-state maps of the truth's own noise-free spectra (eq. (1) fit, no reconstruction).

    Parameters
    ----------
    truth : xarray.Dataset
        Ground truth of one particle (:func:`ptyxr.simulate.demo_dataset`).
    fit_options, chemistry_options : dict, optional
        Keyword arguments of ``fit_xanes`` / ``chemical_state`` (use the chain's).

    Returns
    -------
    xarray.Dataset
        The fitted noise-free spectra (DESIGN §1c–e) on the truth's grid, ``phase`` the
        truth's (for registration).
    """
    from ptyxr.simulate.datasets import spectra_from_truth

    fit_options = {"progress": False, **(fit_options or {})}
    fitted = spectra_from_truth(truth).ptyxr.fit_xanes(**fit_options).ptyxr.chemical_state(**(chemistry_options or {}))
    return fitted.assign({s.PHASE: truth[s.PHASE]})


def particle_accuracy(result: xr.Dataset, truth: xr.Dataset, ideal: xr.Dataset | None = None) -> dict[str, float | str]:
    """Error figures of one particle's chain output against its truth.

    Parameters
    ----------
    result : xarray.Dataset
        Chain output of one particle (any stage; figures of absent variables are skipped).
    truth : xarray.Dataset
        Its ground truth.
    ideal : xarray.Dataset, optional
        :func:`ideal_maps` of ``truth``: adds the ``*_vs_ideal`` errors and the model floor.
    """
    row: dict[str, float | str] = {"particle": str(result.attrs.get(s.ATTR_PARTICLE, "?"))}
    valid = result[s.FIT_VALID].values if s.FIT_VALID in result else None
    if s.OBJECT in result and s.OBJECT in truth:
        true_obj = _truth_on_result_grid(result, truth, [s.ABSORPTION, s.PHASE], "linear")
        cov = result[s.COVERAGE].values if s.COVERAGE in result else np.ones(result[s.Y].size * result[s.X].size, bool)
        mu_err = (result[s.ABSORPTION] - true_obj[s.ABSORPTION]).values[:, cov]
        ph_rec = result[s.PHASE].values[:, cov]
        ph_true = true_obj[s.PHASE].values[:, cov]
        ph_err = ph_rec - ph_true
        ph_err -= np.nanmean(ph_err, axis=1, keepdims=True)  # global phase per energy is arbitrary
        scale_mu = _rms(true_obj[s.ABSORPTION].values[:, cov])
        scale_ph = _rms(ph_true - np.nanmean(ph_true, axis=1, keepdims=True))
        row["absorption_nrmse"] = _rms(mu_err) / scale_mu
        row["phase_nrmse"] = _rms(ph_err) / scale_ph
        row["absorption_nrmse_worst_energy"] = float(np.nanmax([_rms(e) for e in mu_err])) / scale_mu
        row["phase_nrmse_worst_energy"] = float(np.nanmax([_rms(e) for e in ph_err])) / scale_ph
    if s.SHIFT_Y in result and s.SHIFT_Y in truth:
        pixel = float(result[s.Y].attrs.get(s.ATTR_PIXEL_SIZE))  # type: ignore[arg-type]
        err = np.hypot(
            result[s.SHIFT_Y].values - truth[s.SHIFT_Y].values, result[s.SHIFT_X].values - truth[s.SHIFT_X].values
        )
        row["alignment_rms_px"] = _rms(err) / pixel
    maps = [n for n in MAP_NAMES if n in result and n in truth]
    if maps and valid is not None:
        shift = _register_truth(result, truth)
        true_maps = _truth_on_result_grid(result, truth, maps + [s.PHASE], "nearest", shift)
        if s.EDGE_ENERGY in maps:
            d = (result[s.EDGE_ENERGY] - true_maps[s.EDGE_ENERGY]).values[valid]
            row["edge_energy_rmse_eV"] = _rms(d)
            row["edge_energy_bias_eV"] = _mean(d)
            pure = _single_domain_on_grid(result, truth, shift)
            if pure is not None:
                d_pure = (result[s.EDGE_ENERGY] - true_maps[s.EDGE_ENERGY]).values[valid & pure]
                row["edge_energy_rmse_single_domain_eV"] = _rms(d_pure)
                row["single_domain_fraction"] = float((valid & pure).sum() / max(valid.sum(), 1))
                row["single_domain_valid_pixels"] = float(np.isfinite(d_pure).sum())
            if "b2_stderr" in result:
                confident = valid & (result["b2_stderr"].values < EDGE_STDERR_LIMIT)
                d_conf = (result[s.EDGE_ENERGY] - true_maps[s.EDGE_ENERGY]).values[confident]
                row["edge_energy_rmse_confident_eV"] = _rms(d_conf)
                row["confident_fraction"] = float(confident.sum() / max(valid.sum(), 1))
            if ideal is not None and s.EDGE_ENERGY in ideal:
                # the ideal maps share the truth's grid, so the same registration applies;
                # pixels where even the noise-free fit is invalid are NaN there and skipped
                ideal_on_grid = _truth_on_result_grid(result, ideal, [s.EDGE_ENERGY], "nearest", shift)
                d_ideal = (result[s.EDGE_ENERGY] - ideal_on_grid[s.EDGE_ENERGY]).values[valid]
                row["edge_energy_rmse_vs_ideal_eV"] = _rms(d_ideal)
                # the rms is ruled by a tail of mixed pixels whose one-edge fit flips between
                # the two edges; the median says what a typical pixel gets
                row["edge_energy_median_abs_err_vs_ideal_eV"] = _median_abs(d_ideal)
                row["edge_energy_bias_vs_ideal_eV"] = _mean(d_ideal)
                row["vs_ideal_pixels"] = float(np.isfinite(d_ideal).sum())
                if pure is not None:
                    # the estimator against what eq. (1) means on these pixels (like with like):
                    # the single-domain bound without the model's own bias on a non-erf edge
                    d_ideal_pure = (result[s.EDGE_ENERGY] - ideal_on_grid[s.EDGE_ENERGY]).values[valid & pure]
                    row["edge_energy_rmse_single_domain_vs_ideal_eV"] = _rms(d_ideal_pure)
                    row["single_domain_vs_ideal_pixels"] = float(np.isfinite(d_ideal_pure).sum())
                ideal_valid = ideal[s.FIT_VALID].values
                row["ideal_fit_edge_energy_rmse_eV"] = _rms(
                    (ideal[s.EDGE_ENERGY] - truth[s.EDGE_ENERGY]).values[ideal_valid]
                )
                # the model floor where the single-domain bound applies: the noise-free fit's
                # error on single-domain pixels (eq. (1) cannot follow a non-erf edge exactly)
                ideal_pure = ideal_valid & single_domain(truth).values
                row["ideal_fit_edge_energy_rmse_single_domain_eV"] = _rms(
                    (ideal[s.EDGE_ENERGY] - truth[s.EDGE_ENERGY]).values[ideal_pure]
                )
        for name, key in (
            (s.PRE_EDGE_RATIO, "pre_edge_ratio_rel_err"),
            (s.ELECTRONS_PER_VANADIUM, "electrons_per_V_rel_err"),
            (s.VANADIUM_DENSITY, "vanadium_density_rel_err"),
        ):
            if name in maps:
                # PE/Δμt only where fit_xanes flags the pre-edge as resolved (measured)
                use = valid
                if name == s.PRE_EDGE_RATIO and s.PRE_EDGE_VALID in result:
                    use = result[s.PRE_EDGE_VALID].values
                t = true_maps[name].values[use]
                rel = (result[name].values[use] - t) / t
                row[key] = _median_abs(rel)
                if name == s.PRE_EDGE_RATIO and ideal is not None and name in ideal:
                    ideal_valid = (
                        ideal[s.PRE_EDGE_VALID].values if s.PRE_EDGE_VALID in ideal else ideal[s.FIT_VALID].values
                    )
                    rel_ideal = (ideal[name] - truth[name]).values[ideal_valid] / truth[name].values[ideal_valid]
                    row["ideal_fit_pre_edge_ratio_rel_err"] = float(np.nanmedian(np.abs(rel_ideal)))
        row["valid_pixels"] = float(valid.sum())
        if s.PRE_EDGE_VALID in result:
            row["pre_edge_valid_pixels"] = float(result[s.PRE_EDGE_VALID].values.sum())
    return row


def accuracy_report(result, truths: Sequence[xr.Dataset], ideal: bool = True, progress: bool = False) -> AccuracyReport:
    """Accuracy of a :class:`ptyxr.pipeline.ChainResult` against the simulation truths.

    Parameters
    ----------
    result : ptyxr.pipeline.ChainResult
        Output of :func:`ptyxr.pipeline.run_chain` on simulated particles.
    truths : sequence of xarray.Dataset
        Ground truths from :func:`ptyxr.simulate.paper_particles`, same order.
    ideal : bool
        Also fit the truths' noise-free spectra (:func:`ideal_maps`, a few seconds per
        particle) and report the edge-energy error against that ideal fit.
    progress : bool
        Progress bar over particles.

    Returns
    -------
    AccuracyReport
        Rows per particle (object amplitude/phase NRMSE, alignment error in pixels,
        edge-energy RMSE and bias [eV], median relative errors of PE/Δμt,
        electrons per V and N_V), pooled domain scores (adjusted Rand index, error of
        the N_V-weighted fractions per condition) and wall time per stage.
    """
    from ptyxr.progress import progress_bar

    report = AccuracyReport(timings=dict(result.timings))
    pairs = list(zip(result.particles, truths, strict=True))
    ideals = []
    for particle, truth in progress_bar(pairs, enabled=progress, desc="accuracy"):
        ideals.append(ideal_maps(truth) if ideal else None)
        report.rows.append(particle_accuracy(particle, truth, ideals[-1]))
    combined = result.combined
    if s.DOMAIN in combined:
        report.pooled.update(domain_accuracy(result.particles, combined, truths))
        if ideal:
            # the same clustering on the ideal fits: the ceiling set by the model and the
            # mixed pixels, not by the measurement
            from ptyxr.domains import combine_particles

            labels = combined[s.DOMAIN].values
            k = int(np.unique(labels[labels >= 0]).size)
            ideal_combined = combine_particles(ideals).ptyxr.cluster(n_clusters=k, seed=0)  # type: ignore[arg-type]
            scores = domain_accuracy(ideals, ideal_combined, truths)  # type: ignore[arg-type]
            report.pooled.update({f"ideal_fit {key}": value for key, value in scores.items()})
    counts: list[Any] = [r.get("single_domain_valid_pixels", 0.0) for r in report.rows]
    if sum(counts) > 0:
        squares = [
            float(r["edge_energy_rmse_single_domain_eV"]) ** 2 * n
            for r, n in zip(report.rows, counts, strict=True)
            if n
        ]
        report.pooled["edge_energy_rmse_single_domain_eV (all particles)"] = float(np.sqrt(sum(squares) / sum(counts)))
    for key in (
        "edge_energy_rmse_eV",
        "edge_energy_rmse_single_domain_eV",
        "edge_energy_rmse_vs_ideal_eV",
        "edge_energy_rmse_single_domain_vs_ideal_eV",
        "absorption_nrmse",
        "phase_nrmse",
        "alignment_rms_px",
    ):
        values = [r[key] for r in report.rows if key in r]
        if values:
            report.pooled["max " + key] = float(np.nanmax(values))
    return report


def domain_accuracy(
    particles: Sequence[xr.Dataset], combined: xr.Dataset, truths: Sequence[xr.Dataset]
) -> dict[str, float]:
    """Adjusted Rand index of domains vs truth and N_V-weighted fraction errors per condition.

    Clusters are mapped to the true domain type most of their N_V sits in; fractions of
    the mapped types are compared with the truth's N_V-weighted fractions.
    """
    from sklearn.metrics import adjusted_rand_score

    labels, true_labels, weights, true_weights, conditions, pure = [], [], [], [], [], []
    for i, (particle, truth) in enumerate(zip(particles, truths, strict=True)):
        # combine_particles aligns particles by pixel index from each one's first pixel
        ny, nx = particle.sizes[s.Y], particle.sizes[s.X]
        dom = combined[s.DOMAIN].isel({s.PARTICLE: i, s.Y: slice(0, ny), s.X: slice(0, nx)})
        true_dom = _truth_on_result_grid(particle, truth, [s.DOMAIN], "nearest")[s.DOMAIN].values
        lab = dom.values
        keep = (lab >= 0) & np.isfinite(true_dom) & (true_dom >= 0)
        labels.append(lab[keep])
        true_labels.append(true_dom[keep].astype(int))
        w = particle[s.VANADIUM_DENSITY].values[keep]
        weights.append(np.where(np.isfinite(w), w, 0.0))
        true_nv = _truth_on_result_grid(particle, truth, [s.VANADIUM_DENSITY], "nearest")[s.VANADIUM_DENSITY].values
        true_weights.append(np.nan_to_num(true_nv[keep]))
        conditions.append(np.full(keep.sum(), str(particle.attrs.get(s.ATTR_CONDITION, ""))))
        single = _single_domain_on_grid(particle, truth)
        pure.append(single[keep] if single is not None else np.zeros(keep.sum(), bool))
    lab, tru, w, tw, cond = (np.concatenate(v) for v in (labels, true_labels, weights, true_weights, conditions))
    pure_all = np.concatenate(pure)
    out = {"domain_adjusted_rand_index": float(adjusted_rand_score(tru, lab)) if lab.size else float("nan")}
    if pure_all.any():
        # a mixed pixel's true label is only its majority type: score the single-domain ones too
        out["domain_adjusted_rand_index_single_domain"] = float(adjusted_rand_score(tru[pure_all], lab[pure_all]))
    mapping = {c: np.bincount(tru[lab == c], weights=w[lab == c]).argmax() for c in np.unique(lab)}
    mapped = np.array([mapping[c] for c in lab]) if lab.size else lab
    for group in np.unique(cond):
        g = cond == group
        n_types = int(max(tru.max(), mapped.max()) + 1)
        f_true = np.bincount(tru[g], weights=tw[g], minlength=n_types) / tw[g].sum()
        f_rec = np.bincount(mapped[g], weights=w[g], minlength=n_types) / w[g].sum()
        out[f"fraction_max_abs_err[{group}]"] = float(np.max(np.abs(f_true - f_rec)))
    return out
