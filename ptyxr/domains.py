"""Chemical domains: combine particles, k-means clustering, elbow curve (DESIGN §1f).

Paper §2.4 / §3.3 (Uematsu et al., PCCP 2023): every valid pixel of every particle is a
point in the 3-D space (edge energy, Re[N_e^eff]/N_V, PE/Δμt); k-means groups them into
domains (6 in the paper, chosen by the elbow of the within-cluster SSE), and the
N_V-weighted fraction of each domain is compared between sample conditions.

Documented choices
------------------
* **Standardisation.** The features differ by orders of magnitude in their raw units
  (eV vs electrons vs eV), so each is z-scored, (f − mean)/std, with mean and std over
  all valid pixels of all particles (a feature with zero spread is left unscaled). The
  centres are reported back in the original units. ``standardize=False`` clusters raw units.
* **Valid pixels.** A pixel takes part iff all its features are finite (chemical_state
  sets them NaN where the fit is invalid); others get ``domain = -1``.
* **Global fit, blockwise labels.** k-means (scikit-learn ``KMeans(n_init=10,
  random_state=seed)``) is fitted once on all valid pixels pooled over particles; labels
  are then the nearest (standardised) centre, assigned blockwise with
  ``xarray.apply_ufunc`` (lazy on dask input; the fit itself needs the feature values,
  which are computed once).
* **Cluster order.** k-means numbers its clusters arbitrarily; ptyxr renumbers them by
  ascending centre of the first feature (edge energy by default), exact ties broken by
  the second feature, then the third (:func:`order_clusters`). Labels are 0 … k−1.
* **Fractions.** ``fraction[group, cluster]`` = Σ N_V over the cluster's pixels in the
  particles of that condition / Σ N_V over all labelled pixels of that condition (rows
  sum to 1). NaN weights count as 0; ``weights=None`` counts pixels.
* **Elbow rule.** The suggested k is the point of the SSE(k) curve farthest below the
  chord joining its first and last points, computed on log SSE (:func:`knee`): "kneedle"
  on a log scale. On a linear scale the rule undercounts whenever the last merged pair
  of clusters is close (its SSE drop is small next to SSE(1)); the log scale weighs each
  k's relative drop, which is what an elbow means.
* **Combining particles.** :func:`combine_particles` puts all particles on one pixel grid
  aligned by pixel index: y/x become pixel-offset coordinates ``i × pixel_size`` [m] from
  each particle's own first pixel (particles are separate fields of view; their absolute
  positions are meaningless across scans). Grids are padded at the far end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ptyxr import checks as _checks
from ptyxr import provenance
from ptyxr.progress import progress_bar
from ptyxr.schema import (
    ABSORPTION,
    ATTR_CONDITION,
    ATTR_LONG_NAME,
    ATTR_PARTICLE,
    ATTR_PIXEL_SIZE,
    ATTR_UNITS,
    CLUSTER,
    CLUSTER_CENTER,
    CLUSTER_SPECTRUM,
    CONDITION,
    DIMENSIONLESS,
    DOMAIN,
    DOMAIN_FEATURES,
    ENERGY,
    FEATURE,
    FIT_PARAMETERS,
    FRACTION,
    GROUP,
    INERTIA,
    MISSING_DOMAIN,
    N_CLUSTERS,
    PARTICLE,
    VANADIUM_DENSITY,
    SchemaError,
    X,
    Y,
    attrs_of,
    length_coord,
    require_dataset,
    require_variables,
    spec,
    variable,
    with_attrs,
)

_A, _B1, *_ = FIT_PARAMETERS
#: Condition given to particles whose Dataset names none.
UNSPECIFIED_CONDITION = "unspecified"
#: k-means on fewer points than this runs single-threaded (see :func:`kmeans`).
SINGLE_THREAD_POINTS = 50_000
#: Relative tolerance on matching pixel sizes in :func:`combine_particles`.
PIXEL_SIZE_RTOL = 0.01
ORDER_RULE = (
    "clusters numbered 0..k-1 by ascending centre of the first feature; exact ties broken by the "
    "next feature (original units)"
)
ELBOW_RULE = (
    "kneedle on log SSE: the k farthest below the chord from the first to the last point of "
    "(k, log SSE), both axes scaled to [0, 1]"
)
STANDARDISATION = "z-score per feature over all valid pixels (mean, population std)"
_OUTPUTS = (DOMAIN, CLUSTER_CENTER, FRACTION, CLUSTER_SPECTRUM)
_COORD_ATTRS = {
    CLUSTER: "cluster label",
    FEATURE: "clustering feature",
    GROUP: "sample condition",
    PARTICLE: "particle name",
    N_CLUSTERS: "number of clusters k",
}


def _coord(name: str, values: Any, dims: str | None = None) -> xr.DataArray:
    """A small label coordinate with ``units``/``long_name`` (DESIGN §1: every coord has units)."""
    return xr.DataArray(
        np.asarray(values), dims=dims or name, attrs={ATTR_UNITS: DIMENSIONLESS, ATTR_LONG_NAME: _COORD_ATTRS[name]}
    )


# ===================================================================== array kernels
def standardise(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (population) per column of ``points`` (n, f); a zero std becomes 1."""
    mean = points.mean(axis=0)
    std = points.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant feature carries no information: leave it unscaled
    return mean, std


