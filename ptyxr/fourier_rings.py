"""Fourier-ring kernels of the resolution measures (numpy only, no xarray).

Ring indices and sums, the Fourier ring correlation of two images with its ½-bit
threshold (van Heel & Schatz 2005), the PRTF's ring sums, windows and masks: the
numerics that :mod:`ptyxr.resolution` maps over energies and particles (see there for
the definitions).
"""

from __future__ import annotations

import numpy as np


# =================================================================== array kernels
def ring_index(shape: tuple[int, int], bins_per_unit: float, centred: bool) -> np.ndarray:
    """Ring number ``round(|q|·bins_per_unit)`` of every pixel of a 2-D spectrum.

    Parameters
    ----------
    shape : (ny, nx)
        Spectrum shape.
    bins_per_unit : float
        Rings per unit of |q| in cycles/pixel; ``N`` gives rings of width 1/(N·dx).
    centred : bool
        True for ``fftshift``-ed spectra (zero frequency at pixel (ny//2, nx//2)).

    Returns
    -------
    ndarray of int64, shape ``shape``
    """
    ny, nx = shape
    qy, qx = np.fft.fftfreq(ny), np.fft.fftfreq(nx)
    if centred:
        qy, qx = np.fft.fftshift(qy), np.fft.fftshift(qx)
    q = np.hypot(qy[:, None], qx[None, :])
    return np.rint(q * bins_per_unit).astype(np.int64)


def ring_sum(values: np.ndarray, rings: np.ndarray, n_rings: int, valid: np.ndarray | None = None) -> np.ndarray:
    """Sum of ``values`` (..., ny, nx) over each ring 0 … n_rings−1 (pixels beyond are dropped)."""
    keep = rings < n_rings
    if valid is not None:
        keep = keep & valid
    flat = np.reshape(values, (-1, *rings.shape))
    out = np.zeros((flat.shape[0], n_rings))
    idx = rings[keep]
    for i, v in enumerate(flat):
        out[i] = np.bincount(idx, weights=np.asarray(v[keep], dtype=np.float64), minlength=n_rings)[:n_rings]
    return out.reshape(*np.shape(values)[:-2], n_rings)


def fourier_ring_correlation(
    a: np.ndarray, b: np.ndarray, bins_per_unit: float, n_rings: int
) -> tuple[np.ndarray, np.ndarray]:
    """FRC of two same-shape 2-D images (real or complex) and the pixel count of each ring.

    ``FRC(k) = Re Σ_ring A·B* / sqrt(Σ_ring |A|² · Σ_ring |B|²)`` with A, B the FFTs; NaN for
    rings without pixels or without power.

    Returns
    -------
    frc : ndarray, shape (n_rings,)
    count : ndarray, shape (n_rings,), int64
    """
    fa, fb = np.fft.fft2(a), np.fft.fft2(b)
    rings = ring_index(a.shape, bins_per_unit, centred=False)
    cross = ring_sum((fa * np.conj(fb)).real, rings, n_rings)
    pa = ring_sum(np.abs(fa) ** 2, rings, n_rings)
    pb = ring_sum(np.abs(fb) ** 2, rings, n_rings)
    count = np.bincount(rings[rings < n_rings], minlength=n_rings)[:n_rings]
    with np.errstate(invalid="ignore", divide="ignore"):
        frc = cross / np.sqrt(pa * pb)
    frc[(count == 0) | ~(pa * pb > 0)] = np.nan
    return frc, count


