"""Per lesion type: what det-hier finds, and which images it tells from normal.

The one implementation of the per-type table, for any labelled set of images scored by the
cascade (``python -m hdcnn evaluate``; cross-validation's out-of-fold scores): for each lesion
kind of the manifest (mass, calcification, distortion, asymmetry, ...) and for ``all``:

- ``candidate_recall``: lesions of that kind hit (centre-in-box,
  :func:`hdcnn.evaluation.metrics.lesion_hits`) by one of det-hier's candidates (detector score
  at least ``t_det``, at most ``max_candidates``: the boxes in its output);
- ``froc``: det-hier's FROC at 0.5 / 1 / 2 false positives per image with only that kind's
  lesions as truth (a box on a lesion of another kind counts as a false positive);
  ``froc_findings`` the same counted on merged findings (:mod:`hdcnn.evaluation.findings_froc`);
- ``auc_vs_normal``: AUC of det-hier's P(abnormal), images with a lesion of that kind against
  the normal images, with a patient-bootstrap 95 % interval.

Boxes are in original pixels on both sides (predictions and the manifest's lesions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hdcnn.terms import Label

#: The concept the table describes (the product).
CONCEPT = "det-hier"


def _r(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


def lesion_type_figures(
    results: Sequence[Any],
    kinds: Sequence[Sequence[str]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The per-type table (see module docstring).

    Args:
        results: :class:`~hdcnn.evaluation.experiment.ImageResult` per image; images without a
            det-hier output (unreadable) are left out.
        kinds: per result, the kind of each of its ``lesion_boxes`` (same order).
        n_boot: patient-bootstrap resamples of the AUC intervals.
        seed: bootstrap seed.

    Returns:
        ``{kind: {"n_lesions", "n_images", "auc_vs_normal", "auc_vs_normal_ci",
        "candidate_recall", "froc": {"0.5", "1", "2", "mean"}}}`` for every kind, then
        ``"all"``; ``{}`` when no image has a det-hier output and a lesion box.

    Raises:
        ValueError: ``kinds`` does not match the results' lesion boxes.
    """
    from hdcnn.evaluation import metrics
    from hdcnn.evaluation.findings_froc import findings_froc

    if len(kinds) != len(results):
        raise ValueError(f"{len(kinds)} kind lists for {len(results)} results")
    rows = []
    for r, k in zip(results, kinds, strict=True):
        if len(k) != len(r.lesion_boxes):
            raise ValueError(f"image {r.index}: {len(k)} kinds for {len(r.lesion_boxes)} lesions")
        if CONCEPT in r.outputs:
            rows.append((r, [str(v) for v in k]))
    if not any(r.lesion_boxes for r, _ in rows):
        return {}
    outputs = [r.outputs[CONCEPT] for r, _ in rows]
    boxes = [np.zeros((0, 4)) if o.boxes is None else np.asarray(o.boxes) for o in outputs]
    preds = [
        {"boxes": b, "scores": np.zeros(0) if o.scores is None else o.scores}
        for b, o in zip(boxes, outputs, strict=True)
    ]
    normal = np.array([r.truth == Label.NORMAL for r, _ in rows])
    abnormal = np.array([r.truth in (Label.BENIGN, Label.MALIGNANT) for r, _ in rows])
    p_abnormal = np.array([o.p_abnormal for o in outputs], dtype=np.float64)
    patients = np.array([r.patient_id for r, _ in rows])
    out: dict[str, Any] = {}
    for kind in [*sorted({v for _, k in rows for v in k}), "all"]:
        truths = [
            np.asarray(
                [b for b, v in zip(r.lesion_boxes, k, strict=True) if kind in ("all", v)],
                dtype=np.float64,
            ).reshape(-1, 4)
            for r, k in rows
        ]
        found = sum(
            int(metrics.lesion_hits(b, t).any(axis=0).sum())
            for b, t in zip(boxes, truths, strict=True)
        )
        total = sum(len(t) for t in truths)
        has = abnormal & np.array([len(t) > 0 for t in truths])
        fr = metrics.froc(preds, truths)
        merged = findings_froc(preds, truths)
        pick = normal | has
        auc = metrics.roc_auc(has[pick], p_abnormal[pick])
        ci = metrics.bootstrap_auc_ci(
            has[pick], p_abnormal[pick], patients[pick], n_boot=n_boot, seed=seed
        )
        out[kind] = {
            "n_lesions": total,
            "n_images": int(has.sum()),
            "auc_vs_normal": _r(auc, 4),
            "auc_vs_normal_ci": None if ci is None else [round(v, 4) for v in ci],
            "candidate_recall": round(found / total, 6) if total else None,
            "froc": {k: _r(fr[k]) for k in ("0.5", "1", "2", "mean")},
            "froc_findings": {k: _r(merged[k]) for k in ("0.5", "1", "2", "mean")},
        }
    return out
