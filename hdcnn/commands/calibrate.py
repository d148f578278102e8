"""``python -m hdcnn calibrate``: fit the probability calibration of a weights folder on its
out-of-fold scores and write it into its ``cascade.json`` (:mod:`hdcnn.evaluation.calibration`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hdcnn.report import SHORT_DISCLAIMER
from hdcnn.utils import DEFAULT_WEIGHTS_DIR


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``calibrate`` command to the CLI."""
    p = subparsers.add_parser(
        "calibrate",
        help="calibrate P(abnormal), P(malignant) and P(lesion) on out-of-fold scores",
        description="Fit Platt or isotonic maps (chosen per probability by cross-fitted Brier "
        "score on the cross-validation's patient folds) and the thresholds' borderline bands "
        "(patient bootstrap) on a weights folder's oof_predictions.json; write them into its "
        "cascade.json. Verdicts do not change. " + SHORT_DISCLAIMER,
    )
    p.add_argument(
        "weights",
        type=Path,
        nargs="?",
        default=DEFAULT_WEIGHTS_DIR,
        help="weights folder (default: the shipped models/)",
    )
    p.add_argument(
        "--oof", type=Path, help="out-of-fold scores (default: WEIGHTS/oof_predictions.json)"
    )
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hdcnn.config import CONFIG_FILE
    from hdcnn.evaluation.calibration import calibrate_folder

    calibration = calibrate_folder(args.weights, args.oof, n_boot=args.n_boot, seed=args.seed)
    print(markdown(calibration.report))
    print(f"wrote {Path(args.weights) / CONFIG_FILE}")
    return 0


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def floor_lines(report: dict[str, Any]) -> list[str]:
    """Each calibrated probability's ECE after calibration read against its sampling floor
    (:func:`hdcnn.evaluation.ece_floor.floor_reading`); none for a report without floors."""
    from hdcnn.evaluation.ece_floor import floor_reading

    lines, n_sim = [], None
    for name, r in report["probabilities"].items():
        floor = r["after"].get("ece_floor")
        if floor:
            n_sim = floor["n_sim"]
            lines.append(f"- {name} after: {floor_reading(r['after']['ece'], floor)}.")
    if not lines:
        return []
    return [
        "",
        f"ECE floor: the ECE of labels drawn from the probabilities themselves ({n_sim} "
        "draws): what a perfectly calibrated probability shows on this many examples.",
        "",
        *lines,
    ]


def reliability_markdown(report: dict[str, Any]) -> list[str]:
    """The reliability diagrams as one Markdown table: per probability and bin, the examples,
    their mean probability and the observed frequency, before and after (cross-fitted)."""
    lines = [
        "",
        "| probability | bin | before: n, mean p → observed | after: n, mean p → observed |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in report["probabilities"].items():
        cells: dict[float, list[str]] = {}
        for stage in ("before", "after"):
            for b in r[stage]["reliability"]:
                text = f"{b['n']}, {b['mean_p']:.2f} → {b['frequency']:.2f}"
                cells.setdefault(b["low"], ["", ""])[stage == "after"] = text
        for low in sorted(cells):
            before, after = cells[low]
            lines.append(f"| {name} | {low:.1f}–{low + 0.1:.1f} | {before} | {after} |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The calibration report as the model card's Markdown table."""
    from hdcnn.evaluation.ece_floor import ECE_TARGET

    lines = [
        "| probability | n (positive) | method | Brier before → after | ECE before → after "
        f"[95% CI after] | ECE floor before → after: mean [95th pct] | floor draws ≤ {ECE_TARGET} "
        "after |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in report["probabilities"].items():
        b, a = r["before"], r["after"]
        ci = a["ece_ci"]
        fb, fa = b.get("ece_floor") or {}, a.get("ece_floor") or {}
        lines.append(
            f"| {name} | {r['n']} ({r['n_positive']}) | {r['method']} | "
            f"{_f(b['brier'])} → {_f(a['brier'])} | {_f(b['ece'])} → {_f(a['ece'])} "
            f"[{_f(ci[0])}, {_f(ci[1])}] | {_f(fb.get('mean'))} [{_f(fb.get('p95'))}] → "
            f"{_f(fa.get('mean'))} [{_f(fa.get('p95'))}] | "
            f"{_f(fa.get('share_at_most_target'), 2)} |"
        )
    lines += floor_lines(report)
    lines += reliability_markdown(report)
    bl = report.get("borderline") or {}
    if bl:
        lines += [
            "",
            f"Borderline: {bl['n_borderline']} of {bl['n_images']} out-of-fold verdicts; "
            f"wrong {_f(bl['error_rate_borderline'], 2)} of the time, against "
            f"{_f(bl['error_rate_clear'], 2)} for the clear ones.",
        ]
    cf = report.get("borderline_cross_fitted") or {}
    if cf:
        lines.append(
            f"Cross-fitted (thresholds and bands from the other folds): {cf['n_borderline']} of "
            f"{cf['n_images']} borderline; wrong {_f(cf['error_rate_borderline'], 2)} of the "
            f"time, against {_f(cf['error_rate_clear'], 2)} for the clear ones."
        )
    return "\n".join(lines)
