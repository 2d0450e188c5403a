"""One common real-space grid for all energies: detector resampling and patch placement.

Since branch foreign-engine ``reconstruct`` iterates each energy on its native pixel by
default (``native_grids=True``: a :func:`common_grid` per energy at dx(E), no detector
resampling) and uses the common grid for KKR and the output; the frame resampling below is
the ``native_grids=False`` path. The reason against resampling the data: a focused probe's
far field is its pupil, a few-pixel disc with sharp edges, which no interpolant reproduces
to within the photon noise at a 2 % scale change.

Why: the real-space pixel of far-field ptychography is dx(E) = λ(E) z / (N p), so it
shrinks with energy (≈ 2 % across 5420–5540 eV). Reconstructing every energy on its own
grid would force an image resampling before KKR and spectra. Instead the *detector data*
are resampled once, before ePIE, so that every energy has the same real-space pixel
dx_c (default: the finest, i.e. the highest energy's). Then one object array
(energy, y, x) serves all energies, and KKR acts directly across energies.

Derivation. Detector pixel j sits at spatial frequency q_j = (j − N//2) p/(λ z) =
(j − N//2)/(N dx(E)). A frame reconstructed on pixels dx_c needs samples at
q_i = (i − N//2)/(N dx_c). So output pixel i samples the measured frame at the
(fractional) detector coordinate

    c_i = (i − N//2) · s + N//2,        s = dx(E) / dx_c,

i.e. an effective detector pitch p_eff = s·p. With dx_c the finest pixel, s ≥ 1: the
measured frame lands in the central N/s pixels and the outer ring of the resampled frame
(|i − N//2| > (N//2)/s, a few pixels at the lowest energies) was never measured; it is
marked invalid (NaN) so modulus replacement leaves it free. The cost: at lower energies
the highest spatial frequencies of the common grid are unconstrained by data (a thin
outer ring in Fourier space), and the real-space probe window N·dx_c is slightly smaller
than the native N·dx(E). With ``pixel_size`` larger than some dx(E) (s < 1) the outer
measured ring of those energies is discarded instead.

Counts: the output pixel subtends s² times the solid angle of a measured pixel, so the
interpolated counts (a density per measured pixel) are multiplied by s² — the total
counts of the frame are conserved. Interpolation is separable (linear or Keys cubic)
and applied as two small matrices, one batched matmul per energy.

Patch placement: the probe centre (probe-array pixel N//2, N//2) sits at the nearest
grid pixel of its position, ``floor(position/dx + 0.5)`` on a lattice anchored at 0 m,
so particles reconstructed separately share one lattice and combine without resampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def resample_matrix(n: int, scale: float, order: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Separable interpolation matrix from a measured axis to the common-grid axis.

    Parameters
    ----------
    n : int
        Number of detector pixels N along the axis (same for input and output).
    scale : float
        s = dx(E)/dx_c: output pixel i samples input coordinate (i − N//2)·s + N//2.
    order : {1, 3}
        1 = linear, 3 = Keys cubic convolution (a = −0.5; linear in the outermost pixel
        whose cubic taps would leave the frame).

    Returns
    -------
    weights : ndarray, shape (n, n), float64
        ``out = weights @ in`` along the axis (no count scaling applied).
    inside : ndarray, shape (n,), bool
        True where the output sample lies inside the measured axis (all its taps exist).
    """
    if order not in (1, 3):
        raise ValueError(f"order must be 1 (linear) or 3 (cubic), got {order}")
    centre = n // 2
    coord = (np.arange(n) - centre) * float(scale) + centre
    j = np.arange(n)
    dist = np.abs(coord[:, None] - j[None, :])
    if order == 1:
        weights = np.clip(1.0 - dist, 0.0, None)
        inside = (coord >= -1e-9) & (coord <= n - 1 + 1e-9)
    else:
        a = -0.5
        w1 = (a + 2) * dist**3 - (a + 3) * dist**2 + 1
        w2 = a * dist**3 - 5 * a * dist**2 + 8 * a * dist - 4 * a
        weights = np.where(dist <= 1, w1, np.where(dist < 2, w2, 0.0))
        # cubic taps reach floor(c)-1 … floor(c)+2; on an exact node only the node counts
        frac = coord - np.floor(coord)
        exact = np.isclose(frac, 0.0, atol=1e-9) | np.isclose(frac, 1.0, atol=1e-9)
        inside = np.where(
            exact,
            (coord >= -1e-9) & (coord <= n - 1 + 1e-9),
            (np.floor(coord) - 1 >= 0) & (np.floor(coord) + 2 <= n - 1),
        )
        # at the frame's edge the 4-tap kernel lacks a neighbour: fall back to linear there
        # rather than losing one more pixel ring
        linear = (coord >= -1e-9) & (coord <= n - 1 + 1e-9)
        edge = linear & ~inside
        weights[edge] = np.clip(1.0 - dist[edge], 0.0, None)
        inside = linear
    weights[~inside] = 0.0
    return weights, inside


