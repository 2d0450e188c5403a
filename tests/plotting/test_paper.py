"""Paper figures (ptyxr.plotting.paper) and ds.ptyxr.plot show exactly the Dataset's values.

Fixtures are hand-built DESIGN §1 Datasets (tests/fixtures_chain.py) with a NaN pixel in
every map; expected values are recomputed here with plain numpy, independently of
ptyxr.plotting.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import fixtures_chain as fc  # noqa: E402  (tests/ is on sys.path: pytest rootdir-less "prepend" import mode)
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402

import ptyxr  # noqa: E402, F401  (registers the accessor)
from ptyxr import schema as s  # noqa: E402
from ptyxr.plotting import paper  # noqa: E402


def _axes(fig, gid):
    found = [ax for ax in fig.axes if ax.get_gid() == gid]
    assert len(found) == 1, f"expected one axes with gid {gid!r}, got {[a.get_gid() for a in fig.axes]}"
    return found[0]


def _image(ax) -> AxesImage:
    images = [im for im in ax.get_images()]
    assert len(images) == 1
    return images[0]


def _assert_image_is(image: AxesImage, expected: np.ndarray):
    """The drawn array equals ``expected`` with NaN masked (and nothing else masked).

    Panels are cropped to the particle (``paper.crop_to_particle``): then the drawn array
    must equal exactly one contiguous block of ``expected``, the one its extent names.
    """
    shown = image.get_array()
    expected = np.asarray(expected, dtype=float)
    if shown.shape != expected.shape:
        matches = [
            (i, j)
            for i in range(expected.shape[0] - shown.shape[0] + 1)
            for j in range(expected.shape[1] - shown.shape[1] + 1)
            if np.array_equal(
                expected[i : i + shown.shape[0], j : j + shown.shape[1]], shown.filled(np.nan), equal_nan=True
            )
        ]
        assert matches, f"the drawn {shown.shape} array is no block of the expected {expected.shape} map"
        i, j = matches[0]
        expected = expected[i : i + shown.shape[0], j : j + shown.shape[1]]
    np.testing.assert_array_equal(np.ma.getmaskarray(shown), np.isnan(expected))
    np.testing.assert_array_equal(shown.filled(np.nan), expected)
    assert image.origin == "lower"  # row 0 (smallest y) at the bottom


def _colorbar_labels(fig) -> list[str]:
    labels = []
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            labels.append(ax.get_ylabel() or ax.get_xlabel())
    return labels


# ------------------------------------------------------------------- Fig. 1
def test_figure1_images_are_highest_absorption_and_lowest_phase(chain):
    fig = paper.figure1(chain)
    for name in ("P1", "D1"):
        one = chain.sel({s.PARTICLE: name})
        _assert_image_is(_image(_axes(fig, f"absorption:{name}")), one[s.ABSORPTION].isel(energy=-1).values)
        _assert_image_is(_image(_axes(fig, f"phase:{name}")), one[s.PHASE].isel(energy=0).values)
        # the NaN pixel is shown in the bad colour, white
        assert _image(_axes(fig, f"phase:{name}")).get_cmap().get_bad().tolist() == [1.0, 1.0, 1.0, 1.0]
    labels = _colorbar_labels(fig)
    assert any("[1]" in lab and "5540 eV" in lab for lab in labels), labels
    assert any("[rad]" in lab and "5420 eV" in lab for lab in labels), labels


def test_figure1_extent_in_micrometres_and_scale_bar(chain):
    fig = paper.figure1(chain)
    ax = _axes(fig, "absorption:P1")
    left, right, bottom, top = _image(ax).get_extent()
    # pixel centres 0 … 11·40 nm, edges half a pixel beyond, in µm
    assert left == pytest.approx(-0.02) and right == pytest.approx(11 * 0.04 + 0.02)
    assert bottom == pytest.approx(-0.02) and top == pytest.approx(9 * 0.04 + 0.02)
    bars = [a for a in ax.artists if a.get_gid() == "scale_bar"]
    assert len(bars) == 1
    assert bars[0].txt_label.get_text() in ("50 nm", "100 nm")  # a 1-2-5 length ≈ 1/5 of 0.48 µm


def test_figure1_region_spectra_are_region_means(chain):
    # region centred on the NaN pixel's row: 120 nm square → 3×3 pixels (±40 nm), NaN ignored
    centre = (fc.NAN_PIXEL[0] * fc.PIXEL, (fc.NAN_PIXEL[1] - 1) * fc.PIXEL)
    fig = paper.figure1(chain, region_centres=[centre, centre])
    iy, ix = fc.NAN_PIXEL[0], fc.NAN_PIXEL[1] - 1
    offsets = []
    for name in ("P1", "D1"):
        one = chain.sel({s.PARTICLE: name})
        block = one[s.ABSORPTION].values[:, iy - 1 : iy + 2, ix - 1 : ix + 2].reshape(one.sizes[s.ENERGY], -1)
        expected_abs = np.nanmean(block, axis=1)  # 8 finite pixels per energy: no all-NaN slice
        block_phase = one[s.PHASE].values[:, iy - 1 : iy + 2, ix - 1 : ix + 2].reshape(one.sizes[s.ENERGY], -1)
        expected_phase = np.nanmean(block_phase, axis=1)
        (line_abs,) = [
            ln for ln in _axes(fig, "absorption_spectra").get_lines() if ln.get_gid() == f"absorption:{name}"
        ]
        (line_ph,) = [ln for ln in _axes(fig, "phase_spectra").get_lines() if ln.get_gid() == f"phase:{name}"]
        np.testing.assert_array_equal(line_abs.get_xdata(), one[s.ENERGY].values)
        shift = np.asarray(line_abs.get_ydata()) - expected_abs
        np.testing.assert_allclose(shift, shift[0], atol=1e-12)  # a constant vertical offset only
        offsets.append(shift[0])
        np.testing.assert_allclose(line_ph.get_ydata(), expected_phase, rtol=1e-12)
    assert offsets[0] == pytest.approx(0.0, abs=1e-12) and offsets[1] == pytest.approx(fig.spectrum_offset)
    assert fig.spectrum_offset > 0


def test_figure1_default_region_inside_valid_fit(chain_particles):
    ds = chain_particles[0]
    cy, cx = paper.default_region_centre(ds)
    iy, ix = int(np.argmin(np.abs(ds.y.values - cy))), int(np.argmin(np.abs(ds.x.values - cx)))
    assert bool(ds[s.FIT_VALID].values[iy, ix])
    mask = paper.region_mask(ds, (cy, cx))
    assert int(mask.sum()) == 9  # 120 nm / 40 nm pixels → 3×3


def test_figure1_single_particle_and_list(chain_particles):
    fig = paper.figure1(chain_particles[1])
    _assert_image_is(_image(_axes(fig, "absorption:D1")), chain_particles[1][s.ABSORPTION].isel(energy=-1).values)
    fig = paper.figure1(chain_particles, absorption_energy=5480.0, phase_energy=5455.0)
    nearest = chain_particles[0][s.ENERGY].sel(energy=5480.0, method="nearest").item()
    _assert_image_is(_image(_axes(fig, "absorption:P1")), chain_particles[0][s.ABSORPTION].sel(energy=nearest).values)
    _assert_image_is(_image(_axes(fig, "phase:P1")), chain_particles[0][s.PHASE].sel(energy=5455.0).values)


# ------------------------------------------------------------------- Fig. 2
def test_figure2_maps_shared_robust_limits_and_labels(chain):
    fig = paper.figure2(chain)
    for var in paper.FIGURE2_MAPS:
        pooled = chain[var].values
        lo, hi = np.nanpercentile(pooled, [2, 98])
        for name in ("P1", "D1"):
            image = _image(_axes(fig, f"{var}:{name}"))
            values = chain[var].sel({s.PARTICLE: name}).values
            assert np.isnan(values[fc.NAN_PIXEL])
            _assert_image_is(image, values)
            assert image.get_clim() == pytest.approx((lo, hi), rel=1e-12)
    labels = _colorbar_labels(fig)
    assert len(labels) == 3
    assert "edge energy" in labels[0] and "[eV]" in labels[0]
    assert "[1]" in labels[1] and "[eV]" in labels[2]


def test_figure2_needs_chemical_state(chain_particles):
    ds = chain_particles[0].drop_vars(s.EDGE_ENERGY)
    with pytest.raises(s.SchemaError, match="edge_energy"):
        paper.figure2(ds)


# ------------------------------------------------------------------- Fig. 3
def test_figure3_domain_colours_densities_and_fractions(chain):
    fig = paper.figure3(chain)
    for name in ("P1", "D1"):
        image = _image(_axes(fig, f"domain:{name}"))
        domain = chain[s.DOMAIN].sel({s.PARTICLE: name}).values
        _assert_image_is(image, np.where(domain >= 0, domain, np.nan))
        for k in range(fc.N_TYPES):  # label k is drawn in its fixed colour
            assert image.cmap(image.norm(k)) == pytest.approx(to_rgba(paper.cluster_color(k)))
        assert image.cmap.get_bad().tolist() == [1.0, 1.0, 1.0, 1.0]
    for feat in s.DOMAIN_FEATURES:
        ax = _axes(fig, f"density:{feat}")
        lines = {ln.get_gid(): ln for ln in ax.get_lines()}
        for k in range(fc.N_TYPES):
            line = lines[f"density:{feat}:{k}"]
            assert to_rgba(line.get_color()) == pytest.approx(to_rgba(paper.cluster_color(k)))
            # a probability density: integrates to ≈1 over the plotted range (KDE tails cut: allow 10 %)
            area = np.trapezoid(line.get_ydata(), line.get_xdata())
            assert 0.9 < area <= 1.0 + 1e-6
        # each cluster's density peaks at its own centre: edge energies of the three types are 3 eV apart
        # with 0.2 eV scatter, so the KDE mode lies within 0.5 eV of the cluster's mean
        if feat == s.EDGE_ENERGY:
            for k in range(fc.N_TYPES):
                line = lines[f"density:{feat}:{k}"]
                mode = line.get_xdata()[np.argmax(line.get_ydata())]
                assert mode == pytest.approx(float(chain[s.CLUSTER_CENTER].sel(cluster=k, feature=feat)), abs=0.5)
    bars = {p.get_gid(): p for p in _axes(fig, "fraction").patches}
    for g, group in enumerate(chain[s.GROUP].values):
        for k in range(fc.N_TYPES):
            bar = bars[f"fraction:{group}:{k}"]
            assert bar.get_height() == pytest.approx(chain[s.FRACTION].values[g, k])
            assert bar.get_facecolor() == pytest.approx(to_rgba(paper.cluster_color(k)))


def test_cluster_colours_distinct_and_stable():
    assert len(set(paper.CLUSTER_COLORS[:10])) == 10
    assert paper.cluster_color(0) == paper.cluster_color(len(paper.CLUSTER_COLORS))


# ------------------------------------------------------------------ Fig. S3
@pytest.mark.parametrize("as_dataset", [False, True])
def test_figure_s3_marks_suggested_k(as_dataset):
    elbow = fc.elbow_result(as_dataset=as_dataset)
    fig = paper.figure_s3(elbow)
    ax = fig.axes[0]
    lines = {ln.get_gid(): ln for ln in ax.get_lines()}
    da = elbow["sse"] if as_dataset else elbow
    np.testing.assert_array_equal(lines["sse"].get_xdata(), da["k"].values)
    np.testing.assert_array_equal(lines["sse"].get_ydata(), da.values)
    assert list(lines["suggested_k"].get_xdata()) == [3]
    assert list(lines["suggested_k"].get_ydata()) == [da.values[2]]


def test_figure_s3_rejects_ambiguous_input():
    with pytest.raises(s.SchemaError, match="one 1-D variable"):
        paper.figure_s3(xr.Dataset({"a": ("k", [1.0, 2.0]), "b": ("k", [1.0, 2.0])}))


# ---------------------------------------------------------------- save all
def test_save_paper_figures_writes_sane_pngs(tmp_path):
    from matplotlib.image import imread

    result = fc.chain_result()
    paths = paper.save_paper_figures(result, tmp_path / "figs")
    assert [p.name for p in paths] == ["fig1.png", "fig2.png", "fig3.png", "figS3.png"]
    for path in paths:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 10_000  # real content, not an empty canvas
        height, width = imread(path).shape[:2]
        assert 300 < width < 3000 and 300 < height < 3000  # figsize × 120 dpi


# ---------------------------------------------------------------- accessor
def test_accessor_plot_methods(chain, chain_particles):
    from matplotlib.figure import Figure

    assert isinstance(chain.ptyxr.plot.chemical_maps(), Figure)
    fig = chain.ptyxr.plot.domains()
    _assert_image_is(
        _image(_axes(fig, "domain:P1")),
        chain[s.DOMAIN].sel(particle="P1").where(chain[s.DOMAIN].sel(particle="P1") >= 0).values,
    )
    fig = chain_particles[0].ptyxr.plot.figure1()
    _assert_image_is(_image(_axes(fig, "absorption:P1")), chain_particles[0][s.ABSORPTION].isel(energy=-1).values)
    fig = fc.elbow_result(as_dataset=True).ptyxr.plot.elbow()
    assert [ln.get_gid() for ln in fig.axes[0].get_lines()][:2] == ["sse", "suggested_k"]


# ------------------------------------------------- with the real stage outputs
def test_figures_on_real_cluster_and_elbow_outputs():
    domains = pytest.importorskip("ptyxr.domains")
    parts = [p.drop_vars("true_type") for p in fc.particle_datasets()]
    clustered = domains.combine_particles(parts).ptyxr.cluster(n_clusters=3)
    fig = paper.figure3(clustered)
    for name in ("P1", "D1"):
        domain = clustered[s.DOMAIN].sel(particle=name).values
        _assert_image_is(_image(_axes(fig, f"domain:{name}")), np.where(domain >= 0, domain, np.nan))
    fig = clustered.ptyxr.plot.elbow(k=range(1, 6), progress=False)
    elbow = domains.elbow(clustered, k=range(1, 6), progress=False)
    lines = {ln.get_gid(): ln for ln in fig.axes[0].get_lines()}
    np.testing.assert_allclose(lines["sse"].get_ydata(), elbow.values)
    assert list(lines["suggested_k"].get_xdata()) == [elbow.attrs["suggested_k"]]


def test_figure1_on_simulated_spectra():
    simulate = pytest.importorskip("ptyxr.simulate")
    _, truth = simulate.demo_dataset("tiny", seed=0)
    spectra = simulate.spectra_from_truth(truth, noise=0.0)
    fig = paper.figure1(spectra)
    name = spectra.attrs.get(s.ATTR_PARTICLE, "particle")
    _assert_image_is(_image(_axes(fig, f"absorption:{name}")), spectra[s.ABSORPTION].isel(energy=-1).values)
    # without a fit the region sits at the material centroid: its spectrum shows an edge jump
    (line,) = _axes(fig, "absorption_spectra").get_lines()
    assert line.get_ydata()[-1] - line.get_ydata()[0] > 0


def test_figure3_fraction_error_bars_span_the_bootstrap_interval():
    domains = pytest.importorskip("ptyxr.domains")
    parts = [p.drop_vars("true_type") for p in fc.particle_datasets()]
    clustered = domains.combine_particles(parts).ptyxr.cluster(n_clusters=3)
    ax = _axes(paper.figure3(clustered), "fraction")
    bars = {p.get_gid(): p for p in ax.patches}
    errors = {c.get_gid(): c for c in ax.collections if c.get_gid()}
    low, high = clustered[s.FRACTION_LOW].values, clustered[s.FRACTION_HIGH].values
    for g, group in enumerate(clustered[s.GROUP].values):
        for k in range(3):
            (start, end), *_ = errors[f"{s.FRACTION_LOW}:{group}:{k}"].get_segments()
            bar = bars[f"{s.FRACTION}:{group}:{k}"]
            # the interval drawn through the segment's middle: its length is high − low, its
            # lower end sits (fraction − low) below the middle
            assert end[1] - start[1] == pytest.approx(high[g, k] - low[g, k], abs=1e-9)
            middle = bar.get_y() + bar.get_height() / 2
            assert start[1] == pytest.approx(middle - (clustered[s.FRACTION].values[g, k] - low[g, k]), abs=1e-9)
