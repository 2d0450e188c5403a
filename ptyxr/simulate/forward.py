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

from collections.abc import Callable, Sequence

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

    ``scan_positions("raster", …)`` without ``grid``: nodes of pitch ``step`` centred on the
    extent, as many as fit in extent + 2·margin.

    Returns
    -------
    position_y, position_x : ndarray (n_energies, n_scan)
        Recorded probe-centre positions [m] (jitter included: it is known).
    """
    return scan_positions("raster", extent_y, extent_x, step, margin, jitter, n_energies, rng)


#: Scan patterns of :func:`scan_positions`.
SCAN_PATTERNS = ("raster", "spiral", "hex")
#: Golden angle [rad]: the Fermat spiral's angular increment.
GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))


def _pattern_nodes(
    pattern: str,
    extent_y: tuple[float, float],
    extent_x: tuple[float, float],
    step: float,
    margin: float,
    grid: tuple[int, int] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Nominal (jitter-free) positions of a pattern, centred on the extent's centre [m]."""
    centre = (0.5 * (extent_y[0] + extent_y[1]), 0.5 * (extent_x[0] + extent_x[1]))
    if grid is not None:
        # N×M raster: the count is given, the span follows from the step
        ny, nx = (int(g) for g in grid)
        if ny < 1 or nx < 1:
            raise ValueError(f"scan_grid must hold two positive counts, got {grid!r}")
        half = ((ny - 1) * step / 2.0, (nx - 1) * step / 2.0)
    else:
        half = (
            (extent_y[1] - extent_y[0]) / 2.0 + margin,
            (extent_x[1] - extent_x[0]) / 2.0 + margin,
        )
    if pattern == "spiral":
        # Fermat spiral r_k = c√k, θ_k = k·golden angle: area per point πc², set to step²
        # (the raster's density); points kept inside the scanned rectangle
        c = step / np.sqrt(np.pi)
        n_max = int(np.ceil(np.pi * (half[0] ** 2 + half[1] ** 2) / step**2)) + 1
        k = np.arange(n_max)
        r = c * np.sqrt(k)
        y, x = r * np.sin(k * GOLDEN_ANGLE), r * np.cos(k * GOLDEN_ANGLE)
        keep = (np.abs(y) <= half[0] + 1e-12) & (np.abs(x) <= half[1] + 1e-12)
        return centre[0] + y[keep], centre[1] + x[keep]
    if pattern == "hex":
        # hexagonal lattice of nearest-neighbour distance ``step``: rows √3/2·step apart,
        # every other row offset by step/2
        row_step = step * np.sqrt(3.0) / 2.0
        n_rows = int(np.floor(2 * half[0] / row_step + 1e-9)) + 1
        ys, xs = [], []
        for i in range(n_rows):
            y = -half[0] + i * row_step + (2 * half[0] - (n_rows - 1) * row_step) / 2.0
            offset = 0.5 * step * (i % 2)
            n_cols = int(np.floor((2 * half[1] - offset) / step + 1e-9)) + 1
            x = -half[1] + offset + np.arange(n_cols) * step
            ys.append(np.full(n_cols, y))
            xs.append(x)
        return centre[0] + np.concatenate(ys), centre[1] + np.concatenate(xs)
    if pattern == "raster":
        axes = []
        for c0, h in zip(centre, half, strict=True):
            n = int(np.floor(2 * h / step + 1e-9)) + 1
            axes.append(c0 + (np.arange(n) - (n - 1) / 2.0) * step)
        gy, gx = np.meshgrid(*axes, indexing="ij")
        return gy.ravel(), gx.ravel()
    raise ValueError(f"scan_pattern must be one of {SCAN_PATTERNS}, got {pattern!r}")


