"""Co-registration of the energies' probes (numpy only; issue 11 point 3, the aberrated KB probe).

ePIE fits P·O: moving probe and object by the same vector d changes no exit wave, so each
energy's reconstruction may sit at its own d. ``align`` then reads d(E) as drift. The engine
used to remove d by moving each probe's centre of mass onto pixel N//2 after every
probe-updating iteration (``recentre_probe="centre"``). That pins the probe at a position
the data need not share: an aberrated focus (coma) has its centre of mass ~2.5 px off the
optical axis, and within an N×N window the shift symmetry is not exact (the probe's tails
reach the window's edge), so the data pull the probe back to its true place at every
iteration and the pin pushes it off again. On the foreign geometry with a KB focus of
0.25 waves rms astigmatism + coma this tug of war made μt NRMSE 0.34 and a Fourier error
creeping to 1.06× its minimum (docs/design-notes/s12-kbprobe.md).

What keeps the energies co-registered is only the *difference* between their probe
positions, so before each KKR projection :func:`coregister` moves each energy's probe core
onto the mean core centre over the energies (physical units: the native pixels dx(E)
differ), not onto N//2: where the probes sit is left to the data while they iterate. Only
the output puts every core on N//2 (``centre=True``: once, at the end, so it fights
nothing), which keeps the old convention that a recorded position is the probe's centre.
Both run where every energy has reached the same iteration, so energy groups
(``memory_limit``) give the in-memory result exactly.
"""

from __future__ import annotations

import numpy as np

from ptyxr.checks import RECENTRE_FROM_BOOL, RECENTRE_MODES
from ptyxr.reconstruct.epie import centre_of_mass, fourier_shift

RELATIVE, CENTRE, OFF = RECENTRE_MODES

#: Probe-centre differences below this [native pixels] are left alone.
TOLERANCE = 0.01


def probe_centres(probe: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Centre of the focus' core, weight (Σ_modes |P|²)², minus N//2 per energy, in common pixels dx_c.

    Weighting by the intensity squared follows the bright core, not the tails: an aberrated
    focus' tails depend on the pupil's sampled edge, which moves with energy. The simulator's
    0.25-wave KB focus (truth probes): the plain centre of mass moves by 0.28 px over
    5420–5540 eV, the intensity²-weighted one by 0.01 px.

    Parameters
    ----------
    probe : ndarray, shape (n_energy, N, N) or (n_energy, K, N, N), complex
        Probes (or probe modes) at each energy's pixel.
    scale : ndarray, shape (n_energy,)
        Each energy's pixel over the common pixel, dx(E)/dx_c (ones on a common grid).

    Returns
    -------
    ndarray, shape (n_energy, 2)
        (y, x) [common pixels]; NaN where a probe is zero.
    """
    n = probe.shape[-1]
    intensity = np.abs(probe) ** 2 if probe.ndim == 3 else np.sum(np.abs(probe) ** 2, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        com = centre_of_mass(intensity)  # weights intensity² (centre_of_mass squares its input)
    return (com - n // 2) * np.asarray(scale, dtype=np.float64)[:, None]


def coregister(
    obj: np.ndarray,
    probe: np.ndarray,
    field: np.ndarray,
    scale: np.ndarray,
    tolerance: float = TOLERANCE,
    centre: bool = False,
) -> np.ndarray:
    """Move every energy's probe core onto the mean core centre over the energies, in place.

    Probe (every mode) and object move by the same vector, so every modelled intensity is
    unchanged. The object is shifted as 1 + shift(O − 1) (no wrap of the unit transmission
    outside the scan) and reset to exactly 1+0j outside ``field``.

    Parameters
    ----------
    obj : ndarray, shape (n_energy, ny, nx), complex
        Objects on each energy's grid.
    probe : ndarray, shape (n_energy, N, N) or (n_energy, K, N, N), complex
        Probes (modes) at each energy's pixel.
    field : ndarray, shape (n_energy, ny, nx), bool
        Union of each energy's probe patches.
    scale : ndarray, shape (n_energy,)
        dx(E)/dx_c: the mean centre is taken in physical units.
    tolerance : float
        Shifts of at most this many native pixels (both axes) are skipped.
    centre : bool
        Put every core centre on pixel N//2 instead of the mean (the output's convention: the
        recorded position is the probe's centre). Once, at the end, this fights nothing.

    Returns
    -------
    ndarray, shape (n_energy, 2)
        The shifts applied [native pixels; 0 where skipped].
    """
    scale = np.asarray(scale, dtype=np.float64)
    centres = probe_centres(probe, scale)
    applied = np.zeros_like(centres)
    known = np.all(np.isfinite(centres), axis=1)
    if known.sum() < (1 if centre else 2):  # one energy: nothing to co-register with
        return applied
    target = np.zeros(2) if centre else centres[known].mean(axis=0)
    for e in np.flatnonzero(known):
        shift = _shift_onto(probe[e], target, scale[e], tolerance)
        if np.max(np.abs(shift)) <= tolerance:
            continue
        if probe.ndim == 3:
            probe[e] = fourier_shift(probe[e], (shift[0], shift[1]))
        else:
            for m in range(probe.shape[1]):
                probe[e, m] = fourier_shift(probe[e, m], (shift[0], shift[1]))
        obj[e] = fourier_shift(obj[e] - 1, (shift[0], shift[1])) + 1
        obj[e][~field[e]] = 1.0
        applied[e] = shift
    return applied


def _shift_onto(probe: np.ndarray, target: np.ndarray, scale: float, tolerance: float, passes: int = 4) -> np.ndarray:
    """The shift [native px] that puts ``probe``'s core centre on ``target`` [common px].

    A probe's tails wrap in its window, so its centre does not move exactly with a shift:
    a few passes on a copy of the probe (cheap) before the object is moved once.
    """
    modes = probe if probe.ndim == 3 else probe[None]  # (K, N, N)
    one = modes[None]
    total = np.zeros(2)
    for _ in range(passes):
        step = (target - probe_centres(one, np.array([scale]))[0]) / scale
        if not np.all(np.isfinite(step)) or np.max(np.abs(step)) <= tolerance / 4:
            break
        total += step
        one = np.stack([fourier_shift(m, (total[0], total[1])) for m in modes])[None]
    return total


def mode(recentre_probe: bool | str) -> str:
    """``reconstruct(recentre_probe=...)`` as one of "relative", "centre", "off" (True = "centre", False = "off")."""
    if isinstance(recentre_probe, bool):
        return RECENTRE_FROM_BOOL[recentre_probe]
    if recentre_probe in RECENTRE_MODES:
        return str(recentre_probe)
    raise ValueError(f"recentre_probe must be 'relative', 'centre', 'off', True or False, got {recentre_probe!r}")
