"""Spatial resolution of a reconstruction: PRTF (paper Fig. S5) and Fourier ring correlation.

Two measures, per energy, on one ``spatial_frequency`` axis ``q_k = k/(N·dx)`` (k = 0 … N//2;
N the probe/frame size, dx the common pixel), so both curves can sit in one Dataset:

* **PRTF** — phase retrieval transfer function as the paper uses it (ESI Fig. S5): the
  modelled far-field amplitude of the final object and probe, ``|F[P·O_j]|`` at every scan
  position j, over the measured amplitude ``√I_j``, each summed over all positions and
  over a ring of detector pixels (pixels of ring k: ``round(|q|·N·dx) = k``); the
  resolution is the full period ``1/q`` where it first falls below 1/e. The forward model is
  the engine's own (:mod:`ptyxr.reconstruct.grid`, :mod:`ptyxr.reconstruct.epie`): detector
  frames resampled onto the common grid, probe centre at ``floor(position/dx + 0.5)``,
  ``Ψ = fftshift(fft2(ψ, norm="ortho"))``. It needs the measured ``intensity``
  (``reconstruct(keep_raw=True)``, the default, or ``raw=`` the raw scan series).
* **FRC** — correlation of two independent reconstructions of the same scan (interleaved
  halves of the scan positions: :func:`split_scan`, :func:`reconstruct_halves`), after
  removing a constant phase, sub-pixel registration and an apodising window; the
  resolution is the full period where the FRC first crosses the ½-bit threshold of van
  Heel & Schatz (2005).

The array kernels (numpy only, no xarray) are in :mod:`ptyxr.fourier_rings` and re-exported
here; this module holds the xarray stage functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ptyxr import provenance
from ptyxr.fourier_rings import (  # noqa: F401  (re-exported: the kernels stay importable from here)
    _frc_image,
    first_crossing,
    fourier_ring_correlation,
    frc_images,
    half_bit_threshold,
    prtf_sums,
    ring_index,
    ring_sum,
    soft_mask,
    tukey_window,
)
from ptyxr.schema import (
    ATTR_DETECTOR_DISTANCE,
    ATTR_DETECTOR_PIXEL_SIZE,
    ATTR_PIXEL_SIZE,
    ATTR_THRESHOLD,
    COVERAGE,
    DET_Y,
    DETECTOR_MASK,
    ENERGY,
    FRC,
    FRC_RESOLUTION,
    FRC_THRESHOLD,
    INTENSITY,
    OBJECT,
    PARTICLE,
    POSITION_X,
    POSITION_Y,
    PROBE,
    PROBE_Y,
    PRTF,
    PRTF_RESOLUTION,
    SCAN,
    SHIFT_X,
    SHIFT_Y,
    SPATIAL_FREQUENCY,
    SchemaError,
    X,
    Y,
    require_dataset,
    require_variables,
    variable,
)
from ptyxr.stage import Recorded, stage

STAGE = "resolution"
METHODS = ("prtf", "frc")
#: The PRTF threshold (paper ESI Fig. S5).
PRTF_THRESHOLD = float(np.exp(-1.0))
#: FRC quantities: the complex transmission, its phase, or its amplitude attenuation μt.
FRC_QUANTITIES = ("complex", "phase", "absorption")
FRC_WINDOWS = ("hann", "tukey", "none")


# =============================================================== xarray helpers
def _pixel_size(ds: xr.Dataset) -> float:
    if ATTR_PIXEL_SIZE in ds[Y].attrs:
        return float(ds[Y].attrs[ATTR_PIXEL_SIZE])
    return float(np.median(np.diff(ds[Y].values)))


def _frequency_coord(n: int, pixel_size: float) -> xr.DataArray:
    k = np.arange(n // 2 + 1)
    return variable(SPATIAL_FREQUENCY, k / (n * pixel_size))


def _resolution_from(curve: np.ndarray, threshold: Any, n: int, pixel_size: float) -> float:
    """Full period 1/q [m] at the first crossing (NaN where the curve never crosses)."""
    k = first_crossing(curve, threshold)
    return float(n * pixel_size / k) if np.isfinite(k) and k > 0 else float("nan")


def _per_particle(ds: xr.Dataset) -> list[xr.Dataset]:
    """The particles of ``ds`` (itself when it has none), each cropped to its own grid."""
    if PARTICLE not in ds[OBJECT].dims:
        return [ds]
    out = []
    for i in range(ds.sizes[PARTICLE]):
        sub = ds.isel({PARTICLE: i})
        finite = np.isfinite(sub[OBJECT].values).all(axis=0)
        rows, cols = np.flatnonzero(finite.any(axis=1)), np.flatnonzero(finite.any(axis=0))
        out.append(sub.isel({Y: slice(rows[0], rows[-1] + 1), X: slice(cols[0], cols[-1] + 1)}))
    return out


def _stack_particles(parts: list[xr.Dataset], ds: xr.Dataset) -> xr.Dataset:
    if PARTICLE not in ds[OBJECT].dims:
        return parts[0]
    out = xr.concat(parts, dim=PARTICLE, join="outer", coords="minimal", compat="override")
    if PARTICLE in ds.coords:
        out = out.assign_coords({PARTICLE: ds[PARTICLE]})
    return out


def _unaligned_object(ds: xr.Dataset, dx: float) -> np.ndarray:
    """The object as ``reconstruct`` left it: :func:`ptyxr.spectra.align`'s shifts undone."""
    obj = np.asarray(ds[OBJECT].values)
    if SHIFT_Y not in ds or SHIFT_X not in ds:
        return obj
    from ptyxr.reconstruct.epie import fourier_shift

    out = obj.copy()
    for e in range(obj.shape[0]):
        shift = (-float(ds[SHIFT_Y].values[e]) / dx, -float(ds[SHIFT_X].values[e]) / dx)
        if max(abs(shift[0]), abs(shift[1])) > 1e-6:
            out[e] = fourier_shift(obj[e] - 1, shift) + 1
    return out


