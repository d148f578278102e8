"""``python -m hdcnn evaluate``: argument parsing and printing around
:func:`hdcnn.evaluation.engine.evaluate` (the four concepts on one dataset split, metrics and
plots; split rules and calibration are documented there)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hdcnn.evaluation.engine import SPLITS
from hdcnn.report import SHORT_DISCLAIMER
from hdcnn.utils import DEFAULT_WEIGHTS_DIR


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command to the CLI."""
    parser = subparsers.add_parser(
        "evaluate",
        help="compare the four concepts (flat/hierarchical x whole-image/detector) on a split",
        description="Evaluate flat-whole, hier-whole, det-flat and det-hier on the same images: "
        "AUCs with patient-level bootstrap 95%% CIs, three-class verdict metrics, FROC. "
        + SHORT_DISCLAIMER,
    )
    parser.add_argument("--dataset", required=True, help="adapter name (mias, synth, ...)")
    parser.add_argument("--root", type=Path, required=True, help="dataset folder")
    parser.add_argument(
        "--weights",
        type=Path,
        default=DEFAULT_WEIGHTS_DIR,
        help="weights directory (default: the shipped models/)",
    )
    parser.add_argument(
        "--split", choices=SPLITS, default="test", help="which patients (default test)"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the metrics here")
    parser.add_argument("--plots", type=Path, metavar="DIR", help="write ROC/FROC PNGs here")
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="choose thresholds on the validation split first and write them to cascade.json",
    )
    parser.add_argument(
        "--operating-point",
        choices=("sensitivity", "youden"),
        help="with --calibrate: 'sensitivity' (the stated sensitivities of cascade.json, "
        "default 0.9) or 'youden' (max sensitivity + specificity - 1); stored in cascade.json",
    )
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    parser.set_defaults(func=run)


def _progress_bar(total: int) -> Any:
    """A ``(done, total)`` callback drawing a tqdm bar on a terminal; silent when piped."""
    import sys

    from tqdm import tqdm

    bar = tqdm(total=total, desc="images", unit="img", disable=not sys.stderr.isatty())

    def update(done: int, _total: int) -> None:
        bar.update(done - bar.n)
        if done >= _total:
            bar.close()

    return update


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_table(doc: dict[str, Any]) -> str:
    """Readable text table of an evaluation document."""
    head = (
        f"{doc['dataset']} / {doc['split']}: {doc['n_images']} images, "
        f"{doc['n_patients']} patients, {doc['n_lesions']} lesions"
    )
    cols = ("concept", "AUC abn [95% CI]", "AUC mal [95% CI]", "acc", "F1", "sens mal", "spec")
    rows: list[tuple[str, ...]] = [cols]
    froc_lines = []
    for name, m in doc["concepts"].items():

        def auc(task: str, m: dict[str, Any] = m) -> str:
            if f"auc_{task}" not in m:
                return "n/a"
            ci = m.get(f"auc_{task}_ci")
            span = f" [{ci[0]:.2f}-{ci[1]:.2f}]" if ci else ""
            return _fmt(m[f"auc_{task}"]) + span

        rows.append(
            (
                name,
                auc("abnormal"),
                auc("malignant"),
                _fmt(m["accuracy"]),
                _fmt(m["macro_f1"]),
                _fmt(m["sensitivity_malignant"]),
                _fmt(m["specificity"]),
            )
        )
        if "froc" in m:
            f = m["froc"]
            froc_lines.append(
                f"FROC {name} ({m['froc_hit']}): sens @0.5 {_fmt(f['0.5'])}, "
                f"@1 {_fmt(f['1'])}, @2 {_fmt(f['2'])} FP/image"
                + _merged_text(m.get("froc_findings"))
            )
        elif "froc_note" in m:
            froc_lines.append(f"FROC {name}: {m['froc_note']}")
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = [head, ""]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(3, "  ".join("-" * w for w in widths))
    notes = {f"{c}: {m[k]}" for c, m in doc["concepts"].items() for k in m if k.endswith("_note")}
    out = [*lines, "", *froc_lines, *sorted(n for n in notes if "FROC" not in n)]
    out += lesion_type_lines(doc.get("lesion_types") or {})
    return "\n".join(out + calibration_lines(doc.get("probability_calibration") or {}))


def calibration_lines(probs: dict[str, Any]) -> list[str]:
    """det-hier's shipped calibration on these images (hdcnn.evaluation.calibration)."""
    if not probs:
        return []
    lines = ["", "det-hier probabilities, raw -> calibrated (maps of cascade.json):"]
    for name, r in probs.items():
        b, a = r["before"], r["after"]
        lines.append(
            f"  {name} ({r['n']}, {r['n_positive']} positive): Brier {_fmt(b['brier'])} -> "
            f"{_fmt(a['brier'])}, ECE {_fmt(b['ece'])} -> {_fmt(a['ece'])}"
        )
    return lines


def lesion_type_lines(types: dict[str, Any]) -> list[str]:
    """det-hier per lesion type (:mod:`hdcnn.evaluation.lesion_types`) as text lines."""
    if not types:
        return []
    lines = [
        "",
        "det-hier by lesion type (recall: lesions with a candidate; AUC vs normal images):",
    ]
    for kind, t in types.items():
        f = t["froc"]
        ci = t.get("auc_vs_normal_ci")
        span = f" [{ci[0]:.2f}-{ci[1]:.2f}]" if ci else ""
        lines.append(
            f"  {kind}: {t['n_lesions']} lesions, recall {_fmt(t['candidate_recall'])}, "
            f"FROC @0.5/1/2 {_fmt(f['0.5'])}/{_fmt(f['1'])}/{_fmt(f['2'])}"
            f"{_merged_text(t.get('froc_findings'))}, "
            f"AUC {_fmt(t['auc_vs_normal'])}{span} ({t['n_images']} images)"
        )
    return lines


def _merged_text(merged: dict[str, Any] | None) -> str:
    """``; on merged findings 0.570/0.651/0.733`` (:mod:`hdcnn.evaluation.findings_froc`)."""
    if not merged:
        return ""
    return "; on merged findings " + "/".join(_fmt(merged[k]) for k in ("0.5", "1", "2"))


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write JSON and plots; returns the exit code."""
    from hdcnn.evaluation.engine import evaluate
    from hdcnn.evaluation.plots import save_plots
    from hdcnn.utils import atomic_write_text

    doc = evaluate(
        args.dataset,
        args.root,
        args.weights,
        split=args.split,
        calibrate=args.calibrate,
        operating_point=args.operating_point,
        n_boot=args.n_boot,
        seed=args.seed,
        progress=_progress_bar,
    )
    print(format_table(doc))
    if args.plots is not None:
        for path in save_plots(doc, args.plots):
            print(f"wrote {path}")
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
