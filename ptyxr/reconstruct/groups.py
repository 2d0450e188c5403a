"""Out-of-core reconstruction: energies in groups that fit a memory limit (issue 14, point 2).

``reconstruct`` keeps the measured amplitudes of every frame in memory, one float32 array
(n_energy, n_scan, N, N); a 40-energy × 1,000-position × 256² particle needs 10 GB for it.
Energy-batched ePIE never mixes energies: between two KKR projections each energy's object
and probe evolve from its own frames only (the recentring and the scale pinning are per
energy as well). So with a ``memory_limit`` that the whole array would exceed, the run is cut
into *segments* that end at the KKR iterations (and the checkpoint iterations); within a
segment each *group* of energies runs all of the segment's iterations with only its own
amplitudes in memory, read from the (lazy) intensity block by block; then the KKR step sees
every energy at the same iteration, as in memory. Objects and probes (small) stay in memory
throughout.

The random position order of each iteration is drawn once per segment from the run's
generator, in the order the in-memory loop draws it, and every group uses the same orders;
the result equals the in-memory run's (objects, probes and the iteration count at every
checkpoint bit for bit; the Fourier-error denominator is summed block by block, so the
reported ``fourier_error`` agrees to float rounding). Groups run forward in even segments and
backward in odd ones, so the group loaded last is not read again at the next segment's start.

The price is reading the frames once per segment (the default schedule has 8 segments) and
once more for the per-energy sums (photons for the initial probe, the Fourier-error norm).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import xarray as xr

from ptyxr.checks import parse_memory_limit  # noqa: F401 - re-exported: reconstruct parses the limit here
from ptyxr.reconstruct import epie as _epie
from ptyxr.reconstruct.flux import normalise_frames
from ptyxr.reconstruct.grid import resample_frames
from ptyxr.schema import DET_Y, DETECTOR_MASK, ENERGY, INTENSITY, SCAN

#: Frames processed at a time [bytes of float32] (a dask chunk is read whole, then worked
#: through in pieces of this size): their temporary copies (resampling, NaN-replaced sums,
#: kernel layout) stay far below a group's amplitudes.
READ_BYTES = 16 * 2**20
#: Temporary copies of one such piece set aside from ``memory_limit``.
READ_COPIES = 3


def amplitude_bytes(n_energy: int, n_scan: int, n: int) -> int:
    """Bytes of the float32 amplitudes of ``n_energy`` energies × ``n_scan`` frames of N×N."""
    return int(n_energy) * int(n_scan) * int(n) * int(n) * 4


def _piece_frames(n_scan: int, n: int) -> int:
    return max(1, min(int(n_scan), READ_BYTES // (4 * int(n) * int(n))))


def _read_plan(ds: xr.Dataset) -> tuple[list[slice], int]:
    """Scan-index blocks read at once, and the bytes one read holds.

    A dask intensity is read one chunk at a time (a slice of a chunk would read the whole
    chunk anyway: ``open_scan``'s graphs do not push slices into the file reads); frames in
    memory in blocks of :data:`READ_BYTES`.
    """
    n_scan, n = ds.sizes[SCAN], ds.sizes[DET_Y]
    frame = 4 * n * n
    data = ds[INTENSITY].data
    if getattr(data, "dask", None) is not None:
        dims = ds[INTENSITY].dims
        scan_chunks = data.chunks[dims.index(SCAN)]
        bounds = np.cumsum((0, *scan_chunks))
        per_energy = max(data.chunks[dims.index(ENERGY)]) if ENERGY in dims else 1
        held = per_energy * max(scan_chunks) * frame
    else:
        bounds = np.array([*range(0, n_scan, _piece_frames(n_scan, n)), n_scan])
        held = _piece_frames(n_scan, n) * frame
    blocks = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return blocks, held


def read_reserve(ds: xr.Dataset) -> int:
    """Bytes set aside from ``memory_limit`` for reading the frames of ``ds``.

    Two copies of one read (a dask chunk, or :data:`READ_BYTES` of frames in memory: the
    computed chunk and the block taken from it) and :data:`READ_COPIES` temporaries of a
    piece of ≤ :data:`READ_BYTES`.
    """
    n_scan, n = ds.sizes[SCAN], ds.sizes[DET_Y]
    _, held = _read_plan(ds)
    return 2 * held + READ_COPIES * _piece_frames(n_scan, n) * 4 * n * n


def energy_groups(n_energy: int, n_scan: int, n: int, memory_limit: int | None, reserve: int = 0) -> list[slice] | None:
    """Contiguous energy groups whose amplitudes fit ``memory_limit``, or None if all fit at once.

    All energies stay together (None: the in-memory path) when the whole amplitude array fits.
    Otherwise the fewest groups of g energies with g·n_scan·N²·4 + ``reserve`` (:func:`read_reserve`) ≤
    ``memory_limit``, sizes as equal as possible (consecutive energies).

    Raises
    ------
    ValueError
        When not even one energy's frames fit (the message names the least limit that works).
    """
    if memory_limit is None:
        return None
    per_energy = amplitude_bytes(1, n_scan, n)
    if n_energy * per_energy <= memory_limit:
        return None
    size = (int(memory_limit) - reserve) // per_energy
    if size < 1:
        raise ValueError(
            f"memory_limit={memory_limit} bytes holds no energy's frames: one energy's amplitudes are "
            f"{per_energy} bytes ({n_scan} frames of {n}x{n} float32) plus {reserve} bytes of read buffers; "
            f"give at least {per_energy + reserve} bytes (or crop the frames)."
        )
    count = -(-n_energy // size)
    edges = [round(k * n_energy / count) for k in range(count + 1)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def segment_ends(start: int, iterations: int, schedule: Iterable[int], checkpoint_every: int | None) -> list[int]:
    """Iterations (counted after the iteration) at which every energy must have arrived.

    The KKR iterations, the checkpoint iterations (when checkpointing) and the last iteration,
    after ``start``.
    """
    ends = {int(iterations)} | {int(d) for d in schedule}
    if checkpoint_every is not None:
        ends |= set(range(int(checkpoint_every), int(iterations) + 1, max(int(checkpoint_every), 1)))
    return sorted(d for d in ends if start < d <= iterations)


# ------------------------------------------------------------------------ reading frames
def _pieces(
    ds: xr.Dataset, e: int, active: np.ndarray, mask: np.ndarray | None, flux: np.ndarray | None = None
) -> Iterator[tuple[slice, np.ndarray]]:
    """(scan slice, frames) of energy ``e`` in pieces of ≤ :data:`READ_BYTES`, read block by block.

    float32, NaN at invalid pixels and padding scan points: the same values as the
    in-memory path's ``_frames`` followed by its padding fill (and, with ``flux`` (n_energy,
    n_scan), its monitor normalisation :func:`ptyxr.reconstruct.flux.normalise_frames`).
    """
    blocks, _ = _read_plan(ds)
    n_scan, n = ds.sizes[SCAN], ds.sizes[DET_Y]
    step = _piece_frames(n_scan, n)
    lazy = getattr(ds[INTENSITY].data, "dask", None) is not None
    for block in blocks:
        frames = np.asarray(ds[INTENSITY].isel({ENERGY: e, SCAN: block}).values, dtype=np.float32)
        if not lazy or not frames.flags.writeable:  # a view of the caller's array: work on a copy
            frames = frames.copy()
        if mask is not None:
            frames[:, ~mask] = np.nan
        frames[~active[e, block]] = np.nan
        if flux is not None:
            frames = normalise_frames(frames, flux[e, block])
        for a in range(0, frames.shape[0], step):
            b = min(a + step, frames.shape[0])
            yield slice(block.start + a, block.start + b), frames[a:b]
        del frames


def _mask(ds: xr.Dataset) -> np.ndarray | None:
    return np.asarray(ds[DETECTOR_MASK].values, dtype=bool) if DETECTOR_MASK in ds else None


def frame_sums(
    ds: xr.Dataset,
    active: np.ndarray,
    scale: np.ndarray | None,
    interpolation: int,
    progress: Any = None,
    flux: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-energy Fourier-error norm and mean photons per frame, read block by block.

    Parameters
    ----------
    ds : xarray.Dataset
        Raw scan (intensity in memory or dask).
    active : ndarray, shape (n_energy, n_scan), bool
        Scan points with a position.
    scale : ndarray, shape (n_energy,), optional
        dx(E)/dx_c when the frames are resampled onto the common grid; None = native grids.
    interpolation : int
        Resampling order (with ``scale`` only).
    progress : tqdm bar, optional
        Advanced by one per energy.
    flux : ndarray, shape (n_energy, n_scan), optional
        Relative flux each frame is divided by (the monitor normalisation).

    Returns
    -------
    norm : ndarray, shape (n_energy,)
        Σ I over valid pixels (the in-memory path's :func:`ptyxr.reconstruct.epie.fourier_norm`
        to float rounding: summed per block).
    photons : ndarray, shape (n_energy,)
        Mean Σ I per frame over active frames [counts] (the same numbers as in memory).
    """
    n_e = ds.sizes[ENERGY]
    mask = _mask(ds)
    norm, photons = np.zeros(n_e), np.zeros(n_e)
    for e in range(n_e):
        per_frame = []
        total = 0.0
        for piece, raw in _pieces(ds, e, active, mask, flux):
            per_frame.append(np.nansum(raw[active[e, piece]], axis=(-2, -1)))
            frames = resample_frames(raw, 1.0 if scale is None else float(scale[e]), order=interpolation)
            total += float(np.nansum(frames, dtype=np.float64))
        norm[e] = total
        photons[e] = np.mean(np.concatenate(per_frame))
        if progress is not None:
            progress.update(1)
    return norm, photons


