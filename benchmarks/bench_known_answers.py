"""What the known-answer check costs when a cascade is loaded, and how far outputs drift.

Usage::

    python benchmarks/bench_known_answers.py [--weights models] [--repeats 5] [--threads 1 2 4]

Prints (1) the median seconds of ``load_cascade`` in a warm process with the check skipped,
with the check run (the per-process memo cleared each time), and with the memo hit (a second
load of the same folder); and (2) for each torch thread count, the largest difference between
the folder's stored known answers and the outputs computed now (scores, probabilities, box
corners): the tolerances (``hdcnn.cascade.known_answers.TOLERANCE`` / ``BOX_TOLERANCE``) must
stay far above it. A benchmark, not a test: it prints figures and asserts nothing. Note the
machine's load (``uptime``) with the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hdcnn.cascade import known_answers, load_cascade  # noqa: E402
from hdcnn.config import CascadeConfig  # noqa: E402
from hdcnn.utils import DEFAULT_WEIGHTS_DIR  # noqa: E402


def _seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _drift(expected, got) -> dict[str, float]:
    out = {"score": 0.0, "probability": 0.0, "box_px": 0.0}
    for a, b in zip(expected.references, got.references, strict=True):
        n = min(len(a.scores), len(b.scores))
        if n:
            out["score"] = max(
                out["score"], float(np.abs(np.subtract(a.scores[:n], b.scores[:n])).max())
            )
            out["box_px"] = max(
                out["box_px"], float(np.abs(np.subtract(a.boxes[:n], b.boxes[:n])).max())
            )
        for x, y in ((a.p_lesion, b.p_lesion), (a.p_malignant, b.p_malignant)):
            if len(x) and len(x) == len(y):
                out["probability"] = max(out["probability"], float(np.abs(np.subtract(x, y)).max()))
        out["probability"] = max(out["probability"], abs(a.p_abnormal - b.p_abnormal))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_DIR)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    torch.set_num_threads(args.threads[0])
    load_cascade(args.weights, known_answers="skip")  # warm-up: imports, trunk, allocator

    def checked() -> None:
        known_answers._verified.clear()
        load_cascade(args.weights)

    skip = _seconds(lambda: load_cascade(args.weights, known_answers="skip"), args.repeats)
    check = _seconds(checked, args.repeats)
    memo = _seconds(lambda: load_cascade(args.weights), args.repeats)
    print(f"load_cascade({args.weights}) on {args.threads[0]} thread(s), median of {args.repeats}:")
    print(f"  check skipped {skip:.3f} s | check run {check:.3f} s | memo hit {memo:.3f} s")
    print(f"  the check adds {check - skip:.3f} s to a first load, nothing to later ones")
    stored = CascadeConfig.load(args.weights).known_answers
    if stored is None:
        print("no known answers stored: run python -m hdcnn models stamp first")
        return
    print(
        f"drift from the stored answers (tolerance {stored.tolerance}, "
        f"box {stored.box_tolerance} px):"
    )
    for n in args.threads:
        torch.set_num_threads(n)
        cascade = load_cascade(args.weights, known_answers="skip")
        d = _drift(stored, known_answers.stamp(cascade))
        print(
            f"  {n} thread(s): score {d['score']:.1e}, probability {d['probability']:.1e}, "
            f"box {d['box_px']:.1e} px"
        )
    print(f"cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
