"""Peak memory while iterating DetectionDataset over 1,000 and 10,000 synthetic images.

Not a test: run it by hand and quote the figures.

    .venv/bin/python benchmarks/bench_dataset_memory.py            # 1,000 and 10,000 images
    .venv/bin/python benchmarks/bench_dataset_memory.py --counts 200 --pool 40

It writes (or reuses) a pool of synthetic DICOMs with ``hdcnn.data.synth.write_cohort``
(``--pool`` images, 4 per patient). To make 10,000 images feasible in minutes on 2 CPU cores,
**the N-image manifest reuses the pool's files under distinct manifest rows** (row k points at
pool file k mod pool, with its own patient id): every row is still read from disk and
preprocessed at ``__getitem__``, which is what the memory claim is about. Each count runs in a
fresh child process, so ``ru_maxrss`` (peak resident set size) belongs to that run alone; the
child also reports its RSS before iterating, after 10 % of the images and at the end, and the
``tracemalloc`` peak of Python-visible allocations (numpy arrays included) while iterating.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def ensure_pool(folder: Path, images: int, size: int) -> Path:
    """A synthetic cohort of at least ``images`` images in ``folder`` (reused when present)."""
    from hdcnn.data.manifest import Manifest
    from hdcnn.data.synth import write_cohort

    manifest_path = folder / "manifest.csv"
    patients = max(1, -(-images // 4))
    stamp = folder / "pool.json"
    wanted = {"patients": patients, "size": size, "seed": 0}
    if (
        manifest_path.is_file()
        and stamp.is_file()
        and json.loads(stamp.read_text()) == wanted
        and len(Manifest.load_csv(manifest_path)) == 4 * patients
    ):
        return manifest_path
    write_cohort(folder, patients=patients, seed=0, size=size)
    stamp.write_text(json.dumps(wanted))
    return manifest_path


def run_one(manifest_path: Path, count: int, long_side: int) -> dict[str, float]:
    """Iterate DetectionDataset over ``count`` rows (pool files reused); memory figures."""
    import torch

    torch.set_num_threads(1)
    from torch.utils.data import DataLoader

    from hdcnn.data.manifest import Manifest
    from hdcnn.data.torchdata import DetectionDataset, collate_detection

    pool = Manifest.load_csv(manifest_path)
    records = [
        replace(pool.records[k % len(pool)], patient_id=f"B{k:06d}", study_id=f"B{k:06d}")
        for k in range(count)
    ]
    manifest = Manifest(records, root=pool.root)
    dataset = DetectionDataset(manifest, long_side=long_side)
    loader = DataLoader(dataset, batch_size=4, collate_fn=collate_detection, num_workers=0)
    rss_start = rss_mb()
    tracemalloc.start()
    start = time.perf_counter()
    seen = boxes = 0
    rss_10: float | None = None
    for images, targets in loader:
        seen += len(images)
        boxes += sum(len(t["boxes"]) for t in targets)
        if rss_10 is None and seen >= count // 10:
            rss_10 = rss_mb()
    elapsed = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "images": seen,
        "boxes": boxes,
        "seconds": round(elapsed, 1),
        "rss_before_mb": round(rss_start, 1),
        "rss_after_10pct_mb": round(rss_10 if rss_10 is not None else rss_mb(), 1),
        "rss_end_mb": round(rss_mb(), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tracemalloc_peak_mb": round(traced_peak / 2**20, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--pool", type=int, default=200, help="distinct files generated")
    parser.add_argument("--size", type=int, default=256, help="synthetic image height (px)")
    parser.add_argument("--long-side", type=int, default=256, help="model image long side")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hdcnn-bench-memory"))
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    manifest_path = args.workdir / "pool" / "manifest.csv"

    if args.child is not None:  # one measurement, in a fresh process
        print(json.dumps(run_one(manifest_path, args.child, args.long_side)))
        return 0

    command = " ".join([Path(sys.executable).name, *sys.argv])
    t0 = time.perf_counter()
    ensure_pool(args.workdir / "pool", args.pool, args.size)
    print(f"command: {command}")
    print(
        f"pool: {args.pool} synthetic images ({args.size} px high) in {args.workdir / 'pool'}, "
        f"written/reused in {time.perf_counter() - t0:.1f} s; the N-image manifests REUSE these "
        "files under distinct rows (each row is still read and preprocessed)"
    )
    print(f"DetectionDataset(long_side={args.long_side}), DataLoader(batch_size=4, workers=0)")
    header = (
        f"{'images':>7} {'seconds':>8} {'RSS before':>11} {'RSS @10%':>9} {'RSS end':>8} "
        f"{'peak RSS':>9} {'tracemalloc peak':>17}"
    )
    print(header)
    for count in args.counts:
        child = [
            sys.executable,
            __file__,
            "--child",
            str(count),
            "--workdir",
            str(args.workdir),
            "--long-side",
            str(args.long_side),
        ]
        out = subprocess.run(child, check=True, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{r['images']:>7} {r['seconds']:>8.1f} {r['rss_before_mb']:>8.1f} MB "
            f"{r['rss_after_10pct_mb']:>6.1f} MB {r['rss_end_mb']:>5.1f} MB "
            f"{r['peak_rss_mb']:>6.1f} MB {r['tracemalloc_peak_mb']:>14.2f} MB",
            flush=True,
        )
    print(f"total time: {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
