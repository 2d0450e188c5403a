"""Interactive views with hvplot/holoviews (optional dependencies, imported lazily).

* :func:`stack_view` — an image stack with an energy slider (and a particle selector),
  axes and colour bar labelled from ``long_name``/``units``.
* :func:`domain_scatter` — feature scatter plots linked to the domain maps
  (``holoviews.link_selections``): brushing pixels in feature space highlights them on
  the maps and vice versa.

Install the optional dependencies with ``pip install ptyxr[viz]`` (hvplot, holoviews,
bokeh). In Jupyter, holoviews needs ``hv.extension("bokeh")`` (hvplot does it on import).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ptyxr import schema as s
from ptyxr.plotting.style import cluster_color, label, robust_limits

#: Columns of :func:`domain_table` holding the map position in µm (the hv "image" axes).
X_UM, Y_UM = "x_um", "y_um"
_MICRON = 1e-6


def _require_hvplot() -> Any:
    try:
        import holoviews as hv
        import hvplot.xarray  # noqa: F401  (registers .hvplot on xarray objects)
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("interactive views need hvplot and holoviews: pip install 'ptyxr[viz]'") from err
    return hv


def _coords_in_um(da: xr.DataArray) -> xr.DataArray:
    """``da`` with y/x coordinates converted from metres to µm (labels stay readable)."""
    new = {}
    for dim in (s.Y, s.X):
        if dim in da.coords:
            new[dim] = (da[dim] / _MICRON).assign_attrs({s.ATTR_UNITS: "µm", s.ATTR_LONG_NAME: f"{dim} position"})
    return da.assign_coords(new)


def stack_view(
    ds: xr.Dataset,
    variable: str = s.ABSORPTION,
    particle: str | None = None,
    cmap: str = "viridis",
    dynamic: bool = True,
    robust: bool = True,
    **hvplot_kwargs: Any,
) -> Any:
    """Image stack of ``variable`` with an energy slider (hvplot ``groupby="energy"``).

    Parameters
    ----------
    ds : xarray.Dataset
        A Dataset holding ``variable`` with dims (energy, y, x), optionally behind a
        ``particle`` dim (then a particle selector is added unless ``particle`` is given).
    variable : str
        Variable to show (default ``absorption``; ``phase``, ``absorption_fit`` …).
    particle : str, optional
        Show only this particle.
    cmap : str
        Colormap.
    dynamic : bool
        True: a DynamicMap rendering each energy on demand (needs a live kernel for the
        slider); False: a HoloMap holding every frame (works in static HTML export).
    robust : bool
        Colour limits from the 2–98 % percentiles of the whole stack (fixed over energies).
    **hvplot_kwargs
        Passed on to ``DataArray.hvplot.image``.

    Returns
    -------
    holoviews.DynamicMap or holoviews.HoloMap
        Indexable by ``energy`` (and ``particle``); each frame is a ``holoviews.Image``
        whose values are ``ds[variable]`` at that energy, coordinates in µm.
    """
    _require_hvplot()
    s.require_dataset(ds, "stack_view")
    s.require_variables(ds, (variable,), "stack_view")
    da = ds[variable]
    if particle is not None:
        if s.PARTICLE not in da.dims:
            raise s.SchemaError(f"stack_view: particle={particle!r} given but {variable!r} has no {s.PARTICLE!r} dim.")
        da = da.sel({s.PARTICLE: particle})
    missing = [d for d in (s.Y, s.X) if d not in da.dims]
    if missing:
        raise s.SchemaError(f"stack_view: {variable!r} has dims {da.dims}, needs {s.Y!r} and {s.X!r}.")
    groupby = [d for d in da.dims if d not in (s.Y, s.X)]
    options: dict[str, Any] = {
        "cmap": cmap,
        "clabel": label(da),
        "aspect": "equal",
        "dynamic": dynamic,
        "title": str(da.attrs.get(s.ATTR_LONG_NAME, variable)),
    }
    if robust and not hasattr(da.data, "dask"):  # percentiles of a dask stack would compute it
        options["clim"] = robust_limits(da.values)
    options.update(hvplot_kwargs)
    return _coords_in_um(da).hvplot.image(x=s.X, y=s.Y, groupby=groupby or None, **options)


def domain_table(ds: xr.Dataset, features: Sequence[str] = s.DOMAIN_FEATURES) -> Any:
    """One row per labelled pixel: particle, y, x [m], ``x_um``/``y_um``, features, domain.

    Pixels with ``domain`` = −1 or a non-finite feature are left out. Returns a
    :class:`pandas.DataFrame`.
    """
    s.require_dataset(ds, "domain_table")
    s.require_variables(ds, (s.DOMAIN, *features), "domain_table", "Run ds.ptyxr.cluster() first.")
    if s.PARTICLE not in ds[s.DOMAIN].dims:
        ds = ds.expand_dims({s.PARTICLE: [str(ds.attrs.get(s.ATTR_PARTICLE, "particle"))]})
    names = [s.DOMAIN, *features]
    frame = ds[names].reset_coords(drop=True).to_dataframe().reset_index()
    frame = frame[(frame[s.DOMAIN] >= 0) & np.isfinite(frame[list(features)]).all(axis=1)].reset_index(drop=True)
    frame[s.PARTICLE] = frame[s.PARTICLE].astype(str)
    frame[X_UM] = frame[s.X] / _MICRON
    frame[Y_UM] = frame[s.Y] / _MICRON
    return frame


def domain_scatter(
    ds: xr.Dataset, features: Sequence[str] = s.DOMAIN_FEATURES, selection: Any = None, size: int = 4
) -> Any:
    """Feature scatter plots linked to the domain maps by brushing (``link_selections``).

    The maps are drawn as square markers at the pixel positions (one panel per
    particle), coloured by domain with the paper figures' colours; the scatter plots show
    every pair of ``features``. All panels share one table (:func:`domain_table`), so a
    box/lasso selection in any panel highlights the same pixels in all of them.

    Parameters
    ----------
    ds : xarray.Dataset
        Output of ``cluster`` (DESIGN §1f) with the feature maps.
    features : sequence of str
        Feature variables (default: the clustering features).
    selection : holoviews.link_selections, optional
        The selection linker to use (``hv.link_selections.instance()``); pass your own
        to read or set the selection from code (``selection.selection_expr``,
        ``selection.filter(table)``).
    size : int
        Marker size [screen pixels].

    Returns
    -------
    holoviews.Layout
        The linked panels (maps first, then the scatter plots).
    """
    hv = _require_hvplot()
    table = domain_table(ds, features)
    dataset = hv.Dataset(table, kdims=[s.PARTICLE, s.Y, s.X], vdims=[X_UM, Y_UM, s.DOMAIN, *features])
    labels = sorted(int(k) for k in np.unique(table[s.DOMAIN]))
    colour = hv.dim(s.DOMAIN).categorize({k: cluster_color(k) for k in labels}, default="gray")
    vdims = [s.DOMAIN, *features, s.PARTICLE]
    hover_dims = {
        f: hv.Dimension(f, label=str(ds[f].attrs.get(s.ATTR_LONG_NAME, f)), unit=ds[f].attrs.get(s.ATTR_UNITS))
        for f in features
    }
    panels = []
    for name in dict.fromkeys(table[s.PARTICLE]):
        sub = dataset.select(**{s.PARTICLE: name})
        panels.append(
            hv.Points(sub, kdims=[X_UM, Y_UM], vdims=vdims, label=f"domains {name}").opts(
                color=colour,
                marker="square",
                size=size * 2,
                aspect="equal",
                xlabel="x [µm]",
                ylabel="y [µm]",
                tools=["hover"],
                title=f"{name}",
            )
        )
    for i, fa in enumerate(features):
        for fb in features[i + 1 :]:
            points = hv.Points(
                dataset, kdims=[hover_dims[fa], hover_dims[fb]], vdims=[s.DOMAIN, s.PARTICLE, X_UM, Y_UM]
            )
            panels.append(points.opts(color=colour, size=size, tools=["hover"]))
    linker = selection if selection is not None else hv.link_selections.instance()
    return linker(hv.Layout(panels).cols(max(len(panels) // 2, 2)))
