"""Co-registration of the energies' probes (``reconstruct(recentre_probe="relative")``, the default).

See :mod:`ptyxr.reconstruct.centring` and docs/design-notes/s12-kbprobe.md: an aberrated
KB focus has its centre of mass ~2.5 px off axis; pinning every probe's centre of mass to
N//2 at every iteration (the old default, ``"centre"``) fought the data.
"""

from __future__ import annotations

import numpy as np
import pytest

from ptyxr import schema as S
from ptyxr.optics import far_field
from ptyxr.physics import wavelength
from ptyxr.reconstruct import centring, epie
from ptyxr.simulate import probes

ENERGIES = np.array([5420.0, 5475.0, 5540.0])
N = 32
DX_C = 20e-9  # common pixel = the highest energy's native pixel


def _scale() -> np.ndarray:
    return wavelength(ENERGIES) / wavelength(ENERGIES[-1])  # dx(E)/dx_c


def _aberrated(n: int = N, fwhm: float = 120e-9) -> np.ndarray:
    """The simulator's 0.25-wave KB focus (astigmatism + coma) at each energy's native pixel."""
    pixels = DX_C * _scale()
    made = [probes.make_probe("kb_aberrated", e, n, dx, fwhm, 0.0, 1e6) for e, dx in zip(ENERGIES, pixels, strict=True)]
    return np.stack(made)


def test_core_centre_of_the_foreign_aberrated_focus_does_not_move_with_energy():
    """Why the weight is intensity²: on the foreign geometry the plain centre of mass moves.

    The foreign geometry's truth probes (64² frames, 20 nm pixels, 200 nm focus) keep their
    intensity²-weighted centre within 0.01 px over 5420–5540 eV while the plain centre of
    mass moves by 0.28 px (the tails follow the pupil's sampled edge), and that motion is
    what ``align`` read as drift. On other geometries the two can be closer (design note).
    """
    p = _aberrated(64, 200e-9)
    core = centring.probe_centres(p, _scale())
    plain = (epie.centre_of_mass(p) - 32) * _scale()[:, None]
    assert np.ptp(plain[:, 0]) > 0.2
    assert np.ptp(core[:, 0]) < 0.05
    assert np.abs(plain[:, 0]).min() > 2.0  # the focus' centre of mass sits > 2 px off axis


def test_coregister_keeps_intensities_aligns_cores_and_leaves_the_common_position():
    rng = np.random.default_rng(4)
    scale = _scale()
    probe = _aberrated(64, 200e-9)  # the foreign geometry's focus
    # each energy's (probe, object) pair moved by its own ePIE gauge shift [native px]
    gauge = np.array([[0.8, -0.4], [-0.5, 0.3], [0.1, 0.6]])
    for e in range(3):
        probe[e] = epie.fourier_shift(probe[e], tuple(gauge[e]))
    obj = np.ones((3, 128, 128), dtype=np.complex64)
    blob = np.exp(-((np.arange(128) - 62.0) ** 2) / 80.0)
    obj *= np.exp((-0.2 + 0.5j) * np.outer(blob, blob) + 0.02j * rng.standard_normal((128, 128)))[None]
    field = np.zeros(obj.shape, dtype=bool)
    field[:, 8:120, 8:120] = True
    obj[~field] = 1.0
    patch = (slice(32, 96), slice(32, 96))
    before = np.abs(far_field(probe[:, None] * obj[:, None][:, :, patch[0], patch[1]])) ** 2
    centres = centring.probe_centres(probe, scale)
    shifts = centring.coregister(obj, probe, field, scale)

    after_centres = centring.probe_centres(probe, scale)
    np.testing.assert_allclose(after_centres, np.broadcast_to(centres.mean(0), (3, 2)), atol=0.01)
    phys = gauge * scale[:, None]  # each energy's gauge shift undone relative to the mean one
    np.testing.assert_allclose(shifts * scale[:, None], phys.mean(0) - phys, atol=0.05)
    after = np.abs(far_field(probe[:, None] * obj[:, None][:, :, patch[0], patch[1]])) ** 2
    # same exit waves up to a shift → same intensities (up to the wrap at the patch edge)
    assert np.abs(after - before).sum() / before.sum() < 2e-3
    np.testing.assert_array_equal(obj[~field], 1.0)
    # one energy: nothing to co-register with
    one = probe[:1].copy()
    np.testing.assert_array_equal(centring.coregister(obj[:1], one, field[:1], scale[:1]), 0.0)
    np.testing.assert_array_equal(one, probe[:1])


def test_coregister_moves_probe_modes_together():
    scale = _scale()
    base = _aberrated()
    modes = np.stack([base, 0.3 * np.roll(base, 2, axis=-1)], axis=1)  # (n_energy, K, N, N)
    modes[1] = np.stack([epie.fourier_shift(m, (0.7, 0.0)) for m in modes[1]])
    obj = np.ones((3, 64, 64), dtype=np.complex64)
    field = np.ones(obj.shape, dtype=bool)
    shifts = centring.coregister(obj, modes, field, scale)
    assert abs(shifts[1, 0]) > 0.3  # the displaced energy moved back
    c = centring.probe_centres(modes, scale)
    np.testing.assert_allclose(c, np.broadcast_to(c.mean(0), c.shape), atol=0.02)


def test_recentre_probe_values():
    assert centring.mode(True) == "centre" and centring.mode(False) == "off"
    assert centring.mode("relative") == "relative"
    with pytest.raises(ValueError, match="recentre_probe"):
        centring.mode("middle")


def test_reconstruct_refuses_an_unknown_recentre_probe(tiny):
    from ptyxr.reconstruct import reconstruct

    with pytest.raises(S.SchemaError, match="recentre_probe"):
        reconstruct(tiny, iterations=1, progress=False, recentre_probe="middle")
    with pytest.raises(S.SchemaError, match="recentre_probe"):
        reconstruct(tiny, iterations=1, progress=False, recentre_probe=1)


def test_coregister_centre_puts_every_core_on_the_middle_pixel():
    """The output's convention (``centre=True``): every core centre on N//2, one energy too."""
    scale = _scale()
    probe = _aberrated(64, 200e-9)
    obj = np.ones((3, 128, 128), dtype=np.complex64)
    field = np.ones(obj.shape, dtype=bool)
    assert np.all(np.abs(centring.probe_centres(probe, scale)[:, 0]) > 0.5)  # the core sits off axis
    centring.coregister(obj, probe, field, scale, centre=True)
    np.testing.assert_allclose(centring.probe_centres(probe, scale), 0.0, atol=0.01)
    one = _aberrated(64, 200e-9)[:1]
    centring.coregister(obj[:1], one, field[:1], scale[:1], centre=True)
    np.testing.assert_allclose(centring.probe_centres(one, scale[:1]), 0.0, atol=0.01)