def half_bit_threshold(count: np.ndarray) -> np.ndarray:
    """½-bit threshold of van Heel & Schatz (2005, eq. 17) for rings of ``count`` pixels.

    ``T = (0.2071 + 1.9102/√n) / (1.2071 + 0.9102/√n)``: the FRC two half data sets reach
    when the full data set carries ½ bit of information per pixel (SNR 0.4142 per half).
    NaN for empty rings.
    """
    n = np.asarray(count, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.sqrt(n)
        t = (0.2071 + 1.9102 / root) / (1.2071 + 0.9102 / root)
    return np.where(n > 0, t, np.nan)


def first_crossing(curve: np.ndarray, threshold: np.ndarray | float, start: int = 1) -> float:
    """Fractional ring index where ``curve`` first falls below ``threshold`` (from ring ``start``).

    Linear interpolation of ``curve − threshold`` between the last ring above and the first
    below (NaN rings skipped). Returns NaN when the curve never falls below (resolution
    limited by the pixel) or starts below.
    """
    curve = np.asarray(curve, dtype=np.float64)
    diff = curve - np.broadcast_to(np.asarray(threshold, dtype=np.float64), curve.shape)
    idx = [k for k in range(start, diff.size) if np.isfinite(diff[k])]
    if not idx or diff[idx[0]] < 0:
        return float("nan")
    for prev, k in zip(idx[:-1], idx[1:], strict=True):
        if diff[k] < 0:
            return float(prev + (k - prev) * diff[prev] / (diff[prev] - diff[k]))
    return float("nan")


def tukey_window(shape: tuple[int, int], alpha: float = 0.5) -> np.ndarray:
    """Separable 2-D Tukey (tapered cosine) window; ``alpha`` = tapered fraction of each axis."""
    from scipy.signal.windows import tukey

    return np.outer(tukey(shape[0], alpha), tukey(shape[1], alpha))


def soft_mask(region: np.ndarray, taper: float = 2.0) -> np.ndarray:
    """``region`` with soft edges: eroded by 2·``taper`` pixels, then Gaussian-blurred by ``taper``.

    A hard mask edge multiplies both compared images by the same step, which puts identical
    high-frequency content into both and lifts the FRC there (measured on a band-limited
    object: FRC 0.9 at 1.3× its cutoff with a hard coverage mask); a blurred edge's spectrum
    falls as exp(−(2πqσ)²/2), below 1 % beyond q = 0.25/pixel for σ = 2 pixels.
    """
    from scipy import ndimage

    if taper <= 0:
        return region.astype(np.float64)
    inner = ndimage.binary_erosion(region, iterations=max(int(round(2 * taper)), 1))
    if not inner.any():
        inner = region
    return ndimage.gaussian_filter(inner.astype(np.float64), taper)


def prtf_sums(
    obj: np.ndarray,
    probe: np.ndarray,
    offsets: np.ndarray,
    frames: np.ndarray,
    n_rings: int,
    chunk: int = 64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ring sums of modelled and measured far-field power over all scan positions of one energy.

    Parameters
    ----------
    obj : ndarray, shape (M, ny, nx) or (ny, nx), complex
        Object(s) on the common grid: M independent reconstructions of the same data.
    probe : ndarray, shape (M, N, N), (N, N) or (M, K, N, N), complex
        Their probes on the common grid; with K mutually incoherent probe modes
        (``reconstruct(probe_modes=K)``) the modelled power is ``Σ_k |Ψ_mk|²`` and the shared
        power pairs mode k of one member with mode k of the other (modes ordered by power).
    offsets : ndarray, shape (n_scan, 2), int
        Top-left grid pixel of each probe patch (engine convention).
    frames : ndarray, shape (n_scan, N, N)
        Measured counts resampled onto the common detector sampling, zero frequency at
        pixel (N//2, N//2); NaN = invalid pixel (left out of all sums).
    n_rings : int
        Rings 0 … n_rings−1 of width 1/(N·dx).

    Returns
    -------
    power : ndarray, shape (n_rings,)
        Mean over the M models of ``Σ |Ψ_m|²``, ``Ψ_m = fftshift(fft2(P_m·O_m, ortho))``,
        summed over positions and ring pixels.
    cross : ndarray, shape (n_rings,)
        Mean over the M(M−1) ordered pairs m ≠ n of ``Σ Re Ψ_m·Ψ_n*`` (NaN for M = 1): the
        power of the part of the model that the reconstructions share.
    measured : ndarray, shape (n_rings,)
        Σ I_j over positions and ring pixels.
    """
    import scipy.fft as sfft

    objs = obj[None] if obj.ndim == 2 else obj
    probes = probe[None] if probe.ndim == 2 else probe
    probes = probes[:, None] if probes.ndim == 3 else probes  # (M, K, N, N)
    m, k_modes = objs.shape[0], probes.shape[1]
    n = probes.shape[-1]
    rings = ring_index((n, n), n, centred=True)
    power = np.zeros(n_rings)
    total = np.zeros(n_rings)  # Σ |Σ_m Ψ_m|²
    measured = np.zeros(n_rings)
    for start in range(0, len(offsets), chunk):
        off = offsets[start : start + chunk]
        meas = frames[start : start + chunk]
        valid = np.isfinite(meas)
        measured += ring_sum(np.clip(np.where(valid, meas, 0.0), 0.0, None), rings, n_rings).sum(axis=0)
        summed = [0.0] * k_modes
        for k in range(m):
            for q in range(k_modes):
                waves = np.stack([probes[k, q] * objs[k][oy : oy + n, ox : ox + n] for oy, ox in off])
                psi = sfft.fftshift(sfft.fft2(waves, norm="ortho"), axes=(-2, -1))
                power += ring_sum(np.where(valid, np.abs(psi) ** 2, 0.0), rings, n_rings).sum(axis=0) / m
                summed[q] = summed[q] + psi
        if m > 1:
            for q in range(k_modes):
                total += ring_sum(np.where(valid, np.abs(summed[q]) ** 2, 0.0), rings, n_rings).sum(axis=0)
    # Σ_{m≠n} Ψ_m Ψ_n* = |Σ_m Ψ_m|² − Σ_m |Ψ_m|²
    cross = (total - m * power) / (m * (m - 1)) if m > 1 else np.full(n_rings, np.nan)
    return power, cross, measured


def _frc_image(obj: np.ndarray, quantity: str) -> np.ndarray:
    if quantity == "complex":
        return obj.astype(np.complex128)
    if quantity == "phase":
        return np.angle(obj).astype(np.float64)
    return -np.log(np.clip(np.abs(obj), 1e-12, None)).astype(np.float64)


def frc_images(
    a: np.ndarray,
    b: np.ndarray,
    region: np.ndarray,
    n_rings: int,
    bins_per_unit: float,
    window: str = "hann",
    register: bool = True,
    upsample: int = 20,
    taper: float = 3.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FRC of two reconstructions of one image (2-D, real or complex) inside ``region``.

    Steps: crop to the bounding box of ``region``; (complex images) remove the constant
    phase between them, ``b ← b·e^{iφ}``, φ = arg Σ a·b*; subtract each one's mean over the
    region and zero outside it; multiply by the window; register ``b`` onto ``a`` to
    1/``upsample`` pixel (phase cross-correlation) and Fourier-shift it; FRC in rings.

    Returns
    -------
    frc, count : ndarray, shape (n_rings,)
        Curve (ring 0, the removed mean, is NaN) and ring pixel counts.
    shift : ndarray, shape (2,)
        The (dy, dx) [pixels] applied to ``b``.
    """
    from ptyxr.reconstruct.epie import fourier_shift

    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    a, b, region = a[box], b[box], region[box]
    if np.iscomplexobj(a):
        b = b * np.exp(1j * np.angle(np.sum((a * np.conj(b))[region])))
    if window == "tukey":
        w = tukey_window(a.shape)
    elif window == "hann":
        w = tukey_window(a.shape, 1.0)
    else:
        w = np.ones(a.shape)
    w = w * soft_mask(region, taper)
    # weighted means: the windowed images then carry no DC, whose leakage would lift low rings
    a = (a - np.sum(a * w) / np.sum(w)) * w
    b = (b - np.sum(b * w) / np.sum(w)) * w
    shift = np.zeros(2)
    if register:
        from ptyxr.registration import register_pair

        shift = register_pair(a, b, upsample)
        moved = fourier_shift(b.astype(np.complex128), (float(shift[0]), float(shift[1])))
        b = moved if np.iscomplexobj(a) else moved.real
    frc, count = fourier_ring_correlation(a, b, bins_per_unit, n_rings)
    frc[0] = np.nan  # the means were removed: ring 0 holds rounding noise only
    return frc, count, shift
