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

Layout
------
The package keeps every name importable from ``ptyxr.domains``: the array kernels in
:mod:`ptyxr.domains.kernels` (numpy/scikit-learn), :func:`combine_particles` in
:mod:`ptyxr.domains.combine`, the :func:`cluster` stage in :mod:`ptyxr.domains.clustering`,
:func:`elbow` and :func:`choose_k` in :mod:`ptyxr.domains.choice`, shared defaults and
rules in ``ptyxr.domains._common``.
"""

from __future__ import annotations

from ptyxr.domains._common import (
    BOOTSTRAP_RULE,
    DEFAULT_BOOTSTRAP,
    DEFAULT_OUTLIER_THRESHOLD,
    DEFAULT_STANDARDIZE,
    DEFAULT_WEIGHTED_FIT,
    ELBOW_RULE,
    GAP_RULE,
    ORDER_RULE,
    OUTLIER_RULE,
    PIXEL_SIZE_RTOL,
    UNSPECIFIED_CONDITION,
)
from ptyxr.domains.choice import (
    choose_k,
    elbow,
)
from ptyxr.domains.clustering import (
    cluster,
)
from ptyxr.domains.combine import (
    combine_particles,
)
from ptyxr.domains.kernels import (
    IQR_PER_SIGMA,
    MAD_PER_SIGMA,
    OUTLIER_CODE,
    SINGLE_THREAD_POINTS,
    STANDARDISATION,
    STANDARDISATIONS,
    bootstrap_fractions,
    centre_separation,
    cluster_spread,
    gap_choice,
    gap_statistic,
    kmeans,
    knee,
    label_maps,
    nearest_centre,
    order_clusters,
    outliers,
    standardise,
)

__all__ = [
    "BOOTSTRAP_RULE",
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_OUTLIER_THRESHOLD",
    "DEFAULT_STANDARDIZE",
    "DEFAULT_WEIGHTED_FIT",
    "ELBOW_RULE",
    "GAP_RULE",
    "IQR_PER_SIGMA",
    "MAD_PER_SIGMA",
    "ORDER_RULE",
    "OUTLIER_CODE",
    "OUTLIER_RULE",
    "PIXEL_SIZE_RTOL",
    "SINGLE_THREAD_POINTS",
    "STANDARDISATION",
    "STANDARDISATIONS",
    "UNSPECIFIED_CONDITION",
    "bootstrap_fractions",
    "centre_separation",
    "choose_k",
    "cluster",
    "cluster_spread",
    "combine_particles",
    "elbow",
    "gap_choice",
    "gap_statistic",
    "kmeans",
    "knee",
    "label_maps",
    "nearest_centre",
    "order_clusters",
    "outliers",
    "standardise",
]