def kmeans(points: np.ndarray, n_clusters: int, seed: int = 0, n_init: int = 10) -> tuple[np.ndarray, float]:
    """k-means centres (k, f) and inertia of ``points`` (n, f) (scikit-learn, k-means++ init).

    Below :data:`SINGLE_THREAD_POINTS` points scikit-learn runs on one OpenMP thread: there
    the threads gain nothing, and on a busy machine their spin-waiting made a 4 000-pixel
    elbow curve 60× slower (22 s instead of 0.4 s, measured with 2 cores under load 8).
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    limits = 1 if points.shape[0] < SINGLE_THREAD_POINTS else None
    with threadpool_limits(limits=limits, user_api="openmp"):
        model = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed).fit(points)
    return np.asarray(model.cluster_centers_, dtype=float), float(model.inertia_)


def order_clusters(centres: np.ndarray) -> np.ndarray:
    """Permutation putting ``centres`` (k, f) in ascending order of column 0, ties by column 1, …"""
    return np.lexsort(tuple(centres[:, j] for j in reversed(range(centres.shape[1]))))


def nearest_centre(points: np.ndarray, centres: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Index of the nearest of ``centres`` (k, f) for each row of ``points`` (n, f), as int16."""
    labels = np.empty(points.shape[0], dtype=np.int16)
    for start in range(0, points.shape[0], chunk):  # bounded (chunk × k) distance matrix
        block = points[start : start + chunk]
        d2 = ((block[:, None, :] - centres[None, :, :]) ** 2).sum(axis=-1)
        labels[start : start + chunk] = np.argmin(d2, axis=1)
    return labels


