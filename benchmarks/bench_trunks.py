"""Time the frozen feature trunks (EfficientNet-Lite0/1/2) on a batch of crops, on the CPU.

Usage::

    python benchmarks/bench_trunks.py [--crops 20] [--size 128] [--threads 2] [--repeats 8]

Prints, per trunk of :data:`hdcnn.nets.efficientnet.TRUNKS` whose wheel is installed (Lite1
and Lite2: ``requirements-ablations.txt``), the median milliseconds of one pass of ``--crops``
random crops through the trunk fused for inference, as the cascade classifies its candidates.
The trunks take turns, so a busy machine slows them alike. A benchmark, not a test: it prints
figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hdcnn.errors import CheckpointError
from hdcnn.nets.efficientnet import TRUNKS, LiteTrunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=20, help="crops per pass (20)")
    parser.add_argument("--size", type=int, default=128, help="crop side in pixels (128)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (2)")
    parser.add_argument("--repeats", type=int, default=8, help="timed passes per trunk (8)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    trunks = {}
    for name in TRUNKS:
        try:
            trunks[name] = LiteTrunk(name=name).eval().fuse_for_inference()
        except CheckpointError as exc:
            print(f"{name}: skipped ({exc})")
    x = torch.rand(args.crops, 1, args.size, args.size)
    times: dict[str, list[float]] = {name: [] for name in trunks}
    with torch.inference_mode():
        for trunk in trunks.values():
            trunk(x)  # warm-up
        for _ in range(args.repeats):
            for name, trunk in trunks.items():
                t0 = time.perf_counter()
                trunk(x)
                times[name].append(1000 * (time.perf_counter() - t0))
    print(
        f"{args.crops} crops of {args.size} px, {args.threads} thread(s), torch "
        f"{torch.__version__}; median of {args.repeats} passes"
    )
    for name, ms in times.items():
        print(f"  {name:20s} {np.median(ms):7.1f} ms")


if __name__ == "__main__":
    main()
