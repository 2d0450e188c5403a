"""Chemical domains: combine particles, k-means clustering, elbow curve, choice of k (DESIGN §1f).

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
* **N_V-weighted objective** (``weighted_fit=True``, opt-in). k-means then minimises
  Σ N_V ‖z − c‖², the fractions' weighting: thin low-N_V rim pixels cannot pull a centre
  or take a cluster of their own (artefact rim of 23 % of the pixels holding ~1 % of N_V:
  unweighted ARI 0.53–0.70 at k = 3, weighted 0.99–1.0). Not the default: a genuine thin
  surface domain (the paper's edge clusters) is low-N_V too and loses its cluster
  (simulated chain, k = true + 1: fraction error 0.035 → 0.06).
* **Robust scaling is optional, not default.** ``standardize="robust"`` (median,
  IQR/1.349) resists far-off pixels but on multimodal features the dominant domain's IQR
  rules the scale; on simulated chain output it lowered ARI (single-domain) from 0.97 to
  0.66–0.96 (docs/design-notes/domains-robust.md).
* **Outliers** (``outlier_threshold``, default None). A valid pixel more than the
  threshold in robust σ of its cluster from the centre AND farther from it than the
  nearest other centre (mixed pixels lie in between centres and stay labelled) is left
  unlabelled and reported in ``domain_outlier``/``outlier_fraction``; k-means is
  refitted without such pixels.
* **Coverage.** ``labelled_fraction`` per particle (of ``material`` pixels when present)
  says how much of each particle the fractions describe; −1 pixels are either without a
  valid fit or outliers (``domain_outlier``).
* **Fraction uncertainty.** ``fraction_low``/``fraction_high``: a hierarchical bootstrap
  (particles of each condition resampled, then each particle's pixels Poisson-reweighted),
  labels fixed, seeded. Pixels are spatially correlated, so the pixel level alone is
  optimistic; the particle level carries the particle-to-particle spread.
* **Choosing k.** :func:`choose_k` reports the elbow, the mean silhouette (largest wins)
  and the gap statistic (Tibshirani et al. 2001: smallest k with Gap(k) ≥ Gap(k+1) −
  s_(k+1), uniform references in the principal-axes box) side by side.
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
    DOMAIN_OUTLIER,
    ENERGY,
    FEATURE,
    FIT_PARAMETERS,
    FRACTION,
    FRACTION_HIGH,
    FRACTION_LOW,
    GAP,
    GAP_STDERR,
    GROUP,
    INERTIA,
    LABELLED_FRACTION,
    MATERIAL,
    MISSING_DOMAIN,
    N_CLUSTERS,
    OUTLIER_FRACTION,
    PARTICLE,
    SILHOUETTE,
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
from ptyxr.stage import Recorded, stage

_A, _B1, *_ = FIT_PARAMETERS
#: Condition given to particles whose Dataset names none.
UNSPECIFIED_CONDITION = "unspecified"
#: k-means on fewer points than this runs single-threaded (see :func:`kmeans`).
SINGLE_THREAD_POINTS = 50_000
#: Defaults of :func:`cluster` (chosen by measurement: docs/design-notes/domains-robust.md).
DEFAULT_STANDARDIZE = "zscore"
DEFAULT_WEIGHTED_FIT = False
DEFAULT_OUTLIER_THRESHOLD: float | None = None
DEFAULT_BOOTSTRAP = 200
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
STANDARDISATIONS = {
    "zscore": STANDARDISATION,
    "robust": "robust per feature over all valid pixels: (f - median)/(IQR/1.349)",
    "none": "none",
}
GAP_RULE = (
    "smallest k with Gap(k) >= Gap(k+1) - s_(k+1) (Tibshirani, Walther & Hastie 2001), uniform references "
    "in the principal-axes box of the standardised features"
)
#: IQR of a normal distribution in units of its σ (2 × 0.6745).
IQR_PER_SIGMA = 1.349
#: σ of a normal distribution in units of its median absolute deviation (1/0.6745).
MAD_PER_SIGMA = 1.4826
#: Internal label of outlier pixels in :func:`label_maps` (reported as −1 plus ``domain_outlier``).
OUTLIER_CODE = -2
OUTLIER_RULE = (
    "valid pixel more than outlier_threshold robust sigma (per-cluster 1.4826*MAD per standardised feature) "
    "from its nearest centre AND farther from it than that centre's nearest other centre"
)
BOOTSTRAP_RULE = (
    "hierarchical bootstrap per group: particles resampled with replacement (when the group has > 1), "
    "then each particle's labelled pixels Poisson(1)-reweighted; labels fixed; percentile interval"
)
_OUTPUTS = (
    DOMAIN,
    DOMAIN_OUTLIER,
    LABELLED_FRACTION,
    OUTLIER_FRACTION,
    CLUSTER_CENTER,
    FRACTION,
    FRACTION_LOW,
    FRACTION_HIGH,
    CLUSTER_SPECTRUM,
)
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
def standardise(points: np.ndarray, method: str = "zscore") -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale per column of ``points`` (n, f); a zero scale becomes 1.

    ``method="zscore"``: mean and population std. ``"robust"``: median and IQR/1.349 (the
    std of a normal distribution; a few far-off pixels cannot compress the other pixels'
    spread as they do the std). ``"none"``: 0 and 1.
    """
    if method == "none":
        return np.zeros(points.shape[1]), np.ones(points.shape[1])
    if method == "robust":
        centre = np.median(points, axis=0)
        q1, q3 = np.percentile(points, [25.0, 75.0], axis=0)
        scale = (q3 - q1) / IQR_PER_SIGMA
        std = points.std(axis=0)
        scale = np.where(scale > 0, scale, std)  # > half the pixels equal: fall back to the std
    elif method == "zscore":
        centre, scale = points.mean(axis=0), points.std(axis=0)
    else:
        raise ValueError(f"unknown standardisation {method!r}")
    scale = np.where(scale > 0, scale, 1.0)  # a constant feature carries no information: leave it unscaled
    return centre, scale


