"""Jupyter explorers of computed results (ipywidgets + matplotlib; imported lazily).

* :class:`PixelExplorer` — click a pixel on a map (edge energy, N_e/N_V, PE/Δμt, any
  (y, x) variable) to see its absorption and phase spectra, the fitted eq. (1) curve with
  its four components, the residuals and a table of fitted parameters ± stderr.
* :class:`DomainExplorer` — pick a cluster to highlight its pixels on the domain maps and
  show its mean normalised spectrum and its N_V-weighted fraction per condition.

Explorers only display results already in the Dataset; they never fit. Display one by
leaving it as the last expression of a cell. In a live kernel with ipympl installed the
figure is an interactive ipympl canvas (clicks select pixels); elsewhere it is a static
PNG (``interactive=False``) and pixels are picked with the y/x index boxes or
:meth:`PixelExplorer.select_pixel`. ``explorer.settings()`` returns keyword arguments
that reproduce the current view in code: ``PixelExplorer(ds, **explorer.settings())``.
"""

from __future__ import annotations

import html
import io
import warnings
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure

from ptyxr import schema as s
from ptyxr.plotting.style import (
    BAD_COLOR,
    cluster_color,
    cluster_colormap,
    extent_um,
    label,
    robust_limits,
    show_map,
    with_bad,
    wrapped_label,
)
from ptyxr.xanes.lineshapes import COMPONENTS, eq1, eq1_terms

_MICRON = 1e-6
#: Maps offered first in the map dropdown (then the fit parameters, then other (y, x) variables).
PREFERRED_MAPS = (
    s.EDGE_ENERGY,
    s.ELECTRONS_PER_VANADIUM,
    s.PRE_EDGE_RATIO,
    s.EDGE_JUMP,
    s.VANADIUM_DENSITY,
    s.ELECTRON_DENSITY,
    s.PRE_EDGE_INTENSITY,
    s.DOMAIN,
)
# eq. (1)'s components are drawn under the fit with line gids ``component:<name>``
# (COMPONENTS, from ptyxr.xanes.lineshapes)
_FIT_SAMPLES = 400  # points of the smooth fitted curve


def _require_ipywidgets() -> Any:
    try:
        import ipywidgets
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the explorers need ipywidgets: pip install 'ptyxr[viz]'") from err
    return ipywidgets


