"""Per-frame incident flux for ``reconstruct``: monitor normalisation and scale refinement.

Beam-current decay, top-up injections and monochromator drifts change the number of
photons on the sample from frame to frame; ePIE assumes one probe (one flux) for every
frame of an energy, so a frame with 5 % more photons is fitted by an object that is too
transparent there. Two remedies (issue 12 point 3), both expressed as a *relative flux*
``f`` (energy, scan) with mean 1 over each energy's measured frames (the absolute scale
stays with the probe, as before):

- **monitor** (:func:`monitor_flux`): when the raw Dataset has ``monitor`` (I0 per
  frame), ``f = monitor / mean(monitor)`` per energy and every frame is divided by its
  ``f`` before the reconstruction (the frames then look as if all had the mean flux);
- **refinement** (:class:`FluxRefiner`): without a monitor, after every iteration
  (:data:`REFINE_EVERY`, from :data:`REFINE_START` on), each frame's scale is
  estimated from the current model, ``r_k = Σ I_k / Σ |F(P·O_k)|²`` over the frame's
  *valid* detector pixels (the Poisson maximum-likelihood scale of a frame whose expected
  counts are ``r·|F(P·O_k)|²``; the exit waves are Fourier transformed, because Parseval's
  ``Σ|P·O_k|²`` also counts masked pixels — a dead row, a beam stop — that the counts lack),
  ``f ← f·r`` normalised to mean 1 per energy and (over-)relaxed by :data:`REFINE_RELAX`, and the
  frame's target amplitudes ``N√I`` are rescaled by ``√(f_old/f_new)`` (the −1 markers of
  invalid pixels are kept).

A flux variation that is smooth over the scanned field (a decay in raster order, or the
smooth part of random jitter) is nearly degenerate with a smooth amplitude modulation of the
object, |F(P·O·g)|² ≈ g(r_k)²·|F(P·O)|², and what the object absorbs of it in the first
iterations leaves only slowly. So the object is restarted from 1 after the refinements at
:data:`RESTART_FRACTIONS` of the run: it is then rebuilt from frames already normalised by a
good flux estimate.

Exact resume: the amplitudes are rescaled in place (a pristine copy would double the
largest array of the run), so float32 roundings depend on the sequence of rescalings.
The refiner therefore keeps the history of its flux estimates (one (energy, scan) array
per refinement, float64) and a resumed run replays it on the freshly prepared amplitudes,
reproducing the uninterrupted run's amplitudes bit for bit.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
import xarray as xr

from ptyxr.schema import (
    ENERGY,
    FLUX_PRIOR_SHIFT_X,
    FLUX_PRIOR_SHIFT_Y,
    FLUX_REFINEMENT,
    MONITOR,
    PARTICLE,
    POSITION_X,
    POSITION_Y,
    RELATIVE_FLUX,
    SCAN,
    SchemaError,
)

STAGE = "reconstruct"
#: First refinement, after this iteration (1-based). Early is best: whatever flux error the object
#: absorbs in the first iterations as a smooth amplitude modulation leaves only slowly (tiny
#: preset, 100 iterations: from iteration 1 → object NRMSE 1.19× the jitter-free twin, from
#: iteration 10 → 3.9×; docs/design-notes/s11-flux.md). An absolute iteration, not a fraction of
#: ``iterations``: the schedule must not depend on the run's end, or a run resumed with more
#: iterations would differ from the uninterrupted one.
REFINE_START = 1
#: Iterations between refinements (every 1 / 2 / 3: 1.19× / 1.40× / 1.62× the twin's NRMSE).
REFINE_EVERY = 1
#: Relaxation f ← f + REFINE_RELAX·(f_estimate − f). Over-relaxed: the estimate is biased toward
#: the current flux (the object has partly fitted each frame's error); 1.0 / 1.5 / 2.0 gave
#: 1.19× / 1.12× / 1.12× the twin's NRMSE; 2 would oscillate undamped on an unbiased estimate.
REFINE_RELAX = 1.5
#: Restart the object (1+0j; the probe is kept) right after the refinements at these fractions
#: of the iterations: the object then starts again from frames already normalised by a good
#: flux estimate, instead of keeping the smooth flux errors it absorbed while the flux was
#: still wrong. Object NRMSE / jitter-free twin: tiny preset, 100 iterations, 1.12 without
#: restarts, 0.97 with restarts after 20 and 40 (1.01 resetting the probe too); small preset,
#: 200 iterations, 1.135 after 40 and 80, 1.15 after 20 and 40, 1.17 after 20, 40 and 80;
#: docs/design-notes/s11-flux.md. Like the default KKR schedule, they follow ``iterations``:
#: resume exactly with the ``iterations`` that wrote the checkpoint.
RESTART_FRACTIONS = (0.2, 0.4)
#: No restarts in runs shorter than this (the object would not converge again).
RESTART_MIN_ITERATIONS = 50
#: Cross-energy prior on the smooth log-amplitude (docs/design-notes/s13-flux2.md). The flux errors
#: of different energies are independent, the sample is not: its log-amplitude over the energies
#: is spanned by a few materials' absorption spectra. So, from iteration :data:`PRIOR_START` on,
#: before every flux estimate, the part of log|O| (energies × covered pixels) outside its leading
#: :data:`PRIOR_RANK` singular components, low-passed (Gaussian, :data:`PRIOR_SIGMA` pixels), is
#: taken as the smooth flux error the object absorbed: it is divided out of the object and moved
#: into the flux (O → O/g, f → f·g² leaves the data fit unchanged). tiny preset, seeds 0–3, object
#: NRMSE / jitter-free twin: mean 1.019 → 0.99, max 1.052 → 1.03.
PRIOR_RANK = 3
#: Gaussian σ [pixels] of the low-pass that keeps only the smooth (flux-like) part of the residual.
PRIOR_SIGMA = 4.0
#: First iteration (1-based) with the prior (the object must hold some structure first).
PRIOR_START = 5
#: The prior needs redundancy across energies: off with fewer energies than this.
PRIOR_MIN_ENERGIES = PRIOR_RANK + 3
#: Frames Fourier transformed at once by the estimator (bounds its memory: 64 × N² complex64).
CHUNK = 64


# ------------------------------------------------------------------------ monitor
def validate_monitor(ds: xr.Dataset) -> None:
    """Refuse a ``monitor`` that cannot normalise the frames (wrong dims, ≤ 0 or NaN where measured).

    Raises
    ------
    SchemaError
        ``monitor`` is not (energy, scan) (optionally with a leading ``particle``), or is
        not positive and finite at a scan point with a position.
    """
    if MONITOR not in ds:
        return
    mon = ds[MONITOR]
    dims = (ENERGY, SCAN)
    if mon.dims not in (dims, (PARTICLE, *dims)):
        raise SchemaError(f"{STAGE}: {MONITOR!r} has dims {mon.dims}, expected {dims}; transpose/rename it.")
    values = np.asarray(mon.values, dtype=np.float64)
    measured = np.isfinite(np.asarray(ds[POSITION_Y].values)) & np.isfinite(np.asarray(ds[POSITION_X].values))
    bad = measured & ~(np.isfinite(values) & (values > 0))
    if bad.any():
        where = np.argwhere(bad)[:5].tolist()
        example = values[bad][0]
        raise SchemaError(
            f"{STAGE}: {MONITOR!r} (I0) must be positive and finite at every scan point with a position; "
            f"{int(bad.sum())} are not (index {where} …, e.g. {example:g}). Fix or drop those frames (NaN position "
            f"and frame), or pass use_monitor=False to ignore the monitor."
        )


def monitor_flux(ds: xr.Dataset, active: np.ndarray) -> np.ndarray:
    """Relative flux (energy, scan) [1] from ``monitor``: mean 1 over each energy's ``active`` frames, NaN elsewhere.

    Parameters
    ----------
    ds : xarray.Dataset
        One particle's raw scan with a ``monitor`` (counts), checked by :func:`validate_monitor`.
    active : ndarray of bool, shape (n_energy, n_scan)
        Scan points with a position (padding points are False).
    """
    mon = np.asarray(ds[MONITOR].values, dtype=np.float64)
    return _normalised(np.where(active, mon, np.nan), active)


def _normalised(flux: np.ndarray, active: np.ndarray) -> np.ndarray:
    """``flux`` / its mean over the active frames of each energy; NaN at inactive ones."""
    out = np.where(active, flux, np.nan)
    count = active.sum(axis=1, keepdims=True)
    mean = np.where(active, out, 0.0).sum(axis=1, keepdims=True) / np.maximum(count, 1)
    return out / np.where(np.isfinite(mean) & (mean > 0), mean, 1.0)


def normalise_frames(frames: np.ndarray, flux: np.ndarray) -> np.ndarray:
    """Frames (n_scan, N, N) of one energy divided by their relative flux (n_scan,), as a new array.

    Not in place: the frames may be a view of the caller's Dataset. Padding frames (NaN
    flux) are left as they are (all NaN already).
    """
    f = np.where(np.isfinite(flux) & (flux > 0), flux, 1.0).astype(np.float32)
    return frames / f[:, None, None]


# --------------------------------------------------------------------- refinement
def rescale_amplitudes(amplitudes: np.ndarray, old: np.ndarray, new: np.ndarray) -> None:
    """``amplitudes`` (N√I of relative flux ``old``) → relative flux ``new``, in place; −1 markers kept.

    A frame divided by flux f has amplitudes ∝ 1/√f, so the factor is √(old/new) (float32,
    1 at padding frames).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.sqrt(old / new)
    factor = np.where(np.isfinite(factor), factor, 1.0).astype(np.float32)
    for e in range(amplitudes.shape[0]):
        a = amplitudes[e]
        np.multiply(a, factor[e][:, None, None], out=a, where=a >= 0)


