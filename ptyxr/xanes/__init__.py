"""XANES fitting of paper eq. (1): model, vectorised batch solver, the ``fit_xanes`` stage.

- :mod:`ptyxr.xanes.lineshapes`: eq. (1)'s line shapes and the model built from them
  (:func:`eq1`); :mod:`ptyxr.xanes.starts`: vectorised starting values and bounds.
- :mod:`ptyxr.xanes.model`: eq. (1) (re-exported) and as an lmfit model
  (:func:`xanes_model`, :func:`fit_spectrum`, :func:`paper_params`), starting values and
  bounds (:func:`guess`).
- :mod:`ptyxr.xanes.solver`: :func:`fit_batch`, variable projection + batched
  Levenberg–Marquardt over all pixels at once (numpy only).
- :mod:`ptyxr.xanes.fit`: the stage :func:`fit_xanes` (DESIGN §1d).
- :func:`reference_spectra`: measured V oxide spectra (VO, V2O3, VO2, V2O5) packaged with
  ptyxr, on the paper's energy grid, ready for ``fit_xanes``.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import xarray as xr

from ptyxr import schema
from ptyxr.schema import ABSORPTION, ENERGY, MATERIAL, PARTICLE, XDI_MU, X, Y
from ptyxr.xanes.fit import fit_xanes
from ptyxr.xanes.model import eq1, fit_spectrum, guess, paper_params, xanes_model
from ptyxr.xanes.solver import BatchResult, fit_batch

#: Packaged reference oxides, in order of V valence (+2, +3, +4, +5).
REFERENCE_OXIDES: tuple[str, ...] = ("VO", "V2O3", "VO2", "V2O5")


def reference_spectra(energy: np.ndarray | None = None) -> xr.Dataset:
    """Measured V K-edge spectra of VO, V2O3, VO2 and V2O5 as a fittable §1c-like Dataset.

    Transmission XAFS from the XAS Data Library (APS 13-BM-D, 2005; public domain, see
    ``ptyxr/data/xanes/LICENSE.txt``), μt = ln(i0/itrans), linearly interpolated onto
    ``energy`` (default: :func:`ptyxr.physics.paper_energy_grid`, the paper's
    40 energies). No normalisation: μt as measured (offsets and edge steps differ).

    Returns
    -------
    xarray.Dataset
        ``absorption`` (particle, energy, y, x) with one 1×1-pixel "particle" per oxide
        (coord ``particle`` = oxide name, valence order), y = x = [0.0] m, and
        ``material`` True — so ``reference_spectra().ptyxr.fit_xanes()`` works as is.
    """
    from ptyxr.io.xdi import read_xdi

    if energy is None:
        from ptyxr.physics import paper_energy_grid

        energy = paper_energy_grid()
    energy = np.asarray(energy, dtype=float)
    folder = resources.files("ptyxr") / "data" / "xanes"
    spectra, sources = [], []
    for name in REFERENCE_OXIDES:
        with resources.as_file(folder / f"{name}.xdi") as path:
            raw = read_xdi(path)
        spectra.append(np.interp(energy, raw[ENERGY].values, raw[XDI_MU].values))
        sources.append(raw.attrs["source"])
    data = np.asarray(spectra)[:, :, None, None]
    ds = xr.Dataset(
        {
            ABSORPTION: schema.variable(ABSORPTION, data, dims=(PARTICLE, ENERGY, Y, X)),
            MATERIAL: schema.variable(MATERIAL, np.ones((len(spectra), 1, 1), bool), dims=(PARTICLE, Y, X)),
        },
        coords={
            PARTICLE: list(REFERENCE_OXIDES),
            ENERGY: schema.energy_coord(energy),
            Y: schema.length_coord(Y, [0.0]),
            X: schema.length_coord(X, [0.0]),
        },
    )
    ds.attrs["source"] = "XAS Data Library, APS 13-BM-D (2005), public domain: " + ", ".join(sources)
    return ds


__all__ = [
    "REFERENCE_OXIDES",
    "BatchResult",
    "eq1",
    "fit_batch",
    "fit_spectrum",
    "fit_xanes",
    "guess",
    "paper_params",
    "reference_spectra",
    "xanes_model",
]
