"""Small real ptychography data sets packaged with ptyxr (``ptyxr/data/ptycho``).

* :func:`siemens_star` — far-field ptychography of a Siemens star measured at the APS
  Velociprobe (tike test data, BSD-style licence ``LICENSE-siemens-star.txt``): 516
  frames of 128×128 at one energy, positions in pixels, an initial probe. The file has
  no geometry metadata; nominal values are chosen (see the function).
* :func:`cxi_example_path` — a real CXI file from PETRA III P25 (near-field
  ptychography at 12.66 keV, 200 frames of 100×100; CC BY 4.0, ``LICENSE-PETRAIII.txt``),
  read with :func:`ptyxr.open_scan`.
"""

from __future__ import annotations

import bz2
import functools
import io
from importlib import resources
from pathlib import Path

import numpy as np
import xarray as xr

from ptyxr import provenance
from ptyxr.io.arrays import PIXELS, build_raw
from ptyxr.io.cxi import ATTR_SOURCE
from ptyxr.physics import wavelength

SIEMENS_STAR_FILE = "siemens-star-small.npz.bz2"
CXI_EXAMPLE_FILE = "PETRAIII_P25_Near_Field_Ptycho.cxi"

#: Nominal geometry of :func:`siemens_star` (the file records none): photon energy [eV],
#: detector pixel pitch [m] (Eiger-type 75 µm) and the reconstruction pixel [m] that the
#: positions (in pixels) are taken to be in. The distance follows from dx = λz/(Np).
SIEMENS_STAR_ENERGY = 8800.0
SIEMENS_STAR_DETECTOR_PIXEL = 75e-6
SIEMENS_STAR_PIXEL = 10e-9


def data_path(name: str) -> Path:
    """Path of a packaged file in ``ptyxr/data/ptycho`` (FileNotFoundError if absent)."""
    resource = resources.files("ptyxr").joinpath("data", "ptycho", name)
    path = Path(str(resource))
    if not path.is_file():
        raise FileNotFoundError(f"packaged data file {name!r} not found at {path}; reinstall ptyxr.")
    return path


def cxi_example_path() -> Path:
    """Path of the packaged real CXI file (PETRA III P25 near-field ptychography, 12.66 keV)."""
    return data_path(CXI_EXAMPLE_FILE)


@functools.lru_cache(maxsize=1)
def _siemens_star_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with bz2.open(data_path(SIEMENS_STAR_FILE)) as fh:
        npz = np.load(io.BytesIO(fh.read()))
        arrays = npz["data"], npz["scan"], npz["probe"]
    for a in arrays:
        a.flags.writeable = False  # cached: callers get copies
    return arrays


def siemens_star_detector_distance() -> float:
    """Nominal detector distance [m] making λz/(Np) equal :data:`SIEMENS_STAR_PIXEL` at 128 px."""
    n = _siemens_star_arrays()[0].shape[-1]
    return SIEMENS_STAR_PIXEL * n * SIEMENS_STAR_DETECTOR_PIXEL / wavelength(SIEMENS_STAR_ENERGY)


def siemens_star() -> xr.Dataset:
    """Real far-field ptychography scan of a Siemens star as a raw scan series (DESIGN §1a).

    The tike test file stores frames with zero frequency at the array corners (numpy's
    unshifted FFT order), scan positions (y, x) in pixels of the *corner* of the probe
    array, and a probe of shape (1, 1, 1, 1, 128, 128). They are converted to ptyxr's
    conventions: frames ``fftshift``-ed so zero frequency sits at pixel (64, 64);
    positions moved to the probe centre (corner + N//2) and converted to metres with the
    nominal reconstruction pixel; the probe rescaled so Σ|P|² equals the mean total
    counts of a frame (orthonormal FFT: a weakly scattering object then fits the data's
    scale; the stored probe is ~10⁴ times too dim).

    The geometry is **nominal** (the file records none): energy 8.8 keV (typical of the
    Velociprobe), detector pixel 75 µm, reconstruction pixel dx = 10 nm, hence a detector
    distance z = dx·N·p/λ ≈ 0.681 m. Distances come out in these nominal units; the
    reconstruction itself does not depend on the choice.

    Returns
    -------
    xarray.Dataset
        One energy, 516 scan points, 128×128 frames, ``probe_guess``; attrs
        ``particle="siemens-star"`` and ``source``.
    """
    data, scan, probe = _siemens_star_arrays()
    n = data.shape[-1]
    frames = np.fft.fftshift(data[0], axes=(-2, -1))
    pos = scan[0].astype(np.float64) + n // 2  # corner of the probe array → its pixel N//2
    prb = probe.reshape(-1, n, n)[0].astype(np.complex64)
    prb *= np.sqrt(np.mean(np.nansum(frames, axis=(-2, -1))) / np.sum(np.abs(prb) ** 2))
    ds = build_raw(
        frames,
        pos[:, 0],
        pos[:, 1],
        SIEMENS_STAR_ENERGY,
        siemens_star_detector_distance(),
        SIEMENS_STAR_DETECTOR_PIXEL,
        probe_guess=prb,
        particle="siemens-star",
        positions_in=PIXELS,
        extra_attrs={
            ATTR_SOURCE: f"ptyxr/data/ptycho/{SIEMENS_STAR_FILE} (tike test data, APS Velociprobe); geometry nominal"
        },
    )
    return provenance.record(
        ds,
        "siemens_star",
        {
            "energy": SIEMENS_STAR_ENERGY,
            "detector_pixel_size": SIEMENS_STAR_DETECTOR_PIXEL,
            "pixel_size": SIEMENS_STAR_PIXEL,
        },
    )
