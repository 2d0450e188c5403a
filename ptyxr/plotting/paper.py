"""The paper's figures (Uematsu et al., PCCP 2023) from ptyxr Datasets, matplotlib only.

Every function takes Datasets following DESIGN §1 and returns a
:class:`matplotlib.figure.Figure` built with the object-oriented API (no pyplot state, so
it works under Agg, in scripts and in notebooks alike: a Figure displays itself in
Jupyter). Conventions shared by all figures:

* images are drawn with ``imshow`` in µm (extent from the ``y``/``x`` coordinates in
  metres), ``origin="lower"`` (y grows upwards), axes hidden, with a scale bar in µm;
* NaN pixels are white, as in the paper (``cmap.with_extremes(bad="white")``);
* colour bars are labelled ``"<long_name> [<units>]"`` from the variable's attrs;
* domain labels use one fixed colour per cluster label everywhere (:data:`CLUSTER_COLORS`),
  −1 (missing) is white.

Datasets may hold one particle (no ``particle`` dim) or several (``particle`` dim, as
from :func:`ptyxr.combine_particles`); :func:`figure1` and :func:`figure2` also accept a
list of per-particle Datasets.

The shared helpers (colours, labels, map panels) live in :mod:`ptyxr.plotting.style` and
are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ptyxr import schema as s
from ptyxr.plotting.style import (  # noqa: F401  (re-exported: the helpers stay importable from here)
    _MICRON,
    BAD_COLOR,
    CLUSTER_COLORS,
    CROP_MARGIN,
    ROBUST_PERCENTILES,
    _colorbar,
    _condition,
    _nice_length,
    _require,
    add_scale_bar,
    cluster_color,
    cluster_colormap,
    crop_to_particle,
    extent_um,
    label,
    particles,
    robust_limits,
    show_map,
    with_bad,
    wrapped_label,
)

#: Default side of the square region averaged for Fig. 1 pixel spectra [m] (paper: 120 nm).
REGION_SIZE = 120e-9
#: Figure resolution used by :func:`save_paper_figures` [dots per inch].
DPI = 120
#: Maps of Fig. 2, top to bottom.
FIGURE2_MAPS = (s.EDGE_ENERGY, s.ELECTRONS_PER_VANADIUM, s.PRE_EDGE_RATIO)
#: Name of the elbow suggestion attr written by ``ptyxr.domains.elbow``.
SUGGESTED_K_ATTR = "suggested_k"


# --------------------------------------------------------------------- Fig. 1
def region_mask(ds: xr.Dataset, centre: tuple[float, float], size: float = REGION_SIZE) -> xr.DataArray:
    """Pixels whose centre lies within the ``size`` × ``size`` square at ``centre`` = (y, x) [m].

    At least the pixel nearest to ``centre`` is included (regions smaller than a pixel).
    """
    y = np.asarray(ds[s.Y].values, dtype=float)
    x = np.asarray(ds[s.X].values, dtype=float)
    in_y = np.abs(y - centre[0]) <= size / 2 + 1e-12 * abs(size)
    in_x = np.abs(x - centre[1]) <= size / 2 + 1e-12 * abs(size)
    in_y[np.argmin(np.abs(y - centre[0]))] = True
    in_x[np.argmin(np.abs(x - centre[1]))] = True
    return xr.DataArray(in_y[:, None] & in_x[None, :], dims=(s.Y, s.X), coords={s.Y: ds[s.Y], s.X: ds[s.X]})


def default_region_centre(ds: xr.Dataset, size: float = REGION_SIZE) -> tuple[float, float]:
    """Centre (y, x) [m] of the Fig. 1 region of one particle.

    When a fit is present: the valid pixel whose ``size`` × ``size`` neighbourhood has the
    largest mean edge jump (``edge_jump``, else ``b1``; NaN counted as 0, so the region
    sits inside the particle rather than on an edge pixel). Else the centroid of
    ``material``; else the centre of the grid.
    """
    from scipy.ndimage import uniform_filter

    y, x = ds[s.Y].values, ds[s.X].values
    for name in (s.EDGE_JUMP, "b1"):
        if name in ds:
            values = np.asarray(ds[name].transpose(s.Y, s.X).values, dtype=float)
            finite = np.isfinite(values)
            if finite.any():
                step = [abs(float(c[1] - c[0])) if c.size > 1 else size for c in (y, x)]
                window = [max(int(round(size / d)), 1) for d in step]
                smooth = uniform_filter(np.where(finite, values, 0.0), size=window, mode="constant")
                iy, ix = np.unravel_index(np.argmax(np.where(finite, smooth, -np.inf)), values.shape)
                return float(y[iy]), float(x[ix])
    if s.MATERIAL in ds and bool(ds[s.MATERIAL].any()):
        rows, cols = np.nonzero(ds[s.MATERIAL].transpose(s.Y, s.X).values)
        return float(np.mean(y[rows])), float(np.mean(x[cols]))
    return float(np.mean(y)), float(np.mean(x))


def region_spectrum(da: xr.DataArray, mask: xr.DataArray) -> np.ndarray:
    """Mean of ``da`` (energy, y, x) over the ``mask`` pixels, ignoring NaN (NaN if none is finite)."""
    values = np.asarray(da.transpose(s.ENERGY, s.Y, s.X).values, dtype=float)[:, mask.values]
    finite = np.isfinite(values)
    count = finite.sum(axis=1)
    total = np.where(finite, values, 0.0).sum(axis=1)
    # explicit mean: np.nanmean warns on all-NaN energies (pytest turns warnings into errors)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


def _spectrum_offset(spectra: list[np.ndarray]) -> float:
    spans = [np.ptp(v[np.isfinite(v)]) for v in spectra if np.isfinite(v).any()]
    span = max(spans) if spans else 1.0
    return _nice_length(span * 5) if span > 0 else 1.0


def figure1(
    ds: xr.Dataset | Sequence[xr.Dataset],
    absorption_energy: float | None = None,
    phase_energy: float | None = None,
    region_size: float = REGION_SIZE,
    region_centres: Sequence[tuple[float, float]] | dict[str, tuple[float, float]] | None = None,
    cmap_absorption: str = "gray_r",
    cmap_phase: str = "gray",
) -> Figure:
    """Paper Fig. 1: absorption and phase images per particle and region spectra.

    Row 1: absorption μt at ``absorption_energy`` (default the highest energy; paper
    5540 eV); row 2: phase at ``phase_energy`` (default the lowest; paper 5420 eV); one
    column per particle, the averaged region outlined. Row 3: the region-averaged
    absorption spectra (offset vertically by a constant step per particle, in particle
    order) and phase spectra.

    Parameters
    ----------
    ds : xarray.Dataset or sequence of Datasets
        DESIGN §1c spectra (``absorption``, ``phase`` with dims energy, y, x), one or
        several particles.
    absorption_energy, phase_energy : float, optional
        Image energies [eV]; the nearest available energy is shown.
    region_size : float
        Side of the square averaging region [m] (paper: 120 nm).
    region_centres : sequence or dict of (y, x) [m], optional
        Region centre per particle (by order or by particle name); default
        :func:`default_region_centre`.
    cmap_absorption, cmap_phase : str
        Colormaps of the two image rows.

    Returns
    -------
    matplotlib.figure.Figure
        Axes carry gids ``absorption:<particle>``, ``phase:<particle>``,
        ``absorption_spectra``, ``phase_spectra``; spectrum lines carry gid
        ``<variable>:<particle>``.
    """
    parts = particles(ds)
    for _, p in parts:
        _require(p, (s.ABSORPTION, s.PHASE), "figure1", "Run ds.ptyxr.spectra() first.")
        s.require_energy(p, "figure1")
    n = len(parts)
    fig = Figure(figsize=(max(2.6 * n, 6.0) + 1.2, 8.0), layout="constrained")
    grid = fig.add_gridspec(3, n, height_ratios=(1, 1, 1.1))
    image_axes: dict[str, list] = {s.ABSORPTION: [], s.PHASE: []}
    images: dict[str, list] = {s.ABSORPTION: [], s.PHASE: []}
    spectra: dict[str, list] = {s.ABSORPTION: [], s.PHASE: []}

    # shared colour limits per row keep particles comparable
    def pick(p: xr.Dataset, var: str, energy: float | None, default: str) -> xr.DataArray:
        e = p[s.ENERGY].values
        target = (e.max() if default == "max" else e.min()) if energy is None else energy
        return p[var].sel({s.ENERGY: target}, method="nearest")

    maps = {
        s.ABSORPTION: [pick(p, s.ABSORPTION, absorption_energy, "max") for _, p in parts],
        s.PHASE: [pick(p, s.PHASE, phase_energy, "min") for _, p in parts],
    }
    for row, (var, cmap) in enumerate(((s.ABSORPTION, cmap_absorption), (s.PHASE, cmap_phase))):
        lo, hi = robust_limits([m.values for m in maps[var]], (0.5, 99.5))
        for col, ((name, p), m) in enumerate(zip(parts, maps[var], strict=True)):
            ax = fig.add_subplot(grid[row, col])
            ax.set_gid(f"{var}:{name}")
            im = show_map(ax, crop_to_particle(m, p), cmap=cmap, vmin=lo, vmax=hi)
            cond = _condition(p)
            if row == 0:
                ax.set_title(name if cond is None else f"{name} ({cond})", fontsize=9)
            image_axes[var].append(ax)
            images[var].append(im)
        energy = float(maps[var][0][s.ENERGY].values)
        cbar = _colorbar(fig, images[var][0], image_axes[var], maps[var][0], shrink=0.9)
        cbar.set_label(f"{wrapped_label(maps[var][0])}\nat {energy:g} eV", fontsize=8)

    # regions and their spectra
    for i, (name, p) in enumerate(parts):
        if region_centres is None:
            centre = default_region_centre(p, region_size)
        elif isinstance(region_centres, dict):
            centre = region_centres.get(name) or default_region_centre(p, region_size)
        else:
            centre = region_centres[i]
        mask = region_mask(p, centre, region_size)
        iy, ix = np.nonzero(mask.values)
        y, x = p[s.Y].values, p[s.X].values
        dy = float(y[1] - y[0]) if y.size > 1 else region_size
        dx = float(x[1] - x[0]) if x.size > 1 else region_size
        for var in (s.ABSORPTION, s.PHASE):
            ax = image_axes[var][i]
            ax.add_patch(
                Rectangle(
                    ((x[ix.min()] - dx / 2) / _MICRON, (y[iy.min()] - dy / 2) / _MICRON),
                    (x[ix.max()] - x[ix.min()] + dx) / _MICRON,
                    (y[iy.max()] - y[iy.min()] + dy) / _MICRON,
                    fill=False,
                    edgecolor=cluster_color(i),
                    linewidth=1.2,
                    gid="region",
                )
            )
            spectra[var].append(region_spectrum(p[var], mask))

    bottom = grid[2, :].subgridspec(1, 2)
    ax_abs, ax_phase = fig.add_subplot(bottom[0, 0]), fig.add_subplot(bottom[0, 1])
    offset = _spectrum_offset(spectra[s.ABSORPTION])
    for i, (name, p) in enumerate(parts):
        e = p[s.ENERGY].values
        ax_abs.plot(
            e,
            spectra[s.ABSORPTION][i] + i * offset,
            "-o",
            ms=2.5,
            lw=1,
            color=cluster_color(i),
            label=name,
            gid=f"{s.ABSORPTION}:{name}",
        )
        ax_phase.plot(
            e, spectra[s.PHASE][i], "-o", ms=2.5, lw=1, color=cluster_color(i), label=name, gid=f"{s.PHASE}:{name}"
        )
    ax_abs.set_gid("absorption_spectra")
    ax_phase.set_gid("phase_spectra")
    first = parts[0][1]
    ax_abs.set_xlabel(label(first[s.ENERGY]))
    ax_phase.set_xlabel(label(first[s.ENERGY]))
    ax_abs.set_ylabel(wrapped_label(first[s.ABSORPTION]), fontsize=8)
    ax_phase.set_ylabel(wrapped_label(first[s.PHASE]), fontsize=8)
    size_nm = region_size * 1e9
    ax_abs.set_title(f"mean over {size_nm:g}×{size_nm:g} nm² regions, offset {offset:g} per particle", fontsize=8)
    ax_phase.set_title(f"mean over {size_nm:g}×{size_nm:g} nm² regions", fontsize=8)
    ax_abs.legend(fontsize=7)
    fig.spectrum_offset = offset  # type: ignore[attr-defined]  # documented for tests/notebooks: absorption line i is mean + i·offset
    return fig


# --------------------------------------------------------------------- Fig. 2
def figure2(
    ds: xr.Dataset | Sequence[xr.Dataset],
    maps: Sequence[str] = FIGURE2_MAPS,
    cmaps: Sequence[str] = ("jet", "viridis", "magma"),
    percentiles: tuple[float, float] = ROBUST_PERCENTILES,
) -> Figure:
    """Paper Fig. 2: chemical-state maps, rows = maps, columns = particles.

    Default rows: edge energy, Re[N_e^eff]/N_V and PE/Δμt (DESIGN §1e). Colour limits are
    shared along a row, from robust percentiles (``percentiles``) of all particles'
    finite values; NaN (invalid fits) is white.

    Parameters
    ----------
    ds : xarray.Dataset or sequence of Datasets
        Output of ``chemical_state`` for one or several particles.
    maps : sequence of str
        Variables to show, top to bottom.
    cmaps : sequence of str
        Colormap per row.
    percentiles : (float, float)
        Lower/upper percentile for the colour limits.

    Returns
    -------
    matplotlib.figure.Figure
        Axes carry gid ``<variable>:<particle>``.
    """
    parts = particles(ds)
    for _, p in parts:
        _require(p, maps, "figure2", "Run ds.ptyxr.chemical_state() first.")
    n, m = len(parts), len(maps)
    fig = Figure(figsize=(2.4 * n + 1.6, 2.3 * m), layout="constrained")
    axes = fig.subplots(m, n, squeeze=False)
    for row, var in enumerate(maps):
        lo, hi = robust_limits([p[var].values for _, p in parts], percentiles)
        image = None
        for col, (name, p) in enumerate(parts):
            ax = axes[row, col]
            ax.set_gid(f"{var}:{name}")
            image = show_map(ax, crop_to_particle(p[var], p), cmap=cmaps[row % len(cmaps)], vmin=lo, vmax=hi)
            if row == 0:
                cond = _condition(p)
                ax.set_title(name if cond is None else f"{name} ({cond})", fontsize=9)
        _colorbar(fig, image, list(axes[row, :]), parts[0][1][var], shrink=0.9)
    return fig


# --------------------------------------------------------------------- Fig. 3
def _density(ax: Any, values: np.ndarray, grid: np.ndarray, color: str, gid: str) -> None:
    """Gaussian KDE of ``values`` on ``grid`` (histogram when the KDE is singular)."""
    from scipy.stats import gaussian_kde

    if values.size >= 2 and np.ptp(values) > 0:
        try:
            ax.plot(grid, gaussian_kde(values)(grid), color=color, lw=1.3, gid=gid)
            return
        except np.linalg.LinAlgError:  # degenerate sample: fall back to a histogram
            pass
    ax.hist(values, bins=grid[:: max(grid.size // 30, 1)], density=True, histtype="step", color=color, gid=gid)


def domain_features(ds: xr.Dataset, features: Sequence[str] = s.DOMAIN_FEATURES) -> dict[int, np.ndarray]:
    """Feature values of each cluster's pixels: ``{label: array (n_pixels, n_features)}``.

    Only pixels with a label ≥ 0 and all features finite are included.
    """
    domain = np.asarray(ds[s.DOMAIN].values)
    stack = np.stack(
        [
            np.asarray(ds[f].broadcast_like(ds[s.DOMAIN]).transpose(*ds[s.DOMAIN].dims).values, dtype=float)
            for f in features
        ],
        axis=-1,
    )
    ok = (domain >= 0) & np.isfinite(stack).all(axis=-1)
    return {int(k): stack[ok & (domain == k)] for k in np.unique(domain[ok])}


def _n_clusters(ds: xr.Dataset) -> int:
    if s.CLUSTER in ds.dims:
        return int(ds.sizes[s.CLUSTER])
    flags = ds[s.DOMAIN].attrs.get("flag_values")
    if flags is not None and np.size(flags):
        return int(np.max(flags)) + 1
    return int(max(np.max(ds[s.DOMAIN].values), 0)) + 1


def figure3(ds: xr.Dataset, features: Sequence[str] = s.DOMAIN_FEATURES) -> Figure:
    """Paper Fig. 3: domain maps, per-cluster feature densities and N_V-weighted fractions.

    Row 1: ``domain`` map per particle, label k drawn in :func:`cluster_color` (k), −1
    white. Row 2: probability density (Gaussian KDE) of each feature per cluster, same
    colours. Row 3: stacked bars of ``fraction`` (group, cluster), one bar per condition,
    with the bootstrap interval (``fraction_low``–``fraction_high``) of each cluster's
    fraction as an error bar through the middle of its segment, when present.

    Parameters
    ----------
    ds : xarray.Dataset
        Output of ``cluster`` (DESIGN §1f) carrying the feature maps.
    features : sequence of str
        Feature variables of the density panels.

    Returns
    -------
    matplotlib.figure.Figure
        Axes gids: ``domain:<particle>``, ``density:<feature>``, ``fraction``; density
        lines gid ``density:<feature>:<label>``; bars gid ``fraction:<group>:<label>``;
        error bars gid ``fraction_low:<group>:<label>``.
    """
    _require(ds, (s.DOMAIN, *features), "figure3", "Run ds.ptyxr.cluster() first.")
    parts = particles(ds)
    n_clusters = _n_clusters(ds)
    n = len(parts)
    n_bottom = len(features) + (1 if s.FRACTION in ds else 0)
    fig = Figure(figsize=(2.8 * max(n, n_bottom) + 1.0, 7.2), layout="constrained")
    rows = fig.add_gridspec(2, 1, height_ratios=(1.1, 1))
    top, lower = rows[0].subgridspec(1, n), rows[1].subgridspec(1, n_bottom)
    cmap, norm = cluster_colormap(n_clusters)
    image = None
    map_axes = []
    for col, (name, p) in enumerate(parts):
        ax = fig.add_subplot(top[0, col])
        ax.set_gid(f"{s.DOMAIN}:{name}")
        labels = p[s.DOMAIN].where(p[s.DOMAIN] >= 0)  # −1 → NaN → white
        image = show_map(ax, crop_to_particle(labels, p), cmap=cmap, norm=norm)
        cond = _condition(p)
        ax.set_title(name if cond is None else f"{name} ({cond})", fontsize=9)
        map_axes.append(ax)
    # image is drawn in the loop above (at least one particle)
    cbar = fig.colorbar(image, ax=map_axes, ticks=np.arange(n_clusters), shrink=0.9)  # type: ignore[arg-type]
    cbar.set_label(wrapped_label(ds[s.DOMAIN], 20), fontsize=8)

    per_cluster = domain_features(ds, features)
    for j, feat in enumerate(features):
        ax = fig.add_subplot(lower[0, j])
        ax.set_gid(f"density:{feat}")
        pooled = np.concatenate([v[:, j] for v in per_cluster.values()]) if per_cluster else np.zeros(1)
        lo, hi = robust_limits(pooled, (0.5, 99.5))
        pad = 0.1 * (hi - lo)
        grid_values = np.linspace(lo - pad, hi + pad, 256)
        for k, values in per_cluster.items():
            _density(ax, values[:, j], grid_values, cluster_color(k), f"density:{feat}:{k}")
        ax.set_xlabel(wrapped_label(ds[feat]), fontsize=8)
        ax.set_ylabel("probability density", fontsize=8)
    if s.FRACTION in ds:
        ax = fig.add_subplot(lower[0, len(features)])
        ax.set_gid(s.FRACTION)
        fraction = ds[s.FRACTION].transpose(s.GROUP, s.CLUSTER)
        groups = (
            [str(g) for g in fraction[s.GROUP].values]
            if s.GROUP in fraction.coords
            else [str(g) for g in range(fraction.sizes[s.GROUP])]
        )
        clusters = fraction[s.CLUSTER].values if s.CLUSTER in fraction.coords else np.arange(fraction.sizes[s.CLUSTER])
        bottom = np.zeros(len(groups))
        bounds = None
        if s.FRACTION_LOW in ds and s.FRACTION_HIGH in ds:
            bounds = [
                np.asarray(ds[n].transpose(s.GROUP, s.CLUSTER).values, float) for n in (s.FRACTION_LOW, s.FRACTION_HIGH)
            ]
        x = np.arange(len(groups))
        for c, k in enumerate(clusters):
            heights = np.nan_to_num(np.asarray(fraction.values[:, c], dtype=float))
            bars = ax.bar(x, heights, bottom=bottom, color=cluster_color(int(k)), label=str(k), width=0.6)
            for g, bar in zip(groups, bars, strict=True):
                bar.set_gid(f"{s.FRACTION}:{g}:{int(k)}")
            if bounds is not None:
                # the bootstrap interval of this cluster's fraction, drawn through its segment's middle
                # (shifted a little per cluster so that neighbouring intervals do not overlap)
                low, high = np.nan_to_num(bounds[0][:, c]), np.nan_to_num(bounds[1][:, c])
                middle = bottom + heights / 2
                offset = 0.2 * (c / max(len(clusters) - 1, 1) - 0.5)
                for i, g in enumerate(groups):
                    line = ax.errorbar(
                        x[i] + offset,
                        middle[i],
                        yerr=[[max(heights[i] - low[i], 0.0)], [max(high[i] - heights[i], 0.0)]],
                        fmt="none",
                        ecolor="black",
                        elinewidth=0.8,
                        capsize=2,
                    )
                    line.lines[2][0].set_gid(f"{s.FRACTION_LOW}:{g}:{int(k)}")
            bottom += heights
        ax.set_xticks(x, groups)
        ax.set_ylabel(wrapped_label(ds[s.FRACTION]), fontsize=8)
        ax.set_ylim(0, max(1.0, float(bottom.max()) if bottom.size else 1.0))
        ax.legend(title="cluster", fontsize=7, title_fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


# -------------------------------------------------------------------- Fig. S3
def elbow_curve(elbow: xr.DataArray | xr.Dataset) -> tuple[np.ndarray, np.ndarray, int | None, xr.DataArray]:
    """``(k, sse, suggested_k, DataArray)`` from an elbow result (DataArray or one-variable Dataset)."""
    suggested = elbow.attrs.get(SUGGESTED_K_ATTR)
    if isinstance(elbow, xr.Dataset):
        names = [n for n, v in elbow.data_vars.items() if v.ndim == 1]
        if len(names) != 1:
            raise s.SchemaError(
                f"figure_s3 needs an elbow result with one 1-D variable (SSE vs k), got "
                f"{sorted(map(str, elbow.data_vars))}; pass the DataArray instead."
            )
        da = elbow[names[0]]
    elif isinstance(elbow, xr.DataArray):
        da = elbow
    else:
        raise s.SchemaError(f"figure_s3 needs an xarray DataArray/Dataset, got {type(elbow).__name__}.")
    if da.ndim != 1:
        raise s.SchemaError(f"figure_s3: the elbow curve must be 1-D (SSE vs k), got dims {da.dims}.")
    suggested = da.attrs.get(SUGGESTED_K_ATTR, suggested)
    dim = da.dims[0]
    k = np.asarray(da[dim].values if dim in da.coords else np.arange(1, da.size + 1))
    return k, np.asarray(da.values, dtype=float), None if suggested is None else int(suggested), da


def figure_s3(elbow: xr.DataArray | xr.Dataset, used_k: int | None = None) -> Figure:
    """Paper Fig. S3: within-cluster sum of squared errors vs number of clusters k.

    The suggested k (attr ``suggested_k``) is marked with a red circle and a dashed line;
    ``used_k``, the k the domain maps (Fig. 3) were clustered with, with a blue dotted line
    and a note when it differs (the paper chose k = 6 from the elbow and the chemistry).

    Returns
    -------
    matplotlib.figure.Figure
        The SSE line has gid ``sse``, the marker ``suggested_k``, the used-k line ``used_k``.
    """
    k, sse, suggested, da = elbow_curve(elbow)
    fig = Figure(figsize=(4.6, 3.4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(k, sse, "-o", color="black", ms=4, gid="sse")
    if suggested is not None and suggested in k:
        value = sse[list(k).index(suggested)]
        ax.plot(
            [suggested],
            [value],
            "o",
            ms=12,
            mfc="none",
            mec="red",
            mew=2,
            gid="suggested_k",
            label=f"elbow suggests k = {suggested}",
        )
        ax.axvline(suggested, color="red", ls="--", lw=0.8)
    if used_k is not None and used_k != suggested:
        ax.axvline(used_k, color="tab:blue", ls=":", lw=1.2, gid="used_k", label=f"k = {used_k} used for Fig. 3")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set_xlabel("number of clusters k")
    ax.set_ylabel(wrapped_label(da, 28) if s.ATTR_LONG_NAME in da.attrs else "within-cluster SSE", fontsize=9)
    ax.set_xticks(k)
    return fig


# --------------------------------------------------------------------- saving
def _clustered_k(ds: Any) -> int | None:
    """The k ``cluster`` ran with (from its provenance), or None."""
    from ptyxr import provenance

    try:
        return int(provenance.parameters(ds, "cluster")["n_clusters"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def save_paper_figures(result: Any, out_dir: str | Path, dpi: int = DPI) -> list[Path]:
    """Write fig1.png, fig2.png, fig3.png and figS3.png of a pipeline result into ``out_dir``.

    Parameters
    ----------
    result : ptyxr.pipeline.ChainResult
        Fig. 1 and 2 from ``result.particles`` (each on its own grid), Fig. 3 from
        ``result.combined``, Fig. S3 from ``result.elbow`` (skipped when it is None).
    out_dir : str or Path
        Output folder (created if missing).
    dpi : int
        Resolution.

    Returns
    -------
    list of Path
        The files written, in the order above.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from ptyxr.io.netcdf import atomic_path

    figures = [
        ("fig1.png", lambda: figure1(result.particles)),
        ("fig2.png", lambda: figure2(result.particles)),
        ("fig3.png", lambda: figure3(result.combined)),
    ]
    if getattr(result, "elbow", None) is not None:
        figures.append(("figS3.png", lambda: figure_s3(result.elbow, _clustered_k(result.combined))))
    written = []
    for name, make in figures:
        fig = make()
        FigureCanvasAgg(fig)  # explicit Agg canvas: no pyplot, no GUI backend
        path = out / name
        with atomic_path(path, overwrite=True) as tmp:  # a crash never leaves a truncated PNG
            fig.savefig(tmp, dpi=dpi, format="png")
        written.append(path)
    return written
