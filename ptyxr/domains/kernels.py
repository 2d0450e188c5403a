"""Array kernels of the domain clustering (numpy and scikit-learn, no xarray).

Standardisation, k-means with ordered clusters, nearest-centre labels, outliers, the
elbow's knee, the gap statistic and the bootstrap of the fractions: the numerics that
:func:`ptyxr.domains.cluster`, :func:`ptyxr.domains.elbow` and :func:`ptyxr.domains.choose_k`
map over the pooled pixels (module docstring of :mod:`ptyxr.domains` for the choices).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ptyxr.schema import (
    MISSING_DOMAIN,
    SchemaError,
)

#: k-means on fewer points than this runs single-threaded (see :func:`kmeans`).
SINGLE_THREAD_POINTS = 50_000
STANDARDISATION = "z-score per feature over all valid pixels (mean, population std)"
STANDARDISATIONS = {
    "zscore": STANDARDISATION,
    "robust": "robust per feature over all valid pixels: (f - median)/(IQR/1.349)",
    "none": "none",
}
#: IQR of a normal distribution in units of its σ (2 × 0.6745).
IQR_PER_SIGMA = 1.349
#: σ of a normal distribution in units of its median absolute deviation (1/0.6745).
MAD_PER_SIGMA = 1.4826
#: Internal label of outlier pixels in :func:`label_maps` (reported as −1 plus ``domain_outlier``).
OUTLIER_CODE = -2


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
