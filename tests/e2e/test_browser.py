"""End-to-end test: ``streamlit run app.py`` driven by headless Chromium (Playwright).

Uploads a real CBIS-DDSM DICOM and waits for the verdict, uploads a text file renamed ``.dcm``
and finds the readable error, visits every page and saves a screenshot of each to
``$HDCNN_SCREENSHOTS/<page>.png`` (default: a temporary folder, so a test run leaves the tree
clean). The README's screenshots are made with::

    HDCNN_SCREENSHOTS=docs/screenshots python -m pytest tests/e2e

Uses Debian's ``chromium`` (``/usr/bin/chromium``); skipped when it is missing. Never run
``playwright install``. Uses the shipped weights in ``models/`` when present, else a tiny
random-weight weights directory (the verdict is then meaningless but the plumbing is real).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ.get("HDCNN_SCREENSHOTS") or tempfile.mkdtemp(prefix="hdcnn-shots-"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 180_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running ``streamlit run app.py`` on a free local port; stopped afterwards."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium to run the browser test")
    pytest.importorskip("playwright.sync_api")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if not (REPO / "models" / "detector.pt").is_file():
        from tests.cascade_weights import make_weights_dir

        env["HDCNN_WEIGHTS"] = str(make_weights_dir(tmp_path_factory.mktemp("weights")))
    env["HDCNN_SAMPLES_DIR"] = str(tmp_path_factory.mktemp("samples"))
    port = _free_port()
    log = (tmp_path_factory.mktemp("server") / "streamlit.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start (exit {proc.poll()}), see {log.name}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser(server: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    page.get_by_test_id("stSidebar").wait_for()
    return page


def _go(page, title: str) -> None:
    """Navigate inside the app (same session) with the sidebar links."""
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    page.get_by_role("heading", level=1).first.wait_for()


def _upload(page, data_path: Path) -> None:
    page.locator("input[type=file]").first.set_input_files(str(data_path))


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(1500)  # let charts and images finish drawing
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_upload_real_dicom_shows_verdict_and_every_page(browser, server: str, cbis_cases) -> None:
    page = _open(browser, server)
    page.get_by_text("Research demo, not a medical device").first.wait_for()
    _shot(page, "home")

    _go(page, "Diagnose")
    _upload(page, Path(cbis_cases[1]["lcc"]))
    verdict = page.get_by_text("Verdict:").first
    verdict.wait_for()
    assert verdict.inner_text().split("Verdict:")[1].strip().lower() in {
        "normal",
        "benign",
        "malignant",
    }
    page.get_by_text("Download PDF report").wait_for()
    assert "P_00820" not in page.content()  # the DICOM's patient id is never shown
    _shot(page, "diagnose")

    _go(page, "Cascade")  # shows the image just analysed on Diagnose (same session)
    page.get_by_text("6 · Time per stage").wait_for()
    _shot(page, "cascade")

    _go(page, "Exam")
    page.get_by_test_id("stSelectbox").filter(has_text="pick a sample exam").click()
    page.get_by_role("option", name="CBIS-DDSM malignant exam 1").click()
    page.get_by_text("Exam verdict:").wait_for()
    _shot(page, "exam")

    _go(page, "Dataset explorer")
    page.get_by_text("Average age by label").wait_for()
    _shot(page, "dataset")

    _go(page, "Experiments")
    page.get_by_role("heading", name="Experiments: four concepts compared").wait_for()
    _shot(page, "experiments")
    page.close()


def test_text_file_renamed_dcm_gives_readable_error(browser, server: str, tmp_path: Path) -> None:
    fake = tmp_path / "notes.dcm"
    fake.write_text("these are meeting notes, not a mammogram\n" * 10)
    page = _open(browser, server)
    _go(page, "Diagnose")
    _upload(page, fake)
    error = page.get_by_test_id("stAlertContentError").first
    error.wait_for()
    text = error.inner_text()
    assert "notes.dcm" in text and "Cannot use this image" in text
    assert "Traceback" not in page.content()
    page.close()
