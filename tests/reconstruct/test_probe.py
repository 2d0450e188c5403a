"""Initial probes and illumination (ptyxr.reconstruct.probe) against direct constructions."""

from __future__ import annotations

import numpy as np
import pytest

from ptyxr.optics import kb_probe
from ptyxr.reconstruct import grid, probe


def test_setup_probes_are_kb_probes_with_each_energys_photons():
    energy = np.array([5420.0, 5480.0, 5540.0])
    photons = np.array([1e6, 2e6, 5e5])
    n, dx, fwhm, defocus = 32, 20e-9, 150e-9, 2e-6
    out = probe.setup_probes(energy, n, dx, fwhm, defocus, photons)
    assert out.shape == (3, n, n) and out.dtype == np.complex64
    np.testing.assert_allclose(np.sum(np.abs(out.astype(np.complex128)) ** 2, axis=(1, 2)), photons, rtol=1e-5)
    for e in range(3):
        ref = kb_probe(float(energy[e]), n, dx, fwhm, defocus, float(photons[e]))
        np.testing.assert_allclose(out[e], ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_guess_probes_resample_and_scale_to_the_photons():
    rng = np.random.default_rng(0)
    n = 24
    guess = (rng.normal(size=(3, n, n)) + 1j * rng.normal(size=(3, n, n))).astype(np.complex64)
    guess[2] = 0  # an empty guess stays empty (no 0/0)
    scale = np.array([1.0, 1.05, 1.02])
    photons = np.array([1e4, 3e4, 2e4])
    out = probe.guess_probes(guess, scale, photons)
    assert out.shape == guess.shape and out.dtype == np.complex64
    power = np.sum(np.abs(out.astype(np.complex128)) ** 2, axis=(1, 2))
    np.testing.assert_allclose(power[:2], photons[:2], rtol=1e-5)
    assert not out[2].any()
    # scale 1: the guess itself, only rescaled
    factor = np.sqrt(photons[0] / np.sum(np.abs(guess[0].astype(np.complex128)) ** 2))
    np.testing.assert_allclose(out[0], guess[0] * factor, rtol=1e-5, atol=1e-6)
    # other scales: the resampled guess (grid.resample_probe), only rescaled
    resampled = grid.resample_probe(guess[1], 1.05).astype(np.complex128)
    ratio = out[1][np.abs(resampled) > 1e-3] / resampled[np.abs(resampled) > 1e-3]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)


def _scan(n=8):
    # energy 0: patches at (0, 0) and (0, 6); energy 1: (0, 0) only (its second point inactive)
    offsets = np.array([[[0, 0], [0, 6]], [[0, 0], [0, 0]]])
    active = np.array([[True, True], [True, False]])
    return offsets, active, (n, 6 + n)


def test_illumination_sums_patch_intensities():
    rng = np.random.default_rng(1)
    n = 8
    offsets, active, shape = _scan(n)
    p = (rng.normal(size=(2, n, n)) + 1j * rng.normal(size=(2, n, n))).astype(np.complex64)
    illum = probe.illumination(p, offsets, active, shape)
    assert illum.shape == (2, *shape) and illum.dtype == np.float64
    p2 = np.abs(p.astype(np.complex128)) ** 2
    # independent: pad each |P|² into the object frame and add the active ones
    for e in range(2):
        ref = np.zeros(shape)
        for (oy, ox), on in zip(offsets[e], active[e], strict=True):
            if on:
                ref += np.pad(p2[e], ((oy, shape[0] - n - oy), (ox, shape[1] - n - ox)))
        np.testing.assert_allclose(illum[e], ref, rtol=1e-12)
    # every photon of every active patch lands on the grid
    np.testing.assert_allclose(illum.sum(axis=(1, 2)), active.sum(axis=1) * p2.sum(axis=(1, 2)), rtol=1e-12)


@pytest.mark.parametrize("threshold", [0.1, 0.9])
def test_coverage_map_is_the_thresholded_illumination_anded_over_energies(threshold):
    n = 8
    offsets, active, shape = _scan(n)
    flat = np.ones((2, n, n), np.complex64)  # |P|² = 1: illumination counts the patches on a pixel
    cov = probe.coverage_map(flat, offsets, active, shape, threshold)
    # energy 0 covers columns 0..13 (2 where the patches overlap, the maximum), energy 1 columns 0..7
    cols = np.arange(shape[1])
    lit0 = (cols < 14) if threshold <= 0.5 else (cols >= 6) & (cols < 8)
    expected = np.broadcast_to(lit0 & (cols < 8), shape)
    np.testing.assert_array_equal(cov, expected)
