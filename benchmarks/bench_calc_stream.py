"""Time the calcification stream's parts on real images, on the CPU.

Usage::

    python benchmarks/bench_calc_stream.py --weights DIR [--mias DIR] [--limit 10] [--threads 2]

``DIR`` must have a calcification stream (``calc_stream`` in its ``cascade.json``). Prints,
per image source, the median and 95th-percentile milliseconds of the stream's three parts
(:mod:`hdcnn.cascade.calc`): the spot finder on the original pixels (``spots``), the stream
classifier's crops and P(lesion) (``p_lesion``), and Classifier 2 on the spots it calls lesions
(``c2``), with the median image size and number of graded spots. A benchmark, not a test: it
prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_predict import _sources, print_times  # noqa: E402
from hdcnn.cascade import load_cascade  # noqa: E402
from hdcnn.cascade.calc import pixel_mm_of  # noqa: E402
from hdcnn.reader import read_mammogram  # noqa: E402
from hdcnn.spots import find_spots  # noqa: E402

PARTS = ("spots", "p_lesion", "c2")


def _time_parts(cascade, path: Path) -> tuple[list[float], int, int]:
    stream = cascade.calc_stream
    mammo = read_mammogram(path)
    prep = cascade.preprocess(mammo.pixels, laterality=mammo.meta.laterality)
    t0 = time.perf_counter()
    spots = find_spots(
        mammo.pixels, prep, pixel_mm=pixel_mm_of(mammo.meta), cfg=stream.config.spots
    )
    t1 = time.perf_counter()
    crops = stream.crops(mammo.pixels, prep, spots.boxes, cascade.context)
    p_lesion = stream.p_lesion(crops, spots.specks)
    t2 = time.perf_counter()
    lesions = np.flatnonzero(p_lesion >= stream.config.threshold)
    if len(lesions):
        cascade.classify(prep, spots.boxes[lesions], mammo.pixels)
    t3 = time.perf_counter()
    times = [(t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3]
    return times, int(mammo.pixels.size), len(lesions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--mias", default=str(REPO.parent / "shared" / "data" / "mini-mias"))
    parser.add_argument("--limit", type=int, default=10, help="images per source")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    cascade = load_cascade(args.weights)
    if cascade.calc_stream is None:
        raise SystemExit(f"{args.weights} has no calcification stream")
    print(f"{args.weights}: threshold {cascade.calc_stream.config.threshold}, {args.threads} thr.")
    for label, paths in _sources(Path(args.mias), args.limit).items():
        _time_parts(cascade, paths[0])  # warm-up
        runs = [_time_parts(cascade, p) for p in paths]
        pixels = np.median([r[1] for r in runs]) / 1e6
        graded = np.median([r[2] for r in runs])
        title = f"{label}: {len(paths)} images, {pixels:.1f} Mpx, {graded:.0f} spots graded by C2"
        print_times(title, PARTS, np.array([r[0] for r in runs]), width=9)


if __name__ == "__main__":
    main()
