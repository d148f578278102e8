"""A weights folder's four concepts on one dataset split (``python -m hdcnn evaluate``).

The split is the training split: ``CascadeConfig.split.patients[NAME]`` when the weights were
trained on this dataset, otherwise recomputed with ``patient_split`` from the stored seed and
fractions; weights shipped after k-fold cross-validation have no held-out split of their own
dataset. ``--split all`` warns, with the counts, when images' patients were in training.
``calibrate`` first chooses every concept's thresholds on the validation split (docs/CASCADE.md)
and writes them into ``cascade.json`` (and the known answers again). Output is deterministic:
the same weights, data and ``seed`` give the same document.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hdcnn.config import CascadeConfig

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "all")


def select_split(manifest: Any, config: CascadeConfig, dataset: str, split: str) -> Any:
    """The images of ``split`` (see module docstring).

    Args:
        manifest: the whole dataset's :class:`~hdcnn.data.manifest.Manifest`.
        config: the weights folder's settings.
        dataset: adapter name given on the command line.
        split: ``train`` | ``val`` | ``test`` | ``all``.

    Returns:
        A :class:`~hdcnn.data.manifest.Manifest`. With ``all``, a warning says how many of its
        patients (and images) the weights were trained on, when any were.
    """
    from hdcnn.data.splits import patient_split
    from hdcnn.errors import DatasetError

    info = config.split
    same_dataset = info.same_dataset(dataset)
    if same_dataset and info.kind == "k-fold" and split != "all":
        # shipped after cross-validation: trained on every patient of this dataset
        raise DatasetError(
            dataset,
            f"these weights were trained on every patient of {dataset} after k-fold "
            "cross-validation, so it has no held-out split; the out-of-fold figures are "
            "in experiments.json (python -m hdcnn cv). --split all scores every image given, "
            "in-sample where its patient was in the folds.",
        )
    if split == "all":
        if same_dataset:
            warn_in_sample(manifest, info.trained_patients())
        return manifest
    patients = info.patients.get(split)
    if patients is not None and same_dataset:
        subset = manifest.subset(list(patients))
        if len(subset):
            return subset
        log.warning("stored %s patients not found in this dataset; recomputing the split", split)
    return patient_split(manifest, fractions=info.fractions, seed=info.seed)[split]


def warn_in_sample(manifest: Any, trained: frozenset[str]) -> int:
    """Warn when images' patients are among those the weights were trained on.

    Returns:
        How many of the manifest's images belong to such patients (0: no warning).
    """
    patients = {r.patient_id for r in manifest}
    seen = patients & trained
    images = sum(1 for r in manifest if r.patient_id in trained)
    if seen:
        log.warning(
            "%d of %d patients (%d of %d images) were in the weights' training data: their "
            "figures are in-sample",
            len(seen),
            len(patients),
            images,
            len(manifest),
        )
    return images


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
            ops = replace(experiment.config.operating_points, rule=operating_point)
            experiment.config = replace(experiment.config, operating_points=ops)
        val = select_split(manifest, experiment.config, dataset, "val")
        if not len(val):
            raise DatasetError(str(root), "the validation split is empty: cannot calibrate")
        chosen = choose(
            experiment.run(val, progress=progress(len(val)) if progress else None), experiment
        )
        new = updated_config(experiment.config, chosen)
        path = new.save(weights, hash_files=False)
        log.info("wrote calibrated thresholds to %s", path)
        if new.known_answers is not None:  # the stored verdicts follow the new thresholds
            from hdcnn.cascade import stamp_known_answers

            stamp_known_answers(weights)
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
            "name": experiment.config.name or Path(weights).resolve().name,
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