def load_amplitudes(
    ds: xr.Dataset,
    energies: slice,
    active: np.ndarray,
    scale: np.ndarray | None,
    interpolation: int,
    out: np.ndarray,
    flux: np.ndarray | None = None,
) -> np.ndarray:
    """Kernel-layout amplitudes of ``energies`` into ``out[:len(energies)]``, block by block.

    Returns that leading view of ``out`` (C-contiguous), the same numbers as the in-memory
    path's rows of its amplitude array.
    """
    mask = _mask(ds)
    group = out[: energies.stop - energies.start]
    for j, e in enumerate(range(energies.start, energies.stop)):
        for piece, raw in _pieces(ds, e, active, mask, flux):
            frames = resample_frames(raw, 1.0 if scale is None else float(scale[e]), order=interpolation)
            _epie.prepare_amplitudes(frames, out=group[j, piece])
    return group


# ---------------------------------------------------------------------- the loop order
class GroupedRun:
    """The (iteration, energies) order of ``_reconstruct_one``'s loop, in memory or by energy groups.

    Iterating yields ``(it, energies, order, solver, complete)``: run iteration ``it`` (0-based)
    on ``obj[energies]``, ``probe[energies]`` with scan ``order`` and ``solver``; ``complete``
    is True once every energy has done iteration ``it`` (KKR, checkpoints and the progress
    text belong there). In memory (``groups`` None) this is the plain loop: one step per
    iteration over all energies (``slice(None)``), one position order drawn per iteration.

    Parameters
    ----------
    bar : tqdm bar over ``range(start, iterations)``
        Iterated in memory; advanced by each group's share of an iteration when grouped.
    rng : numpy.random.Generator
        The run's generator (its state after iteration d is the in-memory one's, at every
        segment end d).
    has_data : ndarray, shape (n_scan,), bool
        Scan indices with a position at some energy (the others are left out of the orders).
    start, iterations : int
        First iteration to run (resume) and the run's length.
    ends : list of int
        Segment ends (:func:`segment_ends`); ignored in memory.
    groups : list of slice or None
        :func:`energy_groups`.
    solver : object, optional
        The in-memory solver.
    make_solver : callable(amplitudes, energies) -> solver, optional
        Builds a group's solver on its freshly loaded amplitudes (grouped runs).
    load : callable(energies, out) -> amplitudes, optional
        :func:`load_amplitudes` with the data bound (grouped runs).
    """

    def __init__(
        self,
        bar: Any,
        rng: np.random.Generator,
        has_data: np.ndarray,
        start: int,
        iterations: int,
        ends: list[int],
        groups: list[slice] | None,
        solver: Any = None,
        make_solver: Callable[[np.ndarray, slice], Any] | None = None,
        load: Callable[[slice, np.ndarray], np.ndarray] | None = None,
        shape: tuple[int, int, int] | None = None,
    ) -> None:
        self.bar, self.rng, self.has_data = bar, rng, has_data
        self.start, self.iterations, self.ends = int(start), int(iterations), list(ends)
        self.groups, self.solver = groups, solver
        self.make_solver, self.load, self.shape = make_solver, load, shape
        self.loads = 0  # group reads done (diagnostics, tests)

    def _order(self) -> np.ndarray:
        order = self.rng.permutation(self.has_data.size)
        return order[self.has_data[order]]

    def __iter__(self) -> Iterator[tuple[int, slice, np.ndarray, Any, bool]]:
        if self.groups is None:
            for it in self.bar:
                yield it, slice(None), self._order(), self.solver, True
            return
        make_solver, load, shape = self.make_solver, self.load, self.shape
        if make_solver is None or load is None or shape is None:
            raise ValueError("a grouped run needs make_solver, load and shape")
        n_e = self.groups[-1].stop
        largest = max(g.stop - g.start for g in self.groups)
        buffer = np.empty((largest, *shape), dtype=np.float32)  # one group's amplitudes, reused
        loaded = None
        first = self.start
        for s, end in enumerate(self.ends):
            orders = [self._order() for _ in range(first, end)]
            sequence = self.groups if s % 2 == 0 else self.groups[::-1]
            for k, g in enumerate(sequence):
                if loaded != (g.start, g.stop):
                    self.solver = None  # drop the previous group's solver before reading the next
                    self.solver = make_solver(load(g, buffer), g)
                    loaded = (g.start, g.stop)
                    self.loads += 1
                for it in range(first, end):
                    yield it, g, orders[it - first], self.solver, k == len(sequence) - 1
                    self.bar.update((g.stop - g.start) / n_e)
            first = end