def scan_positions(
    pattern: str,
    extent_y: tuple[float, float],
    extent_x: tuple[float, float],
    step: float,
    margin: float,
    jitter: float,
    n_energies: int,
    rng: np.random.Generator,
    grid: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scan positions of a pattern with per-energy random jitter (recorded, i.e. known).

    Parameters
    ----------
    pattern : {"raster", "spiral", "hex"}
        "raster": rectangular grid of pitch ``step``; "spiral": Fermat spiral with one
        point per step² of area; "hex": hexagonal lattice with nearest-neighbour distance
        ``step``. Each fills the extent ± ``margin`` (or the span of ``grid``).
    grid : (int, int), optional
        Raster counts (n_y, n_x) centred on the extent (the span is (n − 1)·step).

    Returns
    -------
    position_y, position_x : ndarray (n_energies, n_scan)
        Recorded probe-centre positions [m].
    """
    gy, gx = _pattern_nodes(pattern, extent_y, extent_x, step, margin, grid)
    shape = (n_energies, gy.size)
    return (
        gy[None] + jitter * step * rng.standard_normal(shape),
        gx[None] + jitter * step * rng.standard_normal(shape),
    )


def defect_mask(
    n: int, dead_rows: Sequence[int] = (), dead_columns: Sequence[int] = (), module_gap: Sequence[int] | None = None
) -> np.ndarray:
    """Valid-pixel mask (n, n) bool of a detector with dead rows/columns and a module gap.

    ``module_gap`` = (first column, width): a band of insensitive columns (the gap between
    two detector modules), as on a tiled EIGER/PILATUS.
    """
    valid = np.ones((n, n), dtype=bool)
    for r in dead_rows:
        valid[int(r) % n, :] = False
    for c in dead_columns:
        valid[:, int(c) % n] = False
    if module_gap:
        first, width = (int(v) for v in module_gap)
        valid[:, max(first, 0) : min(first + width, n)] = False
    return valid


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
    background: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray:
    """Object patches (n_scan, n, n) complex128 seen by the probe at each position.

    The probe-array pixel (n//2, n//2) sits at the position; patch pixel (i, j) lies at
    (i − n//2, j − n//2)·``pixel_size`` from it. ``drift`` [m] is the sample's displacement.
    ``background(y, x)`` → (μt, φ) at sample coordinates [m] adds a layer that moves with
    the sample (e.g. the membrane it sits on).
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
        if background is not None:
            extra = background(jy[:, None] * pixel_size - drift[0], jx[None, :] * pixel_size - drift[1])
            maps = maps + np.stack(np.broadcast_arrays(*extra))
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
        if background is not None:
            maps = maps + np.stack(np.broadcast_arrays(*background(py, px)))
        return np.exp(-maps[0] + 1j * maps[1])
    raise ValueError(f"placement must be 'nearest' or 'exact', got {placement!r}")


def diffraction(probe: np.ndarray, patches: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Far-field intensities (n_scan, n, n): Poisson(|far_field(P·O_k)|²), or noise-free if ``rng`` is None."""
    expected = np.abs(far_field(probe[None] * patches)) ** 2
    if rng is None:
        return expected
    return rng.poisson(expected).astype(np.float64)


def detector_background(
    frames: np.ndarray, background: float, read_noise: float, rng: np.random.Generator
) -> np.ndarray:
    """``frames`` plus Poisson(``background``) counts per pixel and a Gaussian read-noise floor.

    Poisson(S) + Poisson(b) = Poisson(S + b) for independent draws, so adding the background
    draw to the signal's keeps the signal's draw (and the default data) unchanged. The read
    noise N(0, σ²), σ = ``read_noise``, is rounded to whole counts and the sum clipped at 0.
    """
    if background < 0 or read_noise < 0:
        raise ValueError(f"detector_background={background!r} and read_noise={read_noise!r} must be >= 0")
    out = np.asarray(frames, dtype=np.float64)
    if background:
        out = out + rng.poisson(background, size=out.shape)
    if read_noise:
        out = np.clip(out + np.rint(read_noise * rng.standard_normal(out.shape)), 0.0, None)
    return out


def flux_series(
    n_energies: int, n_scan: int, jitter: float, decay: float, rng: np.random.Generator | None
) -> np.ndarray:
    """Relative incident flux of every frame (n_energies, n_scan) [1].

    ``decay``: fraction lost from the first to the last frame, exponential in the frame
    index (frames in acquisition order: energy by energy); ``jitter``: rms of an
    independent multiplicative Gaussian factor 1 + jitter·N(0, 1) per frame (clipped at 0.05).
    """
    k = np.arange(n_energies * n_scan, dtype=float).reshape(n_energies, n_scan)
    flux = (1.0 - decay) ** (k / max(k.size - 1, 1))
    if jitter and rng is not None:
        flux = flux * np.clip(1.0 + jitter * rng.standard_normal(flux.shape), 0.05, None)
    return flux


def diffraction_modes(
    modes: np.ndarray, patches: np.ndarray, flux: np.ndarray, rng: np.random.Generator | None
) -> np.ndarray:
    """Far-field intensities (n_scan, n, n) of mutually incoherent probe ``modes`` (n_modes, n, n).

    Poisson(flux_k · Σ_m |far_field(P_m·O_k)|²): each mode's diffraction adds in intensity;
    ``flux`` (n_scan,) scales each frame's incident photons.
    """
    expected = np.zeros(patches.shape, dtype=np.float64)
    for mode in modes:
        expected += np.abs(far_field(mode[None] * patches)) ** 2
    expected *= np.asarray(flux, dtype=float)[:, None, None]
    if rng is None:
        return expected
    return rng.poisson(expected).astype(np.float64)
