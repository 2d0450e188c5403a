"""Benchmark of ptyxr's energy-batched ePIE against its FFT floor and PtyLab's ePIE.

Prints, in one run on the same synthetic data (KB probe, random weak-phase object,
``--energies`` × ``--positions`` frames of ``--n``² pixels, Poisson noise):

(a) seconds per iteration for all energies and per position-energy update;
(b) the FFT floor: forward + inverse FFTs alone for the same work — the fused engine's
    own FFTW transforms (same parallel layout, in cache) and scipy.fft batched in place
    (workers = all cores) — and (a)/(b) against the faster of the two (target ≤ 2);
(c) PtyLab's ePIE run one energy at a time on the same data and iterations (if
    ``import PtyLab`` works), and the speed ratio per energy-iteration (target ≥ 5);
final errors of both — PtyLab's own metric and OUR metric Σ(|Ψ| − √I)²/ΣI evaluated after
the last iteration on each code's final object and probe with its own forward model — and
peak memory (resource.getrusage);
(d) time to accuracy (issue 12): wall time until the object error against the true object
(:func:`object_error`) first reaches a fixed target — ePIE's error after ``--tta-iterations``
— for ptyxr's ePIE (the baseline), ptyxr's mPIE and, where ``import PtyLab`` works, PtyLab's
mPIE (one energy at a time, run in chunks of iterations), all on the same data, with the
ratios against the baseline measured in the same run.

Usage: ``python benchmarks/bench_reconstruct.py`` (40 × 200 × 128²) or ``--reduced``
(CI: 8 energies × 64 positions × 64², a few seconds).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from ptyxr.optics import far_field, kb_probe, real_space_pixel_size
from ptyxr.physics import wavelength
from ptyxr.reconstruct import epie
from ptyxr.reconstruct.grid import common_grid

Z, PITCH = 2.0, 75e-6


def make_data(n_energy: int, n_pos: int, n: int, seed: int = 0):
    """Frames, positions [m] and initial probes on one pixel size (highest energy)."""
    rng = np.random.default_rng(seed)
    energy = np.linspace(5420.0, 5540.0, n_energy)
    dx = float(real_space_pixel_size(energy.max(), Z, PITCH, n))
    side = int(np.ceil(np.sqrt(n_pos)))
    step = n * dx / 6  # ~80 % probe overlap
    c = (np.arange(side) - (side - 1) / 2) * step
    py, px = (a.ravel()[:n_pos] for a in np.meshgrid(c, c, indexing="ij"))
    py = py + rng.uniform(-0.1, 0.1, n_pos) * step
    px = px + rng.uniform(-0.1, 0.1, n_pos) * step
    g = common_grid(np.tile(py, (n_energy, 1)), np.tile(px, (n_energy, 1)), dx, n)
    from scipy.ndimage import gaussian_filter

    thick = gaussian_filter(rng.standard_normal(g.shape), 2.0)
    thick = (thick - thick.min()) / np.ptp(thick)
    frames = np.empty((n_energy, n_pos, n, n), dtype=np.float32)
    probes = np.empty((n_energy, n, n), dtype=np.complex64)
    objects = np.empty((n_energy, *g.shape), dtype=np.complex64)
    for e in range(n_energy):
        obj = objects[e] = np.exp((-0.05 - 0.5j) * thick * (1 + 0.1 * e / max(n_energy - 1, 1)))
        probes[e] = kb_probe(energy[e], n, dx, fwhm=n * dx / 8, defocus=2e-6, photons=1e6)
        for k in range(n_pos):
            oy, ox = g.offsets[e, k]
            frames[e, k] = np.abs(far_field(probes[e] * obj[oy : oy + n, ox : ox + n], workers=1)) ** 2
        frames[e] = rng.poisson(frames[e])  # per energy: keeps the int64 temporary small
    return energy, dx, py, px, g, frames, probes, objects


def object_error(patches, true_patches, mask) -> float:
    """Object error of one energy over the illuminated pixels of every scan position.

    ``patches``/``true_patches``: (n_pos, N, N) object patches of a reconstruction and of the
    truth at the same positions; ``mask``: (N, N) pixels where |P|² ≥ 0.1 max. With the
    best complex factor γ (the O·P scale and global phase are free) and the better of O and
    O* (codes differ in the FFT sign): min ‖γ·O − O_true‖ / ‖O_true − 1‖. Grid-agnostic, so
    PtyLab's object on its own grid is measured the same way.
    """
    b = true_patches[:, mask].astype(np.complex128).ravel()
    best = np.inf
    for a in (patches[:, mask].ravel(), np.conj(patches[:, mask]).ravel()):
        a = a.astype(np.complex128)
        gamma = np.vdot(a, b) / max(np.vdot(a, a).real, 1e-300)
        best = min(best, float(np.linalg.norm(gamma * a - b) / np.linalg.norm(b - 1)))
    return best


def _patches(obj, offsets, n):
    return np.stack([obj[oy : oy + n, ox : ox + n] for oy, ox in offsets])


def tta_ptyxr(g, frames, probes, objects, iterations, engine, fft_backend, regularization, momentum):
    """ptyxr run with ``iterations`` iterations: (cumulative wall time, per-energy object error) per iteration.

    The solver as in (a) (no gauge steps; initial probe = the true probe); mPIE adds its
    momentum step between iterations, inside the timing. The error is evaluated outside it.
    """
    from ptyxr.reconstruct.momentum import ObjectMomentum

    n_e, n_pos, n = frames.shape[0], frames.shape[1], frames.shape[-1]
    amps = epie.prepare_amplitudes(frames)
    solver = epie.BatchedEPIE(
        amps, g.offsets, epie.fourier_norm(frames), engine=engine, fft_backend=fft_backend,
        regularization=regularization,
    )  # fmt: skip
    obj = np.ones((n_e, *g.shape), np.complex64)
    probe = probes.copy()
    mom = ObjectMomentum(obj.shape, g.field(n), momentum) if momentum > 0 else None
    mask = np.abs(probes) ** 2 >= 0.1 * np.max(np.abs(probes) ** 2, axis=(-2, -1), keepdims=True)
    truth = [_patches(objects[e], g.offsets[e], n) for e in range(n_e)]
    rng = np.random.default_rng(0)
    elapsed, curve = 0.0, []
    for _ in range(iterations):
        t0 = time.perf_counter()
        if mom is not None:
            mom.before(obj)
        solver.iteration(obj, probe, rng.permutation(n_pos), True)
        if mom is not None:
            mom.after(obj)
        elapsed += time.perf_counter() - t0
        errs = [object_error(_patches(obj[e], g.offsets[e], n), truth[e], mask[e]) for e in range(n_e)]
        curve.append((elapsed, np.array(errs)))
    return curve


def tta_ptylab(energy, dx, py, px, frames, probes, objects, g, iterations, chunk, n_energy_run):
    """PtyLab mPIE one energy at a time in chunks of ``chunk`` iterations (its defaults otherwise).

    Returns per energy a list of (cumulative wall time, object error, iterations done), or a reason string.
    """
    try:
        import h5py
        from PtyLab import Engines, easyInitialize
    except Exception as exc:  # noqa: BLE001 - report any import failure
        return f"PtyLab unavailable: {exc!r}"
    import logging

    logging.disable(logging.WARNING)
    n = frames.shape[-1]
    curves = []
    with tempfile.TemporaryDirectory() as tmp:
        for e in range(n_energy_run):
            path = Path(tmp) / f"e{e}.hdf5"
            with h5py.File(path, "w") as f:
                f["ptychogram"] = frames[e]
                f["encoder"] = -np.stack([py, px], axis=-1)  # PtyLab's encoder: the sample translation
                f["wavelength"] = wavelength(energy[e])
                f["dxd"] = PITCH * real_space_pixel_size(energy[e], Z, PITCH, n) / dx
                f["zo"] = Z
                f["Nd"] = n
            data, rec, params, monitor, engine = easyInitialize(path, engine=Engines.mPIE, dummyMonitor=True)
            params.positionOrder = "random"
            params.probePowerCorrectionSwitch = False
            params.comStabilizationSwitch = False
            params.fftshiftSwitch = False
            rec.probe[...] = probes[e].reshape(rec.probe.shape[-2:])
            mask = np.abs(probes[e]) ** 2 >= 0.1 * np.max(np.abs(probes[e]) ** 2)
            truth = _patches(objects[e], g.offsets[e], n)
            elapsed, done, curve = 0.0, 0, []
            while done < iterations:
                engine.numIterations = min(chunk, iterations - done)
                t0 = time.perf_counter()
                engine.reconstruct()
                elapsed += time.perf_counter() - t0
                done += engine.numIterations
                obj = np.asarray(rec.object).reshape(rec.object.shape[-2:])
                patches = np.stack([obj[r : r + rec.Np, c : c + rec.Np] for r, c in np.asarray(rec.positions)])
                curve.append((elapsed, object_error(patches, truth, mask), done))
            curves.append(curve)
    return curves


def time_to_accuracy(args, energy, dx, py, px, g, frames, probes, objects):
    """Section (d): wall time to a fixed object error, ePIE (baseline) vs mPIE vs PtyLab's mPIE."""
    from ptyxr.reconstruct.momentum import MPIE_MOMENTUM, MPIE_REGULARIZATION

    its = args.tta_iterations
    runs = {
        "ptyxr ePIE": tta_ptyxr(g, frames, probes, objects, its, args.engine, args.fft_backend, 1.0, 0.0),
        "ptyxr mPIE": tta_ptyxr(
            g, frames, probes, objects, its, args.engine, args.fft_backend, MPIE_REGULARIZATION, MPIE_MOMENTUM
        ),
    }
    target = float(np.mean(runs["ptyxr ePIE"][-1][1]))
    print(
        f"(d) time to accuracy: object error target {target:.4f} = ptyxr ePIE's mean over energies after {its} "
        f"iterations (mPIE: a = {MPIE_REGULARIZATION}, eta = {MPIE_MOMENTUM})"
    )

    def first(curve, level):
        for i, (t, err) in enumerate(curve):
            if float(np.mean(err)) <= level:
                return i + 1, t
        return None, None

    base_it, base_t = first(runs["ptyxr ePIE"], target)
    for name, curve in runs.items():
        it, t = first(curve, target)
        best = min(float(np.mean(err)) for _, err in curve)
        if it is None:
            print(f"    {name}: not reached in {its} iterations (best {best:.4f})")
        else:
            print(
                f"    {name}: {it} iterations, {t:.2f} s (all {frames.shape[0]} energies), "
                f"{base_t / t:.2f}x the baseline's speed; best error {best:.4f}"
            )
    if args.no_ptylab:
        return
    m = min(args.ptylab_energies, frames.shape[0])
    res = tta_ptylab(energy, dx, py, px, frames, probes, objects, g, its, args.tta_chunk, m)
    if isinstance(res, str):
        print(f"    PtyLab mPIE: skipped ({res})")
        return
    # the same target on PtyLab's energies: ePIE's mean error there; our time per energy = total / n_energy
    sub_target = float(np.mean(runs["ptyxr ePIE"][-1][1][:m]))
    base_sub = next(((i + 1, t) for i, (t, err) in enumerate(runs["ptyxr ePIE"]) if np.mean(err[:m]) <= sub_target))
    per_energy_base = base_sub[1] / frames.shape[0]
    times, reached = [], True
    for curve in res:
        hit = next(((t, done) for t, err, done in curve if err <= sub_target), None)
        reached &= hit is not None
        times.append(hit[0] if hit else curve[-1][0])
    finals = [round(curve[-1][1], 4) for curve in res]
    if reached:
        t_pl = float(np.mean(times))
        print(
            f"    PtyLab mPIE (energies 0..{m - 1}, target {sub_target:.4f}): {t_pl:.2f} s per energy vs ptyxr ePIE "
            f"{per_energy_base:.3f} s per energy -> {per_energy_base / t_pl:.3f}x the baseline's speed "
            f"(chunks of {args.tta_chunk} iterations); final errors {finals}"
        )
    else:
        print(
            f"    PtyLab mPIE: target {sub_target:.4f} not reached in {its} iterations on every energy "
            f"(final errors {finals}; {np.mean(times):.2f} s per energy spent)"
        )


