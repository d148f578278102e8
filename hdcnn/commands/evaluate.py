"""``python -m hdcnn evaluate``: the four concepts on one dataset split, metrics and plots.

The split is the training split: ``cascade.json["split"]["patients"][NAME]`` when the weights
were trained on this dataset, otherwise recomputed with ``patient_split`` from the stored seed
and fractions. ``--calibrate`` first chooses every concept's thresholds on the validation split
(docs/CASCADE.md) and writes them into ``cascade.json``. Output is deterministic: the same
weights, data and ``--seed`` give the same JSON byte for byte.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from hdcnn.utils import DEFAULT_WEIGHTS_DIR

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "all")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command to the CLI."""
    parser = subparsers.add_parser(
        "evaluate",
        help="compare the four concepts (flat/hierarchical x whole-image/detector) on a split",
        description="Evaluate flat-whole, hier-whole, det-flat and det-hier on the same images: "
        "AUCs with patient-level bootstrap 95%% CIs, three-class verdict metrics, FROC. "
        "Research demo, not a medical device.",
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


def select_split(manifest: Any, config: dict[str, Any], dataset: str, split: str) -> Any:
    """The images of ``split`` (see module docstring).

    Args:
        manifest: the whole dataset's :class:`~hdcnn.data.manifest.Manifest`.
        config: ``cascade.json`` as a dict.
        dataset: adapter name given on the command line.
        split: ``train`` | ``val`` | ``test`` | ``all``.

    Returns:
        A :class:`~hdcnn.data.manifest.Manifest`.
    """
    from hdcnn.data.splits import patient_split
    from hdcnn.errors import DatasetError

    info = config.get("split") or {}
    same_dataset = str(info.get("dataset", "")).replace("_", "-") == dataset.replace("_", "-")
    if same_dataset and info.get("kind") == "k-fold":
        # shipped after cross-validation: trained on every patient of this dataset
        if split != "all":
            raise DatasetError(
                dataset,
                f"these weights were trained on every patient of {dataset} after k-fold "
                "cross-validation, so it has no held-out split; the out-of-fold figures are "
                "in experiments.json (python -m hdcnn cv). --split all scores the training "
                "images themselves (in-sample).",
            )
        log.warning("scoring the images these weights were trained on: figures are in-sample")
    if split == "all":
        return manifest
    patients = (info.get("patients") or {}).get(split)
    if patients is not None and same_dataset:
        subset = manifest.subset(patients)
        if len(subset):
            return subset
        log.warning("stored %s patients not found in this dataset; recomputing the split", split)
    fractions = tuple(float(f) for f in info.get("fractions", (0.6, 0.2, 0.2)))
    seed = int(info.get("seed", 0))
    return patient_split(manifest, fractions=fractions, seed=seed)[split]


def evaluate(
    dataset: str,
    root: Path,
    weights: Path,
    *,
    split: str = "test",
    calibrate: bool = False,
    operating_point: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the experiment and return the evaluation document (JSON-ready).

    Raises:
        DatasetError: the dataset cannot be loaded or the split is empty.
        CheckpointError: the weights directory cannot be loaded.
    """
    from hdcnn.data.adapters import load_dataset
    from hdcnn.errors import DatasetError
    from hdcnn.experiment import Experiment, evaluate_results, updated_config
    from hdcnn.experiment import calibrate as choose

    manifest = load_dataset(dataset, root)
    experiment = Experiment(weights)
    calibration: dict[str, Any] | None = None
    if calibrate:
        if operating_point is not None:
            ops = dict(experiment.config.get("operating_points") or {})
            experiment.config["operating_points"] = {**ops, "rule": operating_point}
        val = select_split(manifest, experiment.config, dataset, "val")
        if not len(val):
            raise DatasetError(str(root), "the validation split is empty: cannot calibrate")
        chosen = choose(experiment.run(val, progress=_progress_bar(len(val))), experiment)
        from hdcnn.config import CascadeConfig

        new = CascadeConfig.from_json(updated_config(experiment.config, chosen))
        path = new.save(weights, hash_files=False)
        log.info("wrote calibrated thresholds to %s", path)
        calibration = {
            "split": "val",
            "n_images": len(val),
            "thresholds": {c: t.to_dict() for c, t in chosen.items()},
        }
        experiment = Experiment(weights)
    images = select_split(manifest, experiment.config, dataset, split)
    if not len(images):
        raise DatasetError(str(root), f"the {split} split has no images")
    results = experiment.run(images, progress=_progress_bar(len(images)))
    body = evaluate_results(results, experiment.concepts, n_boot=n_boot, seed=seed)
    cascade = experiment.cascade
    doc: dict[str, Any] = {
        "dataset": dataset,
        "split": split,
        "model": {
            "name": str(experiment.config.get("name") or Path(weights).resolve().name),
            "sha256": cascade.sha256 if cascade is not None else None,
        },
        **body,
    }
    if experiment.notes:
        doc["concept_notes"] = dict(experiment.notes)
    if calibration is not None:
        doc["calibration"] = calibration
    return doc


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
            )
        elif "froc_note" in m:
            froc_lines.append(f"FROC {name}: {m['froc_note']}")
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = [head, ""]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(3, "  ".join("-" * w for w in widths))
    notes = {f"{c}: {m[k]}" for c, m in doc["concepts"].items() for k in m if k.endswith("_note")}
    return "\n".join([*lines, "", *froc_lines, *sorted(n for n in notes if "FROC" not in n)])


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write JSON and plots; returns the exit code."""
    from hdcnn.plots import save_plots
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
    )
    print(format_table(doc))
    if args.plots is not None:
        for path in save_plots(doc, args.plots):
            print(f"wrote {path}")
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
