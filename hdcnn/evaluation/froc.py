"""The lesion-level FROC, which no library in the requirements offers: one hit rule,
:func:`lesion_hits` (a predicted box's centre inside the lesion's box), for model selection
and reporting alike; one IoU, :func:`hdcnn.boxes.box_iou` (re-exported); the curve
(:func:`froc_curve`) and its figures (:func:`froc`). Re-exported by
:mod:`hdcnn.evaluation.metrics`. The same figures counted on merged findings are in
:mod:`hdcnn.evaluation.findings_froc`.

Boxes: ``[x1, y1, x2, y2]`` float pixels of the image they belong to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hdcnn.boxes import box_iou  # noqa: F401  (the one IoU, re-exported)

#: The FP-per-image rates reported by :func:`froc` by default.
FROC_RATES: tuple[float, ...] = (0.5, 1.0, 2.0)

#: The one FROC hit rule (see :func:`lesion_hits`): a predicted box hits a lesion when the
#: box's centre lies inside the lesion's box.
FROC_HIT = "center"


def lesion_hits(pred_boxes: Any, lesions: Any) -> np.ndarray:
    """The one FROC hit rule: does predicted box ``p`` hit lesion ``l``?

    A prediction hits a lesion when the prediction's centre lies inside the lesion's box,
    borders included (:data:`FROC_HIT`). The same rule selects the detector's best epoch in
    training (:func:`hdcnn.train.engine.detector_metrics`) and gives the reported FROC.

    Why centre-in-box and not (also) an IoU threshold: it is a common hit criterion in
    mammography CAD FROC studies; it judges *where* the detector points, not how well its box
    matches an annotation whose extent is often loose (mini-MIAS gives a circle around the
    lesion, CBIS-DDSM a box around a hand-drawn ROI); and it needs no tuned constant. Adding
    "or IoU >= 0.3" (the rule training used before) only adds hits whose centre lies off the
    lesion, and made model selection disagree with the reported figure.

    Args:
        pred_boxes: ``(P, 4)`` predicted boxes.
        lesions: ``(L, 4)`` lesion boxes, in the same pixels.

    Returns:
        bool ``(P, L)``.
    """
    pred = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
    les = np.asarray(lesions, dtype=np.float64).reshape(-1, 4)
    cx = (pred[:, 0] + pred[:, 2]) / 2.0
    cy = (pred[:, 1] + pred[:, 3]) / 2.0
    return (
        (cx[:, None] >= les[None, :, 0])
        & (cx[:, None] <= les[None, :, 2])
        & (cy[:, None] >= les[None, :, 1])
        & (cy[:, None] <= les[None, :, 3])
    )


def _check_hit(hit: str) -> None:
    if hit != FROC_HIT:
        raise ValueError(
            f"hit must be {FROC_HIT!r} (the one FROC rule, centre in box), got {hit!r}"
        )


def image_predictions(pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes (P, 4), scores (P,))`` from a list of (box, score) or a detector output dict."""
    if isinstance(pred, Mapping):
        boxes, scores = pred["boxes"], pred["scores"]
    else:
        pairs = list(pred)
        boxes = [b for b, _ in pairs]
        scores = [s for _, s in pairs]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if boxes.shape[0] != scores.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {scores.shape[0]} scores")
    return boxes, scores


