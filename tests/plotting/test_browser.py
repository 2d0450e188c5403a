"""The PixelExplorer as a real user meets it: a Voilà app driven by headless Chromium.

``notebooks/explorer-app.ipynb`` is served by Voilà on localhost; Debian's Chromium
(``/usr/bin/chromium``, driven by Python playwright — no browser is ever downloaded)
opens it, waits for the ipympl figure, clicks a map pixel at its computed screen
position and checks that the explorer switched to that pixel: the readout line in the
DOM must carry exactly that pixel's indices, map value and first absorption values
from the Dataset, and the spectrum panel of the canvas must be redrawn. Skipped only
when no ``/usr/bin/chromium`` exists (``.ci/run`` installs it with apt when it can).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from repo_paths import NOTEBOOKS, ROOT  # tests/ is on sys.path (pytest's "prepend" import mode)

from ptyxr import schema as s

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = NOTEBOOKS / "explorer-app.ipynb"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# bounded waits [s]: Voilà start-up, kernel run of the notebook (imports + loading), one click
SERVER_TIMEOUT = 60.0
RENDER_TIMEOUT_MS = 150_000
CLICK_TIMEOUT_MS = 30_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)"),
]


def _require(module: str) -> None:
    # with chromium present the test must run, not skip: a missing test dependency is an error
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{module} is not installed: pip install -e '.[test]' (chromium is present, so this test must run)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"voila exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    pytest.fail(f"voila did not listen on port {port} within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def chain_file(tmp_path_factory):
    """A small chain Dataset on disk: true spectra + noise → eq. (1) fit → chemical state.

    σ = 0.0002 on the tiny preset's ~0.01 edge jump (2 %) leaves about half the material pixels
    with a valid fit under fit_xanes' default located-edge validity (b2 known to 0.5 eV), 14 of
    them inside valid 3×3 blocks, so there are fitted pixels to click on (σ = 0.0005 left none
    once that validity became the default).
    """
    import ptyxr
    from ptyxr import simulate

    _, truth = simulate.demo_dataset("tiny", seed=0, progress=False)
    ds = simulate.spectra_from_truth(truth, noise=0.0002, seed=0)
    ds = ds.ptyxr.fit_xanes(progress=False).ptyxr.chemical_state()
    path = tmp_path_factory.mktemp("explorer") / "chain.nc"
    ds.ptyxr.to_netcdf(path)
    # expected values are read back from the very file the app shows
    return path, ptyxr.open_dataset(path, load=True)


@pytest.fixture(scope="module")
def voila_url(chain_file, tmp_path_factory):
    _require("voila")
    port = _free_port()
    log = tmp_path_factory.mktemp("voila") / "voila.log"
    env = {**os.environ, "PTYXR_EXPLORER_DATA": str(chain_file[0]), "JUPYTER_PLATFORM_DIRS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "voila",
        "--no-browser",
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
        str(NOTEBOOK.relative_to(ROOT)),
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_listening(port, proc, log, SERVER_TIMEOUT)
        yield f"http://127.0.0.1:{port}/", log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _target_pixel(ds, default: tuple[int, int]) -> tuple[int, int]:
    """A valid-fit pixel whose 3×3 neighbourhood is valid too, as far as possible from ``default``.

    A valid neighbourhood means a click a screen pixel off still lands on fitted data, and
    distance from the default selection makes the change of the spectrum panel obvious.
    """
    valid = ds[s.FIT_VALID].transpose(s.Y, s.X).values.astype(bool)
    inner = valid.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            inner &= np.roll(np.roll(valid, dy, 0), dx, 1)
    iy, ix = np.nonzero(inner)
    far = np.argmax((iy - default[0]) ** 2 + (ix - default[1]) ** 2)
    return int(iy[far]), int(ix[far])


# JS: true once the lower ipympl canvas holds a drawn frame (some non-white pixels)
_HAS_INK = """() => {
  const c = document.querySelector('.jupyter-matplotlib-canvas-div canvas');
  if (!c || !c.width || !c.height) return false;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  for (let i = 0; i < d.length; i += 4) { if (d[i + 3] > 0 && d[i] < 128) return true; }
  return false;
}"""
# a new data series, fit and components redraw a few % of the spectrum panel's pixels
MIN_CHANGED = 0.005


def _changed_fraction(before: Path, after: Path, box) -> float:
    """Fraction of the pixels of figure region ``box`` (figure fractions) that changed visibly."""
    from PIL import Image

    a = np.asarray(Image.open(before).convert("L"), dtype=float)
    b = np.asarray(Image.open(after).convert("L"), dtype=float)
    assert a.shape == b.shape
    h, w = a.shape
    rows = slice(int((1 - box.y1) * h), int((1 - box.y0) * h))
    cols = slice(int(box.x0 * w), int(box.x1 * w))
    return float(np.mean(np.abs(a[rows, cols] - b[rows, cols]) > 30))  # > 30 grey levels: not antialias noise


def _readout(page) -> dict[str, str]:
    return page.eval_on_selector(
        ".ptyxr-pixel-readout",
        "el => Object.assign({text: el.textContent}, el.dataset)",
    )


def test_click_on_map_shows_that_pixel(chain_file, voila_url, tmp_path):
    _require("playwright")
    import matplotlib
    from playwright import sync_api

    matplotlib.use("Agg")
    from ptyxr.widgets import PixelExplorer

    _, ds = chain_file
    url, log = voila_url
    # the same figure, laid out off-screen: where the target pixel lies as a fraction of the figure
    local = PixelExplorer(ds, interactive=False)
    default = local.settings()["pixel"]
    iy, ix = _target_pixel(ds, default)
    local.figure.canvas.draw()
    x_um, y_um = ds[s.X].values[ix] / 1e-6, ds[s.Y].values[iy] / 1e-6
    px, py = local.ax_map.transData.transform((x_um, y_um))
    width, height = local.figure.bbox.width, local.figure.bbox.height
    frac_x, frac_y = px / width, 1.0 - py / height  # screen y grows downwards
    spectrum_box = local.ax_absorption.get_position()  # figure fractions of the spectrum panel

    screenshot = tmp_path / "pixel-explorer.png"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            page.set_default_timeout(RENDER_TIMEOUT_MS)
            page.goto(url, wait_until="domcontentloaded", timeout=60_000)
            try:
                page.wait_for_selector(".ptyxr-pixel-readout", timeout=RENDER_TIMEOUT_MS)
                # ipympl draws into two stacked canvases; the top one receives the mouse events
                canvas = page.locator(".jupyter-matplotlib-canvas-div canvas").last
                canvas.wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
                # the first frame has arrived once the canvas has a non-zero size and the readout names the default
                page.wait_for_function(
                    "() => document.querySelector('.ptyxr-pixel-readout').dataset.y !== undefined",
                    timeout=CLICK_TIMEOUT_MS,
                )
            except sync_api.Error:
                page.screenshot(path=str(screenshot), full_page=True)
                pytest.fail(f"explorer did not render (screenshot {screenshot}); voila log:\n{log.read_text()[-3000:]}")
            before = _readout(page)
            assert (int(before["y"]), int(before["x"])) == tuple(default)
            # the first frame (a PNG from the kernel) has landed once the lower canvas has ink on it
            page.wait_for_function(_HAS_INK, timeout=CLICK_TIMEOUT_MS)
            box = canvas.bounding_box()
            assert box and box["width"] > 200 and box["height"] > 100, box
            # the figure keeps its aspect in the page (no stretching), so fractions map to screen directly
            assert box["width"] / box["height"] == pytest.approx(width / height, rel=0.02)
            image_before = tmp_path / "before.png"
            canvas.screenshot(path=str(image_before))

            canvas.click(position={"x": frac_x * box["width"], "y": frac_y * box["height"]})
            page.wait_for_function(
                "([y, x]) => { const d = document.querySelector('.ptyxr-pixel-readout').dataset;"
                " return d.y === String(y) && d.x === String(x); }",
                arg=[iy, ix],
                timeout=CLICK_TIMEOUT_MS,
            )
            after = _readout(page)
            # the redrawn figure arrives after the readout (a separate message): poll, bounded
            deadline = time.monotonic() + CLICK_TIMEOUT_MS / 1000
            while True:
                canvas.screenshot(path=str(tmp_path / "after.png"))
                changed = _changed_fraction(image_before, tmp_path / "after.png", spectrum_box)
                if changed > MIN_CHANGED or time.monotonic() > deadline:
                    break
                page.wait_for_timeout(500)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()

    if os.environ.get("PTYXR_ARTIFACTS"):
        artefacts = ROOT / "test-artifacts"
        artefacts.mkdir(exist_ok=True)
        shutil.copyfile(screenshot, artefacts / "pixel-explorer.png")

    # the page shows the clicked pixel's own values: same file, so equal to the last bit (repr round trip)
    pixel = ds.isel({s.Y: iy, s.X: ix})
    assert after["map"] == s.EDGE_ENERGY
    assert float(after["mapValue"]) == float(pixel[s.EDGE_ENERGY])
    shown = np.array([float(v) for v in after["absorption"].split(",")])
    np.testing.assert_array_equal(shown, pixel[s.ABSORPTION].values.astype(float)[:3])
    assert f"pixel (y={iy}, x={ix})" in after["text"]
    assert f"{float(pixel[s.EDGE_ENERGY]):.6g}" in after["text"]
    # and they differ from the default pixel's (so the check above could fail)
    assert float(before["mapValue"]) != float(after["mapValue"])

    # the spectrum panel of the canvas was redrawn (an unchanged panel gives exactly 0)
    assert changed > MIN_CHANGED, changed
    assert screenshot.stat().st_size > 10_000