# ===================================================================== the PRTF
def _prtf_one(
    ds: xr.Dataset, raw: xr.Dataset, others: Sequence[xr.Dataset] = ()
) -> tuple[np.ndarray, np.ndarray, int, float]:
    from ptyxr.optics import real_space_pixel_size
    from ptyxr.reconstruct.grid import lattice_index, resample_frames

    dx = _pixel_size(ds)
    n = raw.sizes[DET_Y]
    if ds.sizes.get(PROBE_Y, n) != n:
        raise SchemaError(
            f"{STAGE}: probe is {ds.sizes[PROBE_Y]} pixels but the frames are {n}; pass the raw scan used."
        )
    energy = np.asarray(ds[ENERGY].values, dtype=np.float64)
    z, p = float(raw.attrs[ATTR_DETECTOR_DISTANCE]), float(raw.attrs[ATTR_DETECTOR_PIXEL_SIZE])
    scale = np.atleast_1d(real_space_pixel_size(energy, z, p, n)) / dx
    members = [ds, *others]
    for i, other in enumerate(others):
        same = other[OBJECT].shape == ds[OBJECT].shape and np.allclose(other[Y].values, ds[Y].values)
        if not (same and np.allclose(other[X].values, ds[X].values)):
            raise SchemaError(
                f"{STAGE}: others[{i}] has object {other[OBJECT].shape} on another grid than ds {ds[OBJECT].shape}; "
                "pass reconstructions of the same raw data with the same pixel_size (e.g. other seeds)."
            )
    obj = np.stack([_unaligned_object(d, dx) for d in members], axis=1)  # (energy, M, y, x)
    # (energy, M, N, N), or (energy, M, K, N, N) with K probe modes (reconstruct(probe_modes=K))
    probes = [d[PROBE].transpose(ENERGY, ...) for d in members]
    if len({p.shape for p in probes}) > 1:
        raise SchemaError(
            f"{STAGE}: the reconstructions' probes differ in shape {[p.shape for p in probes]} (other numbers of "
            "probe modes?); compare reconstructions made with the same probe_modes."
        )
    probe = np.stack([np.asarray(p.values) for p in probes], axis=1)
    oy0, ox0 = int(np.rint(ds[Y].values[0] / dx)), int(np.rint(ds[X].values[0] / dx))
    n_rings = n // 2 + 1
    curve = np.full((energy.size, n_rings), np.nan)
    for e in range(energy.size):
        py = np.asarray(raw[POSITION_Y].isel({ENERGY: e}).values, dtype=float)
        px = np.asarray(raw[POSITION_X].isel({ENERGY: e}).values, dtype=float)
        active = np.isfinite(py) & np.isfinite(px)
        offsets = np.stack([lattice_index(py, dx) - n // 2 - oy0, lattice_index(px, dx) - n // 2 - ox0], axis=-1)
        inside = (
            active
            & (offsets[:, 0] >= 0)
            & (offsets[:, 1] >= 0)
            & (offsets[:, 0] + n <= obj.shape[-2])
            & (offsets[:, 1] + n <= obj.shape[-1])
        )
        frames = np.asarray(raw[INTENSITY].isel({ENERGY: e}).values, dtype=np.float32)[inside]
        if DETECTOR_MASK in raw:
            frames = np.where(np.asarray(raw[DETECTOR_MASK].values, dtype=bool), frames, np.nan)
        frames = resample_frames(frames, float(scale[e]))
        power, cross, measured = prtf_sums(obj[e], probe[e], offsets[inside], frames, n_rings)
        model = power if not others else np.clip(cross, 0.0, None)  # a negative cross power: nothing shared
        with np.errstate(invalid="ignore", divide="ignore"):
            curve[e] = np.where(measured > 0, np.sqrt(model / measured), np.nan)
    return curve, energy, n, dx


def validate_object_and_probe(ds: Any, where: str = STAGE) -> xr.Dataset:
    """A reconstruction with its object and probe (DESIGN §1b), as the PRTF and the FRC need."""
    ds = require_dataset(ds, where)
    require_variables(ds, (OBJECT, PROBE), where, hint="run reconstruct first.")
    return ds


@stage(STAGE, validate=validate_object_and_probe)
def prtf(
    ds: xr.Dataset,
    raw: xr.Dataset | None = None,
    threshold: float = PRTF_THRESHOLD,
    others: Sequence[xr.Dataset] = (),
) -> Recorded:
    """Phase retrieval transfer function per energy and the resolution where it falls below 1/e.

    Parameters
    ----------
    ds : xarray.Dataset
        Reconstruction (``object``, ``probe``, coords y/x [m]) with the measured
        ``intensity``, ``position_y/x`` and detector attrs (``reconstruct(keep_raw=True)``,
        the default). An object registered by :func:`ptyxr.spectra.align` is shifted back
        first (``shift_y/x``). A leading ``particle`` dim is handled particle by particle.
    raw : xarray.Dataset, optional
        The raw scan series the reconstruction came from, when ``ds`` lacks ``intensity``.
    threshold : float
        PRTF level defining the resolution (paper: 1/e).
    others : sequence of xarray.Dataset
        Further independent reconstructions of the same raw data on the same grid (e.g.
        ``reconstruct(raw, seed=1)``: another random position order). With them the PRTF is
        the **ensemble** PRTF: the model power is the mean cross power
        ``Re Σ Ψ_m·Ψ_n*`` over pairs m ≠ n, the far field the reconstructions share
        (Chapman et al. 2006 average the complex far fields of reconstructions from random
        starts; the pair mean is that average's unbiased square). Noise and background that
        one reconstruction fits as random high-frequency object structure differ between
        the members and drop out; what the data determine stays.

    Returns
    -------
    xarray.Dataset
        ``ds`` plus ``prtf`` (energy, spatial_frequency) and ``prtf_resolution`` (energy)
        [m], the full period 1/q at the first fall below ``threshold`` (NaN: never falls,
        i.e. resolution limited by the pixel, finer than 2·dx). Attr ``ensemble_size`` = 1 +
        len(others).

    Notes
    -----
    Cost ≈ one ePIE iteration per member (one FFT per scan position and energy). Dask frames
    are read one energy at a time (that energy's frames are computed, nothing more). On
    Poisson data without background the PRTF stays near 1 (the model explains the counts),
    so it may only bound the resolution. With a detector background a single
    reconstruction fits the background with high-frequency object roughness and its PRTF
    stays high (≥ 0.5 on the simulator), an upper bound again; the ensemble PRTF of two
    fixed-probe reconstructions falls where √(S/(S+b)) predicts (within 2 rings). A
    probe that is refined can model a flat background as a far-field halo common to all
    members, which no ensemble removes (docs/design-notes/resolution.md). The FRC
    (:func:`frc`) measures consistency instead.
    """
    source = ds if raw is None else raw
    missing = [v for v in (INTENSITY, POSITION_Y, POSITION_X) if v not in source]
    missing += [a for a in (ATTR_DETECTOR_DISTANCE, ATTR_DETECTOR_PIXEL_SIZE) if a not in source.attrs]
    if missing:
        raise SchemaError(
            f"{STAGE}(method='prtf') needs the measured data {missing} "
            f"{'in ds' if raw is None else 'in raw'}: reconstruct with keep_raw=True (the default) or pass "
            "raw=<the raw scan series>."
        )
    if not (0 < float(threshold) < 1):
        raise SchemaError(f"{STAGE}: threshold={threshold!r}; give a PRTF level between 0 and 1 (paper: 1/e).")
    others = [require_dataset(o, STAGE) for o in others]
    for o in others:
        require_variables(o, (OBJECT, PROBE), STAGE, hint="others= are further reconstructions of the same data.")
    parts, raws = _per_particle(ds), _raw_particles(source, ds)
    other_parts = [_per_particle(o) for o in others]
    if any(len(p) != len(parts) for p in other_parts):
        raise SchemaError(f"{STAGE}: others= must hold the same {len(parts)} particle(s) as ds.")
    attrs: dict[str, Any] = {ATTR_THRESHOLD: float(threshold), "ensemble_size": 1 + len(others)}
    results = []
    for i, (part, raw_part) in enumerate(zip(parts, raws, strict=True)):
        curve, _, n, dx = _prtf_one(part, raw_part, [p[i] for p in other_parts])
        res = [_resolution_from(c, threshold, n, dx) for c in curve]
        results.append(
            xr.Dataset(
                {
                    PRTF: variable(PRTF, curve, **attrs),
                    PRTF_RESOLUTION: variable(PRTF_RESOLUTION, np.array(res), **attrs),
                },
                coords={SPATIAL_FREQUENCY: _frequency_coord(n, dx), ENERGY: ds[ENERGY]},
            )
        )
    new = _stack_particles(results, ds)
    out = ds.assign({name: new[name] for name in new.data_vars})
    facts = {"method": "prtf", "threshold": float(threshold), "raw_given": raw is not None}
    return Recorded(out, {**facts, "ensemble_size": 1 + len(others)})


def _raw_particles(source: xr.Dataset, ds: xr.Dataset) -> list[xr.Dataset]:
    if PARTICLE not in source[INTENSITY].dims:
        return [source]
    return [source.isel({PARTICLE: i}) for i in range(source.sizes[PARTICLE])]


# ====================================================================== the FRC
def split_scan(raw: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    """Two interleaved halves of a raw scan series: even and odd scan indices.

    Each half keeps every energy and the detector attrs and covers the whole field (with
    half the positions and half the fluence), so the two reconstructions are independent
    in their noise but see the same object — the input of :func:`frc`.
    """
    raw = require_dataset(raw, STAGE)
    require_variables(raw, (INTENSITY, POSITION_Y, POSITION_X), STAGE, hint="split_scan needs a raw scan series.")
    n_scan = raw.sizes[SCAN]
    if n_scan < 4:
        raise SchemaError(f"{STAGE}: split_scan needs at least 4 scan points, got {n_scan}.")
    halves = tuple(raw.isel({SCAN: slice(start, None, 2)}) for start in (0, 1))
    return tuple(  # type: ignore[return-value]  # two halves
        provenance.record(h, "split_scan", {"half": i, "of_scan_points": n_scan}) for i, h in enumerate(halves)
    )


def reconstruct_halves(raw: xr.Dataset, **reconstruct_kwargs: Any) -> tuple[xr.Dataset, xr.Dataset]:
    """Reconstruct both :func:`split_scan` halves with :func:`ptyxr.reconstruct.api.reconstruct`.

    Both halves share the lattice and pixel size (``pixel_size`` defaults to the full scan's
    finest, which the halves also have) and every reconstruct option, including ``seed``.
    Returns the two reconstructions; pass them to :func:`frc`.
    """
    from ptyxr.reconstruct.api import reconstruct

    first, second = split_scan(raw)
    return reconstruct(first, **reconstruct_kwargs), reconstruct(second, **reconstruct_kwargs)


def add_frc_of_halves(ds: xr.Dataset, raw: xr.Dataset, **reconstruct_kwargs: Any) -> xr.Dataset:
    """``ds`` plus ``frc``, ``frc_threshold``, ``frc_resolution`` of the two :func:`reconstruct_halves` of ``raw``.

    ``ds`` is the full reconstruction of ``raw``; the halves get the same reconstruct options
    (checkpoint/resume paths dropped: they would collide with the full run's).
    """
    kwargs = {k: v for k, v in reconstruct_kwargs.items() if k not in ("checkpoint", "resume_from")}
    kwargs["keep_raw"] = False  # the halves' frames are not needed again
    a, b = reconstruct_halves(raw, **kwargs)
    result = frc(a, b)
    out = ds.assign({name: result[name] for name in (FRC, FRC_THRESHOLD, FRC_RESOLUTION)})
    return provenance.record(out, STAGE, {"method": "frc", "of": "reconstruct_halves", **kwargs})


@stage(STAGE, validate=validate_object_and_probe)
def frc(
    ds: xr.Dataset,
    other: xr.Dataset,
    quantity: str = "complex",
    window: str = "hann",
    register: bool = True,
    upsample: int = 20,
    taper: float = 3.0,
) -> Recorded:
    """Fourier ring correlation of two independent reconstructions and the ½-bit resolution.

    Parameters
    ----------
    ds, other : xarray.Dataset
        Two reconstructions of the same sample and energies on the same pixel lattice,
        e.g. :func:`reconstruct_halves`. They are compared on their common y/x and the
        pixels covered in both (``coverage``).
    quantity : {"complex", "phase", "absorption"}
        Image compared: the complex transmission O, its phase, or μt = −ln|O|.
    window : {"hann", "tukey", "none"}
        Apodisation over the bounding box of the compared region (separable Hann, or Tukey
        with α = 0.5), times the region's mask with soft edges (:func:`soft_mask`), so box
        and mask edges add no common high frequencies to both images. Hann is the default:
        on a band-limited object (cutoff 0.15/pixel, 68-pixel box) the FRC crossed at
        0.21/pixel with Hann and 0.23 with Tukey (window leakage spreads the band edge).
    taper : float
        Gaussian edge width [pixels] of the soft region mask.
    register : bool
        Register ``other`` onto ``ds`` to 1/``upsample`` pixel first (the halves of a scan
        can differ by a sub-pixel shift, which would lower the FRC at high frequency).
    upsample : int
        Registration precision.

    Returns
    -------
    xarray.Dataset
        ``ds`` plus ``frc`` (energy, spatial_frequency), ``frc_threshold``
        (spatial_frequency; the ½-bit curve for the rings' pixel counts) and
        ``frc_resolution`` (energy) [m]: the full period 1/q at the first crossing (NaN:
        no crossing, resolution finer than 2·dx).

    Notes
    -----
    Rings have width 1/(N·dx) (N the probe size), like the PRTF's, pixel (i, j) of the
    box's spectrum belonging to ring ``round(|q|·N·dx)``. The ½-bit threshold uses each
    ring's pixel count n (van Heel & Schatz 2005); the window lowers the effective count,
    which makes it slightly optimistic — as in common practice.
    """
    other = require_dataset(other, STAGE)
    require_variables(other, (OBJECT, PROBE), STAGE, hint="frc compares two reconstructions.")
    if quantity not in FRC_QUANTITIES:
        raise SchemaError(f"{STAGE}: quantity={quantity!r}; choose one of {FRC_QUANTITIES}.")
    if window not in FRC_WINDOWS:
        raise SchemaError(f"{STAGE}: window={window!r}; choose one of {FRC_WINDOWS}.")
    dx, dx_other = _pixel_size(ds), _pixel_size(other)
    if abs(dx - dx_other) > 1e-6 * dx:
        raise SchemaError(
            f"{STAGE}: the reconstructions have pixel sizes {dx:.6g} m and {dx_other:.6g} m; reconstruct both "
            "with the same pixel_size."
        )
    if ds.sizes[ENERGY] != other.sizes[ENERGY] or not np.allclose(ds[ENERGY].values, other[ENERGY].values):
        raise SchemaError(f"{STAGE}: the two reconstructions have different energies; compare the same energies.")
    n = ds.sizes[PROBE_Y]
    n_rings = n // 2 + 1
    parts_a, parts_b = _per_particle(ds), _per_particle(other)
    if len(parts_a) != len(parts_b):
        raise SchemaError(f"{STAGE}: the reconstructions hold {len(parts_a)} and {len(parts_b)} particles.")
    results, shifts = [], []
    for pa, pb in zip(parts_a, parts_b, strict=True):
        # both halves sit on one lattice anchored at 0 m: align by coordinate (rounded to the pixel)
        ia = np.rint(pa[Y].values / dx).astype(int), np.rint(pa[X].values / dx).astype(int)
        ib = np.rint(pb[Y].values / dx).astype(int), np.rint(pb[X].values / dx).astype(int)
        ys, ya, yb = np.intersect1d(ia[0], ib[0], return_indices=True)
        xs, xa, xb = np.intersect1d(ia[1], ib[1], return_indices=True)
        if ys.size < 8 or xs.size < 8:
            raise SchemaError(f"{STAGE}: the reconstructions share only {ys.size}x{xs.size} pixels; same scan field?")
        oa = pa[OBJECT].values[:, ya][:, :, xa]
        ob = pb[OBJECT].values[:, yb][:, :, xb]
        region = np.isfinite(oa).all(axis=0) & np.isfinite(ob).all(axis=0)
        if COVERAGE in pa and COVERAGE in pb:
            region &= pa[COVERAGE].values[ya][:, xa] & pb[COVERAGE].values[yb][:, xb]
        if region.sum() < 64:
            raise SchemaError(f"{STAGE}: only {int(region.sum())} pixels are covered in both reconstructions.")
        curves, counts, shift_e = [], None, []
        for e in range(oa.shape[0]):
            c, counts, sh = frc_images(
                _frc_image(oa[e], quantity),
                _frc_image(ob[e], quantity),
                region,
                n_rings,
                n,
                window,
                register,
                upsample,
                taper,
            )
            curves.append(c)
            shift_e.append(sh.tolist())
        thr = half_bit_threshold(counts)  # type: ignore[arg-type]  # set by the loop (≥ 1 energy)
        res = [_resolution_from(c, thr, n, dx) for c in curves]
        attrs = {ATTR_THRESHOLD: "half-bit (van Heel & Schatz 2005)"}
        results.append(
            xr.Dataset(
                {
                    FRC: variable(FRC, np.array(curves), **attrs),
                    FRC_THRESHOLD: variable(FRC_THRESHOLD, thr, **attrs),
                    FRC_RESOLUTION: variable(FRC_RESOLUTION, np.array(res), **attrs),
                },
                coords={SPATIAL_FREQUENCY: _frequency_coord(n, dx), ENERGY: ds[ENERGY]},
            )
        )
        shifts.append(shift_e)
    new = _stack_particles(results, ds)
    out = ds.assign({name: new[name] for name in new.data_vars})
    return Recorded(out, {"method": "frc", "registration_shifts_px": shifts})


# =================================================================== the stage
def resolution(ds: xr.Dataset, method: str = "prtf", other: xr.Dataset | None = None, **kwargs: Any) -> xr.Dataset:
    """Spatial resolution per energy: ``method="prtf"`` (:func:`prtf`) or ``"frc"`` (:func:`frc`).

    Parameters
    ----------
    ds : xarray.Dataset
        Reconstruction (with ``intensity`` for the PRTF).
    method : {"prtf", "frc"}
        PRTF (paper Fig. S5, 1/e) or FRC against ``other`` (½-bit).
    other : xarray.Dataset, optional
        The second, independent reconstruction (``method="frc"``), e.g. from
        :func:`reconstruct_halves`; ``ds`` is then the first.
    **kwargs
        Options of :func:`prtf` or :func:`frc`.

    Returns
    -------
    xarray.Dataset
        ``ds`` plus the curve over ``spatial_frequency`` [1/m] and the resolution per energy
        [m] (full period); see :func:`prtf`, :func:`frc`.
    """
    if method not in METHODS:
        raise SchemaError(f"{STAGE}: method={method!r}; choose one of {METHODS}.")
    if method == "prtf":
        if other is not None:
            raise SchemaError(f"{STAGE}: other= is for method='frc'; the PRTF needs one reconstruction.")
        return prtf(ds, **kwargs)
    if other is None:
        raise SchemaError(
            f"{STAGE}(method='frc') needs other=<a second independent reconstruction>; get both from "
            "ptyxr.resolution.reconstruct_halves(raw, ...)."
        )
    return frc(ds, other, **kwargs)
