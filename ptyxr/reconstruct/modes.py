"""Mixed-state probe: energy-batched ePIE with mutually incoherent probe modes.

Thibault & Menzel (2013, Nature 494, 68) model a partially coherent beam as an incoherent sum
of K orthogonal probe modes P_m: the detector records I = Σ_m |F(P_m·O)|². The ePIE update
for this model (e.g. Thibault & Menzel 2013, Maiden & Rodenburg's mixed-state ePIE as in
PtyLab/PtyPy) is, per scan position k and energy, with Ψ_m = F(P_m·O_k):

* modulus constraint on the incoherent sum: Ψ_m' = Ψ_m·√I / √(Σ_m |Ψ_m|²) on valid
  pixels (the same factor for every mode), Δψ_m = F⁻¹(Ψ_m') − ψ_m;
* object update O_k += α Σ_m conj(P_m) Δψ_m / max_r Σ_m |P_m|²;
* probe update P_m += β conj(O_k) Δψ_m / max|O_k|² (both from old values).

After each probe-updating iteration the modes are orthogonalised (eigen-decomposition of the
K×K Gram matrix G = P·Pᴴ over the mode axis; new modes Vᴴ·P ordered by power; the incoherent
sum Σ_m |P_m|² and the data fit are unchanged), so the power fraction of mode m is λ_m / Σλ.

Layout: the probe stack is (n_energy, K, N, N) complex64 inside the engine; the output
variable ``probe`` has the leading ``probe_mode`` dim (K, n_energy, N, N) when K > 1
(:func:`probe_outputs`). ``probe_modes=1`` never enters this module: ``reconstruct`` keeps
:class:`ptyxr.reconstruct.epie.BatchedEPIE` and every helper here returns its input
unchanged for a 3-D probe.

Two engines compute the same step, as in :mod:`ptyxr.reconstruct.epie`: ``"numba"``
(step-wise compiled kernels, each energy a prange task; FFTs of the (n_energy, K, N, N)
buffer by scipy.fft or pyFFTW between them) and ``"numpy"`` (the reference). The FFT
conventions are the engine's: unnormalised transforms on amplitudes pre-multiplied by N.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ptyxr.checks import MAX_PROBE_MODES
from ptyxr.reconstruct import epie as _epie
from ptyxr.schema import ENERGY, PROBE, PROBE_MODE, PROBE_MODE_FRACTION, PROBE_X, PROBE_Y, SchemaError, variable

#: Most probe modes ``reconstruct`` accepts (initial patterns exist for this many).
MAX_MODES = MAX_PROBE_MODES
#: Power fraction each extra initial mode starts with (mode 0 keeps the rest): small enough
#: that the first iterations behave like coherent ePIE, large enough that the modes grow
#: (the updates of a mode scale with its own amplitude through the modulus factor).
INITIAL_MODE_FRACTION = 0.1

#: ``pin_scale``'s tolerance with K > 1: rescale whenever the pinned |O| level is not exactly 1.
#: The coherent default (1e-3) lets the level sit up to 0.1 % off, which on the small preset is
#: 10–20 % of the object NRMSE (a weak object's ‖O − 1‖ is small); with three modes an exact pin
#: took the NRMSE from 0.0218 / 0.0204 / 0.0248 to 0.0214 / 0.0186 / 0.0235 (2 energies seeds
#: 0 / 1, 4 energies; docs/design-notes/s13-modes2.md). A mode iteration costs ~3 coherent ones,
#: so the extra rescales are cheap here.
PIN_TOLERANCE = 0.0

_ENGINES = ("auto", "numba", "numpy")


# -------------------------------------------------------------- initial modes
def _patterns(n_pixels: int, weight: np.ndarray) -> list[np.ndarray]:
    """Low-order polynomials about the centre of mass of ``weight``, in units of its rms radius."""
    idx = np.arange(n_pixels, dtype=np.float64)
    total = weight.sum()
    cy = float((weight.sum(axis=1) * idx).sum() / total)
    cx = float((weight.sum(axis=0) * idx).sum() / total)
    yy, xx = np.meshgrid(idx - cy, idx - cx, indexing="ij")
    radius = np.sqrt(max(float((weight * (yy**2 + xx**2)).sum() / total) / 2.0, 1e-12))
    y, x = yy / radius, xx / radius
    # Hermite–Gauss-like orders 1, 2, 3 of a Gaussian-ish first mode
    return [y, x, y**2 - x**2, 2 * x * y, y**2 + x**2, y**3 - 3 * y * x**2, x**3 - 3 * x * y**2]


def initial_modes(probe: np.ndarray, n_modes: int, fraction: float | None = None) -> np.ndarray:
    """Initial mode stack: the coherent initial probe plus ``n_modes − 1`` weak extra modes.

    Mode m ≥ 1 is the first probe times the m-th low-order polynomial (y, x, y² − x², 2xy,
    y² + x², …, about the probe's centre of mass in units of its rms radius),
    Gram–Schmidt orthogonalised against the earlier modes, carrying ``fraction`` of the
    power each; mode 0 keeps the rest, so Σ_m Σ|P_m|² equals Σ|P|² of the input.

    Parameters
    ----------
    probe : ndarray, shape (n_energy, N, N), complex
        Coherent initial probes [sqrt(counts)].
    n_modes : int
        K ≥ 1 (at most :data:`MAX_MODES`).
    fraction : float, optional
        Power fraction of each extra mode; default :data:`INITIAL_MODE_FRACTION`.

    Returns
    -------
    ndarray, shape (n_energy, K, N, N), complex64
    """
    if not 1 <= n_modes <= MAX_MODES:
        raise ValueError(f"n_modes must lie in 1..{MAX_MODES}, got {n_modes}")
    fraction = INITIAL_MODE_FRACTION if fraction is None else float(fraction)
    n_e, n = probe.shape[0], probe.shape[-1]
    out = np.empty((n_e, n_modes, n, n), dtype=np.complex64)
    rest = 1.0 - fraction * (n_modes - 1)
    for e in range(n_e):
        base = probe[e].astype(np.complex128)
        power = float(np.sum(np.abs(base) ** 2))
        unit = [base / np.sqrt(power)]
        for shape in _patterns(n, np.abs(base) ** 2)[: n_modes - 1]:
            m = base * shape
            for q in unit:
                m = m - np.vdot(q, m) * q
            unit.append(m / np.sqrt(np.sum(np.abs(m) ** 2)))
        out[e, 0] = unit[0] * np.sqrt(rest * power)
        for k in range(1, n_modes):
            out[e, k] = unit[k] * np.sqrt(fraction * power)
    return out


# ------------------------------------------------------------ mode bookkeeping
def orthogonalise(probe: np.ndarray) -> np.ndarray:
    """Orthogonalise the modes of each energy in place, ordered by decreasing power.

    Eigen-decomposition of G = P·Pᴴ (K × K, P the modes as rows of N² pixels): the new
    modes Vᴴ·P are orthogonal with powers the eigenvalues. A unitary mix of the modes keeps
    Σ_m |P_m|² (and so every modelled intensity and the object update) unchanged. Each
    eigenvector's free phase is fixed by making its largest component real and positive,
    so a dominant mode keeps its phase from one iteration to the next.

    Returns
    -------
    ndarray, shape (n_energy, K)
        Power of each mode after orthogonalisation [counts].
    """
    n_e, k = probe.shape[:2]
    powers = np.empty((n_e, k))
    for e in range(n_e):
        p = probe[e].reshape(k, -1).astype(np.complex128)
        w, v = np.linalg.eigh(p @ p.conj().T)
        order = np.argsort(w)[::-1]
        w, v = w[order], v[:, order]
        big = np.argmax(np.abs(v), axis=0)
        v = v * (np.abs(v[big, np.arange(k)]) / v[big, np.arange(k)])[None, :]
        probe[e] = (v.conj().T @ p).reshape(probe[e].shape).astype(np.complex64)
        powers[e] = np.clip(w, 0.0, None)
    return powers


def power_fractions(probe: np.ndarray) -> np.ndarray:
    """Σ|P_m|² / Σ_m Σ|P_m|² per energy and mode, shape (n_energy, K)."""
    p = np.sum(probe.real.astype(np.float64) ** 2 + probe.imag.astype(np.float64) ** 2, axis=(-2, -1))
    return p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)


def total(probe: np.ndarray) -> np.ndarray:
    """A coherent stand-in of the same intensity: √(Σ_m |P_m|²), shape (n_energy, N, N).

    Returns a 3-D (coherent) probe unchanged, so helpers built on |P|² (coverage, the
    scale-pinning region, KKR's region) read the incoherent sum through it.
    """
    if probe.ndim == 3:
        return probe
    power = np.sum(probe.real.astype(np.float64) ** 2 + probe.imag.astype(np.float64) ** 2, axis=1)
    return np.sqrt(power).astype(np.complex64)


def recentre(obj: np.ndarray, probe: np.ndarray, field: np.ndarray, tolerance: float = 0.05) -> np.ndarray:
    """:func:`ptyxr.reconstruct.epie.recentre` for a mode stack: the total intensity's centre of mass.

    Every mode and the object move by the same shift (the exit waves only translate, so
    every modelled intensity is unchanged). A 3-D probe goes to the coherent function.
    """
    if probe.ndim == 3:
        return _epie.recentre(obj, probe, field=field)
    n = probe.shape[-1]
    drift = _epie.centre_of_mass(total(probe)) - n // 2
    applied = np.zeros_like(drift)
    for e in range(probe.shape[0]):
        if np.max(np.abs(drift[e])) <= tolerance or not np.all(np.isfinite(drift[e])):
            continue
        shift = (-drift[e, 0], -drift[e, 1])
        for m in range(probe.shape[1]):
            probe[e, m] = _epie.fourier_shift(probe[e, m], shift)
        obj[e] = _epie.fourier_shift(obj[e] - 1, shift) + 1
        obj[e][~field[e]] = 1.0
        applied[e] = shift
    return applied


def to_common(probe: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Mode stacks at native pixels dx(E) → the common pixel (each mode's power conserved)."""
    from ptyxr.reconstruct.grid import resample_probe

    out = np.empty(probe.shape, dtype=np.complex64)
    for e in range(probe.shape[0]):
        for m in range(probe.shape[1]):
            out[e, m] = resample_probe(probe[e, m], float(scale[e]))
    return out


def probe_outputs(probe: np.ndarray, pixel_size: float) -> dict[str, xr.DataArray]:
    """Output variables of a mode stack (n_energy, K, N, N): ``probe`` and ``probe_mode_fraction``.

    ``probe`` gets the leading ``probe_mode`` dim (K, energy, probe_y, probe_x);
    ``probe_mode_fraction`` (energy, probe_mode) holds each mode's share of the total power.
    """
    stack = np.ascontiguousarray(np.moveaxis(probe, 1, 0))
    return {
        PROBE: variable(PROBE, stack, dims=(PROBE_MODE, ENERGY, PROBE_Y, PROBE_X), pixel_size=pixel_size),
        PROBE_MODE_FRACTION: variable(PROBE_MODE_FRACTION, power_fractions(probe)),
    }


def check_resumed(state_probe: np.ndarray, probe: np.ndarray, path) -> None:
    """Refuse a checkpoint whose probe has another number of modes than this run."""
    k_saved = 1 if state_probe.ndim == 3 else state_probe.shape[1]
    k_run = 1 if probe.ndim == 3 else probe.shape[1]
    if k_saved != k_run or state_probe.shape[-1] != probe.shape[-1]:
        raise SchemaError(
            f"reconstruct: checkpoint {path} holds {k_saved} probe mode(s), this run asks for probe_modes={k_run}; "
            "resume with the settings that wrote it, or start afresh without resume_from."
        )


# ------------------------------------------------------------------- numpy engine
def _np_exit_waves(obj, probe, offsets, buf, omax2):
    n = probe.shape[-1]
    for e in range(probe.shape[0]):
        oy, ox = offsets[e]
        patch = obj[e, oy : oy + n, ox : ox + n]
        np.multiply(probe[e], patch[None], out=buf[e])
        omax2[e] = np.max(patch.real**2 + patch.imag**2)


def _np_modulus(buf, amp, err):
    power = np.sum(buf.real.astype(np.float64) ** 2 + buf.imag.astype(np.float64) ** 2, axis=1)
    mag = np.sqrt(power).astype(np.float32)
    valid = amp >= 0
    diff = np.where(valid, mag - amp, 0.0)
    err += np.sum(diff.astype(np.float64) ** 2, axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(valid & (mag > 0), amp / mag - 1.0, 0.0).astype(np.float32)
    zero = valid & (mag == 0)  # no phase to keep: the first mode takes the measured amplitude
    buf *= factor[:, None]
    first = buf[:, 0]
    first[zero] = amp[zero]


def _np_update(obj, probe, buf, offsets, c_obj, c_probe, update_probe, pmax2):
    n = probe.shape[-1]
    for e in range(probe.shape[0]):
        oy, ox = offsets[e]
        patch = obj[e, oy : oy + n, ox : ox + n]
        old = patch.copy()
        patch += np.complex64(c_obj[e]) * np.sum(np.conj(probe[e]) * buf[e], axis=0)
        if update_probe:
            probe[e] += np.complex64(c_probe[e]) * np.conj(old)[None] * buf[e]
            pmax2[e] = np.max(np.sum(probe[e].real ** 2 + probe[e].imag ** 2, axis=0))


# ------------------------------------------------------------------- numba engine
if _epie._numba is not None:
    from ptyxr.reconstruct.epie_numba import _nb_mode_exit_waves as _nb_exit_waves

    _nb = _epie._numba
    _OPTIONS: dict[str, Any] = {"parallel": True, "cache": True, "nogil": True, "fastmath": False}

    @_nb.njit(**_OPTIONS)
    def _nb_modulus(buf, amp, err):  # pragma: no cover - compiled
        n_e, k_modes, n = buf.shape[0], buf.shape[1], buf.shape[2]
        for e in _nb.prange(n_e):
            s = 0.0
            for i in range(n):
                for j in range(n):
                    a = amp[e, i, j]
                    if a >= 0:
                        p = 0.0
                        for q in range(k_modes):
                            f = buf[e, q, i, j]
                            p += np.float64(f.real) * np.float64(f.real) + np.float64(f.imag) * np.float64(f.imag)
                        mag = np.float32(np.sqrt(p))
                        d = mag - a
                        s += np.float64(d) * np.float64(d)
                        if mag > 0:
                            fac = np.float32(a / mag - np.float32(1.0))
                            for q in range(k_modes):
                                buf[e, q, i, j] = buf[e, q, i, j] * fac
                        else:
                            buf[e, 0, i, j] = a
                            for q in range(1, k_modes):
                                buf[e, q, i, j] = 0
                    else:
                        for q in range(k_modes):
                            buf[e, q, i, j] = 0
            err[e] += s

    @_nb.njit(**_OPTIONS)
    def _nb_update(obj, probe, buf, offsets, c_obj, c_probe, update_probe, pmax2):  # pragma: no cover
        n_e, k_modes, n = probe.shape[0], probe.shape[1], probe.shape[2]
        for e in _nb.prange(n_e):
            oy, ox = offsets[e, 0], offsets[e, 1]
            co, cp = c_obj[e], c_probe[e]
            m = np.float32(0.0)
            for i in range(n):
                for j in range(n):
                    o = obj[e, oy + i, ox + j]
                    g = np.complex64(0.0)
                    a = np.float32(0.0)
                    for q in range(k_modes):
                        p = probe[e, q, i, j]
                        d = buf[e, q, i, j]
                        g += p.conjugate() * d
                        if update_probe:
                            pn = p + cp * (o.conjugate() * d)
                            probe[e, q, i, j] = pn
                            a += pn.real * pn.real + pn.imag * pn.imag
                    obj[e, oy + i, ox + j] = o + co * g
                    if update_probe and a > m:
                        m = a
            if update_probe:
                pmax2[e] = m

    # contract/nsz as the coherent fused kernel. The complex arithmetic is written out on float32
    # views (re, im interleaved): complex operations are lowered through helpers that numba
    # compiles once per process and shares between kernels, with the fastmath flags of the first
    # kernel that needed them. With complex64 code here, compiling the step-wise (fastmath=False)
    # ePIE kernels first left this kernel with 57 instead of 163 fused multiply-adds, so the same
    # run gave other last bits depending on what numba's disk cache held. Written on floats, all
    # its arithmetic is its own and compiles the same in any process.
    _FUSED_OPTIONS: dict[str, Any] = dict(_OPTIONS, fastmath={"contract", "nsz"})

    @_nb.njit(inline="always", **_FUSED_OPTIONS)
    def _mode_power(stack, acc):  # pragma: no cover - compiled
        # acc ← Σ_m |stack_m|² per pixel, stack a float32 (K, N, 2N) view; inlined in numba's IR, so
        # its arithmetic compiles with the kernel that calls it
        for q in range(stack.shape[0]):
            for i in range(stack.shape[1]):
                row = stack[q, i]
                for j in range(acc.shape[1]):
                    r, m = row[2 * j], row[2 * j + 1]
                    a = r * r + m * m
                    acc[i, j] = a if q == 0 else acc[i, j] + a

    @_nb.njit(**_FUSED_OPTIONS)
    def _nb_mode_iteration(
        obj, probe, buf, amps, offsets, order, alpha, beta, update_probe, err, plan_f, plan_b
    ):  # pragma: no cover - compiled
        # one compiled call per iteration: each energy is one prange task running every scan
        # position (exit waves → K FFTW transforms → modulus on Σ_m|F_m|² → K inverse → update)
        # on its own K frame buffers, with the engine's single-threaded in-place FFTW plans.
        # obj (n_e, H, 2W), probe and buf (n_e, K, N, 2N) are float32 views of the complex64
        # arrays; inner loops run along contiguous rows (one mode at a time) so LLVM vectorises.
        n_e, k_modes, n = probe.shape[0], probe.shape[1], probe.shape[2]
        n2 = 2 * n
        base = buf.ctypes.data
        frame = n * n2 * 4
        scale = 1.0 / (np.float64(n) * np.float64(n))
        zero = np.float32(0.0)
        one = np.float32(1.0)
        for e in _nb.prange(n_e):
            acc = np.zeros((n, n), dtype=np.float32)  # Σ_m |·|² per pixel
            fac = np.zeros((n, n), dtype=np.float32)  # modulus factor per pixel
            grad = np.zeros((n, n2), dtype=np.float32)  # Σ_m conj(P_m) Δψ_m
            old = np.zeros((n, n2), dtype=np.float32)  # O_k before its update
            _mode_power(probe[e], acc)
            pm = zero
            for i in range(n):
                for j in range(n):
                    pm = acc[i, j] if acc[i, j] > pm else pm
            s = 0.0
            for kk in range(order.shape[0]):
                k = order[kk]
                oy, ox = offsets[e, k, 0], 2 * offsets[e, k, 1]
                om = zero
                for i in range(n):
                    orow = obj[e, oy + i, ox : ox + n2]
                    for j in range(n):
                        o_r, o_i = orow[2 * j], orow[2 * j + 1]
                        old[i, 2 * j] = o_r
                        old[i, 2 * j + 1] = o_i
                        a = o_r * o_r + o_i * o_i
                        om = a if a > om else om
                for q in range(k_modes):
                    for i in range(n):
                        prow = probe[e, q, i]
                        brow = buf[e, q, i]
                        for j in range(n):
                            p_r, p_i = prow[2 * j], prow[2 * j + 1]
                            o_r, o_i = old[i, 2 * j], old[i, 2 * j + 1]
                            brow[2 * j] = p_r * o_r - p_i * o_i
                            brow[2 * j + 1] = p_r * o_i + p_i * o_r
                    ptr = base + (e * k_modes + q) * frame
                    _epie._fftw_execute(plan_f, ptr, ptr)
                _mode_power(buf[e], acc)
                # modulus: ΔF_m = F_m (a/√Σ|F|² − 1) on valid pixels; all of a into mode 0 where Σ|F|² = 0
                for i in range(n):
                    for j in range(n):
                        a = amps[e, k, i, j]
                        mag = np.sqrt(acc[i, j])
                        valid = a >= zero
                        d = mag - a
                        s += np.float64(d) * np.float64(d) if valid else 0.0
                        fac[i, j] = (a / mag - one if mag > zero else zero) if valid else zero
                        acc[i, j] = a if (valid and not mag > zero) else zero  # the amplitude to put in mode 0
                for q in range(k_modes):
                    for i in range(n):
                        brow = buf[e, q, i]
                        for j in range(n):
                            brow[2 * j] = brow[2 * j] * fac[i, j]
                            brow[2 * j + 1] = brow[2 * j + 1] * fac[i, j]
                    if q == 0:
                        for i in range(n):
                            brow = buf[e, 0, i]
                            for j in range(n):
                                if acc[i, j] > zero:
                                    brow[2 * j] = acc[i, j]
                                    brow[2 * j + 1] = zero
                    ptr = base + (e * k_modes + q) * frame
                    _epie._fftw_execute(plan_b, ptr, ptr)
                co = np.float32(alpha * scale / max(np.float64(pm), 1e-30))
                cp = np.float32(beta * scale / max(np.float64(om), 1e-30))
                # O_k += co Σ_m conj(P_m) Δψ_m ; P_m += cp conj(O_k) Δψ_m (both from old values)
                for q in range(k_modes):
                    for i in range(n):
                        prow = probe[e, q, i]
                        brow = buf[e, q, i]
                        for j in range(n):
                            p_r, p_i = prow[2 * j], prow[2 * j + 1]
                            d_r, d_i = brow[2 * j], brow[2 * j + 1]
                            g_r = p_r * d_r + p_i * d_i
                            g_i = p_r * d_i - p_i * d_r
                            grad[i, 2 * j] = g_r if q == 0 else grad[i, 2 * j] + g_r
                            grad[i, 2 * j + 1] = g_i if q == 0 else grad[i, 2 * j + 1] + g_i
                        if update_probe:
                            for j in range(n):
                                p_r, p_i = prow[2 * j], prow[2 * j + 1]
                                d_r, d_i = brow[2 * j], brow[2 * j + 1]
                                o_r, o_i = old[i, 2 * j], old[i, 2 * j + 1]
                                q_r = p_r + cp * (o_r * d_r + o_i * d_i)
                                q_i = p_i + cp * (o_r * d_i - o_i * d_r)
                                prow[2 * j] = q_r
                                prow[2 * j + 1] = q_i
                                a = q_r * q_r + q_i * q_i
                                acc[i, j] = a if q == 0 else acc[i, j] + a
                for i in range(n):
                    orow = obj[e, oy + i, ox : ox + n2]
                    for j in range(n2):
                        orow[j] = old[i, j] + co * grad[i, j]
                if update_probe:
                    pm = zero
                    for i in range(n):
                        for j in range(n):
                            pm = acc[i, j] if acc[i, j] > pm else pm
            err[e] += s


# ---------------------------------------------------------------------- the solver
class ModeEPIE:
    """Energy-batched mixed-state ePIE over preallocated buffers.

    Parameters
    ----------
    amplitudes : ndarray, shape (n_energy, n_scan, N, N), float32
        From :func:`ptyxr.reconstruct.epie.prepare_amplitudes` (N·√I, FFT order, −1 invalid).
    offsets : ndarray, shape (n_energy, n_scan, 2), int
        Top-left object pixel of each patch.
    norm : ndarray, shape (n_energy,)
        Σ I over valid pixels and positions (Fourier-error denominator).
    n_modes : int
        Number of probe modes K.
    alpha, beta : float
        Object and probe step sizes.
    engine : {"auto", "numba", "numpy"}
        Kernel implementation (same results to float rounding).
    fft_backend : {"auto", "pyfftw", "scipy"}
        FFT implementation of the (n_energy·K) frame batch.
    workers : int
        Threads for the FFTs.
    """

    def __init__(
        self,
        amplitudes: np.ndarray,
        offsets: np.ndarray,
        norm: np.ndarray,
        n_modes: int,
        alpha: float = 1.0,
        beta: float = 1.0,
        engine: str = "auto",
        fft_backend: str = "auto",
        workers: int = _epie.WORKERS,
    ) -> None:
        if engine == "auto":
            engine = "numba" if _epie._numba is not None else "numpy"
        if engine not in ("numba", "numpy"):
            raise ValueError(f"engine must be one of {_ENGINES}, got {engine!r}")
        if engine == "numba" and _epie._numba is None:
            raise ImportError("engine='numba' needs the numba package (pip install numba)")
        self.engine = engine
        self.amplitudes = amplitudes
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        self.norm = np.asarray(norm, dtype=np.float64)
        self.alpha, self.beta = float(alpha), float(beta)
        n_e, _, n, _ = amplitudes.shape
        self.n, self.n_modes = n, int(n_modes)
        self.buf = _epie._aligned_empty((n_e, self.n_modes, n, n), np.complex64)
        self.buf[...] = 0
        # the compiled per-energy iteration with FFTW (numba + pyFFTW, as the coherent engine)
        self.fused = engine == "numba" and fft_backend in ("auto", "pyfftw") and _epie._load_fftw() is not None
        self.fft: _epie._FusedFFT | _epie._FFT  # same forward()/backward() on self.buf
        if self.fused:
            self._plans = _epie._fftw_plans(self.buf.reshape(-1, n, n))
            self.fft = _epie._FusedFFT(self.buf.reshape(-1, n, n), self._plans)
        else:
            self.fft = _epie._FFT(self.buf, fft_backend, workers)
        self.omax2 = np.zeros(n_e, dtype=np.float32)
        self.pmax2 = np.zeros(n_e, dtype=np.float32)
        self.err = np.zeros(n_e, dtype=np.float64)
        if engine == "numba":
            self._exit, self._mod, self._upd = _nb_exit_waves, _nb_modulus, _nb_update
        else:
            self._exit, self._mod, self._upd = _np_exit_waves, _np_modulus, _np_update

    def step(self, obj: np.ndarray, probe: np.ndarray, k: int, update_probe: bool) -> None:
        """One mixed-state ePIE update of scan index ``k`` for all energies (in place)."""
        offs = np.ascontiguousarray(self.offsets[:, k])
        self._exit(obj, probe, offs, self.buf, self.omax2)
        self.fft.forward()
        self._mod(self.buf, self.amplitudes[:, k], self.err)
        self.fft.backward()
        scale = 1.0 / float(self.n) ** 2  # the unnormalised inverse gives N²·Δψ
        c_obj = (self.alpha * scale / np.maximum(self.pmax2, 1e-30)).astype(np.float32)
        c_probe = (self.beta * scale / np.maximum(self.omax2, 1e-30)).astype(np.float32)
        self._upd(obj, probe, self.buf, offs, c_obj, c_probe, bool(update_probe), self.pmax2)

    def iteration(self, obj: np.ndarray, probe: np.ndarray, order: np.ndarray, update_probe: bool) -> np.ndarray:
        """One iteration over scan indices ``order``; returns the Fourier error per energy.

        Σ(√(Σ_m|Ψ_m|²) − √I)² / Σ I over valid pixels, each position measured before its update.
        """
        for name, a in (("obj", obj), ("probe", probe)):
            if a.dtype != np.complex64 or not a.flags.c_contiguous:
                raise ValueError(f"{name} must be a C-contiguous complex64 array (got {a.dtype})")
        if probe.shape != self.buf.shape or obj.shape[0] != self.buf.shape[0]:
            raise ValueError(f"probe {probe.shape} / object {obj.shape} do not match the solver {self.buf.shape}")
        self.err[:] = 0.0
        if self.fused:
            f32 = np.float32  # float views: the kernel's arithmetic is real (see _nb_mode_iteration)
            _nb_mode_iteration(
                obj.view(f32), probe.view(f32), self.buf.view(f32), self.amplitudes, self.offsets,
                np.ascontiguousarray(order, dtype=np.int64), self.alpha, self.beta, bool(update_probe), self.err,
                self._plans[0], self._plans[1],
            )  # fmt: skip
            return self.err / (float(self.n) ** 2 * np.maximum(self.norm, 1e-300))
        self.pmax2[:] = np.max(np.sum(probe.real**2 + probe.imag**2, axis=1), axis=(-2, -1)).astype(np.float32)
        for k in order:
            self.step(obj, probe, int(k), update_probe)
        return self.err / (float(self.n) ** 2 * np.maximum(self.norm, 1e-300))
