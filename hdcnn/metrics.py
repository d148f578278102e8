"""Evaluation metrics, independent of any model: ROC/AUC with patient-level bootstrap CIs,
operating points, three-class verdict metrics and lesion-level FROC.

Conventions:
- Binary inputs: ``y_true`` 1-D of 0/1 (or bool), ``scores`` 1-D float of the same length,
  higher = more likely positive; an image is called positive at threshold ``t`` when
  ``score >= t``.
- Verdict inputs: sequences of labels (:class:`hdcnn.terms.Label` or their strings), counted
  in the order of :data:`hdcnn.terms.CLASSES` (normal, benign, malignant).
- Boxes: ``[x1, y1, x2, y2]`` float pixels of the image they belong to.

Metrics that are undefined for the data (an AUC with one class present, a sensitivity without
positives) return ``None`` rather than a number.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from hdcnn.terms import CLASSES, Label

log = logging.getLogger(__name__)

#: The FP-per-image rates reported by :func:`froc` by default.
FROC_RATES: tuple[float, ...] = (0.5, 1.0, 2.0)


# --- binary scores -------------------------------------------------------------------------


def _binary(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"y_true and scores must be 1-D of one length, got {y.shape}, {s.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold only 0/1 (or bool) values")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return y.astype(bool), s


def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    """Mann-Whitney AUC of bool ``y`` and float ``s`` (ties count one half)."""
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # average 1-based rank of each distinct value: ranks end at cumsum, start at cumsum-count+1
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0
    rank_sum = float(avg_rank[inverse][y].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def roc_auc(y_true: Any, scores: Any) -> float | None:
    """Area under the ROC curve (the Mann-Whitney statistic).

    Args:
        y_true: 1-D 0/1 truth, length N.
        scores: 1-D float scores, length N, higher = more likely 1.

    Returns:
        P(score of a random positive > score of a random negative), ties counted 0.5;
        ``None`` when only one class is present.
    """
    y, s = _binary(y_true, scores)
    return _auc(y, s)


def roc_curve(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """ROC curve at every distinct score.

    Args:
        y_true: 1-D 0/1 truth, length N.
        scores: 1-D float scores, length N.

    Returns:
        ``(fpr, tpr, thresholds)``, float64 arrays of one length K + 1 for K distinct scores:
        point ``i`` is the rate pair when calling ``score >= thresholds[i]`` positive; the first
        point is ``(0, 0)`` at threshold ``+inf``, the last ``(1, 1)``. ``None`` when only one
        class is present.
    """
    y, s = _binary(y_true, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(~y_sorted)
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]  # end of each tie group
    fpr = np.r_[0.0, fp[last] / n_neg]
    tpr = np.r_[0.0, tp[last] / n_pos]
    thresholds = np.r_[np.inf, s_sorted[last]]
    return fpr, tpr, thresholds


def threshold_at_specificity(y_true: Any, scores: Any, specificity: float = 0.9) -> float | None:
    """The lowest score threshold whose specificity is at least ``specificity``.

    Args:
        y_true: 1-D 0/1 truth; scores: 1-D float scores (``score >= t`` is positive).
        specificity: required fraction of negatives called negative, in ``[0, 1]``.

    Returns:
        The threshold (``+inf`` when only calling nothing positive reaches it, i.e. the
        sensitivity there is 0), or ``None`` when only one class is present.
    """
    if not 0.0 <= specificity <= 1.0:
        raise ValueError(f"specificity must be in [0, 1], got {specificity}")
    curve = roc_curve(y_true, scores)
    if curve is None:
        return None
    fpr, _, thresholds = curve
    ok = np.flatnonzero(fpr <= 1.0 - specificity + 1e-12)
    return float(thresholds[ok[-1]])  # fpr rises along the curve: the last allowed point


def sensitivity_at_specificity(y_true: Any, scores: Any, specificity: float = 0.9) -> float | None:
    """Best sensitivity of a threshold whose specificity is at least ``specificity``.

    Only operating points that a threshold can reach are used (no interpolation).

    Args:
        y_true: 1-D 0/1 truth; scores: 1-D float scores.
        specificity: required specificity in ``[0, 1]``.

    Returns:
        Sensitivity in ``[0, 1]``, or ``None`` when only one class is present.
    """
    if not 0.0 <= specificity <= 1.0:
        raise ValueError(f"specificity must be in [0, 1], got {specificity}")
    curve = roc_curve(y_true, scores)
    if curve is None:
        return None
    fpr, tpr, _ = curve
    return float(tpr[fpr <= 1.0 - specificity + 1e-12].max())


def bootstrap_indices(groups: Any, *, n_boot: int = 1000, seed: int = 0) -> Iterator[np.ndarray]:
    """Patient-level bootstrap resamples.

    Each resample draws as many groups as there are, with replacement, and takes all images of
    every drawn group (a group drawn twice contributes its images twice).

    Args:
        groups: 1-D sequence of hashable group ids (e.g. patient ids), one per image.
        n_boot: number of resamples.
        seed: seed of the ``numpy.random.default_rng`` generator.

    Yields:
        int64 arrays of image indices into ``groups``.
    """
    g = np.asarray(groups)
    if g.ndim != 1:
        raise ValueError(f"groups must be 1-D, got shape {g.shape}")
    _, inverse = np.unique(g, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(int(inverse.max(initial=-1)) + 1)]
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        drawn = rng.integers(0, len(members), size=len(members))
        yield np.concatenate([members[k] for k in drawn]) if members else np.zeros(0, np.int64)


def bootstrap_auc_ci(
    y_true: Any,
    scores: Any,
    groups: Any,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float] | None:
    """Percentile confidence interval of the AUC by patient-level bootstrap.

    Patients (``groups``) are resampled with replacement and all their images taken
    (:func:`bootstrap_indices`), so images of one patient never split between draws.
    Resamples with one class only are skipped.

    Args:
        y_true: 1-D 0/1 truth, length N.
        scores: 1-D float scores, length N.
        groups: 1-D patient ids, length N.
        n_boot: resamples drawn (including skipped ones).
        seed: random seed; the result is deterministic per seed.
        alpha: 1 - confidence level (0.05 gives a 95 % interval).

    Returns:
        ``(low, high)``, or ``None`` when the AUC is undefined on the data or fewer than 10
        resamples held both classes.
    """
    y, s = _binary(y_true, scores)
    if len(groups) != y.size:
        raise ValueError(f"groups has length {len(groups)}, expected {y.size}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if _auc(y, s) is None:
        return None
    aucs = [a for idx in bootstrap_indices(groups, n_boot=n_boot, seed=seed)
            if (a := _auc(y[idx], s[idx])) is not None]  # fmt: skip
    skipped = n_boot - len(aucs)
    if skipped:
        log.info(
            "bootstrap AUC: %d of %d resamples had one class and were skipped", skipped, n_boot
        )
    if len(aucs) < 10:
        return None
    low, high = np.quantile(np.asarray(aucs), [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


# --- three-class verdicts ------------------------------------------------------------------


def _class_indices(labels: Any, classes: Sequence[str], name: str) -> np.ndarray:
    lookup = {str(c): i for i, c in enumerate(classes)}
    try:
        return np.array([lookup[str(v)] for v in labels], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f"{name} holds {exc.args[0]!r}, expected one of {list(lookup)}") from None


def confusion_matrix(y_true: Any, y_pred: Any, classes: Sequence[str] = CLASSES) -> np.ndarray:
    """Confusion matrix of verdicts.

    Args:
        y_true: sequence of N truth labels, each in ``classes``.
        y_pred: sequence of N predicted labels, each in ``classes``.
        classes: class order (default normal, benign, malignant).

    Returns:
        int64 ``(C, C)``: ``m[i, j]`` = images of true class ``i`` predicted as class ``j``
        (rows = truth, columns = prediction).
    """
    t = _class_indices(y_true, classes, "y_true")
    p = _class_indices(y_pred, classes, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels, y_pred {p.size}")
    m = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(m, (t, p), 1)
    return m


def accuracy(y_true: Any, y_pred: Any, classes: Sequence[str] = CLASSES) -> float | None:
    """Fraction of correct verdicts; ``None`` for no images."""
    m = confusion_matrix(y_true, y_pred, classes)
    total = int(m.sum())
    return None if total == 0 else float(np.trace(m) / total)


def macro_f1(y_true: Any, y_pred: Any, classes: Sequence[str] = CLASSES) -> float | None:
    """Unweighted mean of the per-class F1 scores.

    A class that occurs neither in the truth nor in the predictions has no F1 and is left out
    of the mean; a class that occurs with no true positives has F1 = 0.

    Returns:
        Macro F1 in ``[0, 1]``; ``None`` for no images.
    """
    m = confusion_matrix(y_true, y_pred, classes)
    tp = np.diag(m).astype(np.float64)
    denom = m.sum(axis=0) + m.sum(axis=1)  # 2 tp + fp + fn
    present = denom > 0
    if not present.any():
        return None
    return float(np.mean(2.0 * tp[present] / denom[present]))


def sensitivity_malignant(y_true: Any, y_pred: Any) -> float | None:
    """Recall of the malignant class: malignant images predicted malignant / malignant images.

    Returns:
        Value in ``[0, 1]``, or ``None`` when no image is malignant.
    """
    m = confusion_matrix(y_true, y_pred, CLASSES)
    i = CLASSES.index(Label.MALIGNANT)
    n = int(m[i].sum())
    return None if n == 0 else float(m[i, i] / n)


def specificity(y_true: Any, y_pred: Any) -> float | None:
    """Normal images predicted normal / normal images.

    Returns:
        Value in ``[0, 1]``, or ``None`` when no image is normal.
    """
    m = confusion_matrix(y_true, y_pred, CLASSES)
    i = CLASSES.index(Label.NORMAL)
    n = int(m[i].sum())
    return None if n == 0 else float(m[i, i] / n)


def verdict_summary(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """All three-class verdict metrics, JSON-ready.

    Returns:
        ``{"n", "accuracy", "macro_f1", "sensitivity_malignant", "specificity",
        "classes": [...], "confusion": [[...]] (rows truth, columns prediction)}``.
    """
    m = confusion_matrix(y_true, y_pred, CLASSES)
    return {
        "n": int(m.sum()),
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred),
        "sensitivity_malignant": sensitivity_malignant(y_true, y_pred),
        "specificity": specificity(y_true, y_pred),
        "classes": [str(c) for c in CLASSES],
        "confusion": m.tolist(),
    }


# --- lesion-level FROC ---------------------------------------------------------------------


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` ``[x1, y1, x2, y2]`` boxes -> float ``(N, M)``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = iw.clip(0) * ih.clip(0)
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _hits(pred_boxes: np.ndarray, lesions: np.ndarray, hit: str, iou: float) -> np.ndarray:
    """bool ``(P, L)``: prediction ``p`` hits lesion ``l``."""
    if hit == "center":
        cx = (pred_boxes[:, 0] + pred_boxes[:, 2]) / 2.0
        cy = (pred_boxes[:, 1] + pred_boxes[:, 3]) / 2.0
        return (
            (cx[:, None] >= lesions[None, :, 0])
            & (cx[:, None] <= lesions[None, :, 2])
            & (cy[:, None] >= lesions[None, :, 1])
            & (cy[:, None] <= lesions[None, :, 3])
        )
    if hit == "iou":
        return box_iou(pred_boxes, lesions) >= iou
    raise ValueError(f"hit must be 'center' or 'iou', got {hit!r}")


def _image_predictions(pred: Any) -> tuple[np.ndarray, np.ndarray]:
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
    hit: str = "center",
    iou: float = 0.2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Free-response ROC curve over all images.

    A predicted box *hits* a lesion when its centre lies inside the lesion's box (borders
    included; ``hit="center"``) or, with ``hit="iou"``, when their IoU is at least ``iou``.
    Each lesion is counted once, at the score of its highest-scoring hit; further hits on an
    already-hit lesion are neither true nor false positives; a predicted box that hits no
    lesion is a false positive. Images without lesions count in the per-image FP rate.

    Args:
        predictions: one entry per image: a list of ``(box, score)`` pairs (box
            ``[x1, y1, x2, y2]``), or a mapping with ``"boxes"`` ``(P, 4)`` and ``"scores"``
            ``(P,)`` (a detector output).
        truths: one entry per image: a sequence of lesion boxes ``[x1, y1, x2, y2]`` (in the
            same pixels as the predictions), possibly empty.
        hit: ``"center"`` or ``"iou"``.
        iou: IoU threshold for ``hit="iou"``.

    Returns:
        ``(fps_per_image, sensitivity, thresholds)`` float64 arrays of one length: point ``i``
        keeps predictions with ``score >= thresholds[i]``; the first point is ``(0, 0)`` at
        ``+inf``. Sensitivity is NaN throughout when there are no lesions.
    """
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} prediction lists but {len(truths)} truth lists")
    n_images = len(truths)
    lesion_scores: list[float] = []  # best hit score per lesion, -inf when missed
    fp_scores: list[float] = []
    for pred, truth in zip(predictions, truths, strict=True):
        boxes, scores = _image_predictions(pred)
        lesions = np.asarray(truth, dtype=np.float64).reshape(-1, 4)
        hits = _hits(boxes, lesions, hit, iou)  # (P, L)
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
    hit: str = "center",
    iou: float = 0.2,
) -> dict[str, Any]:
    """Lesion sensitivity at given false positives per image (see :func:`froc_curve`).

    The sensitivity at rate ``r`` is the best sensitivity of any score threshold whose mean
    number of false positives per image is at most ``r``.

    Args:
        predictions, truths, hit, iou: as in :func:`froc_curve`.
        fp_rates: FP-per-image rates to report.

    Returns:
        JSON-ready dict: one key per rate formatted with ``:g`` (``"0.5"``, ``"1"``, ``"2"``)
        holding the sensitivity (``None`` without lesions), ``"mean"`` of those,
        ``"fps_per_image"``, ``"sensitivity"`` and ``"thresholds"`` lists (the curve; the
        first threshold, ``+inf``, is given as ``None``), ``"n_images"``, ``"n_lesions"``,
        ``"hit"``.
    """
    fppi, sens, thresholds = froc_curve(predictions, truths, hit=hit, iou=iou)
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
    out["hit"] = hit
    return out
