"""The demo of ``09_interactive_demo`` in a real browser: JupyterLab on localhost, headless Chromium.

Starts JupyterLab (token off, a free port, a temporary root folder), opens a notebook that runs
notebook 09's own widget cell (tagged ``demo-widget``) after a setup cell, runs it from JupyterLab's
Run menu, waits for the widgets, picks another photo and sets the chroma slider, and checks that the
picture in the page changed each time. Playwright drives the system Chromium (``/usr/bin/chromium``,
the Debian package ``.ci/run`` installs); nothing is downloaded. Skipped without either.

Model A is the shipped model when ``checkpoints/`` has it (the screenshot then goes to
``figures/09_demo_screenshot.png`` for the README), else a small random U-Net (screenshot in
``executed/browser/``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from PIL import Image

import lib.checkpoint
from lib.demo import EXECUTED, NOTEBOOKS
from lib.models import UNet, UNetConfig
from lib.widgets import SOURCES

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)")]
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")

TIMEOUT_MS = 90_000  # kernel start and `import torch` on a busy 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _demo_notebook(folder: Path, checkpoint: str | None) -> Path:
    """A notebook of two cells: the parameters notebook 09's widget cell needs, then that cell."""
    nb09 = nbformat.read(NOTEBOOKS / "09_interactive_demo.ipynb", as_version=4)
    widget_cell = [c for c in nb09.cells if "demo-widget" in c.metadata.get("tags", [])]
    assert len(widget_cell) == 1, "notebook 09 has one cell tagged demo-widget"
    setup = (f"checkpoint = {checkpoint!r}\ncompare_with = None\ndata_root = None\ndevice = 'cpu'\nseed = 0\n"
             f"save_dir = {str(folder / 'saved')!r}\nfrom lib.widgets import ColorizeDemo")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(setup),
                                         nbformat.v4.new_code_cell(widget_cell[0].source)],
                                  metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    path = folder / "demo.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def lab(tmp_path):
    """JupyterLab serving ``tmp_path`` on a free localhost port, token off; yields its URL."""
    port = _free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=", "--ServerApp.password=",
           f"--ServerApp.root_dir={tmp_path}", "--ServerApp.port_retries=0", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status", timeout=2) as r:
                    json.load(r)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start: {(tmp_path / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _pixels(locator) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB")).astype(np.int16)


def _wait_changed(page, img, before_src: str) -> None:
    page.wait_for_function("([el, src]) => el.src !== src && el.complete && el.naturalWidth > 0",
                           arg=[img.element_handle(), before_src], timeout=TIMEOUT_MS)


def test_demo_runs_in_jupyterlab_in_chromium(lab, tmp_path):
    t0 = time.monotonic()
    shipped = lib.checkpoint.SHIPPED.is_file()
    if shipped:
        checkpoint = None
    else:
        torch.manual_seed(0)
        model = UNet(UNetConfig(ndims=8, depth=2, num_blocks=0))
        for p in model.head.parameters():
            torch.nn.init.normal_(p, std=0.5)  # visible colours from a random model
        checkpoint = str(tmp_path / "random.pt")
        lib.checkpoint.save_checkpoint({"format": lib.checkpoint.CHECKPOINT_FORMAT, "kind": "generator",
                                        "model": model.state_dict(), "model_config": model.config.to_dict(),
                                        "train_config": {"image_size": 64}}, checkpoint)
    _demo_notebook(tmp_path, checkpoint)

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{lab}/lab/tree/demo.ipynb")
            page.wait_for_selector(".jp-Notebook .jp-Cell")
            page.locator("#jp-main-statusbar", has_text="Idle").wait_for()  # the kernel is up
            page.locator(".jp-Notebook .jp-Cell .jp-InputArea-editor").first.click()
            page.keyboard.press("Shift+Enter")  # run the setup cell, move to the widget cell
            page.keyboard.press("Shift+Enter")  # run notebook 09's widget cell

            img = page.locator(".jp-OutputArea .widget-image").first
            img.wait_for(state="visible")
            page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=img.element_handle())
            message = page.locator(".jp-OutputArea .widget-html-content").last
            assert "model A:" not in message.inner_text(), f"the demo reports a problem: {message.inner_text()}"
            first, src = _pixels(img), img.get_attribute("src")

            page.locator(".jp-OutputArea .widget-dropdown select").first.select_option(label=next(iter(SOURCES)))
            _wait_changed(page, img, src)
            second, src = _pixels(img), img.get_attribute("src")
            assert first.shape != second.shape or np.abs(first - second).mean() > 1, "another photo, another picture"

            readout = page.locator(".jp-OutputArea .widget-slider .widget-readout").first

            def set_chroma(text: str) -> None:  # type into the slider's readout, as a reader can
                before = img.get_attribute("src")
                readout.click()
                page.keyboard.press("Control+A")
                page.keyboard.type(text)
                page.keyboard.press("Enter")
                _wait_changed(page, img, before)

            set_chroma("0")
            third = _pixels(img)
            assert third.shape == second.shape and np.abs(third - second).mean() > 0.5, "chroma 0 redraws the colours"

            out = EXECUTED / "browser"
            out.mkdir(parents=True, exist_ok=True)
            set_chroma("1")  # back to the model's own colours for the screenshot
            shot = out / "09_demo_screenshot.png"
            page.locator(".jp-OutputArea-output").last.screenshot(path=str(shot))
            if shipped:
                shutil.copyfile(shot, REPO / "figures" / "09_demo_screenshot.png")
        except Exception:
            (EXECUTED / "browser").mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(EXECUTED / "browser" / "failure.png"))
            print((tmp_path / "lab.log").read_text()[-3000:])
            raise
        finally:
            browser.close()
    assert Image.open(shot).size[0] > 600
    print(f"browser test: {time.monotonic() - t0:.0f} s; screenshot {shot}")