def label_maps(*features: np.ndarray, mean: np.ndarray, std: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Cluster label of every pixel of the feature maps (same shapes); −1 where any is non-finite.

    ``centres`` are in standardised units, ``(f − mean)/std``.
    """
    stacked = np.stack([np.asarray(f, dtype=float) for f in features], axis=-1)
    flat = stacked.reshape(-1, stacked.shape[-1])
    valid = np.isfinite(flat).all(axis=1)
    labels = np.full(flat.shape[0], MISSING_DOMAIN, dtype=np.int16)
    if valid.any():
        labels[valid] = nearest_centre((flat[valid] - mean) / std, centres)
    return labels.reshape(stacked.shape[:-1])


def knee(k: np.ndarray, sse: np.ndarray) -> int:
    """Elbow of a decreasing SSE(k) curve: the k farthest below the chord of (k, log SSE).

    Both axes are scaled to [0, 1]; the chord joins the first and the last point. Fewer
    than three points, or a flat curve, give the first k.
    """
    k = np.asarray(k, dtype=float)
    sse = np.asarray(sse, dtype=float)
    order = np.argsort(k)
    k, sse = k[order], sse[order]
    if k.size < 3:
        return int(k[0])
    floor = sse.max() * 1e-12  # SSE can reach 0 (k ≥ distinct points): keep the log finite
    y = np.log(np.maximum(sse, floor))
    span = y.max() - y.min()
    if span <= 0:
        return int(k[0])
    x = (k - k[0]) / (k[-1] - k[0])
    y = (y - y.min()) / span
    chord = y[0] + (y[-1] - y[0]) * x
    return int(k[np.argmax(chord - y)])


# ================================================================= combine particles
def _pixel_sizes(ds: xr.Dataset) -> tuple[float | None, float | None]:
    sizes = []
    for name in (Y, X):
        if name not in ds.coords:
            sizes.append(None)
            continue
        coord = ds[name]
        if ATTR_PIXEL_SIZE in coord.attrs:
            sizes.append(float(coord.attrs[ATTR_PIXEL_SIZE]))
        elif coord.size > 1:
            sizes.append(float(np.median(np.abs(np.diff(coord.values)))))
        else:
            sizes.append(None)
    return sizes[0], sizes[1]


def _split_particles(datasets: Sequence[xr.Dataset]) -> list[tuple[str, str, xr.Dataset]]:
    """(name, condition, Dataset without particle coords) for every particle of ``datasets``."""
    stage = "combine_particles"
    items = []
    for i, ds in enumerate(datasets):
        require_dataset(ds, stage)
        if PARTICLE in ds.dims:
            for j in range(ds.sizes[PARTICLE]):
                one = ds.isel({PARTICLE: j})
                name = str(one[PARTICLE].values) if PARTICLE in one.coords else f"{i}-{j}"
                condition = (
                    str(one[CONDITION].values)
                    if CONDITION in one.coords
                    else str(ds.attrs.get(ATTR_CONDITION, UNSPECIFIED_CONDITION))
                )
                items.append((name, condition, one))
            continue
        if ATTR_PARTICLE not in ds.attrs:
            raise SchemaError(
                f"{stage}: Dataset {i} has no attrs[{ATTR_PARTICLE!r}] naming its particle; set "
                f"ds.attrs[{ATTR_PARTICLE!r}] = 'P1' (and attrs[{ATTR_CONDITION!r}]) before combining."
            )
        items.append((str(ds.attrs[ATTR_PARTICLE]), str(ds.attrs.get(ATTR_CONDITION, UNSPECIFIED_CONDITION)), ds))
    names = [name for name, _, _ in items]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SchemaError(
            f"{stage}: particle names must be unique, {duplicates} occur more than once; "
            f"rename them in attrs[{ATTR_PARTICLE!r}]."
        )
    return [
        (name, cond, ds.drop_vars([c for c in (PARTICLE, CONDITION) if c in ds.coords])) for name, cond, ds in items
    ]


def _fill_value(dtype: np.dtype) -> Any:
    """Padding value of a dtype: NaN for floats/complex, False for bool, −1 for integers."""
    if np.issubdtype(dtype, np.bool_):
        return False
    if np.issubdtype(dtype, np.integer):
        return MISSING_DOMAIN
    if np.issubdtype(dtype, np.inexact):
        return np.nan
    return None


def combine_particles(datasets: Sequence[xr.Dataset] | xr.Dataset) -> xr.Dataset:
    """Stack per-particle Datasets along a new ``particle`` dim on one padded pixel grid.

    Parameters
    ----------
    datasets : sequence of xarray.Dataset
        One Dataset per particle (any stage: typically after ``chemical_state``), each
        naming its particle in ``attrs["particle"]`` and optionally its condition in
        ``attrs["condition"]``. Datasets that already have a ``particle`` dim are split
        into their particles first.

    Returns
    -------
    xarray.Dataset
        Every variable gains a leading ``particle`` dim (coord = particle names, non-dim
        coord ``condition``). y/x are pixel-offset coordinates ``i × pixel_size`` [m]
        from each particle's own first pixel (attr ``pixel_size`` = the first particle's);
        smaller grids are padded at the far end with NaN (float/complex), False (bool)
        or −1 (integers, e.g. ``domain``). Other dims of different lengths (scan points,
        iterations) are padded the same way. Attrs shared by all particles are kept.

    Raises
    ------
    SchemaError
        Missing or duplicate particle names, pixel sizes differing by more than 1 %,
        or different energy grids.
    """
    _checks.particle_datasets(datasets)
    stage = "combine_particles"
    if isinstance(datasets, xr.Dataset):
        datasets = [datasets]
    if len(datasets) == 0:
        raise SchemaError(f"{stage} needs at least one Dataset.")
    items = _split_particles(datasets)

    reference = None
    for name, _, ds in items:
        sizes = _pixel_sizes(ds)
        if reference is None and sizes[0] is not None:
            reference = sizes
        for axis, size, ref in zip((Y, X), sizes, reference or (None, None), strict=True):
            if size is not None and ref is not None and abs(size - ref) > PIXEL_SIZE_RTOL * ref:
                raise SchemaError(
                    f"{stage}: particle {name!r} has {axis} pixel size {size:.4g} m, the first "
                    f"particle {ref:.4g} m (> 1 % apart); resample to a common pixel size "
                    "(reconstruct(pixel_size=...)) before combining."
                )
    energies = [np.asarray(ds[ENERGY].values, float) for _, _, ds in items if ENERGY in ds.coords]
    for e in energies[1:]:
        if e.shape != energies[0].shape or not np.allclose(e, energies[0], rtol=0, atol=1e-6):
            raise SchemaError(
                f"{stage}: particles have different energy grids; interpolate them to one grid "
                "(ds.interp(energy=...)) before combining."
            )

    prepared, temporary, fills = [], set(), {}
    for _, _, ds in items:
        coords = {}
        for axis, size in zip((Y, X), reference or (None, None), strict=True):
            if axis in ds.dims and size is not None:
                coords[axis] = length_coord(axis, np.arange(ds.sizes[axis]) * size, size)
        ds = ds.assign_coords(coords)
        bare = [d for d in ds.dims if d not in ds.indexes]  # e.g. scan: give an index so outer join pads
        temporary.update(bare)
        ds = ds.assign_coords({d: np.arange(ds.sizes[d]) for d in bare})
        for name, da in ds.data_vars.items():
            fill = _fill_value(da.dtype)
            if fill is not None:
                fills.setdefault(name, fill)
        prepared.append(ds)
    combined = xr.concat(
        prepared,
        dim=PARTICLE,
        data_vars="all",
        coords="different",
        compat="equals",
        join="outer",
        fill_value=fills,
        combine_attrs="drop_conflicts",
    )
    combined = combined.drop_vars([d for d in temporary if d in combined.coords])
    origin = "pixel offset from each particle's own first pixel (combine_particles)"
    for axis, size in zip((Y, X), reference or (None, None), strict=True):
        if axis in combined.dims and size is not None:
            combined = combined.assign_coords({axis: length_coord(axis, combined[axis].values, size)})
            combined[axis].attrs["origin"] = origin
    combined = combined.assign_coords(
        {
            PARTICLE: _coord(PARTICLE, [n for n, _, _ in items]),
            CONDITION: variable(CONDITION, np.asarray([c for _, c, _ in items]), dims=(PARTICLE,)),
        }
    )
    for attr in (ATTR_PARTICLE, ATTR_CONDITION):
        combined.attrs.pop(attr, None)
    return provenance.record(
        combined,
        stage,
        {
            "particles": [n for n, _, _ in items],
            "conditions": [c for _, c, _ in items],
            "pixel_size": list(reference) if reference else None,
            "grid": "aligned by pixel index",
        },
    )


# =========================================================================== cluster
def _check_features(ds: xr.Dataset, features: Sequence[str], stage: str) -> tuple[str, ...]:
    ds = require_dataset(ds, stage)
    if isinstance(features, str):
        features = (features,)
    features = tuple(features)
    if not features:
        raise SchemaError(f"{stage} needs at least one feature, e.g. features={DOMAIN_FEATURES}.")
    require_variables(ds, features, stage, "Run ds.ptyxr.chemical_state() first (DESIGN §1e).")
    dims = ds[features[0]].dims
    if dims not in ((Y, X), (PARTICLE, Y, X)):
        raise SchemaError(
            f"{stage}: feature {features[0]!r} has dims {dims}, expected {(Y, X)} or "
            f"{(PARTICLE, Y, X)}; combine particles with ptyxr.combine_particles()."
        )
    for name in features[1:]:
        if ds[name].dims != dims:
            raise SchemaError(
                f"{stage}: all features need the same dims; {name!r} has {ds[name].dims}, {features[0]!r} has {dims}."
            )
    return features


def _valid_points(ds: xr.Dataset, features: tuple[str, ...], stage: str) -> np.ndarray:
    """Feature values (n_valid, f) of the pixels where every feature is finite (computes dask input)."""
    values = xr.Dataset({name: ds[name] for name in features}).compute()  # the fit needs the values
    points = np.stack([np.asarray(values[name].values, dtype=float).ravel() for name in features], axis=1)
    points = points[np.isfinite(points).all(axis=1)]
    if points.shape[0] == 0:
        raise SchemaError(
            f"{stage}: no pixel has finite values of all features {list(features)}; check "
            "fit_valid / chemical_state (all pixels NaN)."
        )
    return points


def _fit(points: np.ndarray, n_clusters: int, seed: int, standardize: bool, stage: str, stats=None):
    if int(n_clusters) != n_clusters or n_clusters < 1:
        raise SchemaError(f"{stage}: the number of clusters must be a positive integer, got {n_clusters!r}.")
    if n_clusters > points.shape[0]:
        raise SchemaError(
            f"{stage}: {n_clusters} clusters requested but only {points.shape[0]} valid pixels; "
            "ask for fewer clusters or provide more valid pixels."
        )
    if standardize:
        mean, std = standardise(points) if stats is None else stats
    else:
        mean, std = np.zeros(points.shape[1]), np.ones(points.shape[1])
    centres, inertia = kmeans((points - mean) / std, int(n_clusters), seed)
    return mean, std, centres, inertia


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
        per_group = [sums.isel({PARTICLE: np.flatnonzero(idx == g)}).sum(PARTICLE) for g in groups]
    else:
        per_group = [sums]
    per_group = xr.concat(per_group, dim=GROUP).drop_vars([PARTICLE, CONDITION], errors="ignore")
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


def cluster(
    ds: xr.Dataset,
    n_clusters: int = 6,
    features: Sequence[str] = DOMAIN_FEATURES,
    seed: int = 0,
    weights: str | xr.DataArray | None = VANADIUM_DENSITY,
    standardize: bool = True,
) -> xr.Dataset:
    """k-means chemical domains over all particles (paper §2.4; DESIGN §1f).

    Parameters
    ----------
    ds : xarray.Dataset
        Chemical-state maps (DESIGN §1e) with a ``particle`` dim (see
        :func:`combine_particles`) or of a single particle (dims y, x).
    n_clusters : int
        Number of domains k (the paper's 6).
    features : sequence of str
        Feature variables (default edge energy [eV], Re[N_e^eff]/N_V [1], PE/Δμt [eV]).
    seed : int
        ``random_state`` of k-means: same seed and data → identical labels.
    weights : str, DataArray or None
        Per-pixel weights of the fractions (default N_V, ``vanadium_density``); None counts pixels.
    standardize : bool
        z-score the features over the valid pixels before k-means (default; see module notes).

    Returns
    -------
    xarray.Dataset
        ``ds`` plus ``domain`` ([particle,] y, x; int16, −1 = missing, cf ``flag_values``/
        ``flag_meanings``), ``cluster_center`` (cluster, feature; original units),
        ``fraction`` (group, cluster; rows sum to 1) and, when ``absorption``, ``a``, ``b1``
        are present, ``cluster_spectrum`` (cluster, energy). Clusters are numbered by
        ascending edge-energy centre (:data:`ORDER_RULE`).

    Raises
    ------
    SchemaError
        No or missing features, no valid pixel, more clusters than valid pixels, missing weights.
    """
    _checks.arguments("cluster", locals())
    stage = "cluster"
    features = _check_features(ds, features, stage)
    if isinstance(weights, str):
        require_variables(ds, (weights,), stage, "Pass weights=None to count pixels instead.")
        weights = ds[weights]
    points = _valid_points(ds, features, stage)
    mean, std, centres, inertia = _fit(points, n_clusters, seed, standardize, stage)
    order = order_clusters(centres * std + mean)  # rule applied in original units
    centres = centres[order]
    k = centres.shape[0]

    domain = xr.apply_ufunc(
        label_maps,
        *(ds[name] for name in features),
        kwargs={"mean": mean, "std": std, "centres": centres},
        dask="parallelized",
        output_dtypes=[np.int16],
    )
    flags = {
        "flag_values": np.arange(MISSING_DOMAIN, k, dtype=np.int16),
        "flag_meanings": " ".join(["missing"] + [f"cluster_{c}" for c in range(k)]),
        "order_rule": ORDER_RULE,
    }
    domain = with_attrs(domain, DOMAIN, **flags)
    units = [str(ds[name].attrs.get(ATTR_UNITS, "")) for name in features]
    center = xr.DataArray(
        centres * std + mean,
        dims=(CLUSTER, FEATURE),
        name=CLUSTER_CENTER,
        attrs=attrs_of(
            CLUSTER_CENTER,
            feature_units=" ".join(units),
            standardisation=STANDARDISATION if standardize else "none",
            standardisation_mean=mean.tolist(),
            standardisation_std=std.tolist(),
            inertia=inertia,
            n_valid_pixels=int(points.shape[0]),
            order_rule=ORDER_RULE,
        ),
    )
    conditions = _conditions(ds, PARTICLE in ds[features[0]].dims)
    fraction = with_attrs(
        _fractions(domain, weights, k, conditions),
        FRACTION,
        weights=weights.name if weights is not None and weights.name else "pixel count",
    )
    new = {DOMAIN: domain, CLUSTER_CENTER: center, FRACTION: fraction}
    if all(name in ds for name in (ABSORPTION, _A, _B1)):
        new[CLUSTER_SPECTRUM] = with_attrs(
            _cluster_spectra(ds, domain, k),
            CLUSTER_SPECTRUM,
            formula="mean over the cluster's pixels of (absorption - a)/b1",
        )
    out = ds.drop_vars([n for n in (*_OUTPUTS, CLUSTER, FEATURE, GROUP) if n in ds.variables])
    out = out.assign(new).assign_coords(
        {CLUSTER: _coord(CLUSTER, np.arange(k, dtype=np.int16)), FEATURE: _coord(FEATURE, list(features))}
    )
    return provenance.record(
        out,
        stage,
        {
            "n_clusters": int(n_clusters),
            "features": list(features),
            "seed": seed,
            "weights": fraction.attrs["weights"],
            "standardize": standardize,
            "standardisation": STANDARDISATION if standardize else "none",
            "order_rule": ORDER_RULE,
            "kmeans": "sklearn.cluster.KMeans(n_init=10, random_state=seed), fitted on all valid pixels",
            "inertia": inertia,
            "n_valid_pixels": int(points.shape[0]),
        },
    )


def elbow(
    ds: xr.Dataset,
    k: Sequence[int] = range(1, 13),
    features: Sequence[str] = DOMAIN_FEATURES,
    seed: int = 0,
    standardize: bool = True,
    sample: int | None = None,
    progress: bool = True,
) -> xr.DataArray:
    """Within-cluster SSE (k-means inertia) against the number of clusters (paper Fig. S3).

    Parameters
    ----------
    ds : xarray.Dataset
        Chemical-state maps, as for :func:`cluster`.
    k : sequence of int
        Numbers of clusters to try.
    features, seed, standardize
        As for :func:`cluster` (same standardisation, same k-means settings).
    sample : int, optional
        Fit each k on a random subset of this many valid pixels (drawn with ``seed``) and
        scale its SSE by n_valid/sample, for speed on large maps (k-means time grows
        with pixels × k × n_init: ≈ 55 s for k = 1…12 on 1.2e5 pixels on 2 cores).
        The standardisation still uses all valid pixels. Default: all pixels.
    progress : bool
        Show a progress bar over k.

    Returns
    -------
    xarray.DataArray
        ``inertia`` over dim ``n_clusters`` (SSE of the standardised features), with attrs
        ``suggested_k`` (:func:`knee`, rule in ``elbow_rule``), ``features``, ``seed``,
        ``n_valid_pixels``, ``sample``.

    Raises
    ------
    SchemaError
        No or missing features, no valid pixel, a k above the number of valid pixels or below 1.
    """
    _checks.arguments("elbow", locals())
    stage = "elbow"
    features = _check_features(ds, features, stage)
    ks = [int(v) for v in k]
    if not ks:
        raise SchemaError(f"{stage} needs at least one number of clusters in k.")
    points = _valid_points(ds, features, stage)
    n_valid = points.shape[0]
    scale = 1.0
    subset = points
    if sample is not None:
        if int(sample) != sample or sample < 1:
            raise SchemaError(f"{stage}: sample must be a positive number of pixels, got {sample!r}.")
        if sample < n_valid:
            subset = points[np.random.default_rng(seed).choice(n_valid, int(sample), replace=False)]
            scale = n_valid / int(sample)  # SSE is a sum over pixels: rescale to the full map
    stats = standardise(points) if standardize else None
    sse = [
        scale * _fit(subset, n, seed, standardize, stage, stats)[3]
        for n in progress_bar(ks, enabled=progress, desc=stage)
    ]
    suggested = knee(np.asarray(ks), np.asarray(sse))
    params = {
        "k": ks,
        "features": list(features),
        "seed": seed,
        "standardize": standardize,
        "standardisation": STANDARDISATION if standardize else "none",
        "elbow_rule": ELBOW_RULE,
        "n_valid_pixels": n_valid,
        "sample": int(subset.shape[0]),
        "suggested_k": suggested,
    }
    record = provenance.record(xr.Dataset(), stage, params)
    return xr.DataArray(
        np.asarray(sse),
        dims=N_CLUSTERS,
        coords={N_CLUSTERS: _coord(N_CLUSTERS, ks)},
        name=INERTIA,
        attrs={
            **spec(INERTIA).attrs,
            "suggested_k": suggested,
            "elbow_rule": ELBOW_RULE,
            "features": " ".join(features),
            "seed": seed,
            "n_valid_pixels": n_valid,
            "sample": int(subset.shape[0]),
            **record.attrs,
        },
    )
