"""Per-position refinement of the probe positions at every energy (issue 12 point 1).

Real scans carry stage/encoder errors of ~0.5–2 pixels per position; ePIE run on the
recorded positions smears the object and leaves a Fourier error it cannot remove. This
module refines one continuous position per (energy, scan point) between ePIE iterations,
numpy only, all energies batched.

Estimate. With the current object O and probe P, the exit wave of scan point k sits at
the integer patch offset o_k the engine uses; if the data were taken at o_k + δ,
ψ_true ≈ P·(O_k + δ_y ∂_yO_k + δ_x ∂_xO_k) (∂O by Fourier differentiation of O − 1 over
the whole grid). δ is fitted to the measured amplitudes a by one Gauss–Newton step on the
amplitude misfit Σ(|F ψ| − a)² (valid pixels only)::

    J_i = Re[conj(u)·F g_i],  u = Fψ/|Fψ|,  g_i = P·∂_iO_k
    δ   = (JᵀJ + λ)⁻¹ Σ Re[conj(F g_i)·ΔF],  ΔF = Fψ (a/|Fψ| − 1)

The right-hand side is the pcPIE / tike gradient (Σ Re[conj(g_i)·Δψ], by Parseval); the
normal matrix is the Gauss–Newton one of the amplitude model instead of Σ|g_i|², which
would under-estimate δ because the modulus projection only recovers the part of the shift
that changes |Fψ|. Batched FFTs over (energies × a chunk of scan points).

Mixed-state probe (``probe_modes=K``, :mod:`ptyxr.reconstruct.modes`): the modelled
amplitude is the incoherent sum ``A = √(Σ_m |F ψ_m|²)``, ψ_m = P_m·O_k, so
``J_i = Σ_m Re[conj(F ψ_m)·F g_mi] / A`` with g_mi = P_m·∂_iO_k and the residual a − A:
the right-hand side is the sum over modes of each mode's gradient with its own
``ΔF_m = F ψ_m (a/A − 1)`` from the modulus constraint on the incoherent sum. The modes are
Fourier transformed one at a time (same memory per block as one coherent probe). K = 1
(a 3-D probe) is the coherent step above, unchanged.

Sub-pixel positions on integer patches. The engine places patches at integer offsets
o_k = round(r_k) of the continuous estimate r_k (in the energy's own pixels). A pass
evaluates the exit wave *at r_k*: P(r)·O(r + o_k + f) with f = r_k − o_k is
P(r − f)·O(r + o_k) moved by f, which leaves |Fψ| unchanged, so the probe is
Fourier-shifted by the sub-pixel part f instead of resampling the object. δ is then the
residual relative to the estimate, and r_k ← r_k + gain·clip(δ_k, ±max_step). The
estimate is thus always measured against the patch actually used plus its known sub-pixel
part, and it does not run away while round(r_k) stays put.

Global constraints. A common shift of every position at one energy is the sample drift
between energies, which must stay in the object (``align`` measures it, KKR's registration
relies on it) and is not identifiable from the frames anyway: each energy's mean correction
is removed after every pass, and the total correction is clipped to ``max_shift`` pixels
(the work grid is padded by that margin so a patch never leaves it). Details and the
measurements that chose the defaults: docs/design-notes/s11-positions.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.fft as sfft

from ptyxr.reconstruct.grid import Grid
from ptyxr.schema import ENERGY, POSITION_CORRECTION_X, POSITION_CORRECTION_Y, SCAN, variable

#: Default first refinement iteration as a fraction of ``iterations`` (the object must exist first).
START_FRACTION = 0.3
#: Default iterations between refinement passes.
EVERY = 5
#: Default largest move of one position in one pass [pixels].
MAX_STEP = 0.5
#: Default largest total correction of one position [pixels]; the work grid is padded by it.
MAX_SHIFT = 4.0
#: Default damping of each pass's pull towards the measured position (1 = replace).
GAIN = 0.5
#: Prior rms of one pass's residual shift [pixels]: with Poisson noise (var √I ≈ 1/4) the
#: MAP estimate adds N²/4/PRIOR² to the normal matrix, so a featureless (vacuum) patch gets δ ≈ 0
#: instead of a noise-driven random walk.
PRIOR_SHIFT = 1.0
#: Checkpoint variables of the continuous estimates [pixels of each energy's grid] (exact resume).
ESTIMATE_Y = POSITION_CORRECTION_Y + "_estimate"
ESTIMATE_X = POSITION_CORRECTION_X + "_estimate"
#: Bytes of one complex64 frame stack per batched FFT block: a pass holds ~12 such stacks
#: (object, derivatives, their spectra, the moved probes, J and residual maps), so ~0.8 GB peak
#: whatever the scan size (2048 frames of 64², 512 of 128²).
CHUNK_BYTES = 64 << 20


def default_start(iterations: int) -> int:
    """First refinement iteration (1-based, counted after it): 30 % of ``iterations``, at least 1."""
    return max(1, round(START_FRACTION * int(iterations)))


def pad_grid(grid: Grid, margin: int) -> Grid:
    """``grid`` with ``margin`` pixels added on every side (offsets moved alike)."""
    m = int(margin)
    if m <= 0:
        return grid
    offsets = grid.offsets + m
    offsets[~grid.active] = 0
    return Grid(
        grid.pixel_size,
        grid.origin_y - m,
        grid.origin_x - m,
        (grid.shape[0] + 2 * m, grid.shape[1] + 2 * m),
        offsets,
        grid.active,
    )


def margin_pixels(max_shift: float) -> int:
    """Grid padding [pixels] that keeps every patch inside for corrections up to ``max_shift`` pixels."""
    return int(math.ceil(max_shift)) + 1


def options(
    iterations: int,
    start: int | None = None,
    every: int = EVERY,
    max_shift: float = MAX_SHIFT,
    max_step: float = MAX_STEP,
    gain: float = GAIN,
) -> dict[str, float | int]:
    """The refinement settings of one run (JSON-able; recorded in provenance and checkpoints)."""
    return {
        "start": default_start(iterations) if start is None else int(start),
        "every": int(every),
        "max_shift": float(max_shift),
        "max_step": float(max_step),
        "gain": float(gain),
    }


def make_refiner(
    position_y: np.ndarray, position_x: np.ndarray, grids: list[Grid], work: Grid, n: int, settings: dict
) -> PositionRefiner:
    """A :class:`PositionRefiner` for the recorded positions [m] on each energy's (padded) grid."""
    half = n // 2
    pixel = np.array([g.pixel_size for g in grids], dtype=np.float64)
    origin = np.array([[g.origin_y, g.origin_x] for g in grids], dtype=np.float64)
    recorded = np.stack([position_y, position_x], axis=-1) / pixel[:, None, None] - half - origin[:, None, :]
    return PositionRefiner(
        recorded,
        pixel,
        np.asarray(work.active, dtype=bool),
        work.shape,  # already a tuple[int, int]
        int(n),
        start=int(settings["start"]),
        every=int(settings["every"]),
        max_step=float(settings["max_step"]),
        max_shift=float(settings["max_shift"]),
        gain=float(settings["gain"]),
    )