def _sandwich(w: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """``w @ f @ w.T`` for every frame f of ``frames`` (..., N, N), as two single matrix products.

    numpy's stacked ``w @ frames`` loops over the frames without BLAS (≈ 10× slower for a
    scan's frames); here all frames go through one GEMM per side, each output element the
    same dot product (same order of terms) as the per-frame product.
    """
    shape = frames.shape
    n = shape[-1]
    f = frames.reshape(-1, n, n)
    left = np.matmul(w, f.transpose(1, 0, 2).reshape(n, -1))  # w @ f for all frames at once
    left = left.reshape(n, f.shape[0], n).transpose(1, 0, 2).reshape(-1, n)
    return np.matmul(left, w.T).reshape(shape)


def resample_frames(frames: np.ndarray, scale: float, mask: np.ndarray | None = None, order: int = 1) -> np.ndarray:
    """Resample diffraction frames of one energy onto the common-grid detector sampling.

    Parameters
    ----------
    frames : ndarray, shape (..., N, N)
        Counts; NaN marks invalid pixels.
    scale : float
        s = dx(E)/dx_c (see module docstring).
    mask : ndarray, shape (N, N), bool, optional
        True = valid detector pixel.
    order : {1, 3}
        Interpolation order.

    Returns
    -------
    ndarray, shape (..., N, N), float32
        Counts per resampled pixel (scaled by s² to conserve counts per solid angle);
        NaN where the sample needs a measured pixel that is invalid or outside the frame.
    """
    frames = np.asarray(frames)
    n = frames.shape[-1]
    invalid = ~np.isfinite(frames)
    if mask is not None:
        invalid |= ~np.asarray(mask, dtype=bool)
    if scale == 1.0:  # exact identity: no interpolation error, no copy beyond the NaN fill
        out = np.array(frames, dtype=np.float32)
        out[invalid] = np.nan
        return out
    w, inside = resample_matrix(n, scale, order)
    clean = np.where(invalid, 0.0, frames).astype(np.float64)
    out = _sandwich(w, clean)
    # an output pixel is invalid if any tap with non-zero weight is invalid or outside
    taps = (w != 0).astype(np.float64)
    flat = invalid.reshape(-1, n, n)
    if flat.shape[0] > 1 and not (flat != flat[0]).any():  # one mask for all frames (the usual case)
        bad = _sandwich(taps, flat[0].astype(np.float64)) > 0
    else:
        bad = _sandwich(taps, invalid.astype(np.float64)) > 0
    bad |= ~(inside[:, None] & inside[None, :])
    out *= float(scale) ** 2
    if order == 3:
        np.clip(out, 0.0, None, out=out)  # cubic overshoot must not create negative counts
    out[np.broadcast_to(bad, out.shape)] = np.nan
    return out.astype(np.float32)


def resample_probe(probe: np.ndarray, scale: float) -> np.ndarray:
    """Resample a real-space probe from its native pixel dx(E) to dx_c = dx(E)/``scale``.

    Bilinear interpolation of real and imaginary parts about the centre pixel N//2; the
    result keeps Σ|P|² (the photon count) of the input.
    """
    from scipy.ndimage import map_coordinates

    probe = np.asarray(probe)
    n = probe.shape[-1]
    if scale == 1.0:
        return probe.astype(np.complex64)
    c = n // 2
    # output pixel i (pitch dx_c) lies at native coordinate (i − c)/s + c
    coord = (np.arange(n) - c) / float(scale) + c
    yy, xx = np.meshgrid(coord, coord, indexing="ij")
    out = map_coordinates(probe.real.astype(np.float64), [yy, xx], order=1, mode="constant") + 1j * map_coordinates(
        probe.imag.astype(np.float64), [yy, xx], order=1, mode="constant"
    )
    total_in = np.sum(np.abs(probe) ** 2)
    total_out = np.sum(np.abs(out) ** 2)
    if total_out > 0:
        out *= np.sqrt(total_in / total_out)
    return out.astype(np.complex64)


@dataclass(frozen=True)
class Grid:
    """The common object grid of one particle.

    Attributes
    ----------
    pixel_size : float
        dx_c [m].
    origin_y, origin_x : int
        Lattice index of grid pixel (0, 0): its centre is at origin·dx_c [m].
    shape : tuple of int
        (ny, nx).
    offsets : ndarray, shape (n_energy, n_scan, 2), int64
        Top-left grid pixel of each probe patch (0 for padding scan points).
    active : ndarray, shape (n_energy, n_scan), bool
        False for padding scan points (NaN positions).
    """

    pixel_size: float
    origin_y: int
    origin_x: int
    shape: tuple[int, int]
    offsets: np.ndarray
    active: np.ndarray

    def field(self, n_probe: int) -> np.ndarray:
        """Union of each energy's probe patches, shape (n_energy, ny, nx), bool."""
        out = np.zeros((self.active.shape[0], *self.shape), dtype=bool)
        for e in range(out.shape[0]):
            for oy, ox in self.offsets[e][self.active[e]]:
                out[e, oy : oy + n_probe, ox : ox + n_probe] = True
        return out

    @property
    def y(self) -> np.ndarray:
        """Pixel-centre coordinates along y [m]."""
        return (self.origin_y + np.arange(self.shape[0])) * self.pixel_size

    @property
    def x(self) -> np.ndarray:
        """Pixel-centre coordinates along x [m]."""
        return (self.origin_x + np.arange(self.shape[1])) * self.pixel_size


def lattice_index(position: np.ndarray, pixel_size: float) -> np.ndarray:
    """Nearest lattice pixel ``floor(position/dx + 0.5)`` of positions [m] (NaN → 0)."""
    index = np.floor(np.asarray(position, dtype=float) / pixel_size + 0.5)
    return np.where(np.isfinite(index), index, 0).astype(np.int64)


def common_grid(position_y: np.ndarray, position_x: np.ndarray, pixel_size: float, n_probe: int) -> Grid:
    """The grid covering every probe patch: union of scanned fields plus half a probe.

    Parameters
    ----------
    position_y, position_x : ndarray, shape (n_energy, n_scan)
        Probe-centre positions [m]; NaN = padding.
    pixel_size : float
        Common pixel size dx_c [m].
    n_probe : int
        Probe (frame) size N.
    """
    active = np.isfinite(position_y) & np.isfinite(position_x)
    iy, ix = lattice_index(position_y, pixel_size), lattice_index(position_x, pixel_size)
    half = n_probe // 2
    y0 = int(iy[active].min()) - half
    x0 = int(ix[active].min()) - half
    ny = int(iy[active].max()) - int(iy[active].min()) + n_probe
    nx = int(ix[active].max()) - int(ix[active].min()) + n_probe
    offsets = np.stack([iy - half - y0, ix - half - x0], axis=-1)
    offsets[~active] = 0
    return Grid(float(pixel_size), y0, x0, (ny, nx), offsets.astype(np.int64), active)


# ------------------------------------------- native grids ↔ the common grid
def native_to_common_index(g: Grid, common: Grid, axis: int) -> np.ndarray:
    """Fractional pixel index in native grid ``g`` of each common-grid pixel centre along ``axis``."""
    origin_c, origin_n = (common.origin_y, g.origin_y) if axis == 0 else (common.origin_x, g.origin_x)
    pos = (origin_c + np.arange(common.shape[axis])) * common.pixel_size
    return pos / g.pixel_size - origin_n


#: Spline order that brings the final native-grid objects onto the common grid (O − 1).
#: Bilinear. Cubic lowered the foreign control's φ NRMSE (0.0197 vs 0.0240; μt 0.040 vs 0.038)
#: but cut KKR's measured benefit on the varying phase (tests/test_accuracy.py::
#: test_kkr_lowers_varying_phase_error_near_edge: KKR/no-KKR 0.82, bound 0.8), so it stays 1.
OBJECT_RESAMPLING_ORDER = 1


def to_common(obj: np.ndarray, grids: list[Grid], common: Grid, order: int = 1) -> np.ndarray:
    """Objects on their native grids → the common grid (spline of ``order`` on O − 1; outside = vacuum 1)."""
    from scipy.ndimage import map_coordinates

    out = np.ones((obj.shape[0], *common.shape), dtype=np.complex64)
    for e, g in enumerate(grids):
        iy, ix = np.meshgrid(native_to_common_index(g, common, 0), native_to_common_index(g, common, 1), indexing="ij")
        dev = obj[e, : g.shape[0], : g.shape[1]].astype(np.complex128) - 1
        re = map_coordinates(dev.real, [iy, ix], order=order, mode="constant", cval=0.0)
        im = map_coordinates(dev.imag, [iy, ix], order=order, mode="constant", cval=0.0)
        out[e] = 1 + re + 1j * im
    return out


def to_native(values: np.ndarray, grids: list[Grid], common: Grid, shape: tuple[int, int]) -> np.ndarray:
    """Real maps on the common grid → each energy's native grid (bilinear; outside = 0)."""
    from scipy.ndimage import map_coordinates

    out = np.zeros((values.shape[0], *shape), dtype=np.float64)
    for e, g in enumerate(grids):
        # common-grid index of each native pixel centre
        cy = ((g.origin_y + np.arange(g.shape[0])) * g.pixel_size) / common.pixel_size - common.origin_y
        cx = ((g.origin_x + np.arange(g.shape[1])) * g.pixel_size) / common.pixel_size - common.origin_x
        iy, ix = np.meshgrid(cy, cx, indexing="ij")
        out[e, : g.shape[0], : g.shape[1]] = map_coordinates(values[e], [iy, ix], order=1, mode="constant", cval=0.0)
    return out


def probes_to_common(probe: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Probes at native pixels dx(E) → the common pixel dx_c (power conserved)."""
    return np.stack([resample_probe(probe[e], float(scale[e])) for e in range(probe.shape[0])]).astype(np.complex64)
