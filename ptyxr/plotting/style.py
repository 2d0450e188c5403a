"""Shared figure helpers: cluster colours, labels from attrs, robust colour limits, map panels.

Used by the paper figures (:mod:`ptyxr.plotting.paper`, which re-exports them), the
interactive views and the explorers, so every figure labels and colours alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from matplotlib import colormaps
from matplotlib.colors import BoundaryNorm, Colormap, ListedColormap, to_hex
from matplotlib.figure import Figure

from ptyxr import schema as s

#: One colour per cluster label (matplotlib's "tab10" then "Dark2"): label k is always
#: ``CLUSTER_COLORS[k % len(CLUSTER_COLORS)]`` in maps, densities, bars and widgets.
CLUSTER_COLORS: tuple[str, ...] = tuple(
    [to_hex(c) for c in colormaps["tab10"].colors]  # type: ignore[attr-defined]  # ListedColormaps
    + [to_hex(c) for c in colormaps["Dark2"].colors]  # type: ignore[attr-defined]
)
#: Colour of NaN / missing pixels, as in the paper.
BAD_COLOR = "white"
#: Percentiles used for robust colour limits of chemical-state maps.
ROBUST_PERCENTILES = (2.0, 98.0)

_MICRON = 1e-6


# ------------------------------------------------------------------ helpers
def cluster_color(label: int) -> str:
    """Colour (hex) of cluster ``label``; the same in every ptyxr figure and widget."""
    return CLUSTER_COLORS[int(label) % len(CLUSTER_COLORS)]


def cluster_colormap(n_clusters: int) -> tuple[ListedColormap, BoundaryNorm]:
    """Colormap and norm mapping integer label k to :func:`cluster_color` (k); masked → white."""
    n_clusters = max(int(n_clusters), 1)
    cmap = ListedColormap([cluster_color(k) for k in range(n_clusters)], name="ptyxr_clusters")
    cmap = cmap.with_extremes(bad=BAD_COLOR)  # type: ignore[assignment]  # still a ListedColormap
    norm = BoundaryNorm(np.arange(n_clusters + 1) - 0.5, n_clusters)
    return cmap, norm


def with_bad(cmap: str | Colormap, color: str = BAD_COLOR) -> Colormap:
    """A copy of ``cmap`` drawing NaN/masked values in ``color`` (white, as in the paper)."""
    base = colormaps[cmap] if isinstance(cmap, str) else cmap
    return base.with_extremes(bad=color)


def label(da: xr.DataArray) -> str:
    """Axis/colour-bar label ``"<long_name> [<units>]"`` from the contract attrs."""
    name = da.attrs.get(s.ATTR_LONG_NAME, da.name)
    units = da.attrs.get(s.ATTR_UNITS)
    return f"{name} [{units}]" if units not in (None, "") else str(name)


def wrapped_label(da: xr.DataArray, width: int = 30) -> str:
    """:func:`label` wrapped onto lines of at most ``width`` characters (long names in small panels)."""
    import textwrap

    return "\n".join(textwrap.wrap(label(da), width)) or label(da)


#: Margin around a particle's bounding box when panels are cropped to it (fraction of its size).
CROP_MARGIN = 0.12


def crop_to_particle(da: xr.DataArray, p: xr.Dataset, margin: float = CROP_MARGIN) -> xr.DataArray:
    """``da`` cut to the particle's bounding box plus ``margin`` (``material``, else finite ``da``).

    The reconstructed field is several particle sizes wide; uncropped, particles filled
    about 30 % of their panels.
    """
    if s.MATERIAL in p and p[s.MATERIAL].dtype == bool and bool(p[s.MATERIAL].any()):
        mask = np.asarray(p[s.MATERIAL].transpose(s.Y, s.X).values)
    else:
        mask = np.isfinite(np.asarray(da.transpose(s.Y, s.X).values, dtype=float))
    if not mask.any() or mask.all():
        return da
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    pad = int(np.ceil(margin * max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)))
    ny, nx = mask.shape
    return da.isel(
        {
            s.Y: slice(max(rows[0] - pad, 0), min(rows[-1] + pad + 1, ny)),
            s.X: slice(max(cols[0] - pad, 0), min(cols[-1] + pad + 1, nx)),
        }
    )


def robust_limits(values: Any, percentiles: tuple[float, float] = ROBUST_PERCENTILES) -> tuple[float, float]:
    """Colour limits from percentiles of the finite values (``(0, 1)`` when none is finite)."""
    arrays = values if isinstance(values, (list, tuple)) else [values]
    finite = np.concatenate([np.asarray(v, dtype=float).ravel() for v in arrays])
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, percentiles)
    if not hi > lo:  # constant map: widen so the colour bar is drawable
        lo, hi = lo - 0.5 * max(abs(lo), 1.0) * 1e-3, hi + 0.5 * max(abs(hi), 1.0) * 1e-3
    return float(lo), float(hi)


def particles(data: xr.Dataset | Sequence[xr.Dataset]) -> list[tuple[str, xr.Dataset]]:
    """``(name, Dataset without particle dim)`` for each particle in ``data``.

    Accepts one particle's Dataset, a Dataset with a ``particle`` dim or a sequence of
    per-particle Datasets.
    """
    if isinstance(data, xr.Dataset):
        if s.PARTICLE in data.dims:
            return [(str(p), data.isel({s.PARTICLE: i})) for i, p in enumerate(data[s.PARTICLE].values)]
        return [(str(data.attrs.get(s.ATTR_PARTICLE, "particle")), data)]
    out = []
    for i, ds in enumerate(data):
        if not isinstance(ds, xr.Dataset):
            raise s.SchemaError(f"expected xarray Datasets, got {type(ds).__name__} at position {i}.")
        out.extend(particles(ds))
    if not out:
        raise s.SchemaError("no particle to plot: pass a Dataset or a non-empty list of Datasets.")
    return out


def _condition(ds: xr.Dataset) -> str | None:
    if s.CONDITION in ds.coords:
        return str(ds[s.CONDITION].values)
    return ds.attrs.get(s.ATTR_CONDITION)


def extent_um(ds: xr.Dataset | xr.DataArray) -> list[float]:
    """imshow extent [left, right, bottom, top] in µm from pixel-centre coords ``x``/``y`` [m]."""
    out = []
    for dim in (s.X, s.Y):
        if dim not in ds.coords:
            raise s.SchemaError(f"plotting needs a {dim!r} coordinate in metres (DESIGN §1b).")
        c = np.asarray(ds[dim].values, dtype=float)
        step = float(c[1] - c[0]) if c.size > 1 else float(ds[dim].attrs.get(s.ATTR_PIXEL_SIZE, 1e-8))
        out += [(c[0] - step / 2) / _MICRON, (c[-1] + step / 2) / _MICRON]
    return out


def _nice_length(span: float) -> float:
    """A 1-2-5 length close to a fifth of ``span`` (same units)."""
    target = span / 5
    if not target > 0:
        return 1.0
    exponent = np.floor(np.log10(target))
    for m in (5, 2, 1):
        if m * 10**exponent <= target:
            return float(m * 10**exponent)
    return float(10**exponent)


def add_scale_bar(ax: Any, extent: Sequence[float], length_um: float | None = None) -> Any:
    """Draw a scale bar of ``length_um`` µm (default: a 1-2-5 value ≈ 1/5 of the width)."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    width = abs(extent[1] - extent[0])
    length = _nice_length(width) if length_um is None else float(length_um)
    text = f"{length:g} µm" if length >= 1 else f"{length * 1e3:g} nm"
    bar = AnchoredSizeBar(
        ax.transData,
        length,
        text,
        "lower right",
        pad=0.3,
        color="black",
        frameon=False,
        size_vertical=width / 60,
        fontproperties={"size": 7},
    )
    bar.set_gid("scale_bar")
    ax.add_artist(bar)
    return bar