@dataclass
class PositionRefiner:
    """Continuous position estimates per (energy, scan) and the refinement pass.

    Parameters
    ----------
    recorded : ndarray, shape (n_energy, n_scan, 2)
        Recorded positions as continuous patch offsets [pixels of each energy's grid]
        (``position/dx − N//2 − origin``); rounding gives the engine's offsets.
    pixel : ndarray, shape (n_energy,)
        Pixel size of each energy's grid [m].
    active : ndarray, shape (n_energy, n_scan), bool
        False at padding scan points.
    shape : tuple of int
        Work-grid shape (ny, nx); offsets stay in [0, shape − N].
    n : int
        Frame size N.
    start, every : int
        First pass after iteration ``start`` (1-based) and every ``every`` after it.
    max_step, max_shift : float
        Largest move per pass and largest total correction [pixels].
    gain : float
        Damping of each pass (0 < gain ≤ 1).
    """

    recorded: np.ndarray
    pixel: np.ndarray
    active: np.ndarray
    shape: tuple[int, int]
    n: int
    start: int
    every: int = EVERY
    max_step: float = MAX_STEP
    max_shift: float = MAX_SHIFT
    gain: float = GAIN
    estimate: np.ndarray = field(init=False)
    passes: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.recorded = np.where(self.active[..., None], np.asarray(self.recorded, dtype=np.float64), 0.0)
        self.estimate = self.recorded.copy()

    # ------------------------------------------------------------------ bookkeeping
    def due(self, done: int) -> bool:
        """True after iteration ``done`` (1-based) when a pass is scheduled."""
        return done >= self.start and (done - self.start) % self.every == 0

    def offsets(self) -> np.ndarray:
        """Integer patch offsets (n_energy, n_scan, 2) of the current estimate (0 at padding)."""
        out = np.floor(self.estimate + 0.5).astype(np.int64)
        out[..., 0] = np.clip(out[..., 0], 0, self.shape[0] - self.n)
        out[..., 1] = np.clip(out[..., 1], 0, self.shape[1] - self.n)
        out[~self.active] = 0
        return out

    def correction(self) -> np.ndarray:
        """Refined − recorded positions (n_energy, n_scan, 2) [m]; NaN at padding scan points."""
        out = (self.estimate - self.recorded) * self.pixel[:, None, None]
        out[~self.active] = np.nan
        return out

    def settings(self) -> dict[str, float | int]:
        """The settings that determine the result (checkpoint fingerprint, provenance)."""
        keys = ("start", "every", "max_shift", "max_step", "gain")
        return {k: getattr(self, k) for k in keys}

    def state(self) -> dict[str, tuple[tuple[str, str], np.ndarray]]:
        """Checkpoint variables: the continuous estimates [pixels], exactly."""
        dims = (ENERGY, SCAN)
        return {ESTIMATE_Y: (dims, self.estimate[..., 0]), ESTIMATE_X: (dims, self.estimate[..., 1])}

    def restore(self, extra: dict[str, np.ndarray]) -> None:
        """Set the estimates from a checkpoint's :meth:`state` (a checkpoint without them: recorded)."""
        if ESTIMATE_Y in extra and ESTIMATE_X in extra:
            est = np.stack([np.asarray(extra[ESTIMATE_Y]), np.asarray(extra[ESTIMATE_X])], axis=-1)
            self.estimate = np.where(self.active[..., None], est.astype(np.float64), 0.0)

    def outputs(self) -> dict:
        """``position_correction_y``/``_x`` (energy, scan) [m] = refined − recorded (NaN at padding)."""
        corr = self.correction()
        return {
            POSITION_CORRECTION_Y: variable(POSITION_CORRECTION_Y, corr[..., 0]),
            POSITION_CORRECTION_X: variable(POSITION_CORRECTION_X, corr[..., 1]),
        }

    def facts(self) -> dict[str, float | int]:
        """Run facts for the provenance: passes made and the rms correction [pixels]."""
        shift = (self.estimate - self.recorded)[self.active]
        rms = float(np.sqrt(np.mean(np.sum(shift**2, axis=-1)))) if shift.size else 0.0
        return {"position_correction_passes": int(self.passes), "position_correction_rms_px": round(rms, 4)}

    # ---------------------------------------------------------------------- the pass
    def refine(self, obj: np.ndarray, probe: np.ndarray, amplitudes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """One refinement pass; updates the estimate and returns the new integer offsets.

        Parameters
        ----------
        obj : ndarray, shape (n_energy, ny, nx), complex64
            Current objects (work grid).
        probe : ndarray, shape (n_energy, N, N) or (n_energy, K, N, N), complex64
            Current probes, or probe modes (the incoherent-sum model).
        amplitudes : ndarray, shape (n_energy, n_scan, N, N), float32
            Kernel-layout amplitudes (N·√I, FFT order, −1 = invalid).
        offsets : ndarray, shape (n_energy, n_scan, 2), int
            The offsets the engine used since the last pass.

        Returns
        -------
        ndarray, shape (n_energy, n_scan, 2), int64
            Offsets for the next iterations.
        """
        # δ is measured at the current estimate (sub-pixel), relative to the patch in use
        fraction = np.where(self.active[..., None], self.estimate - offsets, 0.0)
        delta = measure_shifts(obj, probe, amplitudes, offsets, self.active, fraction)
        target = self.estimate + delta
        step = np.clip(target - self.estimate, -self.max_step, self.max_step)
        new = self.estimate + self.gain * step
        corr = np.where(self.active[..., None], new - self.recorded, 0.0)
        # each energy's mean correction is drift: it stays in the object (align measures it)
        count = np.maximum(self.active.sum(axis=1), 1)[:, None]
        corr -= (corr.sum(axis=1) / count)[:, None, :]
        corr = np.clip(corr, -self.max_shift, self.max_shift)
        corr[~self.active] = 0.0
        self.estimate = self.recorded + corr
        self.passes += 1
        return self.offsets()


def _derivatives(obj: np.ndarray, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """∂O/∂y, ∂O/∂x per energy [1/pixel] by Fourier differentiation of O − 1 (band-limited)."""
    ny, nx = obj.shape[-2:]
    spec = sfft.fft2(obj.astype(np.complex64) - np.complex64(1), workers=workers)
    ky = (2j * np.pi * sfft.fftfreq(ny)).astype(np.complex64)[:, None]
    kx = (2j * np.pi * sfft.fftfreq(nx)).astype(np.complex64)[None, :]
    if ny % 2 == 0:
        ky[ny // 2] = 0  # the Nyquist row has no defined derivative sign
    if nx % 2 == 0:
        kx[:, nx // 2] = 0
    dy = sfft.ifft2(spec * ky, workers=workers).astype(np.complex64)
    dx = sfft.ifft2(spec * kx, workers=workers).astype(np.complex64)
    return dy, dx


def measure_shifts(
    obj: np.ndarray,
    probe: np.ndarray,
    amplitudes: np.ndarray,
    offsets: np.ndarray,
    active: np.ndarray,
    fraction: np.ndarray | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """Residual shift δ (n_energy, n_scan, 2) [pixels] of every frame relative to its patch.

    One Gauss–Newton step of the amplitude misfit (module docstring); 0 at padding scan
    points and where the 2×2 normal matrix is singular. With probe modes (``probe`` of shape
    (n_energy, K, N, N)) the model amplitude is the incoherent sum ``A = √(Σ_m |F ψ_m|²)``
    and ``J_i = Σ_m Re[conj(F ψ_m)·F g_mi] / A`` (so each mode's residual is its own
    ``ΔF_m = F ψ_m (a/A − 1)``, the mixed-state modulus constraint); one mode is exactly
    the coherent step.
    """
    if workers is None:
        from ptyxr.reconstruct.epie import WORKERS

        workers = WORKERS
    n_e, n_scan = active.shape
    n = probe.shape[-1]
    modal = probe.ndim == 4  # mixed-state probe (n_energy, K, N, N)
    dy, dx = _derivatives(obj, workers)
    # (3, n_energy, ny, nx): object and its derivatives, gathered together as N×N windows
    stack = np.stack([obj.astype(np.complex64), dy, dx])
    windows = np.lib.stride_tricks.sliding_window_view(stack, (n, n), axis=(-2, -1))
    out = np.zeros((n_e, n_scan, 2))
    chunk = max(1, CHUNK_BYTES // (8 * n * n * max(n_e, 1)))  # scan points per block
    e_idx = np.arange(n_e)[:, None]
    if fraction is not None:
        freq = sfft.fftfreq(n)
        probe_spec = sfft.fft2(probe, workers=workers)
    for s0 in range(0, n_scan, chunk):
        sl = slice(s0, min(s0 + chunk, n_scan))
        waves = windows[:, e_idx, offsets[:, sl, 0], offsets[:, sl, 1]]  # (3, n_energy, chunk, N, N)
        ramp = None
        if fraction is not None:
            # exit wave at offset + fraction: P(r)·O(r + o + f) is P(r − f)·O(r + o) moved by f,
            # which leaves |Fψ| unchanged, so the probe moves by the sub-pixel part instead
            ramp_y = np.exp(-2j * np.pi * fraction[:, sl, 0, None] * freq).astype(np.complex64)
            ramp_x = np.exp(-2j * np.pi * fraction[:, sl, 1, None] * freq).astype(np.complex64)
            ramp = ramp_y[..., :, None] * ramp_x[..., None, :]  # separable: two 1-D ramps per frame
        amp = amplitudes[:, sl]
        if modal:
            mag, cross_y, cross_x = _mode_sums(waves, probe, probe_spec if ramp is not None else None, ramp, workers)
        else:
            if ramp is None:
                waves *= probe[None, :, None]
            else:
                waves *= sfft.ifft2(probe_spec[:, None] * ramp, workers=workers, overwrite_x=True)[None]
            spec = sfft.fft2(waves, workers=workers, overwrite_x=True)
            f, fy, fx = spec[0], spec[1], spec[2]
            mag = np.abs(f)
            cross_y = f.real * fy.real + f.imag * fy.imag
            cross_x = f.real * fx.real + f.imag * fx.imag
        # 1/|Fψ| on valid pixels with signal, 0 elsewhere: J_i = Re[conj(Fψ)·F g_i]/|Fψ|
        inv = np.zeros_like(mag)
        np.divide(1.0, mag, out=inv, where=(amp >= 0) & (mag > 0))
        resid = amp - mag  # a − |Fψ|, weighted by 0 where invalid through J
        jy = cross_y * inv
        jx = cross_x * inv
        axes = (-2, -1)
        a_yy = np.sum(jy * jy, axis=axes, dtype=np.float64)
        a_xx = np.sum(jx * jx, axis=axes, dtype=np.float64)
        a_yx = np.sum(jy * jx, axis=axes, dtype=np.float64)
        b_y = np.sum(jy * resid, axis=axes, dtype=np.float64)
        b_x = np.sum(jx * resid, axis=axes, dtype=np.float64)
        ridge = n * n / 4.0 / PRIOR_SHIFT**2  # amplitudes are N·√I: noise variance N²/4
        a_yy, a_xx = a_yy + ridge, a_xx + ridge
        det = a_yy * a_xx - a_yx**2
        ok = (det > 0) & active[:, sl]
        safe = np.where(ok, det, 1.0)
        out[:, sl, 0] = np.where(ok, (a_xx * b_y - a_yx * b_x) / safe, 0.0)
        out[:, sl, 1] = np.where(ok, (a_yy * b_x - a_yx * b_y) / safe, 0.0)
    return out


def _mode_sums(
    windows: np.ndarray, probe: np.ndarray, probe_spec: np.ndarray | None, ramp: np.ndarray | None, workers: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Incoherent-sum amplitude and Jacobian numerators of a block of frames, one mode at a time.

    Parameters
    ----------
    windows : ndarray, shape (3, n_energy, chunk, N, N)
        Object windows and their y/x derivatives at each frame's patch (not modified).
    probe : ndarray, shape (n_energy, K, N, N)
        Probe modes.
    probe_spec, ramp : ndarray, optional
        FFT of ``probe`` and each frame's sub-pixel shift ramp (n_energy, chunk, N, N): the
        modes are moved by the frame's sub-pixel part, as the coherent probe is.

    Returns
    -------
    amplitude : ndarray, shape (n_energy, chunk, N, N)
        ``√(Σ_m |F(P_m·O_k)|²)``.
    cross_y, cross_x : ndarray, shape (n_energy, chunk, N, N)
        ``Σ_m Re[conj(F(P_m·O_k))·F(P_m·∂O_k)]`` per axis (divided by the amplitude they
        give the Gauss–Newton Jacobian of the amplitude model).
    """
    power = cross_y = cross_x = None
    for m in range(probe.shape[1]):
        if ramp is None:
            mode = probe[:, m][None, :, None]
        else:
            assert probe_spec is not None  # given with the ramp
            mode = sfft.ifft2(probe_spec[:, m][:, None] * ramp, workers=workers, overwrite_x=True)[None]
        spec = sfft.fft2(windows * mode, workers=workers, overwrite_x=True)
        f, fy, fx = spec[0], spec[1], spec[2]
        terms = (f.real**2 + f.imag**2, f.real * fy.real + f.imag * fy.imag, f.real * fx.real + f.imag * fx.imag)
        if power is None:
            power, cross_y, cross_x = terms
        else:
            power += terms[0]
            cross_y += terms[1]
            cross_x += terms[2]
    assert power is not None and cross_y is not None and cross_x is not None  # at least one mode
    return np.sqrt(power), cross_y, cross_x