def kmeans(
    points: np.ndarray, n_clusters: int, seed: int = 0, n_init: int = 10, sample_weight: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """k-means centres (k, f) and inertia of ``points`` (n, f) (scikit-learn, k-means++ init).

    ``sample_weight`` (n,) weighs each point in the objective Σ w ‖x − c‖² and in the centres.

    Below :data:`SINGLE_THREAD_POINTS` points scikit-learn runs on one OpenMP thread: there
    the threads gain nothing, and on a busy machine their spin-waiting made a 4 000-pixel
    elbow curve 60× slower (22 s instead of 0.4 s, measured with 2 cores under load 8).
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    limits = 1 if points.shape[0] < SINGLE_THREAD_POINTS else None
    with threadpool_limits(limits=limits, user_api="openmp"):
        model = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed).fit(points, sample_weight=sample_weight)
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


def cluster_spread(points: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Robust spread (k, f) of each cluster's points about its centre: 1.4826 × median |x − c|.

    A cluster with no points, or whose points mostly coincide with the centre, gets the
    spread of all points about their centres (then 1e-6 if that is 0 too).
    """
    dev = np.abs(points - centres[labels])
    pooled = MAD_PER_SIGMA * np.median(dev, axis=0) if dev.size else np.ones(centres.shape[1])
    pooled = np.where(pooled > 0, pooled, 1e-6)
    spread = np.empty_like(centres)
    for c in range(centres.shape[0]):
        mine = dev[labels == c]
        spread[c] = MAD_PER_SIGMA * np.median(mine, axis=0) if mine.shape[0] else pooled
    return np.where(spread > 0, spread, pooled)


def centre_separation(centres: np.ndarray) -> np.ndarray:
    """Distance (k,) of each centre to its nearest other centre (inf for k = 1)."""
    d = np.sqrt(((centres[:, None, :] - centres[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1)


def outliers(
    points: np.ndarray,
    labels: np.ndarray,
    centres: np.ndarray,
    spread: np.ndarray,
    separation: np.ndarray,
    threshold: float,
) -> np.ndarray:
    """True where a point is far off its nearest centre: :data:`OUTLIER_RULE`.

    Both conditions must hold: more than ``threshold`` robust σ from the centre
    (√Σ_f ((x_f − c_f)/spread_f)²) AND farther from it than the nearest other centre is.
    The second keeps pixels that mix two domains (in between two centres) labelled, even
    when the clusters are tight.
    """
    offset = points - centres[labels]
    sigma = np.sqrt(((offset / spread[labels]) ** 2).sum(axis=1))
    distance = np.sqrt((offset**2).sum(axis=1))
    return (sigma > threshold) & (distance > separation[labels])


def label_maps(
    *features: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    centres: np.ndarray,
    spread: np.ndarray | None = None,
    separation: np.ndarray | None = None,
    threshold: float | None = None,
) -> np.ndarray:
    """Cluster label of every pixel of the feature maps (same shapes); −1 where any is non-finite.

    ``centres`` (and ``spread``, ``separation``) are in standardised units, ``(f − mean)/std``.
    With ``threshold``, pixels flagged by :func:`outliers` get :data:`OUTLIER_CODE`.
    """
    stacked = np.stack([np.asarray(f, dtype=float) for f in features], axis=-1)
    flat = stacked.reshape(-1, stacked.shape[-1])
    valid = np.isfinite(flat).all(axis=1)
    labels = np.full(flat.shape[0], MISSING_DOMAIN, dtype=np.int16)
    if valid.any():
        z = (flat[valid] - mean) / std
        lab = nearest_centre(z, centres)
        if threshold is not None:
            lab[outliers(z, lab, centres, spread, separation, threshold)] = OUTLIER_CODE  # type: ignore[arg-type]
        labels[valid] = lab
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
    sizes: list[float | None] = []
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

    prepared: list[xr.Dataset] = []
    temporary: set[Any] = set()
    fills: dict[Any, Any] = {}
    for _, _, ds in items:
        coords = {}
        for axis, size in zip((Y, X), reference or (None, None), strict=True):
            if axis in ds.dims and size is not None:
                coords[axis] = length_coord(axis, np.arange(ds.sizes[axis]) * size, size)
        ds = ds.assign_coords(coords)
        bare = [d for d in ds.dims if d not in ds.indexes]  # e.g. scan: give an index so outer join pads
        temporary.update(bare)
        ds = ds.assign_coords({d: np.arange(ds.sizes[d]) for d in bare})
        for var_name, da in ds.data_vars.items():
            fill = _fill_value(da.dtype)
            if fill is not None:
                fills.setdefault(var_name, fill)
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


def _feature_table(ds: xr.Dataset, features: tuple[str, ...], stage: str) -> tuple[np.ndarray, np.ndarray]:
    """Feature values of every pixel (n_pixels, f) and the mask (n_pixels,) where all are finite.

    Computes dask input: the k-means fit needs the values.
    """
    values = xr.Dataset({name: ds[name] for name in features}).compute()
    table = np.stack([np.asarray(values[name].values, dtype=float).ravel() for name in features], axis=1)
    valid = np.isfinite(table).all(axis=1)
    if not valid.any():
        raise SchemaError(
            f"{stage}: no pixel has finite values of all features {list(features)}; check "
            "fit_valid / chemical_state (all pixels NaN)."
        )
    return table, valid


def _valid_points(ds: xr.Dataset, features: tuple[str, ...], stage: str) -> np.ndarray:
    """Feature values (n_valid, f) of the pixels where every feature is finite (computes dask input)."""
    table, valid = _feature_table(ds, features, stage)
    return table[valid]


def _standardisation(standardize: bool | str, stage: str) -> str:
    """Name of the standardisation: True → "zscore", False/None → "none", or one of STANDARDISATIONS."""
    if standardize is True:
        return "zscore"
    if standardize is False or standardize is None:
        return "none"
    if isinstance(standardize, str) and standardize in STANDARDISATIONS:
        return standardize
    raise SchemaError(
        f"{stage}: standardize must be True/False or one of {sorted(STANDARDISATIONS)}, got {standardize!r}; "
        "use standardize='robust' for median/IQR scaling."
    )


def _fit(
    points: np.ndarray,
    n_clusters: int,
    seed: int,
    standardize: bool | str,
    stage: str,
    stats=None,
    sample_weight: np.ndarray | None = None,
):
    if int(n_clusters) != n_clusters or n_clusters < 1:
        raise SchemaError(f"{stage}: the number of clusters must be a positive integer, got {n_clusters!r}.")
    if n_clusters > points.shape[0]:
        raise SchemaError(
            f"{stage}: {n_clusters} clusters requested but only {points.shape[0]} valid pixels; "
            "ask for fewer clusters or provide more valid pixels."
        )
    method = _standardisation(standardize, stage)
    mean, std = standardise(points, method) if stats is None else stats
    centres, inertia = kmeans((points - mean) / std, int(n_clusters), seed, sample_weight=sample_weight)
    return mean, std, centres, inertia


def bootstrap_fractions(
    labels: np.ndarray,
    weights: np.ndarray,
    particle_index: np.ndarray,
    groups: Sequence[Sequence[int]],
    k: int,
    n_boot: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval (group, cluster) of weighted cluster fractions (:data:`BOOTSTRAP_RULE`).

    Parameters
    ----------
    labels, weights, particle_index : numpy.ndarray
        Cluster label (0 … k−1), weight and particle number of every labelled pixel.
    groups : sequence of sequences of int
        Particle numbers of each group (condition).
    k : int
        Number of clusters.
    n_boot : int
        Bootstrap replicates.
    confidence : float
        Coverage of the interval (0.95: 2.5th to 97.5th percentile).
    seed : int
        Seed of the resampling (same seed and data → same interval).

    Returns
    -------
    low, high : numpy.ndarray
        (group, cluster) bounds; NaN for a group without labelled pixels.
    """
    rng = np.random.default_rng(seed)
    n_particles = int(max((max(g) for g in groups if len(g)), default=-1)) + 1
    # per particle and replicate: Σ weight × Poisson(1) count per cluster (pixel level)
    sums = np.zeros((n_boot, n_particles, k))
    for p in range(n_particles):
        mine = particle_index == p
        lab, w = labels[mine], weights[mine]
        for b in range(n_boot):
            sums[b, p] = np.bincount(lab, weights=w * rng.poisson(1.0, lab.size), minlength=k)[:k]
    low = np.full((len(groups), k), np.nan)
    high = np.full((len(groups), k), np.nan)
    alpha = 100 * (1 - confidence) / 2
    for g, group in enumerate(groups):
        members = np.asarray(group, dtype=int)
        if members.size == 0:
            continue
        # particle level: draw the group's particles with replacement (a single one is kept)
        draws = members[rng.integers(members.size, size=(n_boot, members.size))] if members.size > 1 else None
        totals = np.stack(
            [sums[b, members if draws is None else draws[b]].sum(axis=0) for b in range(n_boot)]
        )  # (n_boot, k)
        norm = totals.sum(axis=1, keepdims=True)
        fractions = totals[norm[:, 0] > 0] / norm[norm[:, 0] > 0]
        if fractions.shape[0]:
            low[g], high[g] = np.percentile(fractions, [alpha, 100 - alpha], axis=0)
    return low, high


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


def gap_statistic(
    points: np.ndarray, ks: Sequence[int], seed: int = 0, n_references: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gap statistic (Tibshirani, Walther & Hastie 2001) of k-means on ``points`` (n, f).

    Gap(k) = E*[log W_k] − log W_k, W_k the within-cluster sum of squares, E* the mean over
    ``n_references`` uniform reference sets in the box of the data's principal axes (their
    reference (b)). Returns ``(gap, s_k, log W_k)``, s_k = sd_k √(1 + 1/B).
    """
    rng = np.random.default_rng(seed)
    centred = points - points.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    rotated = centred @ vt.T
    lo, hi = rotated.min(axis=0), rotated.max(axis=0)
    log_w = np.array([np.log(max(kmeans(points, int(k), seed, n_init=3)[1], 1e-300)) for k in ks])
    ref = np.empty((n_references, len(ks)))
    for b in range(n_references):
        uniform = rng.uniform(lo, hi, size=points.shape) @ vt  # back to the data's axes
        ref[b] = [np.log(max(kmeans(uniform, int(k), seed, n_init=3)[1], 1e-300)) for k in ks]
    gap = ref.mean(axis=0) - log_w
    s_k = ref.std(axis=0) * np.sqrt(1 + 1 / n_references)
    return gap, s_k, log_w


def gap_choice(ks: Sequence[int], gap: np.ndarray, s_k: np.ndarray) -> int:
    """Smallest k with Gap(k) ≥ Gap(k+1) − s_{k+1} (Tibshirani et al. 2001); the largest k if none."""
    ks = list(ks)
    for i in range(len(ks) - 1):
        if gap[i] >= gap[i + 1] - s_k[i + 1]:
            return int(ks[i])
    return int(ks[-1])


def choose_k(
    ds: xr.Dataset,
    k: Sequence[int] = range(1, 11),
    features: Sequence[str] = DOMAIN_FEATURES,
    seed: int = 0,
    standardize: bool | str = DEFAULT_STANDARDIZE,
    sample: int | None = 3000,
    n_references: int = 10,
    progress: bool = True,
) -> xr.Dataset:
    """Three criteria for the number of domains k: elbow, silhouette and gap statistic.

    Parameters
    ----------
    ds : xarray.Dataset
        Chemical-state maps, as for :func:`cluster`.
    k : sequence of int
        Numbers of clusters to try (include 1 so the gap statistic can say "no structure").
    features, seed, standardize
        As for :func:`cluster` (same standardisation and k-means settings, unweighted).
    sample : int or None
        Evaluate on a random subset of this many valid pixels (drawn with ``seed``): the
        silhouette costs O(n²) and the gap statistic runs k-means on ``n_references``
        reference sets per k. None: all pixels.
    n_references : int
        Uniform reference sets of the gap statistic (Tibshirani et al.: B = 10 suffices
        for the choice; more lowers s_k).
    progress : bool
        Progress bar over k.

    Returns
    -------
    xarray.Dataset
        Over dim ``n_clusters``: ``inertia`` (SSE, scaled to all valid pixels as in
        :func:`elbow`), ``silhouette`` (mean silhouette score; NaN for k = 1), ``gap`` and
        ``gap_stderr``. Attrs ``suggested_k_elbow`` (:func:`knee`), ``suggested_k_silhouette``
        (largest mean silhouette), ``suggested_k_gap`` (:func:`gap_choice`); each variable
        carries its own ``suggested_k``.
    """
    from sklearn.metrics import silhouette_score

    stage = "choose_k"
    features = _check_features(ds, features, stage)
    ks = sorted({int(v) for v in k})
    if not ks or ks[0] < 1:
        raise SchemaError(f"{stage} needs numbers of clusters >= 1 in k, got {list(k)!r}.")
    method = _standardisation(standardize, stage)
    points = _valid_points(ds, features, stage)
    n_valid = points.shape[0]
    if ks[-1] > n_valid:
        raise SchemaError(f"{stage}: k up to {ks[-1]} requested but only {n_valid} valid pixels; ask for fewer.")
    mean, std = standardise(points, method)
    z = (points - mean) / std
    if sample is not None:
        if int(sample) != sample or sample < 2:
            raise SchemaError(f"{stage}: sample must be a number of pixels >= 2, got {sample!r}.")
        if sample < n_valid:
            z = z[np.random.default_rng(seed).choice(n_valid, int(sample), replace=False)]
    scale = n_valid / z.shape[0]
    sse: list[float] = []
    sil: Any = []
    for n in progress_bar(ks, enabled=progress, desc=stage):
        centres, inertia = kmeans(z, n, seed)
        sse.append(scale * inertia)
        labels = nearest_centre(z, centres)
        ok = 1 < np.unique(labels).size < z.shape[0]
        sil.append(float(silhouette_score(z, labels)) if ok else np.nan)
    gap, s_k, _ = gap_statistic(z, ks, seed, n_references)
    sil = np.asarray(sil)
    suggested = {
        "elbow": knee(np.asarray(ks), np.asarray(sse)),
        "silhouette": int(ks[int(np.nanargmax(sil))]) if np.isfinite(sil).any() else int(ks[0]),
        "gap": gap_choice(ks, gap, s_k),
    }
    coord = {N_CLUSTERS: _coord(N_CLUSTERS, ks)}
    out = xr.Dataset(
        {
            INERTIA: xr.DataArray(
                np.asarray(sse),
                dims=N_CLUSTERS,
                attrs=attrs_of(INERTIA, suggested_k=suggested["elbow"], rule=ELBOW_RULE),
            ),
            SILHOUETTE: xr.DataArray(
                sil,
                dims=N_CLUSTERS,
                attrs=attrs_of(
                    SILHOUETTE,
                    suggested_k=suggested["silhouette"],
                    rule="largest mean silhouette (Rousseeuw 1987), k >= 2",
                ),
            ),
            GAP: xr.DataArray(gap, dims=N_CLUSTERS, attrs=attrs_of(GAP, suggested_k=suggested["gap"], rule=GAP_RULE)),
            GAP_STDERR: xr.DataArray(s_k, dims=N_CLUSTERS, attrs=attrs_of(GAP_STDERR)),
        },
        coords=coord,
        attrs={f"suggested_k_{name}": value for name, value in suggested.items()},
    )
    return provenance.record(
        out,
        stage,
        {
            "k": ks,
            "features": list(features),
            "seed": seed,
            "standardize": method,
            "n_valid_pixels": n_valid,
            "sample": int(z.shape[0]),
            "n_references": n_references,
            "gap_rule": GAP_RULE,
            **{f"suggested_k_{name}": value for name, value in suggested.items()},
        },
    )
