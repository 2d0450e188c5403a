"""Sub-pixel registration of an energy stack: one numpy kernel for ``align`` and the KKR step.

:func:`ptyxr.spectra.align` and the KKR constraint inside :func:`ptyxr.reconstruct.reconstruct`
must agree on where each energy's sample sits: the KKR step combines the energies of one
sample point into a spectrum, and ``align`` later measures the drift on the stack the
reconstruction returns. If the two registered differently, the KKR phase correction, shifted
back with the KKR step's shifts, would imprint those shifts on the object as a real
displacement and ``align`` would recover them instead of the true drift (measured on
foreign-model data: 0.70 px rms error for a 0.72 px rms drift). So both call
:func:`stack_shifts` (or its parts :func:`registration_images` and :func:`register_images`).

Per energy: the vacuum (amplitude, phase constant and ramp) is detected and divided out,
the phase unwrapped (:func:`ptyxr.vacuum.normalise_image`), the image's smoothed gradient
magnitude (:func:`registration_image`) cross-correlated with the reference energy's
(upsampled phase correlation, scikit-image).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ptyxr.progress import progress_bar
from ptyxr.vacuum import detect_background, fit_vacuum, normalise_image

__all__ = ["IMAGES", "register_images", "register_pair", "registration_image", "registration_images", "stack_shifts"]

#: Images that can be registered: vacuum-normalised unwrapped phase or absorption μt.
IMAGES = ("phase", "absorption")


def registration_image(image: np.ndarray, edges: bool = True, smooth: float = 1.5) -> np.ndarray:
    """The image :func:`register_images` cross-correlates: smoothed gradient magnitude, or smoothed image.

    Chemical contrast changes with energy *inside* the particle (one domain's phase dips at
    its edge energy while another's does not); cross-correlating whole images then pulls
    the peak toward the brighter side, whereas the outline dominates the gradient
    magnitude and moves rigidly. Smoothing (Gaussian, ``smooth`` pixels) keeps noise out
    of the gradient. Measured (max |error| / rms, px): test phantom with a half-and-half
    domain split, whole image 0.24/0.07 vs gradient σ=1.5 0.13/0.04; simulated ``tiny``
    reconstruction (13-px particle, φ ≈ −0.1 rad), whole image 0.29/0.10 vs gradient
    σ=1.5 0.38/0.15.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Vacuum-normalised phase [rad] or absorption [1], 0 outside the covered field.
    edges : bool
        Gradient magnitude (True) or the image itself (False).
    smooth : float
        Gaussian σ [pixels]; 0 = none (then edges use a Sobel gradient).
    """
    if edges:
        if smooth > 0:
            return ndimage.gaussian_gradient_magnitude(image, smooth)
        return np.hypot(ndimage.sobel(image, axis=0), ndimage.sobel(image, axis=1))
    return ndimage.gaussian_filter(image, smooth) if smooth > 0 else image


def registration_images(
    obj: np.ndarray,
    coverage: np.ndarray,
    region: np.ndarray | None = None,
    image: str = "phase",
    edges: bool = True,
    smooth: float = 1.5,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-energy registration images and vacuum phasors of an (energy, y, x) object stack.

    Parameters
    ----------
    obj : ndarray, shape (n_energy, ny, nx), complex
        Object stack [1].
    coverage : ndarray, shape (ny, nx), bool
        Illuminated pixels (vacuum detection and normalisation use only these).
    region : ndarray, shape (ny, nx), bool, optional
        Pixels registered (default ``coverage``).
    image, edges, smooth
        As :func:`ptyxr.spectra.align`.
    progress : bool
        Show a progress bar.

    Returns
    -------
    images : ndarray (n_energy, ny, nx), float64
    amplitudes : ndarray (n_energy,) — mean vacuum amplitude per energy
    coeffs : ndarray (n_energy, 3) — vacuum phase plane (constant, g_y, g_x) per energy
    """
    region = coverage if region is None else region
    n = obj.shape[0]
    images = np.zeros(obj.shape, dtype=np.float64)
    amplitudes = np.zeros(n)
    coeffs = np.zeros((n, 3))
    for i in progress_bar(range(n), enabled=progress, desc="align: vacuum", unit="energy"):
        frame = np.asarray(obj[i])
        # each energy finds its own vacuum: the drift moves the particle between energies
        bg = detect_background(frame, coverage)
        amplitudes[i], coeffs[i] = fit_vacuum(frame, bg)
        mu, phi = normalise_image(frame, coverage, bg, unwrap=image == "phase")
        values = phi if image == "phase" else mu
        # vacuum is 0 after normalisation, so 0-filling uncovered pixels adds no edge
        filled = np.where(np.isfinite(values) & region, values, 0.0)
        images[i] = registration_image(filled, edges, smooth)
    return images, amplitudes, coeffs


def register_images(images: np.ndarray, reference: int, upsample: int = 100, progress: bool = False) -> np.ndarray:
    """Sub-pixel shifts registering each image of a stack onto ``images[reference]``.

    Parameters
    ----------
    images : ndarray, shape (n, ny, nx)
        Real images, 0 where there is nothing to register (vacuum / uncovered).
    reference : int
        Index of the reference image; its shift is exactly 0.
    upsample : int
        Upsampling factor of the cross-correlation peak (precision 1/upsample pixel).
    progress : bool
        Show a progress bar.

    Returns
    -------
    ndarray, shape (n, 2)
        (row, col) shift in pixels to *apply* to each image to register it
        (``scipy.ndimage.fourier_shift`` convention: positive moves content to larger indices).
    """
    reference = reference % images.shape[0]
    shifts = np.zeros((images.shape[0], 2))
    if not np.any(images[reference]):
        return shifts  # nothing to register on (e.g. a run of a few iterations on masked data)
    for i in progress_bar(range(images.shape[0]), enabled=progress, desc="align", unit="energy"):
        if i == reference or not np.any(images[i]):  # an empty image has no position: shift 0
            continue
        shifts[i] = register_pair(images[reference], images[i], upsample)
    return shifts


def register_pair(reference: np.ndarray, moving: np.ndarray, upsample: int = 100) -> np.ndarray:
    """Sub-pixel (row, col) shift [pixels] to apply to ``moving`` to register it onto ``reference``.

    Upsampled cross-correlation without normalisation (scikit-image's
    ``phase_cross_correlation(..., normalization=None)``): the plain cross-correlation
    peak, which is less noise-sensitive than the phase correlation on the smooth images
    registered here. Real or complex images of one shape; precision 1/``upsample`` pixel.
    """
    from skimage.registration import phase_cross_correlation

    shift, _, _ = phase_cross_correlation(reference, moving, upsample_factor=upsample, normalization=None)
    return np.asarray(shift, dtype=float)


def stack_shifts(
    obj: np.ndarray,
    coverage: np.ndarray,
    region: np.ndarray | None = None,
    reference: int = -1,
    image: str = "phase",
    edges: bool = True,
    smooth: float = 1.5,
    upsample: int = 100,
    progress: bool = False,
) -> np.ndarray:
    """Shifts [pixels] registering each energy of ``obj`` onto ``reference``: ``align``'s registration.

    Parameters and defaults as :func:`ptyxr.spectra.align`; returns shape (n_energy, 2),
    (row, col) shifts to apply (0 for the reference).
    """
    images, _, _ = registration_images(obj, coverage, region, image, edges, smooth, progress)
    return register_images(images, reference, upsample=upsample, progress=progress)