def posthoc_error(exit_wave, propagate, frames) -> float:
    """Σ_j Σ(|Ψ_j| − √I_j)² / Σ I over all positions of one energy (our Fourier error).

    ``exit_wave(j)`` gives position j's exit wave(s), ``propagate`` the detector field;
    intensities of leading (mode) axes are summed.
    """
    num = den = 0.0
    for j in range(frames.shape[0]):
        intensity = np.abs(propagate(exit_wave(j))) ** 2
        amp = np.sqrt(intensity.reshape(-1, *frames.shape[-2:]).sum(axis=0))
        num += float(np.sum((amp - np.sqrt(frames[j])) ** 2))
        den += float(np.sum(frames[j]))
    return num / den


def bench_ptyxr(g, frames, probes, iterations, engine, fft_backend):
    """Best-of timings of ptyxr iterations interleaved with the FFT floors.

    The machine is shared and its load changes by the second: each round times one
    iteration and then both FFT floors right after it, and the minimum of each is kept, so
    (a)/(b) compares like with like.
    """
    amps = epie.prepare_amplitudes(frames)
    solver = epie.BatchedEPIE(amps, g.offsets, epie.fourier_norm(frames), engine=engine, fft_backend=fft_backend)
    obj = np.ones((frames.shape[0], *g.shape), np.complex64)
    probe = probes.copy()
    rng = np.random.default_rng(0)
    n_pos = frames.shape[1]
    solver.iteration(obj, probe, rng.permutation(n_pos)[:2], True)  # compile / warm up
    fft_floor(solver, 2)
    obj[...] = 1
    probe[...] = probes
    t_iter, t_fused, t_scipy = [], [], []
    for _ in range(iterations):
        t0 = time.perf_counter()
        err = solver.iteration(obj, probe, rng.permutation(n_pos), True)
        t_iter.append(time.perf_counter() - t0)
        fused, scipy_fft = fft_floor(solver, n_pos)
        t_fused.append(np.inf if fused is None else fused)
        t_scipy.append(scipy_fft)
    fused = None if np.isinf(min(t_fused)) else min(t_fused)
    return min(t_iter), err, fused, min(t_scipy), solver, obj, probe


