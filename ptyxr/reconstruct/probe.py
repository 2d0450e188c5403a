"""Initial probes on the common grid (numpy only).

The paper starts from a probe "calculated on the basis of the experimental setup": a
KB focus of the given FWHM and defocus at each energy (:func:`ptyxr.optics.kb_probe`),
scaled so Σ|P|² equals the mean total counts of that energy's frames. A measured
``probe_guess`` (sampled at each energy's native pixel λz/(Np)) is resampled onto the
common pixel instead and scaled the same way.
"""

from __future__ import annotations

import numpy as np

from ptyxr.optics import kb_probe
from ptyxr.reconstruct.grid import resample_probe


def setup_probes(
    energy: np.ndarray, n: int, pixel_size: float, fwhm: float, defocus: float, photons: np.ndarray
) -> np.ndarray:
    """KB probes for every energy on the common grid.

    Parameters
    ----------
    energy : ndarray, shape (n_energy,)
        Photon energies [eV].
    n : int
        Probe size N (= frame size); centre at pixel (N//2, N//2).
    pixel_size : float
        Common real-space pixel dx_c [m].
    fwhm, defocus : float
        Focus FWHM and defocus [m].
    photons : ndarray, shape (n_energy,)
        Σ|P|² per energy [counts].

    Returns
    -------
    ndarray, shape (n_energy, N, N), complex64
    """
    return np.stack(
        [kb_probe(float(e), n, pixel_size, fwhm, defocus, float(ph)) for e, ph in zip(energy, photons, strict=True)]
    ).astype(np.complex64)


def guess_probes(probe_guess: np.ndarray, scale: np.ndarray, photons: np.ndarray) -> np.ndarray:
    """``probe_guess`` resampled from native pixels to the common grid and scaled.

    Parameters
    ----------
    probe_guess : ndarray, shape (n_energy, N, N), complex
        Initial probes at each energy's native pixel size.
    scale : ndarray, shape (n_energy,)
        s = dx(E)/dx_c per energy.
    photons : ndarray, shape (n_energy,)
        Σ|P|² per energy [counts] after scaling.
    """
    out = np.empty(probe_guess.shape, dtype=np.complex64)
    for e in range(probe_guess.shape[0]):
        p = resample_probe(probe_guess[e], float(scale[e])).astype(np.complex128)
        total = np.sum(np.abs(p) ** 2)
        out[e] = p * np.sqrt(photons[e] / total) if total > 0 else p
    return out


def illumination(probe: np.ndarray, offsets: np.ndarray, active: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Summed probe intensity Σ_k |P(r − r_k)|² per energy on the object grid.

    Returns
    -------
    ndarray, shape (n_energy, ny, nx), float64
    """
    n = probe.shape[-1]
    out = np.zeros((probe.shape[0], *shape), dtype=np.float64)
    for e in range(probe.shape[0]):
        p2 = np.abs(probe[e].astype(np.complex128)) ** 2
        for k in np.flatnonzero(active[e]):
            oy, ox = offsets[e, k]
            out[e, oy : oy + n, ox : ox + n] += p2
    return out


def coverage_map(
    probe: np.ndarray, offsets: np.ndarray, active: np.ndarray, shape: tuple[int, int], threshold: float = 0.1
) -> np.ndarray:
    """Pixels illuminated at every energy: Σ_k|P|² ≥ ``threshold`` × its maximum, per energy, ANDed.

    ANDing over energies makes ``coverage`` the region where every energy has data — where
    spectra and KKR are meaningful; outside one energy's field it is False.
    """
    illum = illumination(probe, offsets, active, shape)
    peak = illum.max(axis=(-2, -1), keepdims=True)
    return np.all(illum >= threshold * peak, axis=0)
