"""End-to-end test: ``streamlit run app.py`` driven by headless Chromium (Playwright).

Uploads a real CBIS-DDSM DICOM and checks what the pages show: every verdict names the rule
that decided it with the threshold values in force, the out-of-domain notice, numbered boxes,
words while the networks run, the findings table with its merged candidates and no raw
"None", the close-up of a finding, Grad-CAM thumbnails that show tissue, the Exam page's
progress element and its warning for a view dropped into the wrong slot, nothing cut off
(tables, metrics, labels, chart titles and ticks, confusion matrices) at 1024 and 1400 px,
the ROC legend clear of the curves, the Home diagram's text size, the dataset's own density
scale, no request to any other host than the app (the page icon included) and clear
messages for bad files. Saves a
screenshot of each page at 1400 px to ``$HDCNN_SCREENSHOTS/<page>.png`` (default: a temporary
folder, so a test run leaves the tree clean). The README's screenshots are made with::

    HDCNN_SCREENSHOTS=docs/screenshots python -m pytest tests/e2e

Uses Debian's ``chromium`` (``/usr/bin/chromium``); skipped when it is missing. Never run
``playwright install``. Uses the shipped weights in ``models/`` when present, else a tiny
random-weight weights directory (the verdict is then meaningless but the plumbing is real).
Assertions are on structure and named thresholds, never on particular probabilities, so they
hold for any trained weights.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MIAS_ROOT
from tests.e2e.server import REPO, start_streamlit

pytestmark = pytest.mark.e2e

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
#: Names of the four thresholds (hdcnn.reasons.THRESHOLD_NAMES): one must be named beside
#: every verdict, with its value.
RULES = (
    "detector score threshold",
    "Classifier 1 threshold",
    "image-level abnormal threshold",
    "malignant threshold",
)


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
    env["HDCNN_DATA_ROOTS"] = str(MIAS_ROOT)  # the Dataset explorer opens nothing else
    log = (tmp_path_factory.mktemp("server") / "streamlit.log").open("wb")
    try:
        proc, url = start_streamlit(env, log, timeout_s=60)
    except RuntimeError as exc:
        log.close()
        pytest.fail(f"{exc}, see {log.name}")
    try:
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


def _open(browser, url: str, *, width: int = 1400, height: int = 1000):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    page.get_by_test_id("stSidebar").wait_for()
    return page


def _go(page, title: str) -> None:
    """Navigate inside the app (same session) with the sidebar links."""
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    page.get_by_role("heading", level=1).first.wait_for()


def _upload(page, data_path: Path, nth: int = 0) -> None:
    page.locator("input[type=file]").nth(nth).set_input_files(str(data_path))


def _idle(page) -> None:
    """Wait until Streamlit has finished the current run."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", polling=100
    )


