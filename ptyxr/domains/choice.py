"""Choosing k: the ``elbow`` curve and ``choose_k`` (elbow, silhouette and gap side by side)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ptyxr import checks as _checks
from ptyxr import provenance
from ptyxr.domains._common import DEFAULT_STANDARDIZE, ELBOW_RULE, GAP_RULE, _check_features, _coord, _valid_points
from ptyxr.domains.kernels import (
    STANDARDISATION,
    _fit,
    _standardisation,
    gap_choice,
    gap_statistic,
    kmeans,
    knee,
    nearest_centre,
    standardise,
)
from ptyxr.progress import progress_bar
from ptyxr.schema import (
    DOMAIN_FEATURES,
    GAP,
    GAP_STDERR,
    INERTIA,
    N_CLUSTERS,
    SILHOUETTE,
    SchemaError,
    attrs_of,
    spec,
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
