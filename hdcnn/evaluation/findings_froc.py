"""The FROC of the findings a reader sees: overlapping candidates merged, as the app merges
them, before hits and false positives are counted.

The candidate FROC (:func:`hdcnn.evaluation.froc.froc`) counts every candidate box that hits
no lesion as a false positive, so five overlapping boxes on one spot of normal tissue are five
false positives. The app shows them as one finding (:func:`hdcnn.findings.overlap_groups`, the
one merge rule). Here, at every threshold ``t`` on the candidates' scores, the candidates
scoring at least ``t`` of an image are merged by that rule, and each merged finding is
represented by its best-scored member: it finds the lesions that member hits (the one hit
rule, :func:`~hdcnn.evaluation.froc.lesion_hits`), and is a false positive when that member
hits none. A lesion hit only by a lower-scored member of a finding is not found by it, so
this is stricter than the candidate FROC on hits and counts false positives per finding.
Neither count need be monotone in the threshold (a new candidate can join two findings);
the sensitivity at rate ``r`` is, as there, the best of any threshold with at most ``r`` false
positives per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hdcnn.evaluation.froc import (
    FROC_RATES,
    froc_summary,
    image_predictions,
    lesion_hits,
)
from hdcnn.findings import overlap_groups


def merged_counts(boxes: np.ndarray, hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False-positive findings and found lesions among the first ``k`` candidates, merged.

    Args:
        boxes: ``(P, 4)`` candidate boxes of one image, best-scored first.
        hits: bool ``(P, L)``: candidate ``p`` hits lesion ``l``.

    Returns:
        int ``(P + 1,)`` arrays ``(false_positives, found)``: entry ``k`` counts, over the
        merged findings of ``boxes[:k]``, those whose best-scored member hits no lesion, and
        the lesions some finding's best-scored member hits.
    """
    fps = np.zeros(len(boxes) + 1, np.int64)
    found = np.zeros(len(boxes) + 1, np.int64)
    for k in range(1, len(boxes) + 1):
        leaders = [group[0] for group in overlap_groups(boxes[:k])]  # rows are best first
        led = hits[leaders]
        fps[k] = int((~led.any(axis=1)).sum())
        found[k] = int(led.any(axis=0).sum())
    return fps, found


def findings_froc_curve(
    predictions: Sequence[Any], truths: Sequence[Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Free-response ROC curve of the merged findings (see the module's docstring).

    Args:
        predictions, truths: as in :func:`hdcnn.evaluation.froc.froc_curve`.

    Returns:
        ``(fps_per_image, sensitivity, thresholds)`` as there: point ``i`` keeps the candidates
        with ``score >= thresholds[i]``; the first point is ``(0, 0)`` at ``+inf``.
    """
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} prediction lists but {len(truths)} truth lists")
    per_image: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    n_lesions = 0
    for pred, truth in zip(predictions, truths, strict=True):
        boxes, scores = image_predictions(pred)
        order = np.argsort(-scores, kind="stable")
        hits = lesion_hits(boxes[order], truth)
        n_lesions += hits.shape[1]
        per_image.append((scores[order][::-1], *merged_counts(boxes[order], hits)))
    thresholds = np.unique(np.concatenate([np.zeros(0), *(p[0] for p in per_image)]))[::-1]
    n_fp = np.zeros(thresholds.size, np.int64)
    n_found = np.zeros(thresholds.size, np.int64)
    for ascending, fps, found in per_image:
        kept = ascending.size - np.searchsorted(ascending, thresholds, side="left")
        n_fp += fps[kept]
        n_found += found[kept]
    fppi = np.r_[0.0, n_fp / max(len(truths), 1)]
    sens = np.r_[0.0, n_found / n_lesions] if n_lesions else np.full(thresholds.size + 1, np.nan)
    return fppi, sens, np.r_[np.inf, thresholds]


def findings_froc(
    predictions: Sequence[Any],
    truths: Sequence[Any],
    *,
    fp_rates: Sequence[float] = FROC_RATES,
) -> dict[str, Any]:
    """Lesion sensitivity at given false positives per image, the false positives counted per
    merged finding (:func:`findings_froc_curve`); JSON-ready, the keys of
    :func:`hdcnn.evaluation.froc.froc`."""
    fppi, sens, thresholds = findings_froc_curve(predictions, truths)
    return froc_summary(fppi, sens, thresholds, truths, fp_rates=fp_rates)
