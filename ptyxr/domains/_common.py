"""Defaults, documented rules and xarray helpers shared by the domain stages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ptyxr.schema import (
    ATTR_LONG_NAME,
    ATTR_UNITS,
    CLUSTER,
    CLUSTER_CENTER,
    CLUSTER_SPECTRUM,
    DIMENSIONLESS,
    DOMAIN,
    DOMAIN_FEATURES,
    DOMAIN_OUTLIER,
    FEATURE,
    FIT_PARAMETERS,
    FRACTION,
    FRACTION_HIGH,
    FRACTION_LOW,
    GROUP,
    LABELLED_FRACTION,
    N_CLUSTERS,
    OUTLIER_FRACTION,
    PARTICLE,
    SchemaError,
    X,
    Y,
    require_dataset,
    require_variables,
)

_A, _B1, *_ = FIT_PARAMETERS
#: Condition given to particles whose Dataset names none.
UNSPECIFIED_CONDITION = "unspecified"
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
GAP_RULE = (
    "smallest k with Gap(k) >= Gap(k+1) - s_(k+1) (Tibshirani, Walther & Hastie 2001), uniform references "
    "in the principal-axes box of the standardised features"
)
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


# ------------------------------------------------------------ features of the stages
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
