"""The ``cluster`` stage: k-means domains, their fractions per condition and uncertainty."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from ptyxr.domains._common import (
    _A,
    _B1,
    _OUTPUTS,
    BOOTSTRAP_RULE,
    DEFAULT_BOOTSTRAP,
    DEFAULT_OUTLIER_THRESHOLD,
    DEFAULT_STANDARDIZE,
    DEFAULT_WEIGHTED_FIT,
    ORDER_RULE,
    OUTLIER_RULE,
    UNSPECIFIED_CONDITION,
    _check_features,
    _coord,
    _feature_table,
)
from ptyxr.domains.kernels import (
    OUTLIER_CODE,
    STANDARDISATIONS,
    _fit,
    _standardisation,
    bootstrap_fractions,
    centre_separation,
    cluster_spread,
    kmeans,
    label_maps,
    nearest_centre,
    order_clusters,
    outliers,
)
from ptyxr.schema import (
    ABSORPTION,
    ATTR_CONDITION,
    ATTR_UNITS,
    CLUSTER,
    CLUSTER_CENTER,
    CLUSTER_SPECTRUM,
    CONDITION,
    DOMAIN,
    DOMAIN_FEATURES,
    DOMAIN_OUTLIER,
    ENERGY,
    FEATURE,
    FRACTION,
    FRACTION_HIGH,
    FRACTION_LOW,
    GROUP,
    LABELLED_FRACTION,
    MATERIAL,
    MISSING_DOMAIN,
    OUTLIER_FRACTION,
    PARTICLE,
    VANADIUM_DENSITY,
    SchemaError,
    attrs_of,
    require_dataset,
    require_variables,
    with_attrs,
)
from ptyxr.stage import Recorded, stage


def _conditions(ds: xr.Dataset, has_particle: bool) -> list[str]:
    if has_particle:
        if CONDITION in ds.coords and ds[CONDITION].dims == (PARTICLE,):
            return [str(c) for c in ds[CONDITION].values]
        return [str(ds.attrs.get(ATTR_CONDITION, UNSPECIFIED_CONDITION))] * ds.sizes[PARTICLE]
    if CONDITION in ds.coords and ds[CONDITION].ndim == 0:
        return [str(ds[CONDITION].values)]
    return [str(ds.attrs.get(ATTR_CONDITION, UNSPECIFIED_CONDITION))]


def _fractions(domain: xr.DataArray, weights: xr.DataArray | None, k: int, conditions: list[str]) -> xr.DataArray:
    """N_V-weighted fraction (group, cluster): lazy xarray reductions, one per cluster."""
    w = xr.ones_like(domain, dtype=float) if weights is None else weights.fillna(0.0).astype(float)
    spatial = [d for d in domain.dims if d != PARTICLE]
    sums = xr.concat([w.where(domain == c, 0.0).sum(spatial) for c in range(k)], dim=CLUSTER)  # (cluster[, p])
    groups = list(dict.fromkeys(conditions))  # distinct conditions, first-appearance order
    if PARTICLE in domain.dims:
        idx = np.asarray(conditions)
        group_sums = [sums.isel({PARTICLE: np.flatnonzero(idx == g)}).sum(PARTICLE) for g in groups]
    else:
        group_sums = [sums]
    per_group = xr.concat(group_sums, dim=GROUP).drop_vars([PARTICLE, CONDITION], errors="ignore")
    total = per_group.sum(CLUSTER)
    fraction = per_group / total.where(total > 0)  # a group without labelled pixels → NaN, not 0/0
    return fraction.transpose(GROUP, CLUSTER).assign_coords({GROUP: _coord(GROUP, groups)})


def _cluster_spectra(ds: xr.Dataset, domain: xr.DataArray, k: int) -> xr.DataArray:
    """Mean of (absorption − a)/b1 over each cluster's pixels (cluster, energy)."""
    b1 = ds[_B1].where(domain >= 0)
    normalised = (ds[ABSORPTION] - ds[_A]) / b1.where(b1 != 0)
    reduce = [d for d in normalised.dims if d != ENERGY]
    spectra = [normalised.where(domain == c).mean(reduce) for c in range(k)]
    return xr.concat(spectra, dim=CLUSTER).transpose(CLUSTER, ENERGY)


