"""The common grid (ptyxr.reconstruct.grid): interpolation matrices, probe resampling, lattice placement.

Checked against exact properties rather than stored numbers: interpolation reproduces the
polynomials its order is exact for, a resampled Gaussian keeps its width in metres, and a
probe patch's centre pixel is the lattice pixel nearest its position; and at the data level,
frames resampled vs. frames simulated at the common pixel, count conservation, the placement
of a hand-made scan (the forward model is test_reconstruct's).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_reconstruct import PITCH, Z, gaussian_probe, simulate, truth_object  # same folder, on sys.path

from ptyxr import schema as S
from ptyxr.optics import far_field, real_space_pixel_size
from ptyxr.reconstruct import grid


@pytest.mark.parametrize("order", [1, 3])
def test_resample_matrix_identity_at_scale_one(order):
    weights, inside = grid.resample_matrix(16, 1.0, order)
    np.testing.assert_allclose(weights, np.eye(16), atol=1e-12)
    assert inside.all()


@pytest.mark.parametrize(("order", "degree"), [(1, 1), (3, 1), (3, 2)])
@pytest.mark.parametrize("scale", [1.03, 1.2])
def test_resample_matrix_reproduces_polynomials_it_is_exact_for(order, degree, scale):
    # linear interpolation is exact for straight lines; Keys' cubic (a = −0.5) for quadratics
    # wherever its four taps exist (the outermost samples fall back to linear)
    n = 32
    weights, inside = grid.resample_matrix(n, scale, order)
    coord = (np.arange(n) - n // 2) * scale + n // 2
    poly = np.polynomial.Polynomial([0.3, -0.7, 0.05][: degree + 1])
    out = weights @ poly(np.arange(n, dtype=float))
    full = inside & (np.floor(coord) - 1 >= 0) & (np.floor(coord) + 2 <= n - 1) if order == 3 else inside
    np.testing.assert_allclose(out[full], poly(coord[full]), rtol=0, atol=1e-9)
    # the samples outside the measured axis are flagged and carry no weight
    np.testing.assert_array_equal(inside, (coord >= 0) & (coord <= n - 1))
    assert not weights[~inside].any()
    # rows of a partition of unity inside (the constant function is reproduced)
    np.testing.assert_allclose(weights[inside].sum(axis=1), 1.0, atol=1e-12)


def test_resample_matrix_rejects_other_orders():
    with pytest.raises(ValueError, match="order must be 1"):
        grid.resample_matrix(8, 1.1, order=2)


def test_resample_probe_keeps_photons_and_width_in_metres():
    n, sigma, scale = 64, 4.0, 1.1  # Gaussian of σ = 4 native pixels
    yy, xx = np.mgrid[:n, :n] - n // 2
    probe = (np.exp(-(yy**2 + xx**2) / (4 * sigma**2)) * np.exp(0.3j)).astype(np.complex64)  # |P|² has σ
    assert grid.resample_probe(probe, 1.0).dtype == np.complex64
    np.testing.assert_array_equal(grid.resample_probe(probe, 1.0), probe)
    out = grid.resample_probe(probe, scale)
    assert out.shape == probe.shape and out.dtype == np.complex64
    # Σ|P|² (the photon count) is kept exactly, up to float32 rounding
    assert np.isclose(np.sum(np.abs(out) ** 2), np.sum(np.abs(probe) ** 2), rtol=1e-5)
    # the finer pixel dx/s sees the same physical width as σ·s pixels, centred on N//2
    w = np.abs(out.astype(np.complex128)) ** 2
    var_y = np.sum(w * yy**2) / w.sum()
    assert np.isclose(np.sqrt(var_y), sigma * scale, rtol=0.01)  # bilinear smoothing: < 1 %
    assert abs(np.sum(w * xx) / w.sum()) < 1e-6
    # the phase is carried along
    np.testing.assert_allclose(np.angle(out[n // 2, n // 2]), 0.3, atol=1e-6)


def test_lattice_index_rounds_to_nearest_pixel_and_maps_nan_to_zero():
    dx = 10e-9
    pos = np.array([14.9e-9, 15.1e-9, -14.9e-9, -15.1e-9, 0.0, np.nan, 1e-6])
    np.testing.assert_array_equal(grid.lattice_index(pos, dx), [1, 2, -1, -2, 0, 0, 100])
    assert grid.lattice_index(pos, dx).dtype == np.int64


def test_common_grid_is_the_tight_union_of_patches_on_a_shared_lattice():
    rng = np.random.default_rng(3)
    dx, n = 12e-9, 16
    py = rng.uniform(-0.4e-6, 0.3e-6, (3, 20))
    px = rng.uniform(0.1e-6, 0.5e-6, (3, 20))
    py[1, 4] = px[1, 4] = np.nan  # a padding scan point
    g = grid.common_grid(py, px, dx, n)
    active = np.isfinite(py)
    np.testing.assert_array_equal(g.active, active)
    assert (g.offsets[~active] == 0).all()
    off = g.offsets[active]
    # every patch inside the grid, and the grid no larger than the patches need
    assert (off >= 0).all() and (off[:, 0] + n <= g.shape[0]).all() and (off[:, 1] + n <= g.shape[1]).all()
    assert off[:, 0].min() == 0 and off[:, 1].min() == 0
    assert off[:, 0].max() + n == g.shape[0] and off[:, 1].max() + n == g.shape[1]
    # the probe-centre pixel lies within half a pixel of the position, on the lattice anchored at 0 m
    cy = g.y[off[:, 0] + n // 2]
    cx = g.x[off[:, 1] + n // 2]
    assert np.all(np.abs(cy - py[active]) <= dx / 2 + 1e-18) and np.all(np.abs(cx - px[active]) <= dx / 2 + 1e-18)
    np.testing.assert_allclose(g.y / dx, np.round(g.y / dx), atol=1e-9)
    assert g.y.size == g.shape[0] and g.x.size == g.shape[1]
    # field(): each energy's union of patches, built independently pixel by pixel
    field = g.field(n)
    yy, xx = np.mgrid[: g.shape[0], : g.shape[1]]
    for e in range(3):
        ref = np.zeros(g.shape, bool)
        for oy, ox in g.offsets[e][g.active[e]]:
            ref |= (yy >= oy) & (yy < oy + n) & (xx >= ox) & (xx < ox + n)
        np.testing.assert_array_equal(field[e], ref)


# ------------------------------------------------------------------------ grid
def test_resample_identity_and_count_conservation():
    rng = np.random.default_rng(1)
    frames = rng.uniform(1, 2, (3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(grid.resample_frames(frames, 1.0), frames)
    out = grid.resample_frames(frames, 1.05)
    valid = np.isfinite(out[0])
    # measured pixels all land inside the resampled frame: only the outer ring is invalid
    assert valid[16, 16] and not valid[0, 0] and not valid[16, 31]
    # uniform density 1.5 ± 0.5: each output pixel holds s² as many counts (solid angle)
    assert np.isclose(np.nanmean(out) / frames.mean(), 1.05**2, rtol=0.01)
    # a NaN input pixel invalidates exactly the output pixels whose taps touch it
    frames[:, 16, 16] = np.nan
    out = grid.resample_frames(frames, 1.05)
    assert np.isnan(out[0, 16, 16]) and np.isfinite(out[0, 16, 20])


@pytest.mark.parametrize("order", [1, 3])
def test_resampled_data_equal_direct_simulation(order):
    """Frames at 5420 eV resampled to the 5540 eV pixel equal frames simulated at that pixel."""
    n, e_low, e_high = 64, 5420.0, 5540.0
    dxc = real_space_pixel_size(e_high, Z, PITCH, n)
    low = simulate([e_low], n=n, n_side=2, pixel_size=dxc)
    # direct: the same exit waves sampled at dx_c, i.e. a detector of pitch p·s at e_low
    s = real_space_pixel_size(e_low, Z, PITCH, n) / dxc
    ref = simulate_with_pitch(e_low, n, PITCH * s, low[S.POSITION_Y].values[0], low[S.POSITION_X].values[0])
    res = grid.resample_frames(low[S.INTENSITY].values[0], s, order=order)
    ok = np.isfinite(res)
    assert ok.mean() > 0.9  # only a thin outer ring (≈ N/2·(1 − 1/s) px wide) is lost
    err = np.abs(res[ok] - ref[ok]).sum() / ref[ok].sum()
    untouched = np.abs(low[S.INTENSITY].values[0][ok] - ref[ok]).sum() / ref[ok].sum()
    # the residual is interpolation error of a central peak only ~5 px wide (measured 1.7 %
    # linear, 1.1 % cubic); without resampling the mismatch is ~3 % and grows with N·(s − 1)
    assert err < (0.025 if order == 1 else 0.015), err
    assert err < (0.7 if order == 1 else 0.45) * untouched
    # counts per solid angle conserved: totals agree to the interpolation bias
    assert np.isclose(res[ok].sum(), ref[ok].sum(), rtol=0.02 if order == 1 else 0.002)


def simulate_with_pitch(energy, n, pitch, py, px, fwhm=0.6e-6, photons=1e7):
    dx = real_space_pixel_size(energy, Z, pitch, n)
    probe = gaussian_probe(n, dx, fwhm, photons)
    rel = (np.arange(n) - n // 2) * dx
    out = np.empty((py.size, n, n), dtype=np.float32)
    for k in range(py.size):
        yy, xx = np.meshgrid(py[k] + rel, px[k] + rel, indexing="ij")
        out[k] = np.abs(far_field(probe * truth_object(yy, xx, energy))) ** 2
    return out


def test_common_grid_placement():
    dx, n = 10e-9, 16
    py = np.array([[0.0, 104e-9, np.nan]])
    px = np.array([[-26e-9, 0.0, np.nan]])
    g = grid.common_grid(py, px, dx, n)
    # nearest pixel: 104 nm → 10, −26 nm → −3; grid = span + N (half a probe either side)
    assert g.shape == (10 + n, 3 + n)
    assert g.origin_y == -n // 2 and g.origin_x == -3 - n // 2
    np.testing.assert_array_equal(g.active, [[True, True, False]])
    # the probe centre pixel (offset + N//2) lies at the rounded position
    centre_y = g.y[g.offsets[0, :2, 0] + n // 2]
    centre_x = g.x[g.offsets[0, :2, 1] + n // 2]
    np.testing.assert_allclose(centre_y, [0.0, 100e-9], atol=1e-15)
    np.testing.assert_allclose(centre_x, [-30e-9, 0.0], atol=1e-15)