def measured_counts(amplitudes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: Σ amplitude² over valid pixels (= N²·Σ I) and whether every pixel is valid.

    Returns
    -------
    measured : ndarray, (n_energy, n_scan) float64
    complete : ndarray of bool, (n_energy, n_scan)
        No −1 marker in the frame: Parseval then gives the model's counts without an FFT.
    """
    n_e, n_scan = amplitudes.shape[:2]
    measured, complete = np.zeros((n_e, n_scan)), np.zeros((n_e, n_scan), dtype=bool)
    for e in range(n_e):
        for start in range(0, n_scan, CHUNK):
            amp = amplitudes[e, start : start + CHUNK]
            valid = amp >= 0
            counts = np.where(valid, amp * amp, 0.0)
            measured[e, start : start + CHUNK] = np.sum(counts, axis=(-2, -1), dtype=np.float64)
            complete[e, start : start + CHUNK] = valid.all(axis=(-2, -1))
    return measured, complete


def frame_scales(
    amplitudes: np.ndarray,
    obj: np.ndarray,
    probe: np.ndarray,
    offsets: np.ndarray,
    active: np.ndarray,
    measured: np.ndarray | None = None,
    complete: np.ndarray | None = None,
) -> np.ndarray:
    """Per-frame ratio of measured to modelled counts on valid pixels, r = Σ I / Σ |F(P·O_k)|².

    With a mixed-state probe (n_energy, K, N, N) the model counts are the incoherent sum
    ``Σ_m Σ|F(P_m·O_k)|²``.

    Parameters
    ----------
    amplitudes : ndarray, (n_energy, n_scan, N, N) float32
        The solver's targets: N·√I in FFT order, −1 at invalid pixels.
    obj, probe : ndarray, complex64
        Current object (n_energy, H, W) and probe (n_energy, N, N), or probe modes
        (n_energy, K, N, N) (:mod:`ptyxr.reconstruct.modes`).
    offsets : ndarray, (n_energy, n_scan, 2) int
        Top-left object pixel of each patch.
    active : ndarray of bool, (n_energy, n_scan)
        Frames to estimate (others NaN).
    measured, complete : ndarray, optional
        :func:`measured_counts` of ``amplitudes`` (computed when not given). Frames with no
        invalid pixel use Parseval (N²·Σ|P·O_k|², no FFT); the others are Fourier transformed
        and summed over their valid pixels only.

    Returns
    -------
    ndarray, (n_energy, n_scan) float64
        NaN where inactive or the model holds no counts on the valid pixels.
    """
    n_e, n_scan, n, _ = amplitudes.shape
    modal = probe.ndim == 4  # mixed-state probe (n_energy, K, N, N): the incoherent sum over modes
    if measured is None or complete is None:
        measured, complete = measured_counts(amplitudes)
    model = np.full((n_e, n_scan), np.nan)
    for e in range(n_e):
        idx = np.flatnonzero(active[e])
        for start in range(0, idx.size, CHUNK):
            k = idx[start : start + CHUNK]
            patches = np.stack([obj[e, oy : oy + n, ox : ox + n] for oy, ox in offsets[e, k]])
            if modal:
                _mode_counts(patches, probe[e], amplitudes[e, k], complete[e, k], model[e], k)
                continue
            waves = patches * probe[e]
            whole = complete[e, k]
            if whole.any():  # Parseval: Σ|F|² = N²·Σ|ψ|² for the unnormalised FFT (amplitudes = N√I)
                w = waves[whole]
                model[e, k[whole]] = float(n) ** 2 * np.sum(w.real**2 + w.imag**2, axis=(-2, -1), dtype=np.float64)
            if not whole.all():
                far = sfft.fft2(waves[~whole], workers=-1)
                valid = amplitudes[e, k[~whole]] >= 0
                power = np.where(valid, far.real**2 + far.imag**2, 0.0)
                model[e, k[~whole]] = np.sum(power, axis=(-2, -1), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(active & (model > 0), measured / model, np.nan)


def _mode_counts(
    patches: np.ndarray, modes: np.ndarray, amplitudes: np.ndarray, whole: np.ndarray, model: np.ndarray, k: np.ndarray
) -> None:
    """Model counts Σ_m Σ|F(P_m·O_k)|² of one energy's frames ``k`` on their valid pixels, into ``model[k]``.

    ``patches`` (n_k, N, N) are the object windows, ``modes`` (K, N, N) the probe modes,
    ``amplitudes`` (n_k, N, N) the frames' targets (−1 invalid), ``whole`` the frames without
    invalid pixels (Parseval, no FFT). The modes are mutually incoherent: their powers add.
    """
    n = patches.shape[-1]
    waves = patches[:, None] * modes[None]  # (n_k, K, N, N)
    if whole.any():
        w = waves[whole]
        model[k[whole]] = float(n) ** 2 * np.sum(w.real**2 + w.imag**2, axis=(-3, -2, -1), dtype=np.float64)
    if not whole.all():
        far = sfft.fft2(waves[~whole], workers=-1)
        valid = (amplitudes[~whole] >= 0)[:, None]
        power = np.where(valid, far.real**2 + far.imag**2, 0.0)
        model[k[~whole]] = np.sum(power, axis=(-3, -2, -1), dtype=np.float64)


def smooth_excess_log_amplitude(
    obj: np.ndarray,
    region: np.ndarray,
    rank: int = PRIOR_RANK,
    sigma: float = PRIOR_SIGMA,
    shifts: np.ndarray | None = None,
) -> np.ndarray:
    """Smooth log-amplitude of each energy not explained by the stack's leading ``rank`` components [1].

    log|O| over ``region`` forms an (energy × pixel) matrix; its residual after the best rank-
    ``rank`` approximation (SVD) holds what is independent from energy to energy — photon noise
    and the smooth amplitude modulation each energy's flux errors left in its object. The
    residual, low-passed with a Gaussian of ``sigma`` pixels (normalised over ``region``),
    keeps the latter.

    Parameters
    ----------
    obj : ndarray, (n_energy, ny, nx) complex
        Object stack (all energies on one pixel grid, up to small drifts).
    region : ndarray, (ny, nx) bool
        Pixels covered at every energy.
    rank : int
        Singular components kept as the sample's (a few materials).
    sigma : float
        Low-pass width [pixels].
    shifts : ndarray, (n_energy, 2), optional
        (row, col) shifts [pixels] registering each energy onto the others
        (:func:`ptyxr.registration.stack_shifts`): log|O| is Fourier-shifted by them before
        the decomposition and the result shifted back (drift between energies would otherwise
        put the particle's edges into the residual; small preset: 1.19× → 1.11× the twin).

    Returns
    -------
    ndarray, (n_energy, ny, nx) float64
        log g: the object's excess log-amplitude, 0 outside ``region``.
    """
    from scipy import ndimage

    from ptyxr.reconstruct.epie import fourier_shift

    out = np.zeros(obj.shape, dtype=np.float64)
    if not region.any() or obj.shape[0] <= rank:
        return out
    log_full = np.log(np.maximum(np.abs(obj), 1e-6)).astype(np.float64)
    moved = np.zeros(obj.shape[0], dtype=bool) if shifts is None else np.any(np.abs(shifts) > 1e-3, axis=1)
    for i in np.flatnonzero(moved):
        assert shifts is not None
        log_full[i] = fourier_shift(log_full[i].astype(np.complex128), tuple(shifts[i])).real
    log_amp = log_full[:, region]  # (n_energy, n_pixel)
    # best rank-`rank` approximation = projection onto the leading left singular vectors, taken
    # from the small (energy × energy) Gram matrix (an SVD of the full matrix cost 0.6 s per call)
    _, vectors = np.linalg.eigh(log_amp @ log_amp.T)
    u = vectors[:, ::-1][:, :rank]
    residual = log_amp - u @ (u.T @ log_amp)
    weight = ndimage.gaussian_filter(region.astype(np.float64), sigma)
    plane = np.zeros(region.shape)
    for e in range(obj.shape[0]):
        plane[region] = residual[e]
        smooth = np.where(region, ndimage.gaussian_filter(plane, sigma) / np.maximum(weight, 1e-6), 0.0)
        if moved[e]:
            assert shifts is not None
            smooth = fourier_shift(smooth.astype(np.complex128), (-shifts[e, 0], -shifts[e, 1])).real
        out[e] = smooth
    return out


def patch_means(values: np.ndarray, weights: np.ndarray, offsets: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Per frame, the mean of ``values`` over its patch weighted by ``weights`` (|P|²).

    Parameters
    ----------
    values : ndarray, (n_energy, ny, nx)
    weights : ndarray, (n_energy, N, N)
    offsets : ndarray, (n_energy, n_scan, 2) int
    active : ndarray of bool, (n_energy, n_scan)

    Returns
    -------
    ndarray, (n_energy, n_scan) float64; 0 where inactive.
    """
    n = weights.shape[-1]
    out = np.zeros(active.shape)
    for e in range(values.shape[0]):
        k = np.flatnonzero(active[e])
        windows = np.lib.stride_tricks.sliding_window_view(values[e], (n, n))[offsets[e, k, 0], offsets[e, k, 1]]
        out[e, k] = np.einsum("kij,ij->k", windows, weights[e]) / max(float(weights[e].sum()), 1e-30)
    return out


class FluxRefiner:
    """Per-frame intensity-scale refinement on the solver's amplitudes (see the module docstring).

    Parameters
    ----------
    amplitudes : ndarray, (n_energy, n_scan, N, N) float32
        The solver's targets, rescaled in place.
    offsets : ndarray, (n_energy, n_scan, 2) int
        Patch offsets the solver uses.
    active : ndarray of bool, (n_energy, n_scan)
        Measured frames.
    iterations : int
        Iterations of the run (the schedule: :func:`schedule`).
    flux : ndarray, (n_energy, n_scan), optional
        Relative flux the amplitudes already carry (the monitor's); default 1.
    region : ndarray, (ny, nx) bool, optional
        Pixels covered at every energy: where the cross-energy prior acts (none without it).
    """

    def __init__(
        self,
        amplitudes: np.ndarray,
        offsets: np.ndarray,
        active: np.ndarray,
        iterations: int,
        flux: np.ndarray | None = None,
        region: np.ndarray | None = None,
    ) -> None:
        self.amplitudes, self.offsets, self.active = amplitudes, offsets, np.asarray(active, dtype=bool)
        self.initial = _normalised(np.ones(active.shape) if flux is None else np.asarray(flux, float), self.active)
        self.flux = self.initial.copy()
        # counts of the amplitudes as prepared (they scale with initial/flux after each rescaling)
        self.measured0, self.complete = measured_counts(amplitudes)
        self.history: list[np.ndarray] = []
        self.schedule = schedule(iterations)
        self.restarts = restarts(iterations)
        self.region = region
        self.shifts: np.ndarray | None = None  # the prior's registration of the energies (at its first use)
        self.prior = region is not None and bool(region.any()) and amplitudes.shape[0] >= PRIOR_MIN_ENERGIES

    def due(self, done: int) -> bool:
        """True when iteration ``done`` (1-based, counted after it) is on the refinement schedule."""
        return done in self.schedule

    def refine(self, obj: np.ndarray, probe: np.ndarray, done: int) -> None:
        """One refinement after iteration ``done``: estimate, normalise, relax, rescale the
        amplitudes, record the history; at a restart (:func:`restarts`) reset ``obj`` to 1 in place.
        Before the estimate (from :data:`PRIOR_START`), the cross-energy prior moves the object's
        smooth excess log-amplitude into the flux (``obj`` changed in place)."""
        if self.prior and done >= PRIOR_START:
            self._prior(obj, probe)
        with np.errstate(invalid="ignore", divide="ignore"):
            measured = self.measured0 * np.where(self.active, self.initial / self.flux, 1.0)
        ratio = frame_scales(self.amplitudes, obj, probe, self.offsets, self.active, measured, self.complete)
        estimate = self.flux * np.where(np.isfinite(ratio) & (ratio > 0), ratio, 1.0)
        estimate = _normalised(estimate, self.active)
        new = _normalised(self.flux + REFINE_RELAX * (estimate - self.flux), self.active)
        self._apply(new)
        if done in self.restarts:
            obj[...] = 1

    def _prior(self, obj: np.ndarray, probe: np.ndarray) -> None:
        """O → O/g, f → f·g² with log g = :func:`smooth_excess_log_amplitude` (data fit unchanged)."""
        from ptyxr.registration import stack_shifts

        assert self.region is not None
        if self.shifts is None:  # once: the drift between energies does not change during the run
            self.shifts = np.asarray(stack_shifts(obj, self.region), dtype=np.float64)
        log_g = smooth_excess_log_amplitude(obj, self.region, PRIOR_RANK, PRIOR_SIGMA, self.shifts)
        power = np.abs(probe) ** 2
        if power.ndim == 4:  # probe modes: the total intensity
            power = power.sum(axis=1)
        g2 = np.exp(2.0 * patch_means(log_g, power, self.offsets, self.active))
        obj *= np.exp(-log_g).astype(np.complex64)
        self._apply(_normalised(self.flux * g2, self.active))

    def _apply(self, new: np.ndarray) -> None:
        rescale_amplitudes(self.amplitudes, self.flux, new)
        self.flux = new
        self.history.append(new)

    def checkpoint_state(self) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
        """The flux history (n_refinements, n_energy, n_scan) as a checkpoint's extra variable,
        and the prior's registration shifts (``flux_prior_shift_y/x`` (energy,) [pixels]) once made."""
        history = np.stack(self.history) if self.history else np.zeros((0, *self.flux.shape))
        state: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
            RELATIVE_FLUX: ((FLUX_REFINEMENT, ENERGY, SCAN), history)
        }
        if self.shifts is not None:  # the prior's registration, so a resumed run uses the same
            state[FLUX_PRIOR_SHIFT_Y] = ((ENERGY,), self.shifts[:, 0])
            state[FLUX_PRIOR_SHIFT_X] = ((ENERGY,), self.shifts[:, 1])
        return state

    def restore(self, extra: dict[str, np.ndarray]) -> None:
        """Replay a checkpoint's flux history on freshly prepared amplitudes (bit-exact resume)."""
        if RELATIVE_FLUX not in extra:
            raise SchemaError(
                f"{STAGE}: the checkpoint holds no flux refinement history ({RELATIVE_FLUX!r}); it was not written "
                "with refine_flux=True. Resume with the settings that wrote it, or start afresh."
            )
        for new in np.asarray(extra[RELATIVE_FLUX], dtype=np.float64):
            self._apply(new)
        if FLUX_PRIOR_SHIFT_Y in extra and FLUX_PRIOR_SHIFT_X in extra:
            shifts = [np.asarray(extra[FLUX_PRIOR_SHIFT_Y]), np.asarray(extra[FLUX_PRIOR_SHIFT_X])]
            self.shifts = np.stack(shifts, axis=-1).astype(np.float64)


def schedule(iterations: int) -> list[int]:
    """Iterations (1-based, counted after them) at which the flux is refined.

    From :data:`REFINE_START` every :data:`REFINE_EVERY` iterations up to ``iterations``,
    the final one included (its estimate, from the final model, is the ``relative_flux``
    reported). Independent of the run's end, so resumed runs repeat it exactly.
    """
    return list(range(REFINE_START, iterations + 1, REFINE_EVERY))


def settings(monitor_used: bool, refine: bool) -> dict[str, bool]:
    """Checkpoint settings of the flux options (a resumed run must use the same ones)."""
    return {"monitor_used": bool(monitor_used), "refine_flux": bool(refine)}


def restarts(iterations: int) -> list[int]:
    """Iterations after whose refinement the object restarts from 1 (none in short runs)."""
    if iterations < RESTART_MIN_ITERATIONS:
        return []
    return sorted({max(round(fraction * iterations), REFINE_START) for fraction in RESTART_FRACTIONS})
