"""ePIE's numba kernels: the step-wise engine and the fused numba + FFTW iteration.

numpy only besides the optional numba and pyFFTW (``pip install ptyxr[fast]``); without them
``_numba``/``_pyfftw`` are None and :mod:`ptyxr.reconstruct.epie` runs its numpy reference
engine. The arithmetic and conventions are those of :mod:`ptyxr.reconstruct.epie` (its module
docstring): unnormalised FFTs, amplitudes N·√I in FFT order, −1 = invalid pixel. The
:class:`~ptyxr.reconstruct.epie.BatchedEPIE` solver (and the mixed-state one in
:mod:`ptyxr.reconstruct.modes`) chooses between them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

try:  # optional fast path
    import numba as _numba
except ImportError:  # pragma: no cover - exercised only without numba
    _numba = None  # type: ignore[assignment]  # the fast path tests `_numba is not None`

try:  # optional fast path
    import pyfftw as _pyfftw
except ImportError:  # pragma: no cover
    _pyfftw = None


class _FusedFFT:
    """The fused engine's FFTW plans applied frame by frame (FFT-floor timing, tests)."""

    backend = "pyfftw"

    def __init__(self, buf: np.ndarray, plans: tuple[int, int]) -> None:
        self.buf, self.plans = buf, plans

    def forward(self) -> None:
        """buf ← fft2(buf) (unnormalised)."""
        _nb_fft_frames(self.buf, self.plans[0], 1)

    def backward(self) -> None:
        """buf ← N²·ifft2(buf) (unnormalised inverse)."""
        _nb_fft_frames(self.buf, self.plans[1], 1)

    def floor(self, repeats: int) -> None:
        """``repeats`` forward+inverse FFT pairs per frame in one parallel call (the FFT floor)."""
        _nb_fft_frames(self.buf, self.plans[0], -repeats, self.plans[1])


def _check_layout(obj: np.ndarray, probe: np.ndarray, buf: np.ndarray) -> None:
    # the compiled kernel indexes raw memory: insist on what it assumes
    for name, a in (("obj", obj), ("probe", probe)):
        if a.dtype != np.complex64 or not a.flags.c_contiguous:
            raise ValueError(f"{name} must be a C-contiguous complex64 array (got {a.dtype})")
    if probe.shape != buf.shape or obj.shape[0] != buf.shape[0]:
        raise ValueError(f"probe {probe.shape} / object {obj.shape} do not match the solver {buf.shape}")


