"""Interactive views (ptyxr.plotting.interactive, hvplot/holoviews) show exactly the Dataset's values.

Fixtures are hand-built DESIGN §1 Datasets (tests/fixtures_chain.py, through tests/conftest.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import ptyxr  # noqa: F401  (registers the accessor)
from ptyxr import schema as s


def test_stack_view_frames_hold_the_stack(chain):
    from ptyxr.plotting.interactive import stack_view

    hmap = stack_view(chain, dynamic=False)
    assert [d.name for d in hmap.kdims] == [s.PARTICLE, s.ENERGY]
    assert len(hmap) == chain.sizes[s.PARTICLE] * chain.sizes[s.ENERGY]
    for name in ("P1", "D1"):
        for energy in chain[s.ENERGY].values[[0, 7, -1]]:
            frame = hmap[(name, energy)]
            expected = chain[s.ABSORPTION].sel(particle=name, energy=energy).values
            np.testing.assert_array_equal(frame.dimension_values(2, flat=False), expected)
    frame = hmap[("P1", chain[s.ENERGY].values[0])]
    np.testing.assert_allclose(np.unique(frame.dimension_values(s.X)), chain[s.X].values * 1e6)
    assert frame.vdims[0].label == chain[s.ABSORPTION].attrs[s.ATTR_LONG_NAME]
    assert frame.vdims[0].unit == "1"


def test_stack_view_dynamic_single_particle(chain_particles):
    from ptyxr.plotting.interactive import stack_view

    dmap = chain_particles[0].ptyxr.plot.stack(s.PHASE)
    energy = chain_particles[0][s.ENERGY].values[3]
    frame = dmap[energy]
    np.testing.assert_array_equal(
        frame.dimension_values(2, flat=False), chain_particles[0][s.PHASE].sel(energy=energy).values
    )
    with pytest.raises(s.SchemaError, match="particle"):
        stack_view(chain_particles[0], particle="P1")


def test_domain_scatter_links_maps_and_features(chain):
    import holoviews as hv

    from ptyxr.plotting.interactive import domain_table

    table = domain_table(chain)
    domain = chain[s.DOMAIN].values
    assert len(table) == int((domain >= 0).sum())  # the NaN pixel and vacuum are left out
    for _, row in table.sample(5, random_state=0).iterrows():
        px = chain.sel({s.PARTICLE: row[s.PARTICLE], s.Y: row[s.Y], s.X: row[s.X]})
        assert row[s.DOMAIN] == int(px[s.DOMAIN])
        for feat in s.DOMAIN_FEATURES:
            assert row[feat] == float(px[feat])

    selection = hv.link_selections.instance()
    layout = chain.ptyxr.plot.scatter(selection=selection)
    assert len(layout) == 2 + 3  # two particle maps + three feature pairs
    hv.render(layout, backend="bokeh")  # builds the bokeh models (no browser)
    # a brush in feature space selects the same pixels everywhere: filter the shared table
    selection.selection_expr = hv.dim(s.EDGE_ENERGY) > 5482.5
    picked = selection.filter(hv.Dataset(table)).data
    assert set(picked[s.DOMAIN]) == {2}  # only type 2 has edges at 5484 eV
    assert len(picked) == int(((domain == 2) & (chain[s.EDGE_ENERGY].values > 5482.5)).sum())
