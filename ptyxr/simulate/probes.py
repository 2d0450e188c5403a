"""Probe shapes of the simulator that the reconstruction engine does not model (issue 11 point 3).

The engine builds its first probe guess as a KB focus (:func:`ptyxr.optics.kb_probe`); data
made with another optic test whether it recovers a probe it did not expect. Every shape is
a pupil function on the detector-frequency grid (fftshifted, DC at pixel (N//2, N//2)),
optionally defocused by the Fresnel transfer function and back-propagated to the sample
plane exactly as :func:`~ptyxr.optics.kb_probe` does, then scaled so Σ|P|² = ``photons``.

Shapes
------
``"kb"``
    :func:`ptyxr.optics.kb_probe` itself (today's simulator, bit-identical).
``"gaussian"``
    Gaussian focus whose intensity FWHM is ``fwhm`` and flat phase in focus (a pinhole-
    cleaned undulator focus without aperture diffraction): no side lobes at all.
``"fzp"``
    Fresnel zone plate with a central stop: an annular pupil of outer radius
    f_c = 0.514/``fwhm`` (cycles/m; the Airy focus of the full disc then has the
    intensity FWHM ``fwhm``) and inner radius ``central_stop``·f_c. The obstruction moves
    power from the central lobe into the rings (≈ 16 % outside the first dark ring for
    the full disc, > 40 % for a stop of half the diameter).
``"kb_aberrated"``
    The KB pupil of :func:`~ptyxr.optics.kb_probe` times exp(2πi·W), W a fixed mix of
    primary astigmatism and coma over the normalised pupil (u, v) ∈ [−1, 1]²
    (W ∝ (u² − v²) + (3(u² + v²) − 2)·u) scaled to an rms of ``aberration_rms`` waves
    over the pupil's (area-weighted) pixels: an asymmetric, comet-tailed focus.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from ptyxr.optics import back_propagate, kb_probe
from ptyxr.physics import wavelength

#: Probe shapes the simulator can make.
PROBE_SHAPES = ("kb", "gaussian", "fzp", "kb_aberrated")

# Airy focus of a disc pupil of radius f_c: intensity FWHM = 0.5145/f_c
_AIRY_FWHM = 0.5145


def _frequencies(n_pixels: int, pixel_size: float) -> tuple[np.ndarray, np.ndarray]:
    freq = sfft.fftshift(sfft.fftfreq(n_pixels, d=pixel_size))
    return np.meshgrid(freq, freq, indexing="ij")


def kb_pupil(n_pixels: int, pixel_size: float, fwhm: float) -> np.ndarray:
    """The area-weighted rectangular pupil of :func:`ptyxr.optics.kb_probe` (real, fftshifted)."""
    half_width = 0.886 / (2.0 * fwhm)
    k = np.abs(np.arange(n_pixels) - n_pixels // 2)
    edge = np.clip(half_width * n_pixels * pixel_size + 0.5 - k, 0.0, 1.0)
    return np.outer(edge, edge)


def annular_pupil(n_pixels: int, pixel_size: float, fwhm: float, central_stop: float) -> np.ndarray:
    """FZP pupil: a disc of radius 0.514/``fwhm`` minus a stop of ``central_stop`` × that radius.

    Edge pixels are weighted by the fraction inside (linear in the radius, ±½ pixel), so the
    pupil stays smooth on small frames.
    """
    fy, fx = _frequencies(n_pixels, pixel_size)
    radius_px = np.hypot(fy, fx) * n_pixels * pixel_size  # radius in frequency pixels
    outer = _AIRY_FWHM / fwhm * n_pixels * pixel_size
    disc = np.clip(outer + 0.5 - radius_px, 0.0, 1.0)
    stop = np.clip(central_stop * outer + 0.5 - radius_px, 0.0, 1.0) if central_stop > 0 else 0.0
    return disc - stop


def aberration_phase(n_pixels: int, pixel_size: float, fwhm: float, rms_waves: float) -> np.ndarray:
    """W(f) [waves] over the KB pupil: astigmatism + coma with an rms of ``rms_waves`` on the pupil.

    The rms is weighted by the pupil's (area-weighted) amplitude.
    """
    pupil = kb_pupil(n_pixels, pixel_size, fwhm)
    half_width = 0.886 / (2.0 * fwhm)
    fy, fx = _frequencies(n_pixels, pixel_size)
    u, v = fy / half_width, fx / half_width
    shape = (u**2 - v**2) + (3.0 * (u**2 + v**2) - 2.0) * u
    weight = pupil / pupil.sum()
    shape = shape - np.sum(weight * shape)  # piston carries no aberration
    rms = np.sqrt(np.sum(weight * shape**2))
    return shape * (rms_waves / rms) if rms > 0 else np.zeros_like(shape)


def make_probe(
    shape: str,
    energy: float,
    n_pixels: int,
    pixel_size: float,
    fwhm: float,
    defocus: float = 0.0,
    photons: float = 1.0,
    central_stop: float = 0.5,
    aberration_rms: float = 0.25,
) -> np.ndarray:
    """Complex probe (n_pixels, n_pixels) complex64 of the given ``shape`` (module docstring).

    Parameters
    ----------
    shape : {"kb", "gaussian", "fzp", "kb_aberrated"}
        Optic.
    energy : float
        Photon energy [eV] (for the defocus).
    n_pixels : int
        Probe array size N; the focus is centred on pixel (N//2, N//2).
    pixel_size : float
        Real-space pixel size [m].
    fwhm : float
        Focus size [m] (intensity FWHM of the KB sinc, the Gaussian, the unobstructed Airy disc).
    defocus : float
        Propagation distance from the focus [m].
    photons : float
        Σ|P|² [counts].
    central_stop : float
        FZP central stop diameter / zone plate diameter (0 ≤ ``central_stop`` < 1).
    aberration_rms : float
        rms wavefront error of ``"kb_aberrated"`` [waves].
    """
    if shape == "kb":
        return kb_probe(energy, n_pixels, pixel_size, fwhm, defocus, photons)
    if shape not in PROBE_SHAPES:
        raise ValueError(f"probe_shape must be one of {PROBE_SHAPES}, got {shape!r}")
    if fwhm <= 2 * pixel_size:
        raise ValueError(f"probe FWHM {fwhm:g} m must exceed two pixels ({pixel_size:g} m each)")
    fy, fx = _frequencies(n_pixels, pixel_size)
    if shape == "gaussian":
        # intensity exp(−r²/σ²) has FWHM 2σ√ln2; its pupil is a Gaussian of the same kind
        sigma = fwhm / (2.0 * np.sqrt(np.log(2.0)))
        coord = (np.arange(n_pixels) - n_pixels // 2) * pixel_size
        focus = np.exp(-(coord[:, None] ** 2 + coord[None, :] ** 2) / (2.0 * sigma**2)).astype(np.complex128)
        pupil = sfft.fftshift(sfft.fft2(sfft.ifftshift(focus)))
    elif shape == "fzp":
        if not 0.0 <= central_stop < 1.0:
            raise ValueError(f"probe_central_stop must lie in [0, 1), got {central_stop!r}")
        pupil = annular_pupil(n_pixels, pixel_size, fwhm, central_stop).astype(np.complex128)
    else:  # kb_aberrated
        w = aberration_phase(n_pixels, pixel_size, fwhm, aberration_rms)
        pupil = kb_pupil(n_pixels, pixel_size, fwhm) * np.exp(2j * np.pi * w)
    if defocus:
        pupil = pupil * np.exp(-1j * np.pi * wavelength(energy) * defocus * (fx**2 + fy**2))
    # as kb_probe: the ortho inverse FFT of a centred pupil peaks at pixel 0 → fftshift
    probe = sfft.fftshift(back_propagate(pupil, workers=1))
    probe *= np.sqrt(photons / np.sum(np.abs(probe) ** 2))
    return probe.astype(np.complex64)


def probe_modes(probe: np.ndarray, fractions: tuple[float, ...]) -> np.ndarray:
    """Mutually incoherent, orthogonal probe modes (n_modes, N, N) built on ``probe``.

    Mode m is ``probe`` times a low-order polynomial (1, y, x, y² − x², xy, y² + x²) in
    pixel units, Gram–Schmidt orthogonalised (Hermite–Gauss-like modes of a partially
    coherent beam) and scaled so mode m carries ``fractions[m]`` (normalised) of Σ|probe|².
    """
    weights = np.asarray(fractions, dtype=float)
    weights = weights / weights.sum()
    n = probe.shape[-1]
    c = (np.arange(n) - n // 2) / (n / 8.0)
    yy, xx = np.meshgrid(c, c, indexing="ij")
    shapes = (np.ones_like(yy), yy, xx, yy**2 - xx**2, yy * xx, yy**2 + xx**2)
    base = probe.astype(np.complex128)
    total = np.sum(np.abs(base) ** 2)
    modes: list[np.ndarray] = []
    for k in range(weights.size):
        m = base * shapes[k]
        for q in modes:
            m = m - np.vdot(q, m) * q
        modes.append(m / np.sqrt(np.sum(np.abs(m) ** 2)))
    return np.stack([q * np.sqrt(f * total) for q, f in zip(modes, weights, strict=True)]).astype(np.complex64)