def froc_curve(
    predictions: Sequence[Any],
    truths: Sequence[Any],
    *,
    hit: str = FROC_HIT,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Free-response ROC curve over all images.

    A predicted box *hits* a lesion by the one rule of :func:`lesion_hits` (its centre lies
    inside the lesion's box). Each lesion is counted once, at the score of its highest-scoring
    hit; further hits on an already-hit lesion are neither true nor false positives; a
    predicted box that hits no lesion is a false positive. Images without lesions count in the
    per-image FP rate.

    Args:
        predictions: one entry per image: a list of ``(box, score)`` pairs (box
            ``[x1, y1, x2, y2]``), or a mapping with ``"boxes"`` ``(P, 4)`` and ``"scores"``
            ``(P,)`` (a detector output).
        truths: one entry per image: a sequence of lesion boxes ``[x1, y1, x2, y2]`` (in the
            same pixels as the predictions), possibly empty.
        hit: the rule's name, :data:`FROC_HIT` (``"center"``); accepted for callers that
            name it, any other value raises ``ValueError``.

    Returns:
        ``(fps_per_image, sensitivity, thresholds)`` float64 arrays of one length: point ``i``
        keeps predictions with ``score >= thresholds[i]``; the first point is ``(0, 0)`` at
        ``+inf``. Sensitivity is NaN throughout when there are no lesions.
    """
    _check_hit(hit)
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} prediction lists but {len(truths)} truth lists")
    n_images = len(truths)
    lesion_scores: list[float] = []  # best hit score per lesion, -inf when missed
    fp_scores: list[float] = []
    for pred, truth in zip(predictions, truths, strict=True):
        boxes, scores = image_predictions(pred)
        hits = lesion_hits(boxes, truth)  # (P, L)
        fp_scores.extend(scores[~hits.any(axis=1)].tolist())
        for col in hits.T:
            lesion_scores.append(float(scores[col].max()) if col.any() else -np.inf)
    n_lesions = len(lesion_scores)
    found = np.sort(np.asarray(lesion_scores))
    fps = np.sort(np.asarray(fp_scores))
    thresholds = np.unique(np.r_[found[np.isfinite(found)], fps])[::-1]
    # counts of values >= t, via the sorted arrays
    n_found = found.size - np.searchsorted(found, thresholds, side="left")
    n_fp = fps.size - np.searchsorted(fps, thresholds, side="left")
    fppi = np.r_[0.0, n_fp / max(n_images, 1)]
    sens = np.r_[0.0, n_found / n_lesions] if n_lesions else np.full(thresholds.size + 1, np.nan)
    return fppi, sens, np.r_[np.inf, thresholds]


def froc(
    predictions: Sequence[Any],
    truths: Sequence[Any],
    *,
    fp_rates: Sequence[float] = FROC_RATES,
    hit: str = FROC_HIT,
) -> dict[str, Any]:
    """Lesion sensitivity at given false positives per image (see :func:`froc_curve`).

    The sensitivity at rate ``r`` is the best sensitivity of any score threshold whose mean
    number of false positives per image is at most ``r``.

    Args:
        predictions, truths, hit: as in :func:`froc_curve`.
        fp_rates: FP-per-image rates to report.

    Returns:
        JSON-ready dict: one key per rate formatted with ``:g`` (``"0.5"``, ``"1"``, ``"2"``)
        holding the sensitivity (``None`` without lesions), ``"mean"`` of those,
        ``"fps_per_image"``, ``"sensitivity"`` and ``"thresholds"`` lists (the curve; the
        first threshold, ``+inf``, is given as ``None``), ``"n_images"``, ``"n_lesions"``,
        ``"hit"``.
    """
    fppi, sens, thresholds = froc_curve(predictions, truths, hit=hit)
    return froc_summary(fppi, sens, thresholds, truths, fp_rates=fp_rates)


def froc_summary(
    fppi: np.ndarray,
    sens: np.ndarray,
    thresholds: np.ndarray,
    truths: Sequence[Any],
    *,
    fp_rates: Sequence[float] = FROC_RATES,
) -> dict[str, Any]:
    """The JSON-ready figures of :func:`froc` from a curve ``(fppi, sens, thresholds)`` (of
    :func:`froc_curve`, or any curve whose false positives need not grow with the threshold)
    over images with lesion boxes ``truths``."""
    n_lesions = sum(len(np.asarray(t, dtype=np.float64).reshape(-1, 4)) for t in truths)
    out: dict[str, Any] = {}
    at_rates: list[float] = []
    for rate in fp_rates:
        value = float(sens[fppi <= rate + 1e-12].max()) if n_lesions else None
        out[f"{rate:g}"] = value
        if value is not None:
            at_rates.append(value)
    out["mean"] = float(np.mean(at_rates)) if at_rates else None
    out["fps_per_image"] = fppi.tolist()
    out["sensitivity"] = sens.tolist() if n_lesions else [None] * sens.size
    out["thresholds"] = [None if np.isinf(t) else float(t) for t in thresholds]
    out["n_images"] = len(truths)
    out["n_lesions"] = n_lesions
    out["hit"] = FROC_HIT
    return out