def fft_floor(solver, n_pos):
    """Seconds per iteration of the forward+inverse FFTs alone: (fused engine's FFTW, scipy.fft).

    The first is None unless the solver runs the fused engine; it uses the same FFTW plans
    in the same parallel layout (one energy per task, frame in cache). The second is one
    batched in-place scipy.fft over all energies per position (workers = all cores). Uses
    the solver's frame buffer, which is scratch between iterations.
    """
    fused = None
    buf = solver.buf
    if getattr(solver, "fused", False):
        buf[...] = 0  # values stay bounded (unnormalised round trips grow by N²)
        t0 = time.perf_counter()
        solver.fft.floor(n_pos)
        fused = time.perf_counter() - t0
    scipy_fft = epie._FFT(buf, "scipy")
    buf[...] = 0
    t0 = time.perf_counter()
    for _ in range(n_pos):
        scipy_fft.forward()
        scipy_fft.backward()
    return fused, time.perf_counter() - t0


def bench_ptylab(energy, dx, py, px, frames, probes, iterations, n_energy_run):
    """PtyLab ePIE, one energy at a time.

    Returns (s per energy-iteration, PtyLab's own final errors, our metric on its result) or
    a reason string.
    """
    try:
        import h5py
        from PtyLab import Engines, easyInitialize
        from PtyLab.Operators.Operators import object2detector
    except Exception as exc:  # noqa: BLE001 - report any import failure
        return f"PtyLab unavailable: {exc!r}"
    import logging

    logging.disable(logging.WARNING)
    n = frames.shape[-1]
    times, errors, ours = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for e in range(n_energy_run):
            path = Path(tmp) / f"e{e}.hdf5"
            with h5py.File(path, "w") as f:
                f["ptychogram"] = frames[e]
                # PtyLab's encoder is the sample translation: −(probe position)
                f["encoder"] = -np.stack([py, px], axis=-1)
                f["wavelength"] = wavelength(energy[e])
                f["dxd"] = PITCH * real_space_pixel_size(energy[e], Z, PITCH, n) / dx
                f["zo"] = Z
                f["Nd"] = n
            data, rec, params, monitor, engine = easyInitialize(path, engine=Engines.ePIE, dummyMonitor=True)
            params.positionOrder = "random"
            params.probePowerCorrectionSwitch = False
            params.comStabilizationSwitch = False
            params.fftshiftSwitch = False
            rec.probe[...] = probes[e].reshape(rec.probe.shape[-2:])
            engine.numIterations = iterations
            engine.betaObject = 1.0
            engine.betaProbe = 1.0
            t0 = time.perf_counter()
            engine.reconstruct()
            times.append((time.perf_counter() - t0) / iterations)  # includes PtyLab's per-iteration bookkeeping
            err = getattr(rec, "error", None)
            errors.append(float(np.ravel(err)[-1]) if err is not None and np.size(err) else float("nan"))
            # our metric on PtyLab's final object/probe through PtyLab's own propagator,
            # against the intensities as PtyLab holds them
            npix = rec.Np

            def exit_wave(j, rec=rec, npix=npix):
                row, col = rec.positions[j]
                return rec.object[..., row : row + npix, col : col + npix] * rec.probe

            def propagate(esw, params=params, rec=rec):
                return np.asarray(object2detector(esw, params, rec)[1])

            ptychogram = np.asarray(data.ptychogram, dtype=np.float64)
            ours.append(posthoc_error(exit_wave, propagate, ptychogram))
    return float(np.mean(times)), errors, ours


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--energies", type=int, default=40)
    ap.add_argument("--positions", type=int, default=200)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=5, help="iterations (= timing rounds, best of)")
    ap.add_argument("--reduced", action="store_true", help="CI size: 8 energies x 64 positions x 64^2")
    ap.add_argument("--engine", default="auto", choices=epie.ENGINES)
    ap.add_argument("--fft-backend", default="auto", choices=epie.FFT_BACKENDS)
    ap.add_argument("--ptylab-energies", type=int, default=2, help="energies run through PtyLab (one at a time)")
    ap.add_argument("--no-ptylab", action="store_true")
    ap.add_argument("--tta-iterations", type=int, default=60, help="(d): ePIE iterations that set the target")
    ap.add_argument("--tta-chunk", type=int, default=5, help="(d): PtyLab iterations between error evaluations")
    ap.add_argument("--no-tta", action="store_true", help="skip (d)")
    args = ap.parse_args(argv)
    if args.reduced:
        args.energies, args.positions, args.n, args.iterations = 8, 64, 64, 5
        args.tta_iterations, args.ptylab_energies = 30, 1
    ne, npos, n = args.energies, args.positions, args.n
    print(
        f"data: {ne} energies x {npos} positions x {n}^2 frames, {args.iterations} iterations, {epie.WORKERS} threads"
    )
    energy, dx, py, px, g, frames, probes, objects = make_data(ne, npos, n)
    t_iter, err, t_fused, t_scipy, solver, obj, probe = bench_ptyxr(
        g, frames, probes, args.iterations, args.engine, args.fft_backend
    )
    per_update = t_iter / (ne * npos)
    kind = "fused numba+FFTW" if getattr(solver, "fused", False) else f"{solver.engine} + {solver.fft.backend}"
    print(
        f"(a) ptyxr ePIE [{kind}]: {t_iter:.3f} s per iteration (all energies), "
        f"{per_update * 1e3:.4f} ms per position-energy update"
    )
    floors = {"scipy.fft batched": t_scipy} | ({"FFTW in-kernel": t_fused} if t_fused is not None else {})
    for name, t in floors.items():
        print(f"    FFT floor, {name}: {t:.3f} s per iteration, {t / (ne * npos) * 1e3:.4f} ms per update")
    t_fft = min(floors.values())
    print(
        f"(b) FFT floor (fastest forward+inverse FFTs alone): {t_fft / (ne * npos) * 1e3:.4f} ms per update; "
        f"ratio (a)/(b) = {t_iter / t_fft:.2f} (target <= 2.0)"
    )

    def our_exit_wave(j, e):
        oy, ox = g.offsets[e, j]
        return probe[e] * obj[e, oy : oy + n, ox : ox + n]

    mine = [
        posthoc_error(lambda j, e=e: our_exit_wave(j, e), far_field, frames[e].astype(np.float64))
        for e in range(min(args.ptylab_energies, ne))
    ]
    print(
        f"    ptyxr final error: running (during last iteration) mean over energies {np.mean(err):.4g}; "
        f"after last iteration, energies 0..{len(mine) - 1}: {np.round(mine, 5).tolist()}"
    )
    if not args.no_ptylab:
        res = bench_ptylab(energy, dx, py, px, frames, probes, args.iterations, min(args.ptylab_energies, ne))
        if isinstance(res, str):
            print(f"(c) {res}")
        else:
            t_pl, errs, ours = res
            t_ours = t_iter / ne
            print(
                f"(c) PtyLab ePIE: {t_pl:.3f} s per energy-iteration vs ptyxr {t_ours:.4f} s -> ptyxr is "
                f"{t_pl / t_ours:.1f}x faster per energy-iteration (target >= 5)"
            )
            print(
                f"    PtyLab final error, our metric after last iteration: {np.round(ours, 5).tolist()} "
                f"(its own metric: {np.round(errs, 4).tolist()})"
            )
    if not args.no_tta:
        time_to_accuracy(args, energy, dx, py, px, g, frames, probes, objects)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    held = sum(a.nbytes for a in (solver.amplitudes, solver.buf, obj, probe)) / 2**20
    print(
        f"peak memory (max RSS, incl. data generation and PtyLab): {peak:.0f} MiB; "
        f"frames {frames.nbytes / 2**20:.0f} MiB; ptyxr solver arrays (amplitudes, buffer, obj, probe) {held:.0f} MiB"
    )


if __name__ == "__main__":
    main()