def show_map(
    ax: Any,
    da: xr.DataArray,
    cmap: str | Colormap = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    norm: Any = None,
    scale_bar: bool = True,
) -> Any:
    """``imshow`` a (y, x) map in µm with NaN white; returns the AxesImage.

    The image array is ``da.values`` as a masked array (NaN masked), row 0 at the bottom.
    """
    if da.dims != (s.Y, s.X):
        da = da.transpose(s.Y, s.X)
    values = np.ma.masked_invalid(np.asarray(da.values, dtype=float))
    ext = extent_um(da)
    kwargs = {"norm": norm} if norm is not None else {"vmin": vmin, "vmax": vmax}
    image = ax.imshow(
        values,
        origin="lower",
        extent=ext,
        cmap=with_bad(cmap) if norm is None else cmap,
        interpolation="nearest",
        **kwargs,
    )
    ax.set_xticks([])
    ax.set_yticks([])
    if scale_bar:
        add_scale_bar(ax, ext)
    return image


def _colorbar(fig: Figure, image: Any, axes: Any, da: xr.DataArray, **kwargs: Any) -> Any:
    cbar = fig.colorbar(image, ax=axes, **kwargs)
    cbar.set_label(wrapped_label(da), fontsize=8)
    return cbar


def _require(ds: xr.Dataset, names: Sequence[str], figure: str, hint: str) -> None:
    s.require_variables(ds, names, figure, hint)
