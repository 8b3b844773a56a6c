"""Notebook 04 in a real JupyterLab, driven by headless Chromium (Playwright): run all cells, pick three labels,
Generate, and see the image appear. Screenshots go to the test's tmp folder (and to $LAB6_SCREENSHOTS).

Needs the system Chromium (``tools/install_browser.sh``; Playwright's own browser downloads are not used).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from lab6.evaluator import build_resnet18, save_evaluator

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "04_accuracy_report.ipynb"
CHROMIUM = Path(os.environ.get("LAB6_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHOICE = ["red sphere", "cyan cylinder", "cyan cube"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url: str, process: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer at {url} within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def jupyter_lab(tmp_path, tiny_root, tiny_run):
    """JupyterLab on a free localhost port, no token, serving a temp folder that holds a copy of notebook 04."""
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: run tools/install_browser.sh (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    torch.manual_seed(0)
    save_evaluator(build_resnet18(), tmp_path / "checkpoint.pth")
    # JupyterLab's own settings, isolated: render every cell (no virtual scrolling), no news, no update checks.
    settings = tmp_path / "lab-settings"
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}))
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True}))
    env = {**os.environ, "LAB6_QUICK": "1", "LAB6_DATA": str(tiny_root), "LAB6_MODEL": str(tiny_run / "model"),
           "LAB6_EVALUATOR": str(tmp_path / "checkpoint.pth"), "LAB6_FIGURES": str(tmp_path / "figures"),
           "LAB6_DEVICE": "cpu", "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config")}
    port = free_port()
    log = tmp_path / "jupyterlab.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
               "--ServerApp.allow_root=True",
               f"--ServerApp.root_dir={root}", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    with log.open("w") as sink:
        process = subprocess.Popen(command, env=env, cwd=root, stdout=sink, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(url, process, log)
        yield url
    finally:
        process.send_signal(signal.SIGINT)  # the server shuts its kernels down on the way out
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # our own process group: the server and its kernels
            process.wait()


def wait_for_kernel(page) -> None:
    """Until the status bar reports the notebook's kernel connected and idle (the toolbar says idle earlier)."""
    page.locator(".jp-StatusBar-Widget").get_by_text(re.compile(r"\(ipykernel\) \| Idle")).first.wait_for(
        timeout=180_000)


def run_all_cells(page) -> None:
    """Run > Run All Cells, through the menu bar as a student would."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-item", has_text=re.compile(r"^\s*Run All Cells\s*$")).click()
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    try:  # a kernel still connecting makes JupyterLab ask for one: take the notebook's own (python3)
        dialog.wait_for(timeout=3_000)
    except PlaywrightTimeout:
        return
    dialog.locator(".jp-mod-accept").click()


def save_screenshot(page, locator, tmp_path: Path, name: str) -> list[Path]:
    paths = [tmp_path / name]
    if os.environ.get("LAB6_SCREENSHOTS"):
        folder = Path(os.environ["LAB6_SCREENSHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        paths.append(folder / name)
    for path in paths:
        (locator or page).screenshot(path=str(path))
    return paths


@pytest.mark.slow
def test_picker_generates_an_image_in_jupyterlab(jupyter_lab, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        try:
            page.set_default_timeout(60_000)
            page.goto(f"{jupyter_lab}/lab/tree/{NOTEBOOK.name}", wait_until="domcontentloaded", timeout=120_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            wait_for_kernel(page)
            run_all_cells(page)

            picker = page.locator(".lab6-picker")
            expect(picker).to_be_visible(timeout=240_000)  # every cell before it has run
            red_sphere = page.locator(".lab6-label-red-sphere")
            assert red_sphere.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(173, 35, 35)"  # its swatch
            for label in CHOICE:
                page.locator(f".lab6-label-{label.replace(' ', '-')}").click()
            expect(page.locator(".lab6-chosen")).to_contain_text("chosen (3/3)")
            refine_label = page.locator(".lab6-refine label").last  # the checkbox's text, shown whole
            assert refine_label.evaluate("e => e.scrollWidth <= e.clientWidth"), "the refine label is cut off"
            page.locator(".lab6-label-gray-cube").click()  # a fourth is refused, with a message
            expect(page.locator(".lab6-message.lab6-refused")).to_contain_text("At most 3 objects")
            expect(page.locator(".lab6-label-gray-cube")).not_to_have_class(re.compile(r"\bmod-active\b"))

            page.locator(".lab6-generate").click()
            image = page.locator("img.lab6-image.lab6-generated")
            expect(image).to_be_visible(timeout=120_000)
            width = image.evaluate("img => img.complete ? img.naturalWidth : 0")
            assert width == 256  # the 64x64 image, enlarged four times
            expect(page.locator(".lab6-probabilities")).to_contain_text("red sphere")
            picker.scroll_into_view_if_needed()
            shots = save_screenshot(page, picker, tmp_path, "label_picker.png")
            shots += save_screenshot(page, None, tmp_path, "jupyterlab_notebook04.png")
            assert all(path.stat().st_size > 0 for path in shots)
            print("screenshots:", *shots)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))  # what the browser showed when it failed
            print("failure screenshot:", tmp_path / "failure.png")
            raise
        finally:
            browser.close()
