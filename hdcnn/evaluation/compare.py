"""Paired comparison of two runs' scores of the same images.

Two cross-validation runs of the same data (another fold assignment, a 1,024-px detector,
...) each write every image's out-of-fold scores (``oof_predictions.json``). Their figures
can only be compared fairly on the same images, with an interval for the *difference*:
:func:`compare_runs` gives, per concept, both AUCs and ``AUC(b) - AUC(a)`` with a paired
patient-bootstrap interval (:func:`hdcnn.evaluation.metrics.bootstrap_auc_difference`), and
both runs' FROC for the detector concepts. Boxes of ``oof_predictions.json`` are in original
pixels, so runs with different model-image sizes compare directly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from hdcnn.errors import DatasetError
from hdcnn.evaluation.experiment import DETECTOR_CONCEPTS, OOF_FILE, ImageResult
from hdcnn.terms import CLASSES, Label


def load_oof(path: str | os.PathLike[str]) -> list[ImageResult]:
    """Every image's scores from a run folder or an ``oof_predictions.json`` file.

    Raises:
        DatasetError: the file is missing, not JSON, or not a list of scored images.
    """
    file = Path(path)
    if file.is_dir():
        file = file / OOF_FILE
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
        return [ImageResult.from_dict(d) for d in doc["images"]]
    except OSError as exc:
        raise DatasetError(str(file), f"cannot read it ({exc.strerror or exc})") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(str(file), f"not JSON ({exc.msg}, line {exc.lineno})") from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DatasetError(
            str(file), f"not out-of-fold scores: an 'images' list as cv writes it ({exc!r})"
        ) from exc


def _pairs(a: list[ImageResult], b: list[ImageResult], names: tuple[str, str]) -> None:
    """Refuse two runs that did not score the same images with the same truths."""
    key_a = [(r.index, r.patient_id, r.truth) for r in a]
    key_b = [(r.index, r.patient_id, r.truth) for r in b]
    if key_a != key_b:
        differ = next(
            (i for i, (x, y) in enumerate(zip(key_a, key_b, strict=False)) if x != y),
            min(len(a), len(b)),
        )
        raise DatasetError(
            names[1],
            f"scores other images than {names[0]} ({len(b)} against {len(a)} images; first "
            f"difference at position {differ}): a paired comparison needs the same images",
        )


def compare_runs(
    a: list[ImageResult],
    b: list[ImageResult],
    *,
    names: tuple[str, str] = ("a", "b"),
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Per concept scored by both runs: ``auc_<task>`` ``[a, b]``, ``minus_<task>``
    ``[b - a, low, high]`` (paired patient bootstrap, 95 %; ``None`` where undefined) for the
    tasks ``abnormal`` and ``malignant``, and ``froc`` ``{"a": {...}, "b": {...}}`` (0.5 / 1 /
    2 false positives per image; ``None`` without lesion boxes) for the detector concepts.
    Each run's AUCs and FROC are :func:`~hdcnn.evaluation.experiment.evaluate_concept`'s, the
    figures its own report gives.

    Raises:
        DatasetError: the runs scored other images (``names`` name them in the message).
    """
    from hdcnn.evaluation import metrics
    from hdcnn.evaluation.experiment import evaluate_concept

    _pairs(a, b, names)
    out: dict[str, Any] = {
        "runs": list(names),
        "bootstrap": {"n_boot": n_boot, "seed": seed, "level": 0.95, "unit": "patient"},
        "concepts": {},
    }
    scored = [c for c in {c: None for r in a for c in r.outputs} if any(c in r.outputs for r in b)]
    for concept in scored:
        keep = [
            i
            for i, r in enumerate(a)
            if r.truth in CLASSES and concept in r.outputs and concept in b[i].outputs
        ]
        # each run's own figures, computed as its report computes them
        sides = [
            evaluate_concept([run[i] for i in keep], concept, n_boot=n_boot, seed=seed)
            for run in (a, b)
        ]
        truth = np.array([str(a[i].truth) for i in keep])
        groups = np.array([a[i].patient_id for i in keep])
        row: dict[str, Any] = {"n_images": len(keep)}
        for task, y in (
            ("abnormal", truth != Label.NORMAL),
            ("malignant", truth == Label.MALIGNANT),
        ):
            sa, sb = (
                np.array([getattr(run[i].outputs[concept], f"p_{task}") for i in keep])
                for run in (a, b)
            )
            row[f"auc_{task}"] = [_r(side.get(f"auc_{task}")) for side in sides]
            got = metrics.bootstrap_auc_difference(y, sb, sa, groups, n_boot=n_boot, seed=seed)
            row[f"minus_{task}"] = (
                None if got is None or got[1] is None else [_r(v) for v in (got[0], *got[1])]
            )
        if concept in DETECTOR_CONCEPTS:
            row["froc"] = {
                name: {k: _r(side["froc"][k]) for k in ("0.5", "1", "2")}
                if "froc" in side
                else None
                for name, side in zip(("a", "b"), sides, strict=True)
            }
        out["concepts"][concept] = row
    return out


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
