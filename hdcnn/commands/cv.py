"""``python -m hdcnn cv``: patient-grouped cross-validation of the pretrained cascade.

Trains the detector and the six classifiers once per fold, scores every image with models that
never saw its patient, reports the four concepts (AUC with patient-bootstrap intervals,
sensitivity at 90% specificity, FROC and candidate recall per lesion type), chooses the
thresholds on the out-of-fold scores and, with ``--ship DIR``, trains the final models on all
patients and writes them with ``cascade.json`` and ``experiments.json``. Resumable: re-running
the same command continues from the run folder. See docs/TRAINING.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cv`` command to the CLI."""
    from hdcnn.train.cv import CVConfig

    d = CVConfig()
    p = subparsers.add_parser(
        "cv",
        help="cross-validate the pretrained cascade and the four concepts; ship final models",
        description="Patient-grouped k-fold cross-validation (research demo, not a medical "
        "device). Resumable: the same command continues a stopped run.",
    )
    p.add_argument("--dataset", default=d.dataset, help=f"adapter name (default {d.dataset})")
    p.add_argument("--root", type=Path, required=True, help="dataset folder")
    p.add_argument("--out", type=Path, default=Path(d.out), help=f"run folder ({d.out})")
    p.add_argument("--folds", type=int, default=d.folds, help=f"k (default {d.folds})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"fold and training seed ({d.seed})")
    p.add_argument(
        "--det-epochs",
        type=int,
        default=d.det_epochs,
        help=f"detector epochs per fold ({d.det_epochs})",
    )
    p.add_argument("--threads", type=int, default=d.threads, help=f"torch threads ({d.threads})")
    p.add_argument(
        "--ship",
        type=Path,
        metavar="DIR",
        help="train the final models on all patients and write them to DIR",
    )
    p.add_argument(
        "--ablations",
        action="store_true",
        help="also measure the ablation rows (random init, 512-px crops, ...)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hdcnn.train.cv import CVConfig, configure_logging
    from hdcnn.train.cv import run as run_cv

    cfg = CVConfig(
        dataset=args.dataset,
        root=str(args.root),
        out=str(args.out),
        folds=args.folds,
        seed=args.seed,
        det_epochs=args.det_epochs,
        threads=args.threads,
    )
    configure_logging(Path(cfg.out))
    report = run_cv(cfg, ship=args.ship, ablations=args.ablations)
    for name, m in report["concepts"].items():
        ci = m.get("auc_abnormal_ci") or [None, None]
        print(
            f"{name:11s} AUC abnormal {m.get('auc_abnormal')} {ci}  "
            f"AUC malignant {m.get('auc_malignant')}  FROC {m.get('froc', {}).get('1')}"
        )
    print(json.dumps(report.get("lesion_types", {}), indent=1))
    print(f"wrote {Path(cfg.out) / 'cv_report.json'}")
    if args.ship:
        print(f"wrote the shipped models to {args.ship}")
    return 0
