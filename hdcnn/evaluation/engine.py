"""A weights folder's four concepts on one dataset split (``python -m hdcnn evaluate``).

The split is the training split: ``cascade.json["split"]["patients"][NAME]`` when the weights
were trained on this dataset, otherwise recomputed with ``patient_split`` from the stored seed
and fractions; weights shipped after k-fold cross-validation have no held-out split of their
own dataset. ``calibrate`` first chooses every concept's thresholds on the validation split
(docs/CASCADE.md) and writes them into ``cascade.json``. Output is deterministic: the same
weights, data and ``seed`` give the same document.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "all")


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
    progress: Callable[[int], Callable[[int, int], None]] | None = None,
) -> dict[str, Any]:
    """Run the experiment and return the evaluation document (JSON-ready).

    ``progress(total)`` may return a ``(done, total)`` callback (the CLI draws a bar with it).

    Raises:
        DatasetError: the dataset cannot be loaded or the split is empty.
        CheckpointError: the weights directory cannot be loaded.
    """
    from hdcnn.data.adapters import load_dataset
    from hdcnn.errors import DatasetError
    from hdcnn.evaluation.experiment import Experiment, evaluate_results, updated_config
    from hdcnn.evaluation.experiment import calibrate as choose

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
        chosen = choose(
            experiment.run(val, progress=progress(len(val)) if progress else None), experiment
        )
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
    results = experiment.run(images, progress=progress(len(images)) if progress else None)
    body = evaluate_results(results, experiment.concepts, n_boot=n_boot, seed=seed)
    from hdcnn.evaluation.lesion_types import lesion_type_figures

    kinds = [[str(les.kind) for les in record.lesions] for record in images]
    by_type = lesion_type_figures(results, kinds, n_boot=n_boot, seed=seed)
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
    if by_type:
        doc["lesion_types"] = by_type
    hier = experiment.detectors.get("det-hier")
    if hier is not None and hier.calibration is not None:
        from hdcnn.evaluation.calibration import evaluate_calibration

        probs = evaluate_calibration(results, hier.calibration, n_boot=n_boot, seed=seed)
        if probs:
            doc["probability_calibration"] = probs
    if experiment.notes:
        doc["concept_notes"] = dict(experiment.notes)
    if calibration is not None:
        doc["calibration"] = calibration
    return doc