def _particle_pixels(ds: xr.Dataset, like: xr.DataArray, features: tuple[str, ...]) -> xr.DataArray:
    """Pixels of the particle(s): ``material`` when present, else pixels with any finite feature."""
    if MATERIAL in ds and set(ds[MATERIAL].dims) == set(like.dims):
        return ds[MATERIAL].astype(bool)
    finite = [np.isfinite(ds[name]) for name in features]
    out = finite[0]
    for f in finite[1:]:
        out = out | f
    return out  # type: ignore[return-value]  # np.isfinite of a DataArray is a DataArray


def _coverage(domain: xr.DataArray, outlier: xr.DataArray, pixels: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """Labelled and outlier share of each particle's pixels (lazy reductions)."""
    spatial = [d for d in domain.dims if d != PARTICLE]
    total = pixels.sum(spatial)
    total = total.where(total > 0)
    labelled = ((domain >= 0) & pixels).sum(spatial) / total
    outlying = (outlier & pixels).sum(spatial) / total
    return labelled, outlying


# the features (and so the variables needed) are a parameter: _check_features validates them
@stage("cluster", validate=require_dataset)
def cluster(
    ds: xr.Dataset,
    n_clusters: int = 6,
    features: Sequence[str] = DOMAIN_FEATURES,
    seed: int = 0,
    weights: str | xr.DataArray | None = VANADIUM_DENSITY,
    standardize: bool | str = DEFAULT_STANDARDIZE,
    weighted_fit: bool = DEFAULT_WEIGHTED_FIT,
    outlier_threshold: float | None = DEFAULT_OUTLIER_THRESHOLD,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    confidence: float = 0.95,
) -> Recorded:
    """k-means chemical domains over all particles (paper §2.4; DESIGN §1f).

    Parameters
    ----------
    ds : xarray.Dataset
        Chemical-state maps (DESIGN §1e) with a ``particle`` dim (see
        :func:`combine_particles`) or of a single particle (dims y, x).
    n_clusters : int
        Number of domains k (the paper's 6; :func:`choose_k` suggests one).
    features : sequence of str
        Feature variables (default edge energy [eV], Re[N_e^eff]/N_V [1], PE/Δμt [eV]).
    seed : int
        ``random_state`` of k-means and of the bootstrap: same seed and data → identical output.
    weights : str, DataArray or None
        Per-pixel weights of the fractions (default N_V, ``vanadium_density``); None counts pixels.
    standardize : bool or {"zscore", "robust", "none"}
        Feature scaling before k-means: True / ``"zscore"`` (default) mean and std;
        ``"robust"`` median and IQR/1.349 (insensitive to far-off pixels, but on multimodal
        features the IQR of the dominant domain rules: ARI 0.97 → 0.74 on simulated chain
        output, docs/design-notes/domains-robust.md); False / ``"none"`` raw units.
    weighted_fit : bool
        Weigh each pixel's term of the k-means objective by ``weights`` (N_V). Default False.
        True keeps thin, low-N_V rim pixels whose features are artefacts from pulling a
        centre or taking a cluster of their own (ARI 0.53–0.70 → 0.99 on such maps), but it
        equally hides genuine thin surface domains: on simulated chain output with one
        cluster more than the true types it raised the fraction error from 0.035 to 0.06
        (docs/design-notes/domains-robust.md). Ignored when ``weights`` is None. Computes
        the weights (dask input), as the fit computes the features.
    outlier_threshold : float or None
        Default None: every valid pixel labelled. A number, e.g. 5, leaves unlabelled
        (``domain`` −1, ``domain_outlier`` True) valid pixels farther than this many robust σ
        of their cluster from its centre AND farther from it than the nearest other centre
        (:data:`OUTLIER_RULE`); k-means is then refitted without them.
    bootstrap : int
        Replicates of the fraction bootstrap (:data:`BOOTSTRAP_RULE`; 0 = none): adds
        ``fraction_low``/``fraction_high``. Computes the labels and weights (a small map).
    confidence : float
        Coverage of the bootstrap interval (0.95: 2.5th–97.5th percentile).

    Returns
    -------
    xarray.Dataset
        ``ds`` plus ``domain`` ([particle,] y, x; int16, −1 = unlabelled, cf ``flag_values``/
        ``flag_meanings``), ``domain_outlier`` (bool: valid fit but an outlier — the other
        −1 pixels have no valid fit), ``labelled_fraction`` and ``outlier_fraction``
        ([particle]; share of the particle's pixels — ``material`` when present, else pixels
        with any finite feature), ``cluster_center`` (cluster, feature; original units),
        ``fraction`` (group, cluster; rows sum to 1), ``fraction_low``/``fraction_high``
        (bootstrap bounds) and, when ``absorption``, ``a``, ``b1`` are present,
        ``cluster_spectrum`` (cluster, energy). Clusters are numbered by ascending
        edge-energy centre (:data:`ORDER_RULE`).

    Raises
    ------
    SchemaError
        No or missing features, no valid pixel, more clusters than valid pixels, missing
        weights, unknown standardisation, bad threshold/bootstrap/confidence.
    """
    stage = "cluster"
    features = _check_features(ds, features, stage)
    if isinstance(weights, str):
        require_variables(ds, (weights,), stage, "Pass weights=None to count pixels instead.")
        weights = ds[weights]
    method = _standardisation(standardize, stage)
    if outlier_threshold is not None and not (np.isfinite(outlier_threshold) and outlier_threshold > 0):
        raise SchemaError(
            f"{stage}: outlier_threshold must be a positive number of robust sigma or None, got {outlier_threshold!r}."
        )
    if int(bootstrap) != bootstrap or bootstrap < 0:
        raise SchemaError(f"{stage}: bootstrap must be a number of replicates >= 0, got {bootstrap!r}.")
    if not 0 < confidence < 1:
        raise SchemaError(f"{stage}: confidence must lie in (0, 1), e.g. 0.95, got {confidence!r}.")
    like = ds[features[0]]
    table, valid = _feature_table(ds, features, stage)
    w_all = None
    if weights is not None:
        w_all = np.asarray(xr.broadcast(weights, like)[0].transpose(*like.dims).values, dtype=float).ravel()
        w_all = np.where(np.isfinite(w_all) & (w_all > 0), w_all, 0.0)
    points = table[valid]
    fit_weight = w_all[valid] if (weighted_fit and w_all is not None) else None
    if fit_weight is not None and not (fit_weight > 0).any():
        fit_weight = None  # no usable weight: an unweighted fit rather than a degenerate one
    mean, std, centres, inertia = _fit(points, n_clusters, seed, method, stage, sample_weight=fit_weight)
    z = (points - mean) / std
    spread = separation = None
    inlier = np.ones(z.shape[0], bool)
    if outlier_threshold is not None:
        for _ in range(2):  # flag, refit on the inliers, flag again against the new centres
            lab = nearest_centre(z, centres)
            spread, separation = cluster_spread(z[inlier], lab[inlier], centres), centre_separation(centres)
            flagged = outliers(z, lab, centres, spread, separation, outlier_threshold)
            if not flagged.any() or np.array_equal(~flagged, inlier):
                inlier = ~flagged
                break
            inlier = ~flagged
            if inlier.sum() < n_clusters:
                break
            w_in = None if fit_weight is None else fit_weight[inlier]
            w_in = w_in if w_in is not None and (w_in > 0).any() else None
            centres, inertia = kmeans(z[inlier], int(n_clusters), seed, sample_weight=w_in)
        lab = nearest_centre(z, centres)
        spread, separation = cluster_spread(z[inlier], lab[inlier], centres), centre_separation(centres)
        inlier = ~outliers(z, lab, centres, spread, separation, outlier_threshold)  # = what label_maps flags
    order = order_clusters(centres * std + mean)  # rule applied in original units
    centres = centres[order]
    if spread is not None:
        spread, separation = spread[order], separation[order]  # type: ignore[index]
    k = centres.shape[0]

    raw = xr.apply_ufunc(
        label_maps,
        *(ds[name] for name in features),
        kwargs={
            "mean": mean,
            "std": std,
            "centres": centres,
            "spread": spread,
            "separation": separation,
            "threshold": outlier_threshold,
        },
        dask="parallelized",
        output_dtypes=[np.int16],
    )
    outlier = with_attrs(raw == OUTLIER_CODE, DOMAIN_OUTLIER, rule=OUTLIER_RULE, threshold=str(outlier_threshold))
    domain = xr.where(raw == OUTLIER_CODE, np.int16(MISSING_DOMAIN), raw).astype(np.int16)
    flags = {
        "flag_values": np.arange(MISSING_DOMAIN, k, dtype=np.int16),
        "flag_meanings": " ".join(["missing"] + [f"cluster_{c}" for c in range(k)]),
        "order_rule": ORDER_RULE,
        "missing": f"no valid fit (non-finite feature) or an outlier ({DOMAIN_OUTLIER} True)",
    }
    domain = with_attrs(domain, DOMAIN, **flags)
    units = [str(ds[name].attrs.get(ATTR_UNITS, "")) for name in features]
    n_outliers = int((~inlier).sum())
    center = xr.DataArray(
        centres * std + mean,
        dims=(CLUSTER, FEATURE),
        name=CLUSTER_CENTER,
        attrs=attrs_of(
            CLUSTER_CENTER,
            feature_units=" ".join(units),
            standardisation=STANDARDISATIONS[method],
            standardisation_mean=mean.tolist(),
            standardisation_std=std.tolist(),
            inertia=inertia,
            n_valid_pixels=int(points.shape[0]),
            n_outlier_pixels=n_outliers,
            order_rule=ORDER_RULE,
        ),
    )
    has_particle = PARTICLE in like.dims
    conditions = _conditions(ds, has_particle)
    weights_name = weights.name if weights is not None and weights.name else "pixel count"
    fraction = with_attrs(_fractions(domain, weights, k, conditions), FRACTION, weights=weights_name)
    labelled, outlying = _coverage(domain, outlier, _particle_pixels(ds, like, features))
    coverage_note = "share of the particle's pixels (material when present, else pixels with any finite feature)"
    new = {
        DOMAIN: domain,
        DOMAIN_OUTLIER: outlier,
        LABELLED_FRACTION: with_attrs(labelled, LABELLED_FRACTION, definition=coverage_note),
        OUTLIER_FRACTION: with_attrs(outlying, OUTLIER_FRACTION, definition=coverage_note, rule=OUTLIER_RULE),
        CLUSTER_CENTER: center,
        FRACTION: fraction,
    }
    if bootstrap:
        labels_all = np.full(table.shape[0], MISSING_DOMAIN, dtype=np.int64)
        labels_all[np.flatnonzero(valid)] = np.where(inlier, nearest_centre(z, centres), MISSING_DOMAIN)
        particle_index = (
            np.repeat(np.arange(like.sizes[PARTICLE]), table.shape[0] // like.sizes[PARTICLE])
            if has_particle
            else np.zeros(table.shape[0], dtype=int)
        )
        use = labels_all >= 0
        w_use = np.ones(use.sum()) if w_all is None else w_all[use]
        groups = list(dict.fromkeys(conditions))
        members = [[i for i, c in enumerate(conditions) if c == g] for g in groups]
        low, high = bootstrap_fractions(
            labels_all[use], w_use, particle_index[use], members, k, int(bootstrap), confidence, seed
        )
        boot = {
            "method": BOOTSTRAP_RULE,
            "n_boot": int(bootstrap),
            "confidence": confidence,
            "seed": seed,
            "weights": weights_name,
        }
        for name, values in ((FRACTION_LOW, low), (FRACTION_HIGH, high)):
            new[name] = xr.DataArray(values, dims=(GROUP, CLUSTER), attrs=attrs_of(name, **boot))
    if all(name in ds for name in (ABSORPTION, _A, _B1)):
        new[CLUSTER_SPECTRUM] = with_attrs(
            _cluster_spectra(ds, domain, k),
            CLUSTER_SPECTRUM,
            formula="mean over the cluster's pixels of (absorption - a)/b1",
        )
    out = ds.drop_vars([n for n in (*_OUTPUTS, CLUSTER, FEATURE, GROUP) if n in ds.variables])
    out = out.assign(new).assign_coords(
        {
            CLUSTER: _coord(CLUSTER, np.arange(k, dtype=np.int16)),
            FEATURE: _coord(FEATURE, list(features)),
            GROUP: fraction[GROUP],
        }
    )
    # element-wise ops on the new maps drop coordinate attrs (particle, condition): keep ds's
    keep = [n for n in ds.coords if n not in (CLUSTER, FEATURE, GROUP)]
    out = out.assign_coords({name: ds[name] for name in ds.coords if name in out.coords and name in keep})
    # recorded next to the call's parameters: the resolved options, the rules and the counts
    return Recorded(
        out,
        {
            "features": list(features),
            "weights": weights_name,
            "standardize": method,
            "standardisation": STANDARDISATIONS[method],
            "weighted_fit": bool(fit_weight is not None),
            "outlier_rule": OUTLIER_RULE if outlier_threshold is not None else "none",
            "order_rule": ORDER_RULE,
            "kmeans": "sklearn.cluster.KMeans(n_init=10, random_state=seed), fitted on all valid non-outlier pixels"
            + (", sample_weight = weights" if fit_weight is not None else ""),
            "inertia": inertia,
            "n_valid_pixels": int(points.shape[0]),
            "n_outlier_pixels": n_outliers,
        },
    )
