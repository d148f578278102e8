"""``python -m hdcnn predict``: run the cascade on mammogram files, print a table, write JSON.

JSON (``--json OUT``, written atomically)::

    {"model": {"name", "sha256"},
     "results": [{"input", "label", "p_abnormal", "p_malignant",
                  "calibrated": {"p_abnormal", "p_malignant"}, "borderline": [decision, ...],
                  "findings": [{"box": [x1, y1, x2, y2] original pixels, "detector_score",
                                "p_lesion", "p_malignant", "label", "p_lesion_calibrated"}],
                  "timing_ms": {"read", "preprocess", "detect", "classify", "total"}}
                 | {"input", "error"}],
     "exams": [{"exam", "label", "p_abnormal", "p_malignant", "calibrated", "borderline",
                "breasts": {...}}]}  # --exam

``p_abnormal`` / ``p_malignant`` are the scores the verdict is decided on; ``calibrated``,
``borderline`` and ``p_lesion_calibrated`` appear when the weights ship a calibration
(:mod:`hdcnn.calibration`): calibrated probabilities, and the decisions ("abnormal",
"malignant") whose score lies within the measured uncertainty of its threshold. The table
marks such a verdict "borderline".

An input that cannot be read gets an ``{"input", "error"}`` entry, the others are still
processed, and the exit status is 1 (even an unforeseen failure on one file is reported as
that file's error, so the good files' results are always written). The JSON is strict: no
``NaN`` or ``Infinity`` (a broken model is an error, not a number).

``--no-paths`` replaces each input path (CBIS-DDSM paths hold patient ids) by
``"#<n> <hash>"``: the position on the command line and the first 12 hex digits of an HMAC
of the path under a key drawn for this run, so that the same path within one output is
recognisable but cannot be recovered or linked to another run.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import secrets
import sys
from pathlib import Path
from typing import Any

from hdcnn.report import SHORT_DISCLAIMER
from hdcnn.utils import DEFAULT_WEIGHTS_DIR

log = logging.getLogger(__name__)


def add_weights_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--weights DIR`` option of the commands that load the cascade."""
    parser.add_argument(
        "--weights",
        type=Path,
        default=DEFAULT_WEIGHTS_DIR,
        help="weights directory (default: the shipped models/)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` command to the CLI."""
    parser = subparsers.add_parser(
        "predict",
        help="classify mammograms (normal / benign / malignant) with the cascade",
        description="Run the detector + hierarchical classifier cascade on mammogram files "
        "(DICOM, PNG, JPEG, TIFF, PGM). " + SHORT_DISCLAIMER,
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files")
    add_weights_argument(parser)
    parser.add_argument(
        "--exam",
        action="store_true",
        help="also give a verdict per breast and per exam (inputs grouped by DICOM study; "
        "laterality and view from the file metadata)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write results as JSON here")
    parser.add_argument(
        "--max-candidates",
        type=int,
        metavar="N",
        help="classify only the N highest-scoring detector boxes (faster; default: the "
        "weights' own setting, 20 for the shipped models, with which the thresholds were "
        "chosen)",
    )
    parser.add_argument(
        "--no-paths",
        action="store_true",
        help="leave input paths out of the table and JSON (they can hold patient ids): each "
        "input is named '#<position> <hash>' instead, the hash keyed per run",
    )
    parser.add_argument(
        "--dicom-out",
        type=Path,
        metavar="DIR",
        help="also write DICOM results for DICOM inputs into DIR: a structured report "
        "(TID 1500; one per image, or one per exam with --exam) and a presentation state "
        "drawing the findings on each image, filed in the source's study with the source's "
        "patient identity kept (so a PACS files them with the study; see docs/DICOM.md)",
    )
    parser.set_defaults(func=run)


def anonymous_names(paths: list[Path]) -> list[str]:
    """``"#<n> <12 hex digits>"`` per path: position and a per-run keyed hash of the path."""
    key = secrets.token_bytes(32)
    return [
        f"#{i} {hmac.new(key, str(p).encode('utf-8', 'replace'), hashlib.sha256).hexdigest()[:12]}"
        for i, p in enumerate(paths, 1)
    ]


def predict_files(
    cascade: Any, paths: list[Path], *, exam: bool = False, names: list[str] | None = None
) -> dict[str, Any]:
    """Predict every file; unreadable inputs become error entries.

    The files are analysed in the process's analysis pool (:func:`hdcnn.scheduler.shared_pool`:
    as many at once as the usable cores allow, with the app's thread rule); the results keep
    the order of ``paths``.

    Args:
        cascade: a loaded :class:`hdcnn.cascade.Cascade`.
        paths: image files.
        exam: add per-breast and per-exam verdicts (grouped by de-identified study key).
        names: what to call each input in the document (default: its path).

    Returns:
        The JSON-ready document described in the module docstring.

    Raises:
        CheckpointError: the model gives non-finite outputs (broken weights): nothing it
            says can be trusted, so the whole run stops.
    """
    from hdcnn.analysis import group_exams
    from hdcnn.cascade import combine_exam
    from hdcnn.errors import CheckpointError, HDCNNError
    from hdcnn.reader import short_reason
    from hdcnn.scheduler import shared_pool

    names = names or [str(p) for p in paths]
    results: list[dict[str, Any]] = []
    groups: dict[str | None, list[tuple[str | None, str | None, Any]]] = {}
    pool = shared_pool()  # the app's thread rule: files run side by side, one per worker
    jobs = [
        pool.submit(cascade.predict, path, name=None if shown == str(path) else shown)
        for path, shown in zip(paths, names, strict=True)
    ]
    try:
        for job, shown in zip(jobs, names, strict=True):
            try:
                pred = job.result()
            except CheckpointError:
                raise
            except HDCNNError as exc:
                results.append({"input": shown, "error": exc.problem})
                log.warning("%s: %s", shown, exc.problem)
                continue
            except OSError as exc:  # e.g. a folder given as a file
                results.append({"input": shown, "error": exc.strerror or type(exc).__name__})
                log.warning("%s: %s", shown, exc.strerror or type(exc).__name__)
                continue
            except Exception as exc:  # a bug must not cost the other files their results
                problem = f"internal error ({short_reason(exc)})"
                results.append({"input": shown, "error": problem})
                log.error("%s: %s", shown, problem)
                continue
            entry = pred.to_dict()
            entry["input"] = shown
            results.append(entry)
            meta = pred.meta
            key = getattr(meta, "study_key", None)
            groups.setdefault(key, []).append(
                (getattr(meta, "laterality", None), getattr(meta, "view", None), pred)
            )
    finally:  # a broken model or an interrupt: the files still queued never run
        for job in jobs:
            job.cancel()
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


def _label(entry: dict[str, Any]) -> str:
    """A verdict's label, marked when it is borderline."""
    near = entry.get("borderline")
    return f"{entry['label']} (borderline: {', '.join(near)})" if near else entry["label"]


def _p(entry: dict[str, Any], name: str) -> str:
    """A score, with its calibrated probability when there is one."""
    cal = (entry.get("calibrated") or {}).get(name)
    return f"{entry[name]:.3f}" + ("" if cal is None else f" (cal {cal:.2f})")


def format_table(doc: dict[str, Any]) -> str:
    """Readable text table of a predict document."""
    rows = [("input", "label", "p_abnormal", "p_malignant", "findings", "ms")]
    for r in doc["results"]:
        name = r["input"] if r["input"].startswith("#") else Path(r["input"]).name
        if "error" in r:
            rows.append((name, "ERROR", "", "", r["error"], ""))
            continue
        kept = sum(1 for f in r["findings"] if f["label"] != "rejected")
        rows.append(
            (
                name,
                _label(r),
                _p(r, "p_abnormal"),
                _p(r, "p_malignant"),
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
            f"{lat}: {_label(b)} (p_abn {_p(b, 'p_abnormal')}, p_mal {_p(b, 'p_malignant')})"
            for lat, b in exam["breasts"].items()
        )
        lines.append(f"{title}: {_label(exam)}  [{breasts}]")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Load the cascade, predict every path, print a table, write JSON; returns the exit code."""
    from hdcnn.cascade import load_cascade
    from hdcnn.scheduler import shared_pool
    from hdcnn.utils import atomic_write_text

    shared_pool()  # threads chosen by the one rule before torch runs anything
    cascade = load_cascade(args.weights, known_answers="require")
    if args.max_candidates is not None:
        if args.max_candidates < 1:
            print("error: --max-candidates must be at least 1", file=sys.stderr)
            return 2
        cascade.max_candidates = args.max_candidates
    paths = list(args.paths)
    names = anonymous_names(paths) if getattr(args, "no_paths", False) else None
    recorder = None
    if getattr(args, "dicom_out", None) is not None:
        from hdcnn.dicomout.export import PredictionRecorder

        recorder = cascade = PredictionRecorder(cascade)
    doc = predict_files(cascade, paths, exam=args.exam, names=names)
    text = json.dumps(doc, indent=2, allow_nan=False) + "\n"  # strict JSON, checked first
    print(format_table(doc))
    print(f"model {doc['model']['name']} ({doc['model']['sha256'][:12]}). {SHORT_DISCLAIMER}")
    if args.json is not None:
        atomic_write_text(args.json, text)
        log.info("wrote %s", args.json)
    skipped: list[tuple[Path, str]] = []
    if recorder is not None:
        written, skipped = recorder.write(args.dicom_out, exam=args.exam, order=paths)
        print(f"wrote {len(written)} DICOM object(s) to {args.dicom_out}")
        for path, why in skipped:
            shown = names[paths.index(path)] if names else str(path)
            print(f"{shown}: no DICOM output: {why}", file=sys.stderr)
    failed = sum(1 for r in doc["results"] if "error" in r)
    if failed:
        print(f"{failed} of {len(doc['results'])} inputs could not be read", file=sys.stderr)
        return 1
    return 1 if skipped else 0
