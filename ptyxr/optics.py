"""Shared far-field convention and probe model (simulator and reconstructor both use these).

Convention (DESIGN §2): Ψ = F[P(r − r_k)·O(r)] with F = numpy's forward FFT (kernel
exp(−2πi k·r/N)) followed by fftshift, so zero frequency sits at pixel (N//2, N//2);
detector rows run along y, columns along x, no flips. Using the opposite convention in
one of the two yields the conjugate object (phase sign flipped), so both import these.
"""

from __future__ import annotations

from typing import overload

import numpy as np
import scipy.fft as sfft

from ptyxr.physics import wavelength

#: Worker threads for scipy.fft (−1: all cores).
FFT_WORKERS = -1


def far_field(exit_wave: np.ndarray, workers: int = FFT_WORKERS) -> np.ndarray:
    """Detector-plane wave of ``exit_wave`` (last two axes): fftshift(fft2(ψ)), orthonormal.

    ``norm="ortho"`` keeps Σ|Ψ|² = Σ|ψ|² so probe intensity is in detector counts.
    """
    return sfft.fftshift(sfft.fft2(exit_wave, norm="ortho", workers=workers), axes=(-2, -1))


def back_propagate(detector_wave: np.ndarray, workers: int = FFT_WORKERS) -> np.ndarray:
    """Inverse of :func:`far_field`: ifft2(ifftshift(Ψ)), orthonormal."""
    return sfft.ifft2(sfft.ifftshift(detector_wave, axes=(-2, -1)), norm="ortho", workers=workers)


@overload
def real_space_pixel_size(
    energy: float, detector_distance: float, detector_pixel_size: float, n_pixels: int
) -> float: ...
@overload
def real_space_pixel_size(
    energy: np.ndarray, detector_distance: float, detector_pixel_size: float, n_pixels: int
) -> np.ndarray: ...
@overload
def real_space_pixel_size(
    energy: float | np.ndarray, detector_distance: float, detector_pixel_size: float, n_pixels: int
) -> float | np.ndarray: ...
def real_space_pixel_size(
    energy: float | np.ndarray, detector_distance: float, detector_pixel_size: float, n_pixels: int
) -> float | np.ndarray:
    """Reconstructed pixel size dx = λ z / (N p) [m] at ``energy`` [eV]."""
    return wavelength(energy) * detector_distance / (n_pixels * detector_pixel_size)


def kb_probe(
    energy: float, n_pixels: int, pixel_size: float, fwhm: float, defocus: float = 0.0, photons: float = 1.0
) -> np.ndarray:
    """Complex probe of a Kirkpatrick–Baez focus on an ``n_pixels``² grid.

    Two crossed mirrors act as a rectangular pupil; the focus is a sinc in each axis
    whose FWHM (≈ 0.886/(pupil width in spatial frequency)) is ``fwhm`` (within ~2 %:
    the pupil's edge pixels are weighted by the fraction of them inside the aperture). ``defocus`` [m]
    propagates it by the Fresnel transfer function. Scaled so Σ|P|² = ``photons``.

    Parameters
    ----------
    energy : float
        Photon energy [eV].
    n_pixels : int
        Probe array size N; the probe centre sits at pixel (N//2, N//2).
    pixel_size : float
        Real-space pixel size [m].
    fwhm : float
        Focal spot full width at half maximum of the intensity [m].
    defocus : float
        Propagation distance from the focus [m] (positive downstream).
    photons : float
        Total probe intensity Σ|P|² [counts].
    """
    if fwhm <= 2 * pixel_size:
        raise ValueError(f"probe FWHM {fwhm:g} m must exceed two pixels ({pixel_size:g} m each)")
    freq = sfft.fftshift(sfft.fftfreq(n_pixels, d=pixel_size))
    # |sinc(w f_x)|² has intensity FWHM 0.886/w in real space → pupil half-width in frequency
    half_width = 0.886 / (2.0 * fwhm)
    # area-weighted edge pixels: a hard pupil rounds its width to whole frequency pixels,
    # which made the focus up to ~20 % wider than requested on small frames
    k = np.abs(np.arange(n_pixels) - n_pixels // 2)
    edge = np.clip(half_width * n_pixels * pixel_size + 0.5 - k, 0.0, 1.0)
    fy, fx = np.meshgrid(freq, freq, indexing="ij")
    pupil = np.outer(edge, edge).astype(np.complex128)
    if defocus:
        pupil *= np.exp(-1j * np.pi * wavelength(energy) * defocus * (fx**2 + fy**2))
    probe = back_propagate(pupil, workers=1)
    # centre the focus on pixel (N//2, N//2): the ortho inverse FFT of a centred pupil peaks at 0
    probe = sfft.fftshift(probe)
    probe *= np.sqrt(photons / np.sum(np.abs(probe) ** 2))
    return probe.astype(np.complex64)
