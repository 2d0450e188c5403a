"""Fig. S5-style resolution plots: PRTF / FRC curves per energy and resolution against energy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ptyxr import schema as s

#: Paper's stated full-period resolution range [m] (Uematsu et al. 2023, Fig. S5 of the ESI).
PAPER_RESOLUTION_RANGE = (80e-9, 120e-9)
NM = 1e9


def _curves(ds: xr.Dataset) -> list[tuple[str, str, str | None, str]]:
    """(curve, resolution, threshold variable or None, label) present in ``ds``."""
    found: list[tuple[str, str, str | None, str]] = []
    if s.PRTF in ds:
        members = int(ds[s.PRTF].attrs.get("ensemble_size", 1))
        found.append((s.PRTF, s.PRTF_RESOLUTION, None, "PRTF" if members == 1 else f"PRTF (ensemble of {members})"))
    if s.FRC in ds:
        found.append((s.FRC, s.FRC_RESOLUTION, s.FRC_THRESHOLD, "FRC"))
    return found


def _energies_to_show(energy: np.ndarray, most: int) -> np.ndarray:
    if energy.size <= most:
        return np.arange(energy.size)
    return np.unique(np.rint(np.linspace(0, energy.size - 1, most)).astype(int))


def figure_s5(
    datasets: xr.Dataset | Sequence[xr.Dataset],
    max_energies: int = 5,
    show_paper: bool = True,
    **resolution_kwargs: Any,
) -> Any:
    """Fig. S5 of the paper's ESI: resolution curves and full-period resolution per energy.

    Parameters
    ----------
    datasets : Dataset or sequence of Datasets
        Reconstructions (one per particle) holding ``prtf`` and/or ``frc`` curves; a
        Dataset with neither gets ``ptyxr.resolution.prtf(ds, **resolution_kwargs)`` first.
    max_energies : int
        Curves drawn per particle (evenly spread energies).
    show_paper : bool
        Shade the paper's 80–120 nm range on the resolution panel.

    Returns
    -------
    matplotlib.figure.Figure
        Top row: curves against spatial frequency [1/µm] with the thresholds; bottom row:
        resolution [nm] against energy [eV]. One column per particle.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from ptyxr.resolution import prtf

    if isinstance(datasets, xr.Dataset):
        datasets = [datasets]
    datasets = [d if _curves(d) else prtf(d, **resolution_kwargs) for d in datasets]
    fig = Figure(figsize=(4.0 * len(datasets), 6.0), layout="constrained")
    axes = fig.subplots(2, len(datasets), squeeze=False)
    for col, ds in enumerate(datasets):
        name = str(ds.attrs.get(s.ATTR_PARTICLE, f"particle {col + 1}"))
        top, bottom = axes[0, col], axes[1, col]
        q = ds[s.SPATIAL_FREQUENCY].values * 1e-6  # 1/µm
        energy = ds[s.ENERGY].values
        for curve, res, thr, label in _curves(ds):
            style = "-" if label == "PRTF" else "--"
            for i in _energies_to_show(energy, max_energies):
                color = colormaps["viridis"](i / max(energy.size - 1, 1))
                top.plot(q, ds[curve].values[i], style, color=color, lw=1, label=f"{label} {energy[i]:.1f} eV")
            if thr is None:
                top.axhline(float(ds[curve].attrs[s.ATTR_THRESHOLD]), color="k", ls=":", lw=1, label="1/e")
            else:
                top.plot(q, ds[thr].values, "k-.", lw=1, label="½-bit")
            values = ds[res].values * NM
            bottom.plot(energy, values, "o" + style, ms=3, label=label)
            limited = ~np.isfinite(values)
            if limited.any():  # no crossing up to Nyquist: resolution ≤ 2 pixels
                nyquist = 1 / float(ds[s.SPATIAL_FREQUENCY].values[-1]) * NM
                bottom.plot(energy[limited], np.full(limited.sum(), nyquist), "v", mfc="none", label=f"{label} ≤ 2 px")
        top.set(xlabel="spatial frequency [1/µm]", ylabel="PRTF / FRC", title=name, ylim=(-0.1, 1.2))
        top.legend(fontsize=6)
        if show_paper:
            lo, hi = PAPER_RESOLUTION_RANGE
            bottom.axhspan(lo * NM, hi * NM, color="0.85", label="paper 80–120 nm")
        bottom.set(xlabel="energy [eV]", ylabel="full-period resolution [nm]")
        bottom.legend(fontsize=6)
    return fig


def save_resolution_figure(particles: Sequence[xr.Dataset], out_dir: str | Path, dpi: int = 150) -> Path | None:
    """Write ``figS5.png`` (:func:`figure_s5`) of particles that carry resolution curves; None if none do."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from ptyxr.io.netcdf import atomic_path

    with_curves = [p for p in particles if _curves(p)]
    if not with_curves:
        return None
    fig = figure_s5(with_curves)
    FigureCanvasAgg(fig)
    path = Path(out_dir) / "figS5.png"
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def resolution_summary(particles: Sequence[xr.Dataset]) -> str:
    """Text table: per particle, the resolution [nm] (min / median / max over energies) per method."""
    lines = ["spatial resolution (full period, nm; min / median / max over energies; PRTF 1/e, FRC 1/2-bit):"]
    bound_only = False
    for i, ds in enumerate(particles):
        name = str(ds.attrs.get(s.ATTR_PARTICLE, f"particle {i + 1}"))
        parts = []
        for curve, res, _, label in _curves(ds):
            values = ds[res].values * NM
            finite = values[np.isfinite(values)]
            nyquist = 1 / float(ds[s.SPATIAL_FREQUENCY].values[-1]) * NM
            limited = values.size - finite.size
            if finite.size:
                parts.append(
                    f"{label} {np.min(finite):.0f} / {np.median(finite):.0f} / {np.max(finite):.0f}"
                    + (f" ({limited} energies <= {nyquist:.0f} = 2 px)" if limited else "")
                )
            else:
                lowest = float(np.nanmin(ds[curve].values))
                parts.append(
                    f"{label} <= {nyquist:.0f} (never crosses: above threshold up to the 2-px Nyquist period, "
                    f"lowest {lowest:.2f}; a bound)"
                )
                bound_only = bound_only or (label.startswith("PRTF") and s.FRC not in ds)
        if parts:
            lines.append(f"  {name}: " + "; ".join(parts))
    lines.append(
        f"  paper (Fig. S5, PRTF 1/e): {PAPER_RESOLUTION_RANGE[0] * NM:.0f}-{PAPER_RESOLUTION_RANGE[1] * NM:.0f}"
    )
    if bound_only:  # Poisson data without background: the PRTF stays near 1 (docs/design-notes/resolution.md)
        lines.append("  the PRTF only bounds it here; measure it with the FRC of scan halves: ptyxr demo --frc")
    return "\n".join(lines)
