"""The FROC counted on merged findings (:mod:`hdcnn.evaluation.findings_froc`) of a finished
cross-validation's out-of-fold scores, beside the candidate FROC its report holds.

Usage::

    python benchmarks/findings_froc.py --run models --root ../shared/data/mini-mias [--write]

``--run`` is a weights folder shipped by ``python -m hdcnn cv --ship`` or a run folder: it
holds ``oof_predictions.json`` and the report (``experiments.json`` or ``cv_report.json``).
Every figure of the report that the out-of-fold scores determine (each concept's AUCs,
intervals and candidate FROC; each lesion type's recall, FROC and AUC) is computed again
and must equal the report's: the new figures are then the report's own scores counted
another way. ``--write`` adds ``froc_findings`` to the report's detector concepts and lesion
types (written atomically); runs of ``cv`` after this change write them themselves.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hdcnn.data.adapters import load_dataset  # noqa: E402
from hdcnn.evaluation.compare import load_oof  # noqa: E402
from hdcnn.evaluation.experiment import DETECTOR_CONCEPTS, evaluate_concept  # noqa: E402
from hdcnn.evaluation.lesion_types import lesion_type_figures  # noqa: E402
from hdcnn.utils import atomic_write_text  # noqa: E402

REPORTS = ("experiments.json", "cv_report.json")


def _three(f: dict | None) -> str:
    return "—" if not f else " / ".join(f"{float(f[k]):.3f}" for k in ("0.5", "1", "2"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="weights or run folder")
    p.add_argument("--dataset", default="mias")
    p.add_argument("--root", required=True, help="the run's dataset folder")
    p.add_argument("--write", action="store_true", help="add the figures to the report")
    args = p.parse_args()
    report_file = next((args.run / n for n in REPORTS if (args.run / n).is_file()), None)
    if report_file is None:
        print(f"{args.run}: no {' or '.join(REPORTS)}", file=sys.stderr)
        return 2
    report = json.loads(report_file.read_text(encoding="utf-8"))
    results = load_oof(args.run)
    records = load_dataset(args.dataset, args.root).records
    for r in results:
        if r.index >= len(records) or records[r.index].patient_id != r.patient_id:
            print(f"{args.root}: image {r.index} is not the run's image", file=sys.stderr)
            return 2
    n_boot, seed = report["bootstrap"]["n_boot"], report["bootstrap"]["seed"]
    disagree: list[str] = []
    print("| concept | candidate FROC @0.5 / 1 / 2 | on merged findings |")
    print("| --- | --- | --- |")
    for name in DETECTOR_CONCEPTS:
        shipped = report["concepts"].get(name)
        if shipped is None:
            continue
        again = evaluate_concept(results, name, n_boot=n_boot, seed=seed)
        disagree += [
            f"{name}.{k}"
            for k in ("auc_abnormal", "auc_abnormal_ci", "froc")
            if again[k] != shipped[k]
        ]
        shipped["froc_findings"] = again["froc_findings"]
        print(f"| {name} | {_three(again['froc'])} | {_three(again['froc_findings'])} |")
    kinds = [[str(les.kind) for les in records[r.index].lesions] for r in results]
    by_type = lesion_type_figures(results, kinds, n_boot=n_boot, seed=seed)
    print("\n| lesion type | det-hier candidate FROC @0.5 / 1 / 2 | on merged findings |")
    print("| --- | --- | --- |")
    for kind, again in by_type.items():
        shipped = report.get("lesion_types", {}).get(kind)
        if shipped is None:
            disagree.append(f"lesion_types.{kind}: not in the report")
            continue
        disagree += [
            f"lesion_types.{kind}.{k}"
            for k in ("candidate_recall", "froc", "auc_vs_normal")
            if again[k] != shipped[k]
        ]
        shipped["froc_findings"] = again["froc_findings"]
        print(f"| {kind} | {_three(again['froc'])} | {_three(again['froc_findings'])} |")
    if disagree:
        print(f"{report_file}: the out-of-fold scores do not give {disagree}", file=sys.stderr)
        return 1
    if args.write:
        atomic_write_text(report_file, json.dumps(report, indent=2, allow_nan=False) + "\n")
        print(f"wrote froc_findings into {report_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
