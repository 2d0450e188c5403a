"""Forward model of spectro-ptychography (array kernels, numpy/scipy only).

Per energy E: μt and φ maps on the master grid (linear in the projected densities),
bilinearly sampled on that energy's OWN native grid (pixel dx(E) = λ(E)z/(Np), pixel
centres at integer multiples of dx(E)) displaced by the unknown sample drift d(E);
O = exp(−μt + iφ); exit waves ψ_k = P·O_k with the probe centre (pixel N//2, N//2) on
the native pixel nearest the recorded position, index ``np.rint(position/dx)``
("nearest", what the reconstructor does) or sampled at the exact position ("exact");
Ψ_k = optics.far_field(ψ_k); I = Poisson(|Ψ_k|²).

Drift convention: the sample moves by d(E) (d = 0 at the highest energy), so the probe
at recorded position r sees the true sample at r − d(E); an image reconstructed at E is
the true one moved by +d(E), and the registration shift of DESIGN §1c is −d(E).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ptyxr.optics import far_field
from ptyxr.physics import CLASSICAL_ELECTRON_RADIUS, wavelength


def optical_maps(
    density: np.ndarray, f1: np.ndarray, f2: np.ndarray, atomic_numbers: np.ndarray, energy: float
) -> tuple[np.ndarray, np.ndarray]:
    """μt and φ from projected densities at one energy (DESIGN §2).

    Parameters
    ----------
    density : ndarray (n_types, n_elements, ...)
        Projected atom densities N_j^t [m⁻²].
    f1, f2 : ndarray (n_types, n_elements)
        Anomalous factors at ``energy`` [electrons].
    atomic_numbers : ndarray (n_elements,)
        Z_j.
    energy : float
        Photon energy [eV].

    Returns
    -------
    mu_t, phase : ndarray (...)
        μt = r_e λ Σ N f″ [1] and φ = −r_e λ Σ N (Z + f′) [rad].
    """
    scale = CLASSICAL_ELECTRON_RADIUS * wavelength(energy)
    mu_t = scale * np.tensordot(f2, density, axes=([0, 1], [0, 1]))
    phase = -scale * np.tensordot(atomic_numbers[None, :] + f1, density, axes=([0, 1], [0, 1]))
    return mu_t, phase


def sample(
    maps: np.ndarray, origin: tuple[float, float], pixel_size: float, y: np.ndarray, x: np.ndarray
) -> np.ndarray:
    """Bilinear samples of master-grid ``maps`` (..., ny, nx) at points (``y``, ``x``) [m].

    Outside the master grid the maps are 0 (vacuum). ``y`` and ``x`` broadcast together.
    """
    y, x = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(x, dtype=float))
    coords = np.stack([(y - origin[0]) / pixel_size, (x - origin[1]) / pixel_size])
    maps = np.asarray(maps)
    flat = maps.reshape(-1, *maps.shape[-2:])
    out = np.stack([ndimage.map_coordinates(m, coords, order=1, mode="constant", cval=0.0) for m in flat])
    return out.reshape(*maps.shape[:-2], *y.shape)


def raster_positions(
    extent_y: tuple[float, float],
    extent_x: tuple[float, float],
    step: float,
    margin: float,
    jitter: float,
    n_energies: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Raster positions covering an extent plus margin, with per-energy random jitter.

    Returns
    -------
    position_y, position_x : ndarray (n_energies, n_scan)
        Recorded probe-centre positions [m] (jitter included: it is known).
    """
    axes = []
    for lo, hi in (extent_y, extent_x):
        span = hi - lo + 2.0 * margin
        n = int(np.floor(span / step + 1e-9)) + 1
        centre = 0.5 * (lo + hi)
        axes.append(centre + (np.arange(n) - (n - 1) / 2.0) * step)
    gy, gx = np.meshgrid(*axes, indexing="ij")
    gy, gx = gy.ravel(), gx.ravel()
    shape = (n_energies, gy.size)
    return (
        gy[None] + jitter * step * rng.standard_normal(shape),
        gx[None] + jitter * step * rng.standard_normal(shape),
    )


def random_drift(n_energies: int, rms: float, rng: np.random.Generator) -> np.ndarray:
    """Sample drift d(E) (n_energies, 2) [same units as ``rms``]: a random walk, 0 at the last energy.

    Scaled so the rms over energies of each axis equals ``rms`` (ascending energies;
    the last = highest energy is the reference).
    """
    if n_energies < 2 or rms == 0:
        return np.zeros((n_energies, 2))
    walk = np.cumsum(rng.standard_normal((n_energies, 2)), axis=0)
    walk -= walk[-1]
    norm = np.sqrt(np.mean(walk**2, axis=0))
    return walk * (rms / np.where(norm > 0, norm, 1.0))


def nearest_indices(position: np.ndarray, pixel_size: float) -> np.ndarray:
    """Native pixel index of each probe centre: ``np.rint(position / pixel_size)``."""
    return np.rint(np.asarray(position) / pixel_size).astype(np.int64)


def object_patches(
    mu_t: np.ndarray,
    phase: np.ndarray,
    origin: tuple[float, float],
    master_pixel: float,
    position_y: np.ndarray,
    position_x: np.ndarray,
    pixel_size: float,
    n: int,
    drift: tuple[float, float] = (0.0, 0.0),
    placement: str = "nearest",
) -> np.ndarray:
    """Object patches (n_scan, n, n) complex128 seen by the probe at each position.

    The probe-array pixel (n//2, n//2) sits at the position; patch pixel (i, j) lies at
    (i − n//2, j − n//2)·``pixel_size`` from it. ``drift`` [m] is the sample's displacement.
    """
    offsets = (np.arange(n) - n // 2) * pixel_size
    if placement == "nearest":
        iy, ix = nearest_indices(position_y, pixel_size), nearest_indices(position_x, pixel_size)
        jy = np.arange(iy.min() - n // 2, iy.max() - n // 2 + n)
        jx = np.arange(ix.min() - n // 2, ix.max() - n // 2 + n)
        maps = sample(
            np.stack([mu_t, phase]),
            origin,
            master_pixel,
            jy[:, None] * pixel_size - drift[0],
            jx[None, :] * pixel_size - drift[1],
        )
        native = np.exp(-maps[0] + 1j * maps[1])
        ry = iy - n // 2 - jy[0]
        rx = ix - n // 2 - jx[0]
        rows = ry[:, None, None] + np.arange(n)[None, :, None]
        cols = rx[:, None, None] + np.arange(n)[None, None, :]
        return native[rows, cols]
    if placement == "exact":
        py = position_y[:, None, None] + offsets[None, :, None] - drift[0]
        px = position_x[:, None, None] + offsets[None, None, :] - drift[1]
        maps = sample(np.stack([mu_t, phase]), origin, master_pixel, py, px)
        return np.exp(-maps[0] + 1j * maps[1])
    raise ValueError(f"placement must be 'nearest' or 'exact', got {placement!r}")


def diffraction(probe: np.ndarray, patches: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Far-field intensities (n_scan, n, n): Poisson(|far_field(P·O_k)|²), or noise-free if ``rng`` is None."""
    expected = np.abs(far_field(probe[None] * patches)) ** 2
    if rng is None:
        return expected
    return rng.poisson(expected).astype(np.float64)