def _aligned_empty(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    if _pyfftw is not None:
        return _pyfftw.empty_aligned(shape, dtype=dtype)
    return np.empty(shape, dtype=dtype)


# ------------------------------------------------------------------- numba engine
# Module-level definitions (not closures) so numba can cache the compiled kernels on disk;
# each energy is one prange task, so results do not depend on the thread count.
if _numba is not None:
    # dict[str, Any]: numba's stubs type each keyword of njit, a dict[str, bool] matches none
    _KERNEL_OPTIONS: dict[str, Any] = {"parallel": True, "cache": True, "nogil": True, "fastmath": False}

    @_numba.njit(**_KERNEL_OPTIONS)
    def _nb_mode_exit_waves(obj, probe, offsets, buf, omax2):  # pragma: no cover - compiled
        # ψ_m = P_m·O_k for a (n_energy, K, N, N) probe stack into buf, and max|O_k|²; the
        # coherent step-wise engine runs it with K = 1 (_nb_exit_waves), the mode engine with K
        n_e, k_modes, n = probe.shape[0], probe.shape[1], probe.shape[2]
        for e in _numba.prange(n_e):
            oy, ox = offsets[e, 0], offsets[e, 1]
            m = np.float32(0.0)
            for i in range(n):
                orow = obj[e, oy + i, ox : ox + n]
                for j in range(n):
                    o = orow[j]
                    a = o.real * o.real + o.imag * o.imag
                    if a > m:
                        m = a
                for q in range(k_modes):  # a contiguous row per mode: vectorises
                    prow, brow = probe[e, q, i], buf[e, q, i]
                    for j in range(n):
                        brow[j] = prow[j] * orow[j]
            omax2[e] = m

    def _nb_exit_waves(
        obj: np.ndarray, probe: np.ndarray, offsets: np.ndarray, buf: np.ndarray, omax2: np.ndarray
    ) -> None:
        """Coherent exit waves ψ = P·O_k: :func:`_nb_mode_exit_waves` on one-mode views (no copy)."""
        _nb_mode_exit_waves(obj, probe[:, None], offsets, buf[:, None], omax2)

    @_numba.njit(**_KERNEL_OPTIONS)
    def _nb_modulus(buf, amp, err):  # pragma: no cover - compiled
        n_e, n = buf.shape[0], buf.shape[1]
        for e in _numba.prange(n_e):
            s = 0.0
            for i in range(n):
                for j in range(n):
                    a = amp[e, i, j]
                    if a >= 0:
                        f = buf[e, i, j]
                        mag = np.sqrt(f.real * f.real + f.imag * f.imag)
                        d = mag - a
                        s += np.float64(d) * np.float64(d)
                        if mag > 0:
                            buf[e, i, j] = f * np.float32(a / mag - np.float32(1.0))
                        else:
                            buf[e, i, j] = a
                    else:
                        buf[e, i, j] = 0
            err[e] += s

    @_numba.njit(**_KERNEL_OPTIONS)
    def _nb_fft_frames(buf, plan, repeats, plan_back=0):  # pragma: no cover - compiled
        # repeats > 0: that many transforms with ``plan``; < 0: |repeats| forward+backward pairs
        n_e, n = buf.shape[0], buf.shape[1]
        base = buf.ctypes.data
        for e in _numba.prange(n_e):
            ptr = base + e * n * n * 8
            for _ in range(abs(repeats)):
                _fftw_execute(plan, ptr, ptr)
                if repeats < 0:
                    _fftw_execute(plan_back, ptr, ptr)

    @_numba.njit(**_KERNEL_OPTIONS)
    def _nb_update(obj, probe, buf, offsets, c_obj, c_probe, update_probe, pmax2, reg, apm):  # pragma: no cover
        n_e, n = probe.shape[0], probe.shape[1]
        rpie = reg < 1.0
        oma = np.float32(1.0 - reg)
        for e in _numba.prange(n_e):
            oy, ox = offsets[e, 0], offsets[e, 1]
            co, cp = c_obj[e], c_probe[e]
            m = np.float32(0.0)
            for i in range(n):
                for j in range(n):
                    o = obj[e, oy + i, ox + j]
                    p = probe[e, i, j]
                    d = buf[e, i, j]
                    if rpie:  # per-pixel step (see _np_update)
                        c = co / (oma * (p.real * p.real + p.imag * p.imag) + apm[e])
                        obj[e, oy + i, ox + j] = o + c * (p.conjugate() * d)
                    else:
                        obj[e, oy + i, ox + j] = o + co * (p.conjugate() * d)
                    if update_probe:
                        pn = p + cp * (o.conjugate() * d)
                        probe[e, i, j] = pn
                        a = pn.real * pn.real + pn.imag * pn.imag
                        if a > m:
                            m = a
            if update_probe:
                pmax2[e] = m


# ------------------------------------------------ fused numba + FFTW engine (fast path)
# The whole iteration in one compiled call: each energy is one prange task that runs all
# scan positions (exit wave → FFTW → modulus → inverse FFTW → update) on its own frame
# buffer, so its working set (~4 frames) stays in the core's L2 cache and there is no
# Python or thread fork/join per step. FFTW's new-array execute is thread-safe; the plans
# (single-threaded, in place) are made once per frame size and kept for the process. The
# kernel calls FFTW through pyFFTW's bundled libfftw3f by symbol name, so it is cacheable.
_FFTW_FLAGS = {"FFTW_MEASURE": 0, "FFTW_DESTROY_INPUT": 1, "FFTW_UNALIGNED": 2, "FFTW_ESTIMATE": 64}
PLANNER = os.environ.get("PTYXR_FFTW_PLANNER", "FFTW_ESTIMATE")
# (ctypes library, {(n, unaligned): (forward plan, backward plan)}, library path) once loaded
_FFTWState = tuple[Any, dict[tuple[int, bool], tuple[int, int]], str]
_FFTW: _FFTWState | None = None
# FFTW's planner is not thread-safe (only plan execution is), and ctypes releases the GIL: particles
# reconstructed in parallel threads (dask) planned at once and could crash the process
_FFTW_LOCK = threading.RLock()


def _load_fftw() -> _FFTWState | None:
    """pyFFTW's single-precision FFTW as a ctypes library (None if unavailable); thread-safe."""
    with _FFTW_LOCK:
        return _load_fftw_locked()


def _load_fftw_locked() -> _FFTWState | None:
    """pyFFTW's single-precision FFTW as a ctypes library (None if unavailable)."""
    global _FFTW
    if _FFTW is not None or _pyfftw is None or _numba is None:
        return _FFTW
    import ctypes
    import ctypes.util
    import glob

    import llvmlite.binding as llvm

    libdir = os.path.join(os.path.dirname(_pyfftw.__file__), os.pardir, "pyfftw.libs")
    found = sorted(glob.glob(os.path.join(libdir, "libfftw3f-*.so*")))
    if not found:  # e.g. a pyFFTW built against a system FFTW
        found = [ctypes.util.find_library("fftw3f") or ""]
    try:
        if not found[0]:
            return None
        lib = ctypes.CDLL(found[0])
        lib.fftwf_execute_dft  # noqa: B018 - AttributeError if this is not single-precision FFTW
        llvm.load_library_permanently(found[0])  # lets the compiled kernel resolve the symbol
    except (OSError, IndexError, RuntimeError, AttributeError):
        return None
    lib.fftwf_plan_dft_2d.restype = ctypes.c_void_p
    lib.fftwf_plan_dft_2d.argtypes = [ctypes.c_int] * 2 + [ctypes.c_void_p] * 2 + [ctypes.c_int, ctypes.c_uint]
    lib.fftwf_alignment_of.restype = ctypes.c_int
    lib.fftwf_alignment_of.argtypes = [ctypes.c_void_p]
    _FFTW = (lib, {}, found[0])
    return _FFTW


def _fftw_plans(buf: np.ndarray) -> tuple[int, int]:
    """Single-threaded in-place forward/backward plans valid for every frame of ``buf`` (thread-safe)."""
    with _FFTW_LOCK:
        return _fftw_plans_locked(buf)


def _fftw_plans_locked(buf: np.ndarray) -> tuple[int, int]:
    """Single-threaded in-place forward/backward plans valid for every frame of ``buf``."""
    if _FFTW is None:  # callers ask _load_fftw() first
        raise RuntimeError("FFTW plans need pyFFTW's FFTW loaded (_load_fftw() returned None)")
    lib, plans, path = _FFTW
    n = buf.shape[-1]
    frame = n * n * buf.itemsize
    base = buf.ctypes.data
    unaligned = any(lib.fftwf_alignment_of(base + e * frame) != lib.fftwf_alignment_of(base) for e in range(len(buf)))
    key = (n, unaligned)
    if key not in plans:
        import ctypes

        omp = path.replace("libfftw3f-", "libfftw3f_omp-")
        if omp != path and os.path.exists(omp):  # pyFFTW may have left a thread count set
            ctypes.CDLL(omp).fftwf_plan_with_nthreads(ctypes.c_int(1))
        # MEASURE overwrites its array while planning: plan on scratch memory
        scratch = _pyfftw.empty_aligned((n, n), np.complex64)
        flags = _FFTW_FLAGS[PLANNER] | _FFTW_FLAGS["FFTW_DESTROY_INPUT"]
        flags |= _FFTW_FLAGS["FFTW_UNALIGNED"] if unaligned else 0
        ptr = scratch.ctypes.data
        plans[key] = (lib.fftwf_plan_dft_2d(n, n, ptr, ptr, -1, flags), lib.fftwf_plan_dft_2d(n, n, ptr, ptr, 1, flags))
        if not all(plans[key]):
            del plans[key]
            raise RuntimeError(f"FFTW could not plan a {n}x{n} transform")
    return plans[key]


if _numba is not None:
    _fftw_execute = _numba.types.ExternalFunction(
        "fftwf_execute_dft", _numba.types.void(_numba.types.uintp, _numba.types.uintp, _numba.types.uintp)
    )

    # no reassoc: a reassociated (vectorised) error sum came out differently in a freshly
    # compiled kernel and in the same kernel loaded from numba's disk cache, so a resumed run
    # (other process) disagreed with an uninterrupted one in its last bits; no nnan/ninf
    # (NaN-safe) and no arcp/afn: approximate reciprocals turned tiny |F| into NaN frames
    _FUSED_OPTIONS: dict[str, Any] = dict(_KERNEL_OPTIONS, fastmath={"contract", "nsz"})

    @_numba.njit(**_FUSED_OPTIONS)
    def _nb_fused_iteration(
        obj, probe, buf, amps, offsets, order, alpha, beta, update_probe, err, plan_f, plan_b, reg=1.0
    ):  # pragma: no cover - compiled
        # obj/probe/buf are float32 views (re, im interleaved) so LLVM vectorises the complex
        # arithmetic; max reductions go through a per-column accumulator (a scalar max
        # reduction does not vectorise without assuming no NaN), error sums per column in float32
        n_e, n = probe.shape[0], probe.shape[1]
        n2 = probe.shape[2]  # 2n floats per row
        base = buf.ctypes.data
        frame = n * n2 * 4
        scale = 1.0 / (np.float64(n) * np.float64(n))
        zero = np.float32(0.0)
        one = np.float32(1.0)
        # rPIE (reg < 1): per-pixel object step num/((1 − reg)|P|² + reg·max|P|²); reg = 1 is ePIE
        rpie = reg < 1.0
        oma = np.float32(1.0 - reg)
        num = np.float32(alpha * scale)
        for e in _numba.prange(n_e):
            ptr = base + e * frame
            acc = np.zeros(n, dtype=np.float32)
            cj = np.zeros(n, dtype=np.float32)  # the object step of each pixel of a row
            eacc = np.zeros(n, dtype=np.float32)  # per-column error accumulator
            # max|P|² of the current probe (the object step size), then kept up to date
            for i in range(n):
                prow = probe[e, i]
                for j in range(n):
                    a = prow[2 * j] * prow[2 * j] + prow[2 * j + 1] * prow[2 * j + 1]
                    acc[j] = a if a > acc[j] else acc[j]
            pm = zero
            for j in range(n):
                pm = acc[j] if acc[j] > pm else pm
            s = 0.0
            for kk in range(order.shape[0]):
                k = order[kk]
                oy, ox = offsets[e, k, 0], 2 * offsets[e, k, 1]
                # exit wave ψ = P·O_k into the frame buffer, and max|O_k|²
                acc[:] = zero
                for i in range(n):
                    orow = obj[e, oy + i, ox : ox + n2]
                    prow = probe[e, i]
                    brow = buf[e, i]
                    for j in range(n):
                        o_r, o_i = orow[2 * j], orow[2 * j + 1]
                        p_r, p_i = prow[2 * j], prow[2 * j + 1]
                        a = o_r * o_r + o_i * o_i
                        acc[j] = a if a > acc[j] else acc[j]
                        brow[2 * j] = p_r * o_r - p_i * o_i
                        brow[2 * j + 1] = p_r * o_i + p_i * o_r
                om = zero
                for j in range(n):
                    om = acc[j] if acc[j] > om else om
                _fftw_execute(plan_f, ptr, ptr)
                # modulus: ΔF = F(a/|F| − 1) on valid pixels (a ≥ 0), ΔF = a where |F| = 0
                for i in range(n):
                    arow = amps[e, k, i]
                    brow = buf[e, i]
                    for j in range(n):
                        a = arow[j]
                        f_r, f_i = brow[2 * j], brow[2 * j + 1]
                        mag = np.sqrt(f_r * f_r + f_i * f_i)
                        valid = a >= zero
                        d = mag - a
                        eacc[j] += d * d if valid else zero
                        nz = mag > zero
                        fac = a / mag - one if nz else zero
                        g_r = f_r * fac if nz else a
                        brow[2 * j] = g_r if valid else zero
                        brow[2 * j + 1] = f_i * fac if valid else zero
                # column sums, then one fixed-order sum: vectorises without fastmath reassoc
                for j in range(n):
                    s += np.float64(eacc[j])
                    eacc[j] = zero
                _fftw_execute(plan_b, ptr, ptr)
                # same float64 → float32 step sizes as BatchedEPIE.step
                co = np.float32(alpha * scale / max(np.float64(pm), 1e-30))
                cp = np.float32(beta * scale / max(np.float64(om), 1e-30))
                # O_k += c·conj(P)·Δψ ; P += cp·conj(O_k)·Δψ (both from old values); the object step c
                # per pixel of a row: ePIE's co everywhere, rPIE's own per pixel (computed per row)
                if update_probe:
                    acc[:] = zero
                apm = np.float32(reg * max(np.float64(pm), 1e-30))
                if not rpie:
                    cj[:] = co
                for i in range(n):
                    orow = obj[e, oy + i, ox : ox + n2]
                    prow = probe[e, i]
                    brow = buf[e, i]
                    if rpie:
                        for j in range(n):
                            p_r, p_i = prow[2 * j], prow[2 * j + 1]
                            cj[j] = num / (oma * (p_r * p_r + p_i * p_i) + apm)
                    if update_probe:
                        for j in range(n):
                            o_r, o_i = orow[2 * j], orow[2 * j + 1]
                            p_r, p_i = prow[2 * j], prow[2 * j + 1]
                            d_r, d_i = brow[2 * j], brow[2 * j + 1]
                            orow[2 * j] = o_r + cj[j] * (p_r * d_r + p_i * d_i)
                            orow[2 * j + 1] = o_i + cj[j] * (p_r * d_i - p_i * d_r)
                            q_r = p_r + cp * (o_r * d_r + o_i * d_i)
                            q_i = p_i + cp * (o_r * d_i - o_i * d_r)
                            prow[2 * j] = q_r
                            prow[2 * j + 1] = q_i
                            a = q_r * q_r + q_i * q_i
                            acc[j] = a if a > acc[j] else acc[j]
                    else:
                        for j in range(n):
                            p_r, p_i = prow[2 * j], prow[2 * j + 1]
                            d_r, d_i = brow[2 * j], brow[2 * j + 1]
                            orow[2 * j] = orow[2 * j] + cj[j] * (p_r * d_r + p_i * d_i)
                            orow[2 * j + 1] = orow[2 * j + 1] + cj[j] * (p_r * d_i - p_i * d_r)
                if update_probe:
                    pm = zero
                    for j in range(n):
                        pm = acc[j] if acc[j] > pm else pm
            err[e] += s


def _numba_kernels() -> tuple[Callable, Callable, Callable]:
    """The fused numba kernels (compiled on first use, cached on disk)."""
    if _numba is None:
        raise ImportError("engine='numba' needs the numba package (pip install numba)")
    return _nb_exit_waves, _nb_modulus, _nb_update
