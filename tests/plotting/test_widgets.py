"""Explorers, driven programmatically: clicks, dropdowns and settings() show the right data.

Expected values come straight from the hand-built Datasets (tests/fixtures_chain.py) and
from eq. (1) written out independently in the fixtures module.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import fixtures_chain as fc  # noqa: E402  (tests/ is on sys.path: pytest "prepend" import mode)
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backend_bases import MouseEvent  # noqa: E402

from ptyxr import schema as s  # noqa: E402
from ptyxr.widgets import COMPONENTS, DomainExplorer, PixelExplorer  # noqa: E402


def _click(explorer: PixelExplorer, y_m: float, x_m: float, button: int = 1) -> None:
    """Send a synthetic mouse press at data position (y, x) [m] through the canvas callbacks."""
    canvas = explorer.figure.canvas
    canvas.draw()  # fixes the equal-aspect axes box, as on screen
    xd, yd = explorer.ax_map.transData.transform((x_m * 1e6, y_m * 1e6))
    event = MouseEvent("button_press_event", canvas, xd, yd, button=button)
    canvas.callbacks.process("button_press_event", event)


def _pixel_values(ds, particle, iy, ix):
    px = ds.sel({s.PARTICLE: particle}).isel({s.Y: iy, s.X: ix})
    return px[s.ABSORPTION].values, px[s.PHASE].values, {p: float(px[p]) for p in s.FIT_PARAMETERS}


def test_default_view_shows_map_and_pixel_fit(chain):
    ex = PixelExplorer(chain, interactive=False)
    assert ex.settings()["map_variable"] == s.EDGE_ENERGY and ex.settings()["particle"] == "P1"
    expected_map = chain[s.EDGE_ENERGY].sel(particle="P1").values
    shown = ex.map_data()
    np.testing.assert_array_equal(np.ma.getmaskarray(shown), np.isnan(expected_map))
    np.testing.assert_array_equal(shown.filled(np.nan), expected_map)

    iy, ix = ex.settings()["pixel"]
    absorption, phase, params = _pixel_values(chain, "P1", iy, ix)
    data = ex.spectrum_data()
    np.testing.assert_array_equal(data["energy"], chain[s.ENERGY].values)
    np.testing.assert_array_equal(data["absorption"], absorption)
    np.testing.assert_array_equal(data["phase"], phase)
    # the drawn fit is eq. (1) of this pixel's parameters (independent formula; float64 round-off only)
    np.testing.assert_allclose(data["fit"], fc.eq1(data["fit_energy"], **params), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sum(data["components"].values()), data["fit"], rtol=1e-12, atol=1e-12)
    assert set(data["components"]) == set(COMPONENTS)
    np.testing.assert_allclose(data["components"]["constant"], params["a"])
    np.testing.assert_allclose(data["residual"], absorption - fc.eq1(data["energy"], **params), rtol=1e-10, atol=1e-12)
    # the default pixel has the largest edge jump among valid fits
    b1 = np.where(chain[s.FIT_VALID].sel(particle="P1"), chain["b1"].sel(particle="P1"), np.nan)
    assert (iy, ix) == np.unravel_index(np.nanargmax(b1), b1.shape)
    assert ex.canvas_widget.value == b""  # static PNG rendered lazily, once the widget is asked for
    assert ex.widget.children[-1].children[0] is ex.canvas_widget
    png = ex.canvas_widget.value
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_click_selects_nearest_pixel_and_shows_its_spectra(chain):
    ex = PixelExplorer(chain, particle="D1", interactive=False)
    iy, ix = 2, 9
    # a click a third of a pixel off the centre still picks that pixel
    _click(ex, chain[s.Y].values[iy] + fc.PIXEL / 3, chain[s.X].values[ix] - fc.PIXEL / 3)
    assert ex.settings()["pixel"] == (iy, ix)
    assert (ex.y_box.value, ex.x_box.value) == (iy, ix)
    absorption, phase, params = _pixel_values(chain, "D1", iy, ix)
    data = ex.spectrum_data()
    np.testing.assert_array_equal(data["absorption"], absorption)
    np.testing.assert_array_equal(data["phase"], phase)
    np.testing.assert_allclose(data["fit"], fc.eq1(data["fit_energy"], **params), rtol=1e-12)
    marker = [ln for ln in ex.ax_map.get_lines() if ln.get_gid() == "pixel_marker"][0]
    assert marker.get_xdata()[0] == pytest.approx(chain[s.X].values[ix] * 1e6)
    assert marker.get_ydata()[0] == pytest.approx(chain[s.Y].values[iy] * 1e6)
    # a parameter table with value and stderr of the pixel
    b2_err = float(chain["b2_stderr"].sel(particle="D1").values[iy, ix])
    assert f"{params['b2']:.6g}" in ex.table.value and f"± {b2_err:.2g}" in ex.table.value
    # clicks outside the map change nothing
    _click(ex, -10e-6, -10e-6)
    assert ex.settings()["pixel"] == (iy, ix)


def test_nan_pixel_shows_nan_spectra_without_fit(chain):
    ex = PixelExplorer(chain, interactive=False)
    ex.select_pixel(*fc.NAN_PIXEL)
    data = ex.spectrum_data()
    assert np.isnan(data["absorption"]).all() and np.isnan(data["phase"]).all()
    assert "fit" not in data  # no fit drawn where the fit is invalid (NaN parameters)
    vacuum = (0, 0)
    ex.select_pixel(*vacuum)
    np.testing.assert_array_equal(ex.spectrum_data()["absorption"], _pixel_values(chain, "P1", 0, 0)[0])


def test_index_boxes_select_pixel(chain):
    ex = PixelExplorer(chain, interactive=False)
    ex.y_box.value = 4
    ex.x_box.value = 2
    assert ex.settings()["pixel"] == (4, 2)
    np.testing.assert_array_equal(ex.spectrum_data()["absorption"], _pixel_values(chain, "P1", 4, 2)[0])


def test_dropdowns_change_map_and_particle(chain):
    ex = PixelExplorer(chain, interactive=False)
    ex.map_dropdown.value = s.PRE_EDGE_RATIO
    np.testing.assert_array_equal(ex.map_data().filled(np.nan), chain[s.PRE_EDGE_RATIO].sel(particle="P1").values)
    label = ex.ax_colorbar.get_xlabel()
    assert "PE/delta mu t" in label and "[eV]" in label
    ex.particle_dropdown.value = "D1"
    np.testing.assert_array_equal(ex.map_data().filled(np.nan), chain[s.PRE_EDGE_RATIO].sel(particle="D1").values)
    iy, ix = ex.settings()["pixel"]
    np.testing.assert_array_equal(ex.spectrum_data()["absorption"], _pixel_values(chain, "D1", iy, ix)[0])
    ex.select_map(s.DOMAIN)  # integer labels in the fixed cluster colours, −1 masked
    domain = chain[s.DOMAIN].sel(particle="D1").values
    np.testing.assert_array_equal(np.ma.getmaskarray(ex.map_data()), domain < 0)
    assert s.EDGE_ENERGY in ex.map_dropdown.options and "b2" in ex.map_dropdown.options


def test_settings_round_trip(chain):
    ex = PixelExplorer(chain, interactive=False)
    ex.select_particle("D1")
    ex.select_map(s.ELECTRONS_PER_VANADIUM)
    ex.select_pixel(3, 4)
    settings = ex.settings()
    assert settings == {"map_variable": s.ELECTRONS_PER_VANADIUM, "particle": "D1", "pixel": (3, 4)}
    again = PixelExplorer(chain, **settings, interactive=False)
    assert again.settings() == settings
    np.testing.assert_array_equal(again.map_data().filled(np.nan), ex.map_data().filled(np.nan))
    for key in ("absorption", "phase", "fit"):
        np.testing.assert_array_equal(again.spectrum_data()[key], ex.spectrum_data()[key])


def test_single_particle_and_errors():
    one = fc.particle_dataset("P9", "as-prepared")
    ex = PixelExplorer(one, pixel=(4, 4), interactive=False)
    assert ex.settings() == {"map_variable": s.EDGE_ENERGY, "particle": None, "pixel": (4, 4)}
    np.testing.assert_array_equal(ex.spectrum_data()["absorption"], one[s.ABSORPTION].values[:, 4, 4])
    assert ex.particle_dropdown.disabled
    spectra_only = one[[s.ABSORPTION, s.PHASE, s.MATERIAL]]
    ex = PixelExplorer(spectra_only, interactive=False)  # no fit: map of material, data only
    assert ex.settings()["map_variable"] == s.MATERIAL and "fit" not in ex.spectrum_data()
    with pytest.raises(s.SchemaError, match="map_variable"):
        PixelExplorer(one, map_variable="nope", interactive=False)
    with pytest.raises(s.SchemaError, match="outside"):
        PixelExplorer(one, pixel=(99, 0), interactive=False)
    with pytest.raises(s.SchemaError, match="absorption"):
        PixelExplorer(one.drop_vars(s.ABSORPTION), interactive=False)


def test_interactive_ipympl_canvas_handles_clicks(chain):
    pytest.importorskip("ipympl")
    from ipympl.backend_nbagg import Canvas

    ex = PixelExplorer(chain, interactive=True)
    assert isinstance(ex.canvas_widget, Canvas) and ex.figure.canvas is ex.canvas_widget
    _click(ex, chain[s.Y].values[6], chain[s.X].values[2])
    assert ex.settings()["pixel"] == (6, 2)
    np.testing.assert_array_equal(ex.spectrum_data()["absorption"], _pixel_values(chain, "P1", 6, 2)[0])
    assert ex._repr_mimebundle_()  # displayable as a widget


# -------------------------------------------------------------- DomainExplorer
def test_domain_explorer_highlights_cluster(chain):
    ex = DomainExplorer(chain, interactive=False)
    assert ex.settings() == {"cluster": 0}
    for k in (0, 2, 1):
        ex.cluster_dropdown.value = k
        for name in ("P1", "D1"):
            domain = chain[s.DOMAIN].sel(particle=name).values
            np.testing.assert_array_equal(ex.highlight_mask(name), domain == k)
            shown = ex._images[ex.particles.index(name)].get_array()
            np.testing.assert_array_equal(np.ma.getmaskarray(shown), domain < 0)  # missing pixels white
        spectrum = ex.spectrum_data()
        np.testing.assert_array_equal(spectrum["energy"], chain[s.ENERGY].values)
        np.testing.assert_array_equal(spectrum["spectrum"], chain[s.CLUSTER_SPECTRUM].sel(cluster=k).values)
        fractions = ex.fraction_data()
        for g, group in enumerate(chain[s.GROUP].values):
            assert fractions[str(group)] == pytest.approx(chain[s.FRACTION].values[g, k])
        assert f"{float(chain[s.CLUSTER_CENTER].sel(cluster=k, feature=s.EDGE_ENERGY)):.5g}" in ex.table.value
    assert ex.settings() == {"cluster": 1}
    again = DomainExplorer(chain, **ex.settings(), interactive=False)
    np.testing.assert_array_equal(again.highlight_mask("D1"), ex.highlight_mask("D1"))
    with pytest.raises(s.SchemaError, match="cluster 7"):
        DomainExplorer(chain, cluster=7, interactive=False)
    with pytest.raises(s.SchemaError, match="domain"):
        DomainExplorer(chain.drop_vars(s.DOMAIN), interactive=False)


def test_accessor_opens_explorers(chain):
    ex = chain.ptyxr.plot.pixel_explorer(particle="D1", pixel=(3, 3), interactive=False)
    assert isinstance(ex, PixelExplorer) and ex.settings()["pixel"] == (3, 3)
    dx = chain.ptyxr.plot.domain_explorer(cluster=2, interactive=False)
    assert isinstance(dx, DomainExplorer) and dx.settings() == {"cluster": 2}
