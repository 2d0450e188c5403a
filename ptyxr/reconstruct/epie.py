"""Energy-batched ePIE (Maiden & Rodenburg 2009) as numpy-only array kernels.

All energies advance together: one step per scan index updates every energy at once
(patch gather with per-energy integer offsets → one batched FFT of shape
(n_energy, N, N) → modulus replacement → one batched inverse FFT → object/probe update
scattered back). The result equals independent per-energy ePIE runs with the same
position order (tested), since energies never mix.

Conventions (DESIGN §2, :mod:`ptyxr.optics`): Ψ = fftshift(fft2(ψ, norm="ortho")). To
save passes over memory the measured amplitudes are stored once in FFT order
(ifftshift) and pre-multiplied by N, and the FFTs run unnormalised: with F = fft2(ψ)
(= N·Ψ), ΔF = F·(N√I/|F| − 1) on valid pixels (0 elsewhere) is N·ΔΨ and
Δψ = ifft2_unnormalised(ΔF)/N², the 1/N² being folded into the update step sizes.
Linearity means the exit wave itself never needs to be kept: the FFT buffer holds ψ,
then F, then ΔF, then N²Δψ, all in place.

Per step and energy (Δψ = ψ′ − ψ, O_k the object patch, both updates from old values):
    O_k ← O_k + α P*  /max|P|²   Δψ
    P   ← P   + β O_k*/max|O_k|² Δψ

With ``regularization`` a < 1 the object step is rPIE's (Maiden, Johnson & Li, Optica 4,
736 (2017)), per pixel: O_k ← O_k + α P*/((1 − a)|P|² + a·max|P|²) Δψ — up to 1/a larger
where the probe is weak; a = 1 runs ePIE's arithmetic unchanged (bit for bit). mPIE's
momentum acts between iterations (:mod:`ptyxr.reconstruct.momentum`).

Two engines compute the same step: ``"numba"`` (fused, parallel over energies, three
passes over memory per step besides the FFTs) and ``"numpy"`` (plain array ops, the
reference). FFT backends: ``"scipy"`` (scipy.fft with workers) and ``"pyfftw"`` (FFTW).
With numba and pyFFTW both importable (``pip install ptyxr[fast]``), ``"auto"`` runs the
fused engine: one compiled call per iteration, each energy a parallel task running all
positions with single-threaded in-cache FFTW transforms called from the kernel (≈ 1.3–1.7×
the FFT floor; 3–4× faster than the step-wise numba+scipy.fft path). Without numba the
numpy engine with scipy.fft is used and gives the same results to float tolerance.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.fft as sfft

# the numba engines live in epie_numba (numba kernel module); the names modes.py and the tests use stay here
from ptyxr.reconstruct.epie_numba import (
    _aligned_empty,
    _check_layout,
    _fftw_plans,
    _FusedFFT,
    _load_fftw,
    _numba,
    _numba_kernels,
    _pyfftw,
)

if _numba is not None:
    from ptyxr.reconstruct.epie_numba import _fftw_execute, _nb_fused_iteration  # noqa: F401 - modes.py calls it

__all__ = [
    "ENGINES",
    "FFT_BACKENDS",
    "WORKERS",
    "BatchedEPIE",
    "centre_of_mass",
    "fourier_norm",
    "fourier_shift",
    "max_abs2",
    "pin_scale",
    "prepare_amplitudes",
    "recentre",
]
# private names kept importable from here (modes.py's fused kernel, the tests)
_REEXPORTED = (_aligned_empty, _fftw_plans, _FusedFFT, _load_fftw, _pyfftw)

#: Threads for FFTs and the numba kernels (default: all cores).
WORKERS = os.cpu_count() or 1

ENGINES = ("auto", "numba", "numpy")
FFT_BACKENDS = ("auto", "pyfftw", "scipy")


# ----------------------------------------------------------------- data preparation
def prepare_amplitudes(intensity: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Measured amplitudes in the kernels' layout: N·√I in FFT order, −1 where invalid.

    Parameters
    ----------
    intensity : ndarray, shape (..., N, N)
        Counts with zero frequency at (N//2, N//2); NaN = invalid pixel.
    out : ndarray, optional
        float32 array of the same shape to fill (saves one copy of the data).

    Returns
    -------
    ndarray, float32
        ``N·√I`` ifftshifted over the last two axes; −1 marks invalid pixels.
    """
    intensity = np.asarray(intensity)
    n = intensity.shape[-1]
    if out is None:
        out = np.empty(intensity.shape, dtype=np.float32)
    # in chunks of frames: the shifted copy and masks of a whole 4-D stack would double
    # the peak memory of the largest array in the reconstruction
    flat_in = intensity.reshape(-1, *intensity.shape[-2:])
    flat_out = out.reshape(-1, *out.shape[-2:])
    if not np.shares_memory(flat_out, out):  # pragma: no cover - out is C-contiguous in practice
        raise ValueError("out must be C-contiguous")
    chunk = max(1, (8 << 20) // max(1, n * n * 4))  # ~8 MiB of frames at a time
    for start in range(0, len(flat_in), chunk):
        dst = flat_out[start : start + chunk]
        with np.errstate(invalid="ignore"):
            np.sqrt(np.fft.ifftshift(flat_in[start : start + chunk], axes=(-2, -1)), out=dst, dtype=np.float32)
        dst *= np.float32(n)
        dst[~np.isfinite(dst)] = -1.0
    return out


def fourier_norm(intensity: np.ndarray) -> np.ndarray:
    """Σ I over valid pixels per energy (the denominator of the Fourier error)."""
    intensity = np.asarray(intensity)
    # one energy at a time: a float64 copy of a whole 4-D stack doubled the peak memory
    flat = intensity.reshape(-1, *intensity.shape[-3:])
    sums = np.array([np.nansum(block, dtype=np.float64) for block in flat])
    return sums.reshape(intensity.shape[:-3])


# --------------------------------------------------------------------- FFT backends
class _FFT:
    """Unnormalised in-place forward/backward 2-D FFTs over the last two axes of ``buf``."""

    def __init__(self, buf: np.ndarray, backend: str = "auto", workers: int = WORKERS) -> None:
        if backend == "auto":
            # scipy's pocketfft pool degrades gracefully on a busy machine; multi-threaded
            # FFTW plans were measured 5–100× slower there (thread wake-ups), so pyFFTW is opt-in
            backend = "scipy"
        if backend not in ("pyfftw", "scipy"):
            raise ValueError(f"fft_backend must be one of {FFT_BACKENDS}, got {backend!r}")
        if backend == "pyfftw" and _pyfftw is None:
            raise ImportError("fft_backend='pyfftw' needs the pyFFTW package (pip install pyfftw)")
        self.backend, self.buf, self.workers = backend, buf, workers
        if backend == "pyfftw":
            # FFTW_MEASURE overwrites buf while planning, so plan before it holds data; the
            # plan is cached as in-process wisdom, so re-planning the same shape is identical
            # one FFTW thread: multi-threaded FFTW plans stalled on thread wake-ups on a busy
            # 2-core machine (21 ms for a 3×32² batch); the numba kernels use the cores instead
            saved = buf.copy()
            flags = ("FFTW_MEASURE", "FFTW_DESTROY_INPUT")
            self._fwd = _pyfftw.FFTW(buf, buf, axes=(-2, -1), direction="FFTW_FORWARD", flags=flags, threads=1)
            self._bwd = _pyfftw.FFTW(buf, buf, axes=(-2, -1), direction="FFTW_BACKWARD", flags=flags, threads=1)
            buf[...] = saved

    def forward(self) -> None:
        """buf ← fft2(buf) (unnormalised)."""
        if self.backend == "pyfftw":
            self._fwd()
        else:
            self._store(sfft.fft2(self.buf, workers=self.workers, overwrite_x=True))

    def backward(self) -> None:
        """buf ← N²·ifft2(buf) (unnormalised inverse)."""
        if self.backend == "pyfftw":
            self._bwd(normalise_idft=False)
        else:
            self._store(sfft.ifft2(self.buf, norm="forward", workers=self.workers, overwrite_x=True))

    def _store(self, out: np.ndarray) -> None:
        # pocketfft honours overwrite_x for contiguous complex input and returns buf itself;
        # copying it onto itself again cost ~40 % of the FFT time
        if not np.may_share_memory(out, self.buf):
            self.buf[...] = out


# ------------------------------------------------------------------- numpy engine
def _np_exit_waves(obj: np.ndarray, probe: np.ndarray, offsets: np.ndarray, buf: np.ndarray, omax2: np.ndarray) -> None:
    n = probe.shape[-1]
    for e in range(probe.shape[0]):
        oy, ox = offsets[e]
        patch = obj[e, oy : oy + n, ox : ox + n]
        np.multiply(probe[e], patch, out=buf[e])
        omax2[e] = np.max(patch.real**2 + patch.imag**2)


def _np_modulus(buf: np.ndarray, amp: np.ndarray, err: np.ndarray) -> None:
    mag = np.abs(buf)
    valid = amp >= 0
    diff = np.where(valid, mag - amp, 0.0)
    err += np.sum(diff.astype(np.float64) ** 2, axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(valid, amp / mag - 1.0, 0.0).astype(np.float32)
    zero = valid & (mag == 0)  # no phase to keep: Ψ' = amplitude, ΔF = amplitude
    buf *= factor
    buf[zero] = amp[zero]


def _np_update(
    obj: np.ndarray,
    probe: np.ndarray,
    buf: np.ndarray,
    offsets: np.ndarray,
    c_obj: np.ndarray,
    c_probe: np.ndarray,
    update_probe: bool,
    pmax2: np.ndarray,
    reg: float = 1.0,
    apm: np.ndarray | None = None,
) -> None:
    # reg < 1 (rPIE): c_obj is the numerator α/N² and the object step is per pixel,
    # c_obj/((1 − reg)|P|² + apm) with apm = reg·max|P|²
    n = probe.shape[-1]
    oma = np.float32(1.0 - reg)
    for e in range(probe.shape[0]):
        oy, ox = offsets[e]
        patch = obj[e, oy : oy + n, ox : ox + n]
        old = patch.copy()
        if reg < 1.0:
            assert apm is not None, "rPIE (reg < 1) needs apm = reg·max|P|²"
            p = probe[e]
            step = np.float32(c_obj[e]) / (oma * (p.real * p.real + p.imag * p.imag) + np.float32(apm[e]))
            patch += step * (np.conj(p) * buf[e])
        else:
            patch += np.complex64(c_obj[e]) * np.conj(probe[e]) * buf[e]
        if update_probe:
            probe[e] += np.complex64(c_probe[e]) * np.conj(old) * buf[e]
            pmax2[e] = np.max(probe[e].real ** 2 + probe[e].imag ** 2)


# ---------------------------------------------------------------------- the solver
class BatchedEPIE:
    """Energy-batched ePIE over preallocated buffers.

    Parameters
    ----------
    amplitudes : ndarray, shape (n_energy, n_scan, N, N), float32
        From :func:`prepare_amplitudes` (N·√I, FFT order, −1 invalid). Padding scan points
        must be all −1 (their updates are then exactly zero).
    offsets : ndarray, shape (n_energy, n_scan, 2), int
        Top-left object pixel of each patch.
    norm : ndarray, shape (n_energy,)
        Σ I over valid pixels and positions (Fourier-error denominator).
    alpha, beta : float
        Object and probe step sizes.
    regularization : float
        rPIE's object-step weight a in (0, 1] (Maiden, Johnson & Li 2017): the object step is
        α·P*/((1 − a)|P|² + a·max|P|²) per pixel; a = 1 is ePIE's α·P*/max|P|² exactly (the
        same arithmetic as before, bit for bit).
    engine : {"auto", "numba", "numpy"}
        Kernel implementation.
    fft_backend : {"auto", "pyfftw", "scipy"}
        FFT implementation.
    workers : int
        Threads for the FFTs.
    """

    def __init__(
        self,
        amplitudes: np.ndarray,
        offsets: np.ndarray,
        norm: np.ndarray,
        alpha: float = 1.0,
        beta: float = 1.0,
        engine: str = "auto",
        fft_backend: str = "auto",
        workers: int = WORKERS,
        regularization: float = 1.0,
    ) -> None:
        if engine == "auto":
            engine = "numba" if _numba is not None else "numpy"
        if engine not in ("numba", "numpy"):
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.engine = engine
        self.amplitudes = amplitudes
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        self.norm = np.asarray(norm, dtype=np.float64)
        self.alpha, self.beta = float(alpha), float(beta)
        self.reg = float(regularization)
        if not 0.0 < self.reg <= 1.0:
            raise ValueError(f"regularization must lie in (0, 1] (1 = ePIE), got {regularization!r}")
        n_e, _, n, _ = amplitudes.shape
        self.n = n
        self.buf = _aligned_empty((n_e, n, n), np.complex64)
        self.buf[...] = 0
        # fused numba+FFTW path: engine numba with pyFFTW's FFTW (auto or asked for)
        self.fused = engine == "numba" and fft_backend in ("auto", "pyfftw") and _load_fftw() is not None
        self.fft: _FusedFFT | _FFT  # same forward()/backward() on self.buf
        if self.fused:
            self._plans = _fftw_plans(self.buf)
            self.fft = _FusedFFT(self.buf, self._plans)
        else:
            self.fft = _FFT(self.buf, fft_backend, workers)
        self.omax2 = np.zeros(n_e, dtype=np.float32)
        self.pmax2 = np.zeros(n_e, dtype=np.float32)
        self.err = np.zeros(n_e, dtype=np.float64)
        if engine == "numba":
            self._exit, self._mod, self._upd = _numba_kernels()
        else:
            self._exit, self._mod, self._upd = _np_exit_waves, _np_modulus, _np_update

    def _fused(self, obj: np.ndarray, probe: np.ndarray, order: np.ndarray, update_probe: bool) -> None:
        _check_layout(obj, probe, self.buf)
        f32 = np.float32
        _nb_fused_iteration(
            obj.view(f32), probe.view(f32), self.buf.view(f32), self.amplitudes, self.offsets, order,
            self.alpha, self.beta, bool(update_probe), self.err, self._plans[0], self._plans[1], self.reg,
        )  # fmt: skip

    def step(self, obj: np.ndarray, probe: np.ndarray, k: int, update_probe: bool) -> None:
        """One ePIE update of scan index ``k`` for all energies (in place)."""
        if self.fused:
            self._fused(obj, probe, np.array([k], dtype=np.int64), update_probe)
            return
        offs = self.offsets[:, k]
        self._exit(obj, probe, offs, self.buf, self.omax2)
        self.fft.forward()
        self._mod(self.buf, self.amplitudes[:, k], self.err)
        self.fft.backward()
        # 1/N² turns the unnormalised inverse into Δψ; tiny floor avoids 0/0 on empty patches
        scale = 1.0 / float(self.n) ** 2
        c_probe = (self.beta * scale / np.maximum(self.omax2, 1e-30)).astype(np.float32)
        if self.reg < 1.0:  # rPIE: the numerator; the kernels divide per pixel (as the fused one)
            c_obj = np.full(len(offs), self.alpha * scale, dtype=np.float32)
            apm = (self.reg * np.maximum(self.pmax2.astype(np.float64), 1e-30)).astype(np.float32)
        else:
            c_obj = (self.alpha * scale / np.maximum(self.pmax2, 1e-30)).astype(np.float32)
            apm = np.zeros(len(offs), dtype=np.float32)
        self._upd(obj, probe, self.buf, offs, c_obj, c_probe, bool(update_probe), self.pmax2, self.reg, apm)

    def iteration(self, obj: np.ndarray, probe: np.ndarray, order: np.ndarray, update_probe: bool) -> np.ndarray:
        """One ePIE iteration over scan indices ``order``; returns the Fourier error per energy.

        The error of each position is measured on its exit wave before that position's
        update (the usual ePIE bookkeeping): Σ(|Ψ| − √I)² / Σ I over valid pixels.
        """
        self.err[:] = 0.0
        if self.fused:
            order = np.ascontiguousarray(order, dtype=np.int64)
            self._fused(obj, probe, order, update_probe)
            return self.err / (float(self.n) ** 2 * np.maximum(self.norm, 1e-300))
        self.pmax2[:] = max_abs2(probe)
        for k in order:
            self.step(obj, probe, int(k), update_probe)
        return self.err / (float(self.n) ** 2 * np.maximum(self.norm, 1e-300))


def max_abs2(a: np.ndarray) -> np.ndarray:
    """max |a|² over the last two axes (float32)."""
    return np.max(a.real**2 + a.imag**2, axis=(-2, -1)).astype(np.float32)


# ------------------------------------------------------------ probe re-centring
def centre_of_mass(probe: np.ndarray) -> np.ndarray:
    """Centre of mass (y, x) of |P|² per energy [pixels], shape (n_energy, 2)."""
    n = probe.shape[-1]
    w = probe.real.astype(np.float64) ** 2 + probe.imag.astype(np.float64) ** 2
    total = w.sum(axis=(-2, -1))
    idx = np.arange(n, dtype=np.float64)
    cy = np.einsum("eij,i->e", w, idx) / total
    cx = np.einsum("eij,j->e", w, idx) / total
    return np.stack([cy, cx], axis=-1)


def fourier_shift(a: np.ndarray, shift: tuple[float, float], workers: int = WORKERS) -> np.ndarray:
    """``a`` (2-D) moved by ``shift`` = (dy, dx) pixels: out(r) = a(r − shift), band-limited."""
    ny, nx = a.shape[-2:]
    ky = sfft.fftfreq(ny)[:, None]
    kx = sfft.fftfreq(nx)[None, :]
    ramp = np.exp(-2j * np.pi * (ky * shift[0] + kx * shift[1]))
    out = sfft.ifft2(sfft.fft2(a, workers=workers) * ramp, workers=workers)
    return out.astype(a.dtype, copy=False)


def recentre(
    obj: np.ndarray, probe: np.ndarray, tolerance: float = 0.05, field: np.ndarray | None = None
) -> np.ndarray:
    """Move each energy's probe centre of mass onto pixel N//2, moving the object alike.

    Shifting probe and object by the same vector only shifts the exit wave, so the
    diffraction intensities are unchanged; it removes the sub-pixel drift ePIE allows
    between probe and object, which keeps energies co-registered (DESIGN §2 pitfalls).
    The object is shifted as 1 + shift(O − 1) so the unit transmission outside the scan
    does not wrap; pixels outside ``field`` (n_energy, ny, nx; the union of that energy's
    probe patches) are reset to exactly 1+0j. Energies whose drift is below ``tolerance``
    pixels are left alone.

    Returns
    -------
    ndarray, shape (n_energy, 2)
        The shifts applied (pixels; 0 where skipped).
    """
    n = probe.shape[-1]
    drift = centre_of_mass(probe) - n // 2
    applied = np.zeros_like(drift)
    for e in range(probe.shape[0]):
        if np.max(np.abs(drift[e])) <= tolerance or not np.all(np.isfinite(drift[e])):
            continue
        shift = (-drift[e, 0], -drift[e, 1])
        probe[e] = fourier_shift(probe[e], shift)
        obj[e] = fourier_shift(obj[e] - 1, shift) + 1
        if field is not None:
            obj[e][~field[e]] = 1.0
        applied[e] = shift
    return applied


# ------------------------------------------------------------------ scale pinning
#: Quantile of |O| over the covered field that :func:`pin_scale` sets to 1 (the vacuum level
#: when ≳ 15 % of the field is vacuum; else the most transparent part of the sample).
VACUUM_QUANTILE = 0.85
#: Most pixels :func:`pin_scale` reads per energy (a fixed stride through the region).
PIN_SAMPLES = 4096


def pin_scale(
    obj: np.ndarray,
    probe: np.ndarray,
    region: np.ndarray,
    field: np.ndarray,
    quantile: float = VACUUM_QUANTILE,
    tolerance: float = 1e-3,
) -> np.ndarray:
    """Fix the O·P scale: the ``quantile`` of |O| over ``region`` becomes 1 per energy (in place).

    ePIE only constrains the exit wave P·O, so probe and object may trade a common factor c
    (P → cP, O → O/c) without changing the data fit. With noisy real data that neutral
    direction drifts: on the bundled Siemens star the probe power grew 3·10⁶-fold in 300
    iterations while the object amplitude fell to 4·10⁻⁴. Rescaling after each probe update
    holds the object's transparent part (the vacuum around a particle) at amplitude 1, so
    the probe keeps the power the frames measure (Parseval: Σ I = Σ|P·O|²) and the object
    its physical scale. A high quantile rather than the mean: the sample's own absorption
    must not set the scale (pinning Σ|P|² to the mean frame counts instead biased an
    absorbing test object's amplitude by 15 %).

    Parameters
    ----------
    obj : ndarray, shape (n_energy, ny, nx), complex64
        Object stack; only pixels inside ``field`` are rescaled (outside it stays 1+0j).
    probe : ndarray, shape (n_energy, N, N), complex64
        Probes.
    region : ndarray, shape (ny, nx), bool
        Well-illuminated pixels whose |O| quantile is pinned (e.g. the initial coverage).
    field : ndarray, shape (n_energy, ny, nx), bool
        Union of each energy's probe patches.
    quantile : float
        Quantile of |O| over ``region`` set to 1.
    tolerance : float
        Energies whose level is within this of 1 are left alone (the scale then stays within 0.1 %).

    Returns
    -------
    ndarray, shape (n_energy,)
        The factors c applied to the probe (1 where nothing was measurable).
    """
    c = np.ones(obj.shape[0])
    flat = np.flatnonzero(region)
    if flat.size == 0:
        return c
    # a fixed subsample of ~4096 pixels: the same pixels every iteration, so the gauge is steady,
    # at a fraction of the cost of all (a partition, not np.quantile's interpolation)
    flat = flat[:: max(1, flat.size // PIN_SAMPLES)]
    k = int(round(quantile * (flat.size - 1)))
    for e in range(obj.shape[0]):
        amp = np.abs(obj[e].ravel()[flat])
        level = float(np.partition(amp, k)[k])
        # within tolerance: leave it (rescaling the whole object costs more than ePIE's own bookkeeping)
        if not (np.isfinite(level) and level > 0) or abs(level - 1.0) <= tolerance:
            continue
        c[e] = level
        probe[e] *= np.complex64(level)
        np.multiply(obj[e], np.complex64(1.0 / level), out=obj[e], where=field[e])
    return c