def _shot(page, name: str) -> None:
    """The whole page at 1400 px wide: the window is made as tall as the page's content
    (Streamlit scrolls inside its main block, which a full-page screenshot does not see)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(1500)  # let charts and images finish drawing
    size = page.viewport_size
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], height)})
    page.wait_for_timeout(1000)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    page.set_viewport_size(size)


def _assert_rule_named(text: str, context: str) -> None:
    """'Decided by the <threshold name>: ... <value>' is on the page."""
    assert "Decided by the" in text, f"{context}: no rule beside the verdict"
    line = text.split("Decided by the", 1)[1].split("\n", 1)[0]
    assert any(line.strip().startswith(rule) for rule in RULES), f"{context}: {line!r}"
    assert any(ch.isdigit() for ch in line), f"{context}: no threshold value in {line!r}"


#: Text that a page shows cut off: an element whose content is wider than its box (metric
#: values and labels end in "…"), a table wider than its place on the page.
CUT_JS = """() => {
  const cut = [];
  const sel = '[data-testid=stMetricLabel] *, [data-testid=stMetricValue] *, '
    + '[data-testid=stMetricDelta] *, [data-testid=stWidgetLabel] *, '
    + '[data-testid=stTable] td, [data-testid=stTable] th, [data-testid=stImageCaption]';
  for (const e of document.querySelectorAll(sel)) {
    if (e.scrollWidth > e.clientWidth + 1) cut.push(e.textContent.slice(0, 40));
  }
  const right = document.querySelector('[data-testid=stMain]').getBoundingClientRect().right;
  for (const t of document.querySelectorAll('[data-testid=stTable]')) {
    if (t.scrollWidth > t.clientWidth + 1 || t.getBoundingClientRect().right > right + 1) {
      cut.push('table: ' + t.textContent.slice(0, 40));
    }
  }
  return cut;
}"""
#: Chart text that is cut off or unreadable: a title, axis title or tick label outside its
#: chart's box, or two tick labels of one axis on top of each other.
CHART_JS = """(chart) => {
  const box = chart.getBoundingClientRect();
  const bad = [];
  const sel = '.gtitle, .xtitle, .ytitle, .xtick text, .ytick text';
  for (const t of chart.querySelectorAll(sel)) {
    const r = t.getBoundingClientRect();
    if (!t.textContent || r.width === 0) continue;
    if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1
        || r.bottom > box.bottom + 1) bad.push('outside: ' + t.textContent);
  }
  for (const axis of ['xtick', 'ytick']) {
    const rs = [...chart.querySelectorAll('.' + axis + ' text')]
      .filter(t => t.textContent).map(t => [t.textContent, t.getBoundingClientRect()]);
    for (let i = 0; i < rs.length; i++) for (let j = i + 1; j < rs.length; j++) {
      const a = rs[i][1], b = rs[j][1];
      if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1
          && b.top < a.bottom - 1) bad.push('overlap: ' + rs[i][0] + ' / ' + rs[j][0]);
    }
  }
  return bad;
}"""


def _assert_nothing_cut(page, context: str) -> None:
    cut = page.evaluate(CUT_JS)
    assert not cut, f"{context}: cut off: {cut}"
    charts = page.get_by_test_id("stPlotlyChart")
    for i in range(charts.count()):
        bad = charts.nth(i).evaluate(CHART_JS)
        assert not bad, f"{context}, chart {i}: {bad}"


def _external_requests(page, url: str) -> list[str]:
    """Collects every request the page makes to another host than the app (a list that fills
    as the page runs)."""
    seen: list[str] = []
    page.on(
        "request",
        lambda r: None if r.url.startswith((url, "data:", "blob:")) else seen.append(r.url),
    )
    return seen


def _colour_and_texture(png: bytes) -> tuple[float, float]:
    """(mean |R - B|, grey-level standard deviation) of a screenshot."""
    import io

    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float)
    return float(np.abs(rgb[..., 0] - rgb[..., 2]).mean()), float(rgb.mean(axis=2).std())


def _svg_texts(page, selector: str) -> list[dict]:
    return page.eval_on_selector_all(
        f"{selector} svg text",
        "els => els.map(e => ({text: e.textContent, h: e.getBoundingClientRect().height}))",
    )


def test_upload_real_dicom_shows_verdict_and_every_page(browser, server: str, cbis_cases) -> None:
    page = _open(browser, server)
    external = _external_requests(page, server)
    page.reload()
    page.get_by_test_id("stSidebar").wait_for()
    page.get_by_text("Research demo, not a medical device").first.wait_for()
    # the page icon is served by the app, not fetched from a font host (offline)
    icons = page.evaluate(
        "() => [...document.querySelectorAll('link[rel~=icon]')].map(l => l.href)"
    )
    assert icons and all(i.startswith(server) for i in icons), icons
    # (8) the Home diagram's text is legible: at least 12 px high, not ~6 px
    page.get_by_test_id("stGraphVizChart").locator("svg text").first.wait_for()
    heights = [t["h"] for t in _svg_texts(page, '[data-testid="stGraphVizChart"]') if t["text"]]
    assert heights and min(heights) >= 12, heights
    _shot(page, "home")

    _go(page, "Diagnose")
    # the malignant case's right MLO (its benign breast): overlapping boxes on one mass
    _upload(page, Path(cbis_cases[1]["rmlo"]))
    # words say what runs while the networks run, beside the empty layout
    page.get_by_text("Analysing the image: reading the file").wait_for()
    verdict = page.get_by_text("Verdict:").first
    verdict.wait_for()
    assert verdict.inner_text().split("Verdict:")[1].strip().lower() in {
        "normal",
        "benign",
        "malignant",
    }
    page.get_by_text("Download JSON report").wait_for()
    _idle(page)
    text = page.inner_text("body")
    # (1) the verdict names its rule and the threshold values in force
    _assert_rule_named(text, "Diagnose")
    assert "Thresholds in force: detector score ≥" in text
    assert text.count("threshold 0.") >= 2  # beside P(abnormal) and P(malignant)
    # (9) a CBIS-DDSM DICOM is not digitised mini-MIAS film: the result says so plainly
    assert "unlike the images the models were trained on" in text
    # (2) box tags are finding numbers, and the caption says so
    assert "Box tag = finding number" in text
    assert "P_00820" not in page.content()  # the DICOM's patient id is never shown
    # (7) the empty layout drawn while the networks ran is gone: one table, words gone
    assert "appear here" not in text and "Analysing the image" not in text
    assert page.get_by_test_id("stTable").count() == 1
    assert page.get_by_role("button", name="Download PDF report").count() == 1
    # the findings table: one row per finding, with how many candidates each merged; no "None"
    table = page.get_by_test_id("stTable").first.inner_text()
    assert "No." in table and "merged" in table and "why" in table
    assert not re.search(r"\bNone\b", text) and not re.search(r"\bnan\b", table), text
    # the header fields this DICOM holds, in words
    assert "right breast, MLO view" in text
    # a close-up of a finding, drawn at the column's width
    assert "Close-up of #" in text
    _shot(page, "diagnose")

    _go(page, "Cascade")  # shows the image just analysed on Diagnose (same session)
    page.get_by_text("6 · Time per stage").wait_for()
    _idle(page)
    text = page.inner_text("body")
    _assert_rule_named(text, "Cascade")
    # (5) the candidates image shows no classifier output and says what its numbers are
    assert "before the classifiers. The number on a box is its rank by detector score" in text
    assert "finding index" not in text  # Grad-CAM crops are numbered like the tables (#1 ...)
    assert "Classifier 1 keeps a candidate when P(lesion) ≥" in text
    assert not re.search(r"\bNone\b", text), text
    if "Grad-CAM map over the tissue" in text:  # kept findings: thumbnails of tissue + heat
        thumbs = page.get_by_test_id("stImage").filter(
            has=page.get_by_test_id("stImageCaption").filter(has_text="#")
        )
        last = thumbs.last.locator("img").first
        last.scroll_into_view_if_needed()
        colour, texture = _colour_and_texture(last.screenshot())
        assert colour > 5 and texture > 10, (colour, texture)  # heat colours over tissue
    _shot(page, "cascade")

    _go(page, "Exam")
    page.get_by_test_id("stSelectbox").filter(has_text="pick a sample exam").click()
    page.get_by_role("option", name="CBIS-DDSM exam 2 (left malignant, right benign)").click()
    page.get_by_text("Exam verdict:").wait_for()
    # (7) the per-view progress element: a status box with a progress bar, labelled
    page.get_by_text("4 of 4 views analysed").first.wait_for()
    _idle(page)
    text = page.inner_text("body")
    _assert_rule_named(text, "Exam")
    assert text.count("Decided by the") >= 3  # the exam and each breast
    assert "4 of 4 views are unlike the images the models were trained on" in text
    assert "different patients" not in text  # one patient's four views
    _shot(page, "exam")

    _go(page, "Dataset explorer")
    page.get_by_text("Mean age of the patients by label").first.wait_for()
    _idle(page)
    # (6) no stray "color" legend title; the synthetic cohort's density is not called BI-RADS
    texts = [t["text"] for t in _svg_texts(page, '[data-testid="stPlotlyChart"]')]
    assert "color" not in texts
    assert any("(BI-RADS-like categories, SYNTHETIC)" in t for t in texts)
    _shot(page, "dataset")

    _go(page, "Experiments")
    page.get_by_role("heading", name="Experiments: four concepts compared").wait_for()
    _idle(page)
    _shot(page, "experiments")
    assert not external, f"requests to other hosts: {external}"
    page.close()


def test_exam_view_in_the_wrong_slot_is_flagged(browser, server: str, cbis_cases) -> None:
    """(4) A left CC dropped into the Right CC slot is used as a left CC, with a warning."""
    case = {k.lower(): v for k, v in cbis_cases[0].items()}
    page = _open(browser, server)
    _go(page, "Exam")
    _upload(page, Path(case["lcc"]), nth=0)  # the Right CC slot
    page.get_by_text("Exam verdict:").wait_for()
    page.get_by_text("1 of 1 view analysed").first.wait_for()
    _idle(page)
    warning = page.get_by_test_id("stAlertContentWarning").filter(has_text="Right CC slot")
    assert "is a Left CC view according to its header" in warning.first.inner_text()
    text = page.inner_text("body")
    assert "Left breast: " in text and "Right breast: no view" in text
    page.close()


@pytest.mark.parametrize("width", [1024, 1400])
def test_nothing_is_cut_off_at_1024_and_1400_px(browser, server: str, cbis_cases, width) -> None:
    """(3) Tables, metrics, labels and charts whole; the image and its close-up large; the
    experiments table without sideways scrolling; the ROC legend off the curves."""
    import appkit

    page = _open(browser, server, width=width, height=900)
    _go(page, "Diagnose")
    _upload(page, Path(cbis_cases[1]["rmlo"]))
    page.get_by_text("Download JSON report").wait_for()
    _idle(page)
    _assert_nothing_cut(page, f"Diagnose at {width} px")  # "why" column, metric, toggle label
    widths = page.eval_on_selector_all(
        '[data-testid="stImage"] img', "els => els.map(e => e.getBoundingClientRect().width)"
    )
    # the image and a close-up of the finding: half the page each (188 px before at 1024)
    assert len(widths) >= 2 and min(widths) >= (260 if width == 1024 else 440), widths

    _go(page, "Cascade")
    page.get_by_text("6 · Time per stage").wait_for()
    _idle(page)
    _assert_nothing_cut(page, f"Cascade at {width} px")  # the "final status" column

    _go(page, "Dataset explorer")
    page.get_by_text("Mean age of the patients by label").first.wait_for()
    _idle(page)
    _assert_nothing_cut(page, f"Dataset explorer at {width} px")

    _go(page, "Experiments")
    page.get_by_role("heading", name="Experiments: four concepts compared").wait_for()
    _idle(page)
    _assert_nothing_cut(page, f"Experiments at {width} px")  # confusion matrices whole
    if page.get_by_test_id("stDataFrame").count():
        sizes = page.get_by_test_id("stDataFrame").first.evaluate(
            "df => { const s = df.querySelector('.dvn-scroller');"
            " return [s.scrollWidth, s.clientWidth]; }"
        )
        assert sizes[0] <= sizes[1] + 2, f"experiments table scrolls sideways: {sizes}"
        assert sizes[1] >= sum(appkit.EXPERIMENT_WIDTHS.values())
    charts = page.get_by_test_id("stPlotlyChart")
    if charts.count():
        boxes = charts.first.evaluate(
            "c => [c.querySelector('.legend').getBoundingClientRect().top,"
            " c.querySelector('.nsewdrag').getBoundingClientRect().bottom]"
        )
        assert boxes[0] >= boxes[1] - 1, f"ROC legend overlaps the plot area: {boxes}"
        # every confusion matrix keeps its three verdict columns, malignant included (the
        # charts after the ROC and FROC curves whose x ticks are words, not numbers: the
        # reliability diagram below them has numeric ticks)
        matrices = []
        for i in range(2, charts.count()):
            ticks = charts.nth(i).evaluate(
                "c => [...c.querySelectorAll('.xtick text')].map(t => t.textContent)"
            )
            if ticks and not ticks[0].replace(".", "", 1).isdigit():
                matrices.append(ticks)
        assert len(matrices) == 4, matrices
        assert all(t == ["normal", "benign", "malignant"] for t in matrices), matrices
    page.close()


@pytest.mark.skipif(not (MIAS_ROOT / "Info.txt").is_file(), reason="mini-MIAS not found")
@pytest.mark.parametrize("width", [1024, 1400])
def test_dataset_explorer_names_the_mini_mias_tissue_scale(browser, server: str, width) -> None:
    """(6) mini-MIAS F/G/D codes are background tissue, not BI-RADS density; the tissue
    chart's title, axis title and tick labels are whole and apart at 1024 and 1400 px."""
    page = _open(browser, server, width=width)
    _go(page, "Dataset explorer")
    page.get_by_text("Mean age of the patients by label").first.wait_for()
    page.get_by_test_id("stSelectbox").filter(has_text="Dataset").click()
    page.get_by_role("option", name="mias", exact=True).click()
    root = page.get_by_label("Dataset root folder (on this server)")
    root.fill(str(MIAS_ROOT))
    root.press("Enter")
    page.get_by_text("records no patient ages").first.wait_for()
    _idle(page)
    texts = [t["text"] for t in _svg_texts(page, '[data-testid="stPlotlyChart"]')]
    assert any("(mini-MIAS code, not BI-RADS)" in t for t in texts), texts
    assert not any("BI-RADS)" in t and "not BI-RADS" not in t for t in texts)
    assert {"F fatty", "G fatty-glandular", "D dense-glandular"} <= set(texts)
    assert "color" not in texts
    _assert_nothing_cut(page, f"mini-MIAS at {width} px")
    page.close()


def test_bad_files_give_a_readable_error(browser, server: str, tmp_path: Path) -> None:
    """(8) A text file renamed .dcm and a file of a wrong type both get a clear message."""
    fake = tmp_path / "notes.dcm"
    fake.write_text("these are meeting notes, not a mammogram\n" * 10)
    wrong = tmp_path / "notes.txt"
    wrong.write_text("a text file is not a mammogram\n" * 10)
    for path in (fake, wrong):
        page = _open(browser, server)
        _go(page, "Diagnose")
        _upload(page, path)
        error = page.get_by_test_id("stAlertContentError").first
        error.wait_for()
        text = error.inner_text()
        assert path.name in text and "Cannot use this image" in text
        assert "Traceback" not in page.content()
        page.close()
