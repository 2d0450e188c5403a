"""Kernel-level checks of ptyxr.reconstruct.epie that the stage tests do not reach.

Also ``recentre`` and ``pin_scale``. The solver itself (batched vs. independent energies, the
two engines, the Fourier error) is checked on test_reconstruct's three-energy scan, in
tests/reconstruct/test_reconstruct.py.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from test_reconstruct import gaussian_probe, truth_object  # same folder, on sys.path

from ptyxr.optics import far_field
from ptyxr.reconstruct import epie, epie_numba


def test_fftw_planning_from_parallel_threads_gives_one_plan_per_size():
    # particles reconstructed in dask threads build their solvers at the same time; FFTW's planner
    # is not thread-safe (ctypes drops the GIL), so planning must be serialised: every thread gets
    # the one cached plan pair of its size, and the process survives (a race crashed a notebook kernel)
    if epie._load_fftw() is None:
        pytest.skip("fused numba+FFTW engine unavailable (needs numba and pyFFTW)")
    n = 44  # a size no other test plans, so the threads race on a cold cache
    epie_numba._FFTW[1].pop((n, False), None)
    bufs = [epie._aligned_empty((3, n, n), np.complex64) for _ in range(8)]
    results: list[tuple[int, int]] = []
    start = threading.Barrier(len(bufs))

    def plan(buf: np.ndarray) -> None:
        start.wait()
        results.append(epie._fftw_plans(buf))

    threads = [threading.Thread(target=plan, args=(b,)) for b in bufs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == len(bufs) and all(all(p) for p in results)
    # one plan pair per (size, alignment) key, not one per thread
    assert len(set(results)) == len({key for key in epie_numba._FFTW[1] if key[0] == n}) <= 2


# ----------------------------------------------------------- public helpers of the kernels
def test_prepare_amplitudes_is_n_sqrt_i_in_fft_order_with_invalid_marked():
    rng = np.random.default_rng(0)
    n = 8
    intensity = rng.uniform(0, 100, (2, 3, n, n)).astype(np.float32)
    intensity[0, 1, 4, 4] = np.nan  # the zero-frequency pixel of one frame is invalid
    amps = epie.prepare_amplitudes(intensity)
    assert amps.dtype == np.float32 and amps.shape == intensity.shape
    # zero frequency (N//2, N//2) moves to (0, 0); invalid → −1
    assert amps[0, 1, 0, 0] == -1.0
    ref = n * np.sqrt(np.fft.ifftshift(intensity.astype(np.float64), axes=(-2, -1)))
    ok = np.isfinite(ref)
    np.testing.assert_allclose(amps[ok], ref[ok], rtol=1e-6)
    assert (amps[~ok] == -1).all() and (~ok).sum() == 1
    # into a given buffer, without another copy
    out = np.empty(intensity.shape, np.float32)
    assert epie.prepare_amplitudes(intensity, out=out) is out
    np.testing.assert_array_equal(out, amps)


def test_fourier_norm_sums_valid_counts_per_energy():
    rng = np.random.default_rng(1)
    intensity = rng.uniform(0, 10, (2, 4, 3, 6, 6))  # (particle, energy, scan, N, N)
    intensity[1, 2, 0, :, 3] = np.nan
    norm = epie.fourier_norm(intensity)
    assert norm.shape == (2, 4)
    for p in range(2):
        for e in range(4):
            block = intensity[p, e]
            assert np.isclose(norm[p, e], block[np.isfinite(block)].sum(), rtol=1e-12)


def test_max_abs2_and_centre_of_mass():
    n = 16
    probe = np.zeros((2, n, n), np.complex64)
    probe[0, 5, 9] = 3 + 4j  # |P|² = 25 at (5, 9)
    yy, xx = np.mgrid[:n, :n]
    probe[1] = np.exp(-((yy - 7.3) ** 2 + (xx - 8.6) ** 2) / 8) * np.exp(1j * xx)  # symmetric about (7.3, 8.6)
    np.testing.assert_allclose(epie.max_abs2(probe), [25.0, np.abs(probe[1]).max() ** 2], rtol=1e-6)
    assert epie.max_abs2(probe).dtype == np.float32
    com = epie.centre_of_mass(probe)
    np.testing.assert_allclose(com[0], [5, 9], atol=1e-12)
    np.testing.assert_allclose(com[1], [7.3, 8.6], atol=1e-4)  # the Gaussian's tails are cut at ~3σ


def test_fourier_shift_is_roll_for_whole_pixels_and_exact_for_band_limited_content():
    rng = np.random.default_rng(2)
    a = (rng.normal(size=(12, 10)) + 1j * rng.normal(size=(12, 10))).astype(np.complex64)
    np.testing.assert_allclose(epie.fourier_shift(a, (3.0, -2.0)), np.roll(a, (3, -2), axis=(0, 1)), atol=1e-5)
    assert epie.fourier_shift(a, (0.5, 0.5)).dtype == np.complex64
    # a sampled plane wave is band-limited: moving by (dy, dx) multiplies by exp(−ik·shift)
    ny, nx = 16, 20
    yy, xx = np.mgrid[:ny, :nx]
    k = 2 * np.pi * np.array([3 / ny, -2 / nx])
    wave = np.exp(1j * (k[0] * yy + k[1] * xx))
    shift = (0.37, -1.61)
    expected = np.exp(1j * (k[0] * (yy - shift[0]) + k[1] * (xx - shift[1])))
    np.testing.assert_allclose(epie.fourier_shift(wave, shift), expected, atol=1e-12)


def test_recentre_keeps_intensities_and_centres_probe():
    n = 32
    probe = gaussian_probe(n, 20e-9, 150e-9, 1e6)[None]
    probe = epie.fourier_shift(probe[0], (1.3, -0.7))[None].astype(np.complex64)
    obj = truth_object(
        *np.meshgrid(np.arange(64) * 20e-9 - 0.6e-6, np.arange(64) * 20e-9 - 0.6e-6, indexing="ij"), 5500.0
    )[None].copy()
    patch = (slice(16, 48), slice(16, 48))
    before = np.abs(far_field(probe[0] * obj[0][patch])) ** 2
    epie.recentre(obj, probe)
    np.testing.assert_allclose(epie.centre_of_mass(probe)[0], [n // 2, n // 2], atol=1e-3)
    after = np.abs(far_field(probe[0] * obj[0][patch])) ** 2
    # same exit wave up to a shift → same intensities (up to wrap at the patch edge, small)
    assert np.abs(after - before).sum() / before.sum() < 1e-3


def test_pin_scale_keeps_exit_waves_and_sets_the_vacuum_to_one():
    """pin_scale trades a factor between probe and object: P·O unchanged, vacuum |O| → 1."""
    rng = np.random.default_rng(1)
    obj = np.ones((2, 40, 40), dtype=np.complex64)
    obj[:, 10:20, 10:20] = 0.5 * np.exp(0.3j)  # an absorbing particle on 1/16 of the field
    obj *= np.array([0.01, 30.0], dtype=np.float32)[:, None, None]  # a drifted scale per energy
    obj[:, 35:] = 1.0  # outside the field
    probe = (rng.normal(size=(2, 8, 8)) + 1j * rng.normal(size=(2, 8, 8))).astype(np.complex64)
    field = np.zeros(obj.shape, dtype=bool)
    field[:, :35] = True
    exit_before = probe[:, None, None] * obj[:, None, None, 4:12, 4:12]
    c = epie.pin_scale(obj, probe, field[0], field)
    np.testing.assert_allclose(c, [0.01, 30.0], rtol=1e-6)
    np.testing.assert_allclose(np.abs(obj[:, 0, 0]), 1.0, rtol=1e-6)  # vacuum at 1, particle at 0.5
    np.testing.assert_allclose(np.abs(obj[:, 15, 15]), 0.5, rtol=1e-6)
    np.testing.assert_array_equal(obj[:, 35:], 1.0)  # outside the field untouched
    np.testing.assert_allclose(probe[:, None, None] * obj[:, None, None, 4:12, 4:12], exit_before, rtol=1e-5)
