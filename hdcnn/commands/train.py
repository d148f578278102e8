"""``python -m hdcnn train``: train the cascade's networks into a weights directory.

Also runs under ``torchrun --nproc_per_node=N -m hdcnn train ...`` (DistributedDataParallel).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from hdcnn.config import LONG_SIDE, SCRATCH_CROP_SIZE, SENSITIVITY
from hdcnn.train.config import DEFAULT_EPOCHS, PARTS, TrainConfig, parse_parts

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train detector and classifiers into a weights directory",
        description="Split a dataset by patient (0.6/0.2/0.2), train the requested parts, keep "
        "the best epoch of each by its validation metric and write cascade.json. "
        "Run under torchrun for several processes. See docs/TRAINING.md.",
    )
    p.add_argument(
        "--dataset",
        required=True,
        help="dataset adapter (mias, cbis-ddsm, synth, ...) or 'manifest' for a CSV",
    )
    p.add_argument("--root", required=True, type=Path, help="dataset folder (or manifest CSV)")
    p.add_argument("--out", required=True, type=Path, help="weights directory to write")
    p.add_argument(
        "--parts", default="all", help=f"comma-separated subset of {','.join(PARTS)} (default: all)"
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"epochs per part (default per part: {DEFAULT_EPOCHS})",
    )
    p.add_argument("--long-side", type=int, default=LONG_SIDE, help="model image long side (px)")
    p.add_argument(
        "--crop-size", type=int, default=SCRATCH_CROP_SIZE, help="ROI crop / crop classifier side"
    )
    p.add_argument(
        "--whole-size",
        type=int,
        nargs=2,
        default=(256, 160),
        metavar=("H", "W"),
        help="whole-image classifier input (h w)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="classifier batch size")
    p.add_argument("--det-batch-size", type=int, default=2, help="detector batch size")
    p.add_argument("--lr", type=float, default=2e-3, help="classifier learning rate (AdamW)")
    p.add_argument("--det-lr", type=float, default=1e-3, help="detector learning rate (AdamW)")
    p.add_argument("--seed", type=int, default=0, help="seed of split, init and shuffling")
    p.add_argument("--threads", type=int, default=2, help="torch threads per process")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument(
        "--c1-sensitivity",
        type=float,
        default=SENSITIVITY,
        help=f"C1 threshold: this lesion sensitivity on validation lesion crops ({SENSITIVITY})",
    )
    p.add_argument(
        "--hard-negatives",
        type=int,
        default=3,
        help="detector false positives per image added to the c1/crop-flat normal crops",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue each part from <out>/last_<part>.pt"
    )
    p.add_argument("--detector-backbone", choices=["tiny", "mobilenet_v3_small"], default="tiny")
    p.add_argument(
        "--pretrained-backbone",
        type=Path,
        default=None,
        help="mobilenet_v3_small state_dict file (implies that backbone)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="preprocessed-image cache folder (default: <out>/cache)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build the frozen :class:`TrainConfig` from parsed arguments."""
    backbone = args.detector_backbone
    if args.pretrained_backbone is not None:
        backbone = "mobilenet_v3_small"
    return TrainConfig(
        dataset=args.dataset,
        root=Path(args.root),
        out=Path(args.out),
        parts=parse_parts(args.parts),
        epochs=args.epochs,
        long_side=args.long_side,
        crop_size=args.crop_size,
        whole_size=(int(args.whole_size[0]), int(args.whole_size[1])),
        batch_size=args.batch_size,
        det_batch_size=args.det_batch_size,
        lr=args.lr,
        det_lr=args.det_lr,
        seed=args.seed,
        threads=args.threads,
        workers=args.workers,
        c1_sensitivity=args.c1_sensitivity,
        hard_negatives=args.hard_negatives,
        resume=args.resume,
        pretrained_backbone=args.pretrained_backbone,
        detector_backbone=backbone,
        cache_dir=args.cache_dir if args.cache_dir is not None else Path(args.out) / "cache",
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from exc
    from hdcnn.train.pipeline import _finite, train

    summary = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(_finite(summary), indent=2))
    return 0