def _in_kernel() -> bool:
    """True inside a live Jupyter kernel (where an ipympl canvas can talk to the browser)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def eq1_components(energy: Any, params: dict[str, float]) -> dict[str, np.ndarray]:
    """The four additive terms of eq. (1) at ``energy`` [eV]: constant, erf step, two Lorentzians.

    Their sum is :func:`eq1`; each is :func:`ptyxr.xanes.lineshapes.eq1_terms` with the
    paper's parametrisation (b1/2·(1 + erf((E − b2)/b3)), c_i1/(1 + ((E − c_i2)/c_i3)²)).
    """
    e = np.asarray(energy, dtype=float)
    constant, *shapes = eq1_terms(e, *(params[name] for name in s.FIT_PARAMETERS))
    return dict(zip(COMPONENTS, (np.full(e.shape, constant), *shapes), strict=True))


class _Explorer:
    """Figure + canvas plumbing shared by the explorers."""

    def __init__(self, figsize: tuple[float, float], interactive: bool | None) -> None:
        self._widgets = _require_ipywidgets()
        self.figure = Figure(figsize=figsize)
        self.interactive = (_in_kernel() and self._has_ipympl()) if interactive is None else bool(interactive)
        if self.interactive:
            from ipympl.backend_nbagg import Canvas, FigureManager

            with warnings.catch_warnings():
                # ipympl's toolbar passes an argument traitlets deprecates; harmless, not ours
                warnings.simplefilter("ignore", DeprecationWarning)
                self.canvas_widget = Canvas(self.figure)
                FigureManager(self.canvas_widget, 0)
            self.canvas_widget.header_visible = False
        else:
            from matplotlib.backends.backend_agg import FigureCanvasAgg

            FigureCanvasAgg(self.figure)
            self.canvas_widget = self._widgets.Image(format="png")
        self._box: Any = None
        self._shown = False  # static mode renders PNGs only once the widget has been asked for

    @staticmethod
    def _has_ipympl() -> bool:
        try:
            import ipympl  # noqa: F401
        except ImportError:
            return False
        return True

    def _redraw(self) -> None:
        if self.interactive:
            self.figure.canvas.draw_idle()
        elif self._shown:  # static PNG: render now (costly, so not before anyone can see it)
            buffer = io.BytesIO()
            self.figure.savefig(buffer, format="png", dpi=80)
            self.canvas_widget.value = buffer.getvalue()

    @property
    def widget(self) -> Any:
        """The ipywidgets box of the explorer (controls, figure, table); display it or embed it."""
        if not self._shown:
            self._shown = True
            self._redraw()
        return self._box

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _lines(self, ax: Any) -> dict[str, Any]:
        return {line.get_gid(): line for line in ax.get_lines() if line.get_gid()}


def _particle_names(ds: xr.Dataset) -> list[str] | None:
    return [str(p) for p in ds[s.PARTICLE].values] if s.PARTICLE in ds.dims else None


def _select_particle(ds: xr.Dataset, particle: str | None) -> xr.Dataset:
    if s.PARTICLE in ds.dims:
        names = [str(p) for p in ds[s.PARTICLE].values]
        return ds.isel({s.PARTICLE: names.index(str(particle))})
    return ds


class PixelExplorer(_Explorer):
    """Map + per-pixel spectra, eq. (1) fit, components, residuals and parameter table.

    Parameters
    ----------
    ds : xarray.Dataset
        Output of ``spectra`` (needs ``absorption``; ``phase`` and the §1d fit parameters
        are shown when present), one particle or several along ``particle``.
    map_variable : str, optional
        (y, x) variable shown as the map (default ``edge_energy`` when present, else the
        first map found; any 2-D map works, ``domain`` is drawn in the cluster colours).
    particle : str, optional
        Particle name (default: the first).
    pixel : (int, int), optional
        (y_index, x_index) of the selected pixel (default: the valid-fit pixel with the
        largest edge jump, else the grid centre).
    interactive : bool, optional
        Use an ipympl canvas (clickable). Default: yes inside a Jupyter kernel with ipympl
        installed, else a static PNG.

    Attributes
    ----------
    widget : ipywidgets.VBox
        The whole explorer (displayed when the explorer is the cell's result; embed
        ``explorer.widget`` in your own layouts).
    figure : matplotlib.figure.Figure
        Axes ``ax_map``, ``ax_absorption``, ``ax_residual``, ``ax_phase``.
    """

    def __init__(
        self,
        ds: xr.Dataset,
        map_variable: str | None = None,
        particle: str | None = None,
        pixel: tuple[int, int] | None = None,
        interactive: bool | None = None,
    ) -> None:
        s.validate_spectra(ds, stage="PixelExplorer")
        self.ds = ds
        self.particles = _particle_names(ds)
        self.maps = self._map_options(ds)
        if not self.maps:
            raise s.SchemaError("PixelExplorer needs at least one (y, x) map variable (e.g. material, edge_energy).")
        if map_variable is None:
            map_variable = s.EDGE_ENERGY if s.EDGE_ENERGY in self.maps else self.maps[0]
        if map_variable not in self.maps:
            raise s.SchemaError(
                f"PixelExplorer: map_variable {map_variable!r} is not a (y, x) map of this Dataset; "
                f"choose one of {self.maps}."
            )
        if self.particles is not None:
            particle = self.particles[0] if particle is None else str(particle)
            if particle not in self.particles:
                raise s.SchemaError(f"PixelExplorer: particle {particle!r} not in {self.particles}.")
        elif particle is not None:
            raise s.SchemaError(f"PixelExplorer: particle={particle!r} given but the Dataset has no particle dim.")
        self.map_variable, self.particle = map_variable, particle
        self.has_fit = all(p in ds for p in s.FIT_PARAMETERS)
        super().__init__((10.5, 6.2), interactive)
        self._build_axes()
        self._image: Any = None  # AxesImage, Line2D, Colorbar once drawn
        self._marker: Any = None
        self._colorbar: Any = None
        self.pixel = self._default_pixel() if pixel is None else self._checked_pixel(pixel)
        self._build_widgets()
        self._draw_map()
        self._draw_spectra()
        self.figure.canvas.mpl_connect("button_press_event", self._on_click)
        self._redraw()

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _map_options(ds: xr.Dataset) -> list[str]:
        maps = []
        for name, da in ds.data_vars.items():
            dims = tuple(d for d in da.dims if d != s.PARTICLE)
            if dims == (s.Y, s.X) and (np.issubdtype(da.dtype, np.number) or da.dtype == bool):
                maps.append(str(name))
        order = {n: i for i, n in enumerate((*PREFERRED_MAPS, *s.FIT_PARAMETERS))}
        return sorted(maps, key=lambda n: (order.get(n, len(order)), maps.index(n)))

    def _build_axes(self) -> None:
        fig = self.figure
        grid = fig.add_gridspec(3, 2, width_ratios=(1, 1.25), height_ratios=(2.2, 0.9, 1.5), wspace=0.28, hspace=0.4)
        self.ax_map = fig.add_subplot(grid[:, 0])
        # an inset in axes coordinates follows the equal-aspect map box
        self.ax_colorbar = self.ax_map.inset_axes((0.0, -0.09, 1.0, 0.035))
        self.ax_absorption = fig.add_subplot(grid[0, 1])
        self.ax_residual = fig.add_subplot(grid[1, 1], sharex=self.ax_absorption)
        self.ax_phase = fig.add_subplot(grid[2, 1], sharex=self.ax_absorption)
        fig.subplots_adjust(left=0.04, right=0.97, top=0.95, bottom=0.08)

    def _build_widgets(self) -> None:
        w = self._widgets
        ny, nx = self.ds.sizes[s.Y], self.ds.sizes[s.X]
        self.map_dropdown = w.Dropdown(options=self.maps, value=self.map_variable, description="map")
        self.particle_dropdown = w.Dropdown(
            options=self.particles or ["—"],
            value=self.particle or "—",
            description="particle",
            disabled=self.particles is None,
        )
        self.y_box = w.BoundedIntText(value=self.pixel[0], min=0, max=ny - 1, description="y index")
        self.x_box = w.BoundedIntText(value=self.pixel[1], min=0, max=nx - 1, description="x index")
        self.table = w.HTML()
        # one-line text readout of the selection: readable by users and by browser tests (DOM)
        self.readout = w.HTML()
        self.map_dropdown.observe(self._on_map_change, names="value")
        self.particle_dropdown.observe(self._on_particle_change, names="value")
        self.y_box.observe(self._on_index_change, names="value")
        self.x_box.observe(self._on_index_change, names="value")
        controls = w.HBox([self.particle_dropdown, self.map_dropdown])
        picker = w.HBox([self.y_box, self.x_box])
        self._box = w.VBox([controls, picker, self.readout, w.HBox([self.canvas_widget, self.table])])

    def _current(self) -> xr.Dataset:
        return _select_particle(self.ds, self.particle)

    def _default_pixel(self) -> tuple[int, int]:
        ds = self._current()
        for name in (s.EDGE_JUMP, "b1"):
            if name in ds:
                values = ds[name].transpose(s.Y, s.X).values.astype(float)
                if s.FIT_VALID in ds:
                    values = np.where(ds[s.FIT_VALID].transpose(s.Y, s.X).values, values, np.nan)
                if np.isfinite(values).any():
                    iy, ix = np.unravel_index(np.nanargmax(values), values.shape)
                    return int(iy), int(ix)
        return ds.sizes[s.Y] // 2, ds.sizes[s.X] // 2

    def _checked_pixel(self, pixel: tuple[int, int]) -> tuple[int, int]:
        iy, ix = (int(v) for v in pixel)
        ny, nx = self.ds.sizes[s.Y], self.ds.sizes[s.X]
        if not (0 <= iy < ny and 0 <= ix < nx):
            raise s.SchemaError(f"PixelExplorer: pixel {(iy, ix)} outside the {ny}×{nx} grid.")
        return iy, ix

    # ------------------------------------------------------------------ public
    def settings(self) -> dict[str, Any]:
        """Keyword arguments reproducing this view: ``PixelExplorer(ds, **explorer.settings())``."""
        return {"map_variable": self.map_variable, "particle": self.particle, "pixel": tuple(self.pixel)}

    def select_pixel(self, y_index: int, x_index: int) -> None:
        """Show pixel (``y_index``, ``x_index``) (what a click on the map does)."""
        self.pixel = self._checked_pixel((y_index, x_index))
        with self.y_box.hold_trait_notifications(), self.x_box.hold_trait_notifications():
            self._syncing = True
            self.y_box.value, self.x_box.value = self.pixel
            self._syncing = False
        self._draw_marker()
        self._draw_spectra()
        self._redraw()

    def select_map(self, map_variable: str) -> None:
        """Show ``map_variable`` as the map (same as choosing it in the dropdown)."""
        self.map_dropdown.value = map_variable

    def select_particle(self, particle: str) -> None:
        """Show ``particle`` (same as choosing it in the dropdown)."""
        self.particle_dropdown.value = str(particle)

    def spectrum_data(self) -> dict[str, Any]:
        """The traces currently drawn, read back from the figure's lines.

        Keys: ``energy``, ``absorption``, ``phase`` (data points of the pixel), and when
        the pixel has a fit: ``fit_energy``, ``fit`` (eq. 1 on a fine grid),
        ``components`` (dict name → array on ``fit_energy``), ``residual`` (absorption −
        eq. 1 at ``energy``).
        """
        lines = {**self._lines(self.ax_absorption), **self._lines(self.ax_residual), **self._lines(self.ax_phase)}
        out: dict[str, Any] = {
            "energy": np.asarray(lines["absorption"].get_xdata(), dtype=float),
            "absorption": np.asarray(lines["absorption"].get_ydata(), dtype=float),
        }
        if "phase" in lines:
            out["phase"] = np.asarray(lines["phase"].get_ydata(), dtype=float)
        if "fit" in lines:
            out["fit_energy"] = np.asarray(lines["fit"].get_xdata(), dtype=float)
            out["fit"] = np.asarray(lines["fit"].get_ydata(), dtype=float)
            out["components"] = {
                name: np.asarray(lines[f"component:{name}"].get_ydata(), dtype=float) for name in COMPONENTS
            }
            out["residual"] = np.asarray(lines["residual"].get_ydata(), dtype=float)
        return out

    def map_data(self) -> np.ma.MaskedArray:
        """The map image currently shown (NaN masked), rows = y index, columns = x index."""
        return self._image.get_array()

    def pixel_parameters(self) -> dict[str, tuple[float, float]]:
        """Fitted eq. (1) parameters of the selected pixel: name → (value, stderr)."""
        if not self.has_fit:
            return {}
        px = self._current().isel({s.Y: self.pixel[0], s.X: self.pixel[1]})
        out = {}
        for p in s.FIT_PARAMETERS:
            err = px[p + s.STDERR_SUFFIX] if p + s.STDERR_SUFFIX in px else np.nan
            out[p] = (float(px[p]), float(err))
        return out

    # ------------------------------------------------------------------ events
    def _on_click(self, event: Any) -> None:
        if event.inaxes is not self.ax_map or event.xdata is None or event.ydata is None:
            return
        if getattr(getattr(event.canvas, "toolbar", None), "mode", ""):  # zoom/pan in progress
            return
        ds = self._current()
        iy = int(np.argmin(np.abs(ds[s.Y].values / _MICRON - event.ydata)))
        ix = int(np.argmin(np.abs(ds[s.X].values / _MICRON - event.xdata)))
        self.select_pixel(iy, ix)

    def _on_map_change(self, change: dict[str, Any]) -> None:
        self.map_variable = change["new"]
        self._draw_map()
        self._update_table()
        self._redraw()

    def _on_particle_change(self, change: dict[str, Any]) -> None:
        if self.particles is None:
            return
        self.particle = change["new"]
        self._draw_map()
        self._draw_spectra()
        self._redraw()

    def _on_index_change(self, change: dict[str, Any]) -> None:
        if getattr(self, "_syncing", False):
            return
        self.select_pixel(self.y_box.value, self.x_box.value)

    # ----------------------------------------------------------------- drawing
    def _draw_map(self) -> None:
        # update one AxesImage and its colour bar in place (clearing the axes would orphan the inset colour bar)
        ax, cax = self.ax_map, self.ax_colorbar
        da = self._current()[self.map_variable].transpose(s.Y, s.X)
        if self.map_variable == s.DOMAIN:
            n = int(max(np.max(da.values), 0)) + 1
            cmap, norm = cluster_colormap(n)
            da = da.where(da >= 0)
        else:
            da = da.astype(float)
            cmap, norm = with_bad("viridis"), Normalize(*robust_limits(da.values))  # type: ignore[assignment]
        if self._image is None:
            self._image = show_map(ax, da, cmap=cmap, norm=norm)
            self._colorbar = self.figure.colorbar(self._image, cax=cax, orientation="horizontal")
        else:
            self._image.set_data(np.ma.masked_invalid(da.values.astype(float)))
            self._image.set_cmap(cmap)
            self._image.set_norm(norm)
            self._image.set_extent(extent_um(da))
            self._colorbar.update_normal(self._image)
        if self.map_variable == s.DOMAIN:
            self._colorbar.set_ticks(np.arange(norm.Ncmap))  # type: ignore[attr-defined]
        self._colorbar.set_label(label(self._current()[self.map_variable]), fontsize=8)
        cax.tick_params(labelsize=7)
        ax.set_title(f"{self.particle + ': ' if self.particle else ''}{self.map_variable} (click a pixel)", fontsize=9)
        self._draw_marker()

    def _draw_marker(self) -> None:
        ds = self._current()
        y_um = ds[s.Y].values[self.pixel[0]] / _MICRON
        x_um = ds[s.X].values[self.pixel[1]] / _MICRON
        if self._marker is None:
            (self._marker,) = self.ax_map.plot(
                [x_um], [y_um], marker="s", ms=9, mfc="none", mec="red", mew=2, gid="pixel_marker"
            )
        else:
            self._marker.set_data([x_um], [y_um])

    def _draw_spectra(self) -> None:
        ds = self._current()
        px = ds.isel({s.Y: self.pixel[0], s.X: self.pixel[1]})
        energy = ds[s.ENERGY].values.astype(float)
        for ax in (self.ax_absorption, self.ax_residual, self.ax_phase):
            ax.clear()
        absorption = px[s.ABSORPTION].values.astype(float)
        self.ax_absorption.plot(energy, absorption, "o", ms=3.5, color="black", label="data", gid="absorption")
        if s.PHASE in ds:
            self.ax_phase.plot(
                energy, px[s.PHASE].values.astype(float), "o-", ms=3, lw=0.8, color="tab:blue", gid="phase"
            )
            self.ax_phase.set_ylabel(wrapped_label(ds[s.PHASE], 24), fontsize=8)
        params = self.pixel_parameters()
        values = {p: v for p, (v, _) in params.items()}
        if params and all(np.isfinite(v) for v in values.values()):
            fine = np.linspace(energy.min(), energy.max(), _FIT_SAMPLES)
            fit = np.asarray(eq1(fine, *(values[p] for p in s.FIT_PARAMETERS)), dtype=float)
            self.ax_absorption.plot(fine, fit, "-", color="tab:red", lw=1.5, label="eq. (1) fit", gid="fit")
            styles = ("k:", "--", "-.", "--")
            for (name, comp), style in zip(eq1_components(fine, values).items(), styles, strict=True):
                self.ax_absorption.plot(fine, comp, style, lw=0.9, alpha=0.8, label=name, gid=f"component:{name}")
            model = np.asarray(eq1(energy, *(values[p] for p in s.FIT_PARAMETERS)), dtype=float)
            self.ax_residual.plot(energy, absorption - model, "o-", ms=3, lw=0.8, color="tab:red", gid="residual")
            self.ax_residual.axhline(0.0, color="gray", lw=0.6)
            if s.NOISE in px and np.isfinite(float(px[s.NOISE])):
                sigma = float(px[s.NOISE])
                self.ax_residual.axhspan(-sigma, sigma, color="gray", alpha=0.2, lw=0)
            self.ax_absorption.legend(fontsize=6.5, loc="upper left")
        else:
            self.ax_absorption.text(
                0.02,
                0.95,
                "no valid fit at this pixel",
                transform=self.ax_absorption.transAxes,
                va="top",
                fontsize=8,
                color="gray",
            )
        iy, ix = self.pixel
        y_um, x_um = ds[s.Y].values[iy] / _MICRON, ds[s.X].values[ix] / _MICRON
        self.ax_absorption.set_title(f"pixel (y={iy}, x={ix}) at ({y_um:.3f}, {x_um:.3f}) µm", fontsize=9)
        self.ax_absorption.set_ylabel(wrapped_label(ds[s.ABSORPTION], 24), fontsize=8)
        self.ax_residual.set_ylabel("residual", fontsize=8)
        self.ax_phase.set_xlabel(label(ds[s.ENERGY]), fontsize=8)
        for ax in (self.ax_absorption, self.ax_residual, self.ax_phase):
            ax.tick_params(labelsize=7)
        self._update_table()

    def _update_readout(self, ds: xr.Dataset, px: xr.Dataset) -> None:
        """Text line naming the pixel, its map value and its first absorption values.

        The ``data-*`` attributes carry the same numbers at full precision (``repr``) so a
        browser test can compare the page with the Dataset exactly.
        """
        iy, ix = self.pixel
        y_um, x_um = ds[s.Y].values[iy] / _MICRON, ds[s.X].values[ix] / _MICRON
        map_value = float(px[self.map_variable].values)
        units = ds[self.map_variable].attrs.get(s.ATTR_UNITS, "")
        energy = ds[s.ENERGY].values.astype(float)[:3]
        absorption = px[s.ABSORPTION].values.astype(float)[:3]
        shown = ", ".join(f"{a:.6g} ({e:.1f} eV)" for a, e in zip(absorption, energy, strict=True))
        attrs = {
            "data-y": str(iy),
            "data-x": str(ix),
            "data-map": self.map_variable,
            "data-map-value": repr(map_value),
            "data-absorption": ",".join(repr(float(a)) for a in absorption),
        }
        attr_text = " ".join(f'{k}="{html.escape(v)}"' for k, v in attrs.items())
        text = (
            f"pixel (y={iy}, x={ix}) at ({y_um:.3f}, {x_um:.3f}) µm · {self.map_variable} = {map_value:.6g} "
            f"{units} · {s.ABSORPTION}: {shown} …"
        )
        self.readout.value = f'<div class="ptyxr-pixel-readout" {attr_text}>{html.escape(text)}</div>'

    def _update_table(self) -> None:
        ds = self._current()
        px = ds.isel({s.Y: self.pixel[0], s.X: self.pixel[1]})
        self._update_readout(ds, px)
        rows = []
        map_value = px[self.map_variable].values
        rows.append((self.map_variable, f"{map_value}", "", ds[self.map_variable].attrs.get(s.ATTR_UNITS, "")))
        for p, (value, err) in self.pixel_parameters().items():
            rows.append((p, f"{value:.6g}", f"± {err:.2g}", ds[p].attrs.get(s.ATTR_UNITS, "")))
        for name in (s.REDCHI, s.NOISE, s.SUCCESS, s.FIT_VALID):
            if name in px:
                rows.append((name, f"{px[name].values}", "", ds[name].attrs.get(s.ATTR_UNITS, "")))
        cells = "".join(
            f"<tr><td><b>{html.escape(str(n))}</b></td><td>{html.escape(v)}</td><td>{html.escape(e)}</td>"
            f"<td>{html.escape(str(u))}</td></tr>"
            for n, v, e, u in rows
        )
        self.table.value = (
            "<table style='font-size:11px'><tr><th>parameter</th><th>value</th><th>stderr</th><th>units</th></tr>"
            f"{cells}</table>"
        )


class DomainExplorer(_Explorer):
    """Pick a cluster: its pixels highlighted on the domain maps, its mean spectrum and fractions.

    Parameters
    ----------
    ds : xarray.Dataset
        Output of ``cluster`` (DESIGN §1f): ``domain`` (particle, y, x); ``cluster_spectrum``,
        ``fraction`` and ``cluster_center`` are shown when present.
    cluster : int, optional
        Selected cluster label (default 0).
    interactive : bool, optional
        As for :class:`PixelExplorer`.
    """

    def __init__(self, ds: xr.Dataset, cluster: int | None = None, interactive: bool | None = None) -> None:
        s.require_dataset(ds, "DomainExplorer")
        s.require_variables(ds, (s.DOMAIN,), "DomainExplorer", "Run ds.ptyxr.cluster() first.")
        self.ds = (
            ds
            if s.PARTICLE in ds[s.DOMAIN].dims
            else ds.expand_dims({s.PARTICLE: [str(ds.attrs.get(s.ATTR_PARTICLE, "particle"))]})
        )
        self.particles: list[str] = [str(p) for p in self.ds[s.PARTICLE].values]  # particle dim added above
        if s.CLUSTER in self.ds.dims:
            self.clusters = [int(k) for k in self.ds[s.CLUSTER].values]
        else:
            labels = np.unique(self.ds[s.DOMAIN].values)
            self.clusters = [int(k) for k in labels if k >= 0]
        if not self.clusters:
            raise s.SchemaError("DomainExplorer: no cluster labels (domain is −1 everywhere).")
        cluster = self.clusters[0] if cluster is None else int(cluster)
        if cluster not in self.clusters:
            raise s.SchemaError(f"DomainExplorer: cluster {cluster} not in {self.clusters}.")
        self.cluster = cluster
        n = len(self.particles)
        super().__init__((max(2.6 * n, 7.5), 6.0), interactive)
        grid = self.figure.add_gridspec(2, 1, height_ratios=(1.2, 1), hspace=0.35)
        top, bottom = grid[0].subgridspec(1, n), grid[1].subgridspec(1, 2, width_ratios=(1.6, 1), wspace=0.35)
        self.map_axes = [self.figure.add_subplot(top[0, i]) for i in range(n)]
        self.ax_spectrum = self.figure.add_subplot(bottom[0, 0])
        self.ax_fraction = self.figure.add_subplot(bottom[0, 1])
        self.figure.subplots_adjust(left=0.08, right=0.97, top=0.93, bottom=0.1)
        w = self._widgets
        self.cluster_dropdown = w.Dropdown(options=self.clusters, value=self.cluster, description="cluster")
        self.cluster_dropdown.observe(self._on_cluster_change, names="value")
        self.table = w.HTML()
        self._box = w.VBox([self.cluster_dropdown, w.HBox([self.canvas_widget, self.table])])
        self._draw()

    def settings(self) -> dict[str, Any]:
        """Keyword arguments reproducing this view: ``DomainExplorer(ds, **explorer.settings())``."""
        return {"cluster": self.cluster}

    def select_cluster(self, cluster: int) -> None:
        """Highlight ``cluster`` (same as choosing it in the dropdown)."""
        self.cluster_dropdown.value = int(cluster)

    def highlight_mask(self, particle: str | int = 0) -> np.ndarray:
        """Boolean (y, x) mask of the highlighted pixels of ``particle`` (name or index) as drawn."""
        i = self.particles.index(str(particle)) if isinstance(particle, str) else int(particle)
        shown = self._images[i].get_array()
        return np.asarray(shown.filled(0) == 1, dtype=bool)

    def spectrum_data(self) -> dict[str, np.ndarray]:
        """``energy`` and ``spectrum`` of the highlighted cluster's mean spectrum as drawn (empty if none)."""
        lines = self._lines(self.ax_spectrum)
        if "cluster_spectrum" not in lines:
            return {}
        line = lines["cluster_spectrum"]
        return {"energy": np.asarray(line.get_xdata(), dtype=float), "spectrum": np.asarray(line.get_ydata(), float)}

    def fraction_data(self) -> dict[str, float]:
        """Bar heights drawn: group → N_V-weighted fraction of the highlighted cluster."""
        bars = [p for p in self.ax_fraction.patches if p.get_gid()]
        return {str(p.get_gid()).split(":", 1)[1]: float(p.get_height()) for p in bars}  # type: ignore[attr-defined]

    def _on_cluster_change(self, change: dict[str, Any]) -> None:
        self.cluster = int(change["new"])
        self._draw()

    def _draw(self) -> None:
        k = self.cluster
        colour = cluster_color(k)
        cmap = ListedColormap(["#d9d9d9", colour]).with_extremes(bad=BAD_COLOR)
        self._images = []
        for ax, name in zip(self.map_axes, self.particles, strict=True):
            ax.clear()
            domain = self.ds[s.DOMAIN].sel({s.PARTICLE: name}).transpose(s.Y, s.X)
            highlight = xr.where(domain >= 0, (domain == k).astype(float), np.nan)
            self._images.append(show_map(ax, highlight, cmap=cmap, vmin=0, vmax=1))
            count = int((domain == k).sum())
            ax.set_title(f"{name}: cluster {k} ({count} px)", fontsize=9)
        ax = self.ax_spectrum
        ax.clear()
        if s.CLUSTER_SPECTRUM in self.ds:
            spectra = self.ds[s.CLUSTER_SPECTRUM]
            energy = spectra[s.ENERGY].values.astype(float)
            for other in self.clusters:
                if other != k:
                    ax.plot(
                        energy, spectra.sel({s.CLUSTER: other}).values, lw=0.8, alpha=0.35, color=cluster_color(other)
                    )
            ax.plot(
                energy,
                spectra.sel({s.CLUSTER: k}).values,
                "-o",
                ms=2.5,
                lw=1.6,
                color=colour,
                gid="cluster_spectrum",
                label=f"cluster {k}",
            )
            ax.set_xlabel(label(spectra[s.ENERGY]), fontsize=8)
            ax.set_ylabel(wrapped_label(spectra, 24), fontsize=8)
            ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
        ax = self.ax_fraction
        ax.clear()
        if s.FRACTION in self.ds:
            fraction = self.ds[s.FRACTION].sel({s.CLUSTER: k})
            groups = (
                [str(g) for g in fraction[s.GROUP].values]
                if s.GROUP in fraction.coords
                else [str(i) for i in range(fraction.size)]
            )
            bars = ax.bar(groups, np.nan_to_num(fraction.values.astype(float)), color=colour, width=0.6)
            for g, bar in zip(groups, bars, strict=True):
                bar.set_gid(f"{s.FRACTION}:{g}")
            ax.set_ylim(0, 1)
            ax.set_ylabel(wrapped_label(self.ds[s.FRACTION], 24), fontsize=8)
        ax.tick_params(labelsize=7)
        self._update_table()
        self._redraw()

    def _update_table(self) -> None:
        rows = []
        if s.CLUSTER_CENTER in self.ds:
            centre = self.ds[s.CLUSTER_CENTER].sel({s.CLUSTER: self.cluster})
            for j, feat in enumerate(centre[s.FEATURE].values if s.FEATURE in centre.coords else []):
                units = self.ds[str(feat)].attrs.get(s.ATTR_UNITS, "") if str(feat) in self.ds else ""
                rows.append((f"centre {feat}", f"{float(centre.values[j]):.5g}", units))
        for name in self.particles:
            count = int((self.ds[s.DOMAIN].sel({s.PARTICLE: name}) == self.cluster).sum())
            rows.append((f"pixels in {name}", str(count), ""))
        cells = "".join(
            f"<tr><td><b>{html.escape(str(n))}</b></td><td>{html.escape(v)}</td><td>{html.escape(str(u))}</td></tr>"
            for n, v, u in rows
        )
        self.table.value = (
            f"<table style='font-size:11px'><tr><th>cluster {self.cluster}</th><th></th></tr>{cells}</table>"
        )
