"""``python -m hdcnn compare``: two runs' out-of-fold scores of the same images, side by side,
with the paired difference of their AUCs (:mod:`hdcnn.evaluation.compare`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compare`` command to the CLI."""
    p = subparsers.add_parser(
        "compare",
        help="paired comparison of two cross-validation runs of the same images",
        description="AUCs of two runs (folders of python -m hdcnn cv, or their "
        "oof_predictions.json) on the same images, the difference b - a with a paired "
        "patient-bootstrap 95%% interval, and both runs' FROC. Research demo, not a medical "
        "device.",
    )
    p.add_argument("a", type=Path, help="first run folder or oof_predictions.json")
    p.add_argument("b", type=Path, help="second run folder or oof_predictions.json")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hdcnn.evaluation.compare import compare_runs, load_oof
    from hdcnn.utils import atomic_write_text

    report = compare_runs(
        load_oof(args.a),
        load_oof(args.b),
        names=(str(args.a), str(args.b)),
        n_boot=args.n_boot,
        seed=args.seed,
    )
    print(markdown(report))
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    return 0


def markdown(report: dict[str, Any]) -> str:
    """:func:`~hdcnn.evaluation.compare.compare_runs`'s result as a Markdown table."""
    from hdcnn.commands.cv import froc_text, num
    from hdcnn.evaluation.plots import difference_text

    a, b = report["runs"]

    lines = [
        f"a = `{a}`, b = `{b}`; Δ = b − a with a paired patient-bootstrap 95% interval",
        "",
        "| concept | images | AUC abnormal a / b | Δ abnormal | AUC malignant a / b "
        "| Δ malignant | FROC @0.5 / 1 / 2 FP, a | FROC, b |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for concept, row in report["concepts"].items():
        fr = row.get("froc") or {}
        diff = {
            task: difference_text(row[f"minus_{task}"], ci_digits=3) or "—"
            for task in ("abnormal", "malignant")
        }
        lines.append(
            f"| {concept} | {row['n_images']} "
            f"| {num(row['auc_abnormal'][0])} / {num(row['auc_abnormal'][1])} "
            f"| {diff['abnormal']} "
            f"| {num(row['auc_malignant'][0])} / {num(row['auc_malignant'][1])} "
            f"| {diff['malignant']} | {froc_text(fr.get('a'))} | {froc_text(fr.get('b'))} |"
        )
    return "\n".join(lines)
