"""The packaged real data (ptyxr.io.real_data): the Siemens-star scan and the licences."""

from __future__ import annotations

import numpy as np
import pytest

from ptyxr import schema as s
from ptyxr.io import cxi_example_path, real_data, siemens_star
from ptyxr.optics import far_field, real_space_pixel_size


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_siemens_star():
    raw = siemens_star()
    s.validate_raw(raw)
    assert raw.sizes == {s.ENERGY: 1, s.SCAN: 516, s.DET_Y: 128, s.DET_X: 128, s.PROBE_Y: 128, s.PROBE_X: 128}
    data, scan, _ = real_data._siemens_star_arrays()
    dx = real_space_pixel_size(
        raw[s.ENERGY].values[0], raw.attrs[s.ATTR_DETECTOR_DISTANCE], raw.attrs[s.ATTR_DETECTOR_PIXEL_SIZE], 128
    )
    assert dx == pytest.approx(real_data.SIEMENS_STAR_PIXEL, rel=1e-12)
    # positions: file's (y, x) pixel corner + N//2, times the nominal 10 nm pixel
    np.testing.assert_allclose(raw[s.POSITION_Y][0], (scan[0, :, 0] + 64) * 10e-9, rtol=1e-6)
    np.testing.assert_allclose(raw[s.POSITION_X][0], (scan[0, :, 1] + 64) * 10e-9, rtol=1e-6)
    # layout check independent of the loader's choices: the far field of the supplied probe
    # (ptyxr's convention) must resemble the mean pattern. The shifted data do (r ≈ 0.83),
    # the file's unshifted order does not (r ≈ −0.13).
    probe_far = np.abs(far_field(raw[s.PROBE_GUESS].values[0])) ** 2
    assert _corr(raw[s.INTENSITY][0].mean(s.SCAN).values, probe_far) > 0.7
    assert _corr(data[0].mean(0), probe_far) < 0.2
    # probe scaled to the data: Σ|P|² = mean frame total (orthonormal FFT keeps the norm)
    total = float(np.sum(np.abs(raw[s.PROBE_GUESS].values) ** 2))
    assert total == pytest.approx(float(raw[s.INTENSITY].sum((s.DET_Y, s.DET_X)).mean()), rel=1e-4)


def test_packaged_files_and_licences_present():
    folder = cxi_example_path().parent
    for name in ("LICENSE-PETRAIII.txt", "LICENSE-siemens-star.txt", real_data.SIEMENS_STAR_FILE):
        assert (folder / name).is_file(), name
    with pytest.raises(FileNotFoundError):
        real_data.data_path("nope.bin")
