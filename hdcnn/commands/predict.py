"""``python -m hdcnn predict``: run the cascade on mammogram files, print a table, write JSON.

JSON (``--json OUT``, written atomically)::

    {"model": {"name", "sha256"},
     "results": [{"input", "label", "p_abnormal", "p_malignant",
                  "findings": [{"box": [x1, y1, x2, y2] original pixels, "detector_score",
                                "p_lesion", "p_malignant", "label"}],
                  "timing_ms": {"read", "preprocess", "detect", "classify", "total"}}
                 | {"input", "error"}],
     "exams": [{"exam", "label", "p_abnormal", "p_malignant", "breasts": {...}}]}  # --exam

An input that cannot be read gets an ``{"input", "error"}`` entry, the others are still
processed, and the exit status is 1. Only file names and de-identified study keys are shown.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from hdcnn.utils import DEFAULT_WEIGHTS_DIR

log = logging.getLogger(__name__)

DISCLAIMER = "Research demo, not a medical device."


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` command to the CLI."""
    parser = subparsers.add_parser(
        "predict",
        help="classify mammograms (normal / benign / malignant) with the cascade",
        description="Run the detector + hierarchical classifier cascade on mammogram files "
        "(DICOM, PNG, JPEG, TIFF, PGM). " + DISCLAIMER,
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files")
    parser.add_argument(
        "--weights",
        type=Path,
        default=DEFAULT_WEIGHTS_DIR,
        help="weights directory (default: the shipped models/)",
    )
    parser.add_argument(
        "--exam",
        action="store_true",
        help="also give a verdict per breast and per exam (inputs grouped by DICOM study; "
        "laterality and view from the file metadata)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write results as JSON here")
    parser.set_defaults(func=run)


def predict_files(cascade: Any, paths: list[Path], *, exam: bool = False) -> dict[str, Any]:
    """Predict every file; unreadable inputs become error entries.

    Args:
        cascade: a loaded :class:`hdcnn.cascade.Cascade`.
        paths: image files.
        exam: add per-breast and per-exam verdicts (grouped by de-identified study key).

    Returns:
        The JSON-ready document described in the module docstring.
    """
    from hdcnn.analysis import group_exams
    from hdcnn.cascade import combine_exam
    from hdcnn.errors import HDCNNError

    results: list[dict[str, Any]] = []
    groups: dict[str | None, list[tuple[str | None, str | None, Any]]] = {}
    for path in paths:
        try:
            pred = cascade.predict(path)
        except HDCNNError as exc:
            results.append({"input": str(path), "error": exc.problem})
            continue
        except OSError as exc:  # e.g. a folder given as a file
            results.append({"input": str(path), "error": exc.strerror or type(exc).__name__})
            continue
        entry = pred.to_dict()
        entry["input"] = str(path)
        results.append(entry)
        meta = pred.meta
        key = getattr(meta, "study_key", None)
        groups.setdefault(key, []).append(
            (getattr(meta, "laterality", None), getattr(meta, "view", None), pred)
        )
    exams = (
        [
            combine_exam(items, cascade.thresholds, key=key).to_dict()
            for key, items in group_exams(groups).items()
        ]
        if exam
        else []
    )
    return {
        "model": {"name": cascade.name, "sha256": cascade.sha256},
        "results": results,
        "exams": exams,
    }


def exam_groups(
    groups: dict[str | None, list[tuple[str | None, str | None, Any]]],
) -> dict[str | None, list[tuple[str | None, str | None, Any]]]:
    """Exams from inputs grouped by study key: :func:`hdcnn.analysis.group_exams`, the one
    grouping rule of the CLI, the library and the app."""
    from hdcnn.analysis import group_exams

    return group_exams(groups)


def format_table(doc: dict[str, Any]) -> str:
    """Readable text table of a predict document."""
    rows = [("input", "label", "p_abnormal", "p_malignant", "findings", "ms")]
    for r in doc["results"]:
        name = Path(r["input"]).name
        if "error" in r:
            rows.append((name, "ERROR", "", "", r["error"], ""))
            continue
        kept = sum(1 for f in r["findings"] if f["label"] != "rejected")
        rows.append(
            (
                name,
                r["label"],
                f"{r['p_abnormal']:.3f}",
                f"{r['p_malignant']:.3f}",
                f"{kept} kept / {len(r['findings'])}",
                f"{r['timing_ms']['total']:.0f}",
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for exam in doc.get("exams", []):
        title = f"exam {exam['exam']}" if exam["exam"] else "exam (no study key)"
        breasts = ", ".join(
            f"{lat}: {b['label']} (p_abn {b['p_abnormal']:.3f}, p_mal {b['p_malignant']:.3f})"
            for lat, b in exam["breasts"].items()
        )
        lines.append(f"{title}: {exam['label']}  [{breasts}]")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Load the cascade, predict every path, print a table, write JSON; returns the exit code."""
    from hdcnn.cascade import load_cascade
    from hdcnn.utils import atomic_write_text

    cascade = load_cascade(args.weights)
    doc = predict_files(cascade, list(args.paths), exam=args.exam)
    print(format_table(doc))
    print(f"model {doc['model']['name']} ({doc['model']['sha256'][:12]}). {DISCLAIMER}")
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(doc, indent=2) + "\n")
        log.info("wrote %s", args.json)
    failed = sum(1 for r in doc["results"] if "error" in r)
    if failed:
        print(f"{failed} of {len(doc['results'])} inputs could not be read", file=sys.stderr)
        return 1
    return 0
