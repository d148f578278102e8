"""The one evaluation engine: metrics independent of any model, used by training's model
selection, ``python -m hdcnn evaluate``, the app and the tests.

- ROC/AUC, confusion matrix and F1 come from scikit-learn; this module adds the conventions
  below (``None`` for undefined values, the class order of :data:`hdcnn.terms.CLASSES`).
- Operating points: :func:`threshold_at_sensitivity` (the largest threshold that reaches a
  stated sensitivity) and :func:`threshold_youden` (Youden's J) -- the cascade's calibration and
  training's C1 threshold use these, nothing else. They are written in :mod:`hdcnn.thresholds`
  (which the cascade imports without importing this package) and re-exported here.
- The patient-level bootstrap (:func:`bootstrap_indices`, :func:`bootstrap_auc_ci`, the paired
  :func:`bootstrap_auc_difference` of two recipes on the same images; the
  resamples' AUCs at once by :func:`weighted_aucs`, equal to scikit-learn's with sample
  weights) and the lesion-level FROC (:func:`froc_curve`, :func:`froc`), which no library in
  the requirements offers. One FROC hit rule, :func:`lesion_hits` (centre in box), for model
  selection and for reporting alike; one IoU, :func:`box_iou` (``torchvision.ops.box_iou``).
  Those are written in :mod:`hdcnn.evaluation.froc` and re-exported here.

Conventions:
- Binary inputs: ``y_true`` 1-D of 0/1 (or bool), ``scores`` 1-D float of the same length,
  higher = more likely positive; an image is called positive at threshold ``t`` when
  ``score >= t``.
- Verdict inputs: sequences of labels (:class:`hdcnn.terms.Label` or their strings), counted
  in the order of :data:`hdcnn.terms.CLASSES` (normal, benign, malignant).
- Boxes: ``[x1, y1, x2, y2]`` float pixels of the image they belong to.

Metrics that are undefined for the data (an AUC with one class present, a sensitivity without
positives) return ``None`` rather than a number.

scikit-learn and torchvision are imported inside the functions that use them, so importing this
module stays cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from hdcnn.evaluation.froc import (  # noqa: F401  (the lesion-level FROC, re-exported)
    FROC_HIT,
    FROC_RATES,
    box_iou,
    froc,
    froc_curve,
    froc_summary,
    image_predictions,
    lesion_hits,
)
from hdcnn.terms import CLASSES, Label

# the threshold rules are written once in hdcnn.thresholds (below the cascade and this
# package, which both use them) and are part of this engine's API
from hdcnn.thresholds import (  # noqa: F401
    NEUTRAL_THRESHOLD,
    threshold_at_sensitivity,
    threshold_youden,
)

log = logging.getLogger(__name__)


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
    """``sklearn.metrics.roc_auc_score`` of checked bool ``y`` and float ``s``; None with one
    class."""
    from sklearn.metrics import roc_auc_score

    if y.all() or not y.any():
        return None
    return float(roc_auc_score(y, s))


def roc_auc(y_true: Any, scores: Any) -> float | None:
    """Area under the ROC curve (``sklearn.metrics.roc_auc_score``).

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
    """ROC curve at every distinct score (``sklearn.metrics.roc_curve``, no point dropped).

    Args:
        y_true: 1-D 0/1 truth, length N.
        scores: 1-D float scores, length N.

    Returns:
        ``(fpr, tpr, thresholds)``, float64 arrays of one length K + 1 for K distinct scores:
        point ``i`` is the rate pair when calling ``score >= thresholds[i]`` positive; the first
        point is ``(0, 0)`` at threshold ``+inf``, the last ``(1, 1)``. ``None`` when only one
        class is present.
    """
    from sklearn.metrics import roc_curve as sk_roc_curve

    y, s = _binary(y_true, scores)
    if y.all() or not y.any():
        return None
    fpr, tpr, thresholds = sk_roc_curve(y, s, drop_intermediate=False)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    thresholds[0] = np.inf  # scikit-learn >= 1.3 already does; older ones gave max + 1
    return np.asarray(fpr, np.float64), np.asarray(tpr, np.float64), thresholds


def _at_specificity(y_true: Any, scores: Any, specificity: float) -> tuple[float, float] | None:
    """``(threshold, sensitivity)`` of the last ROC point with at least ``specificity``.

    The false-positive rate rises along :func:`roc_curve`, and the true-positive rate never
    falls, so the last allowed point has the lowest threshold and the best sensitivity.
    """
    if not 0.0 <= specificity <= 1.0:
        raise ValueError(f"specificity must be in [0, 1], got {specificity}")
    curve = roc_curve(y_true, scores)
    if curve is None:
        return None
    fpr, tpr, thresholds = curve
    last = np.flatnonzero(fpr <= 1.0 - specificity + 1e-12)[-1]
    return float(thresholds[last]), float(tpr[last])


def threshold_at_specificity(y_true: Any, scores: Any, specificity: float = 0.9) -> float | None:
    """The lowest score threshold whose specificity is at least ``specificity``.

    Args:
        y_true: 1-D 0/1 truth; scores: 1-D float scores (``score >= t`` is positive).
        specificity: required fraction of negatives called negative, in ``[0, 1]``.

    Returns:
        The threshold (``+inf`` when only calling nothing positive reaches it, i.e. the
        sensitivity there is 0), or ``None`` when only one class is present.
    """
    point = _at_specificity(y_true, scores, specificity)
    return None if point is None else point[0]


def sensitivity_at_specificity(y_true: Any, scores: Any, specificity: float = 0.9) -> float | None:
    """Best sensitivity of a threshold whose specificity is at least ``specificity``.

    Only operating points that a threshold can reach are used (no interpolation).

    Args:
        y_true: 1-D 0/1 truth; scores: 1-D float scores.
        specificity: required specificity in ``[0, 1]``.

    Returns:
        Sensitivity in ``[0, 1]``, or ``None`` when only one class is present.
    """
    point = _at_specificity(y_true, scores, specificity)
    return None if point is None else point[1]


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


def weighted_aucs(y_true: Any, scores: Any, weights: Any) -> np.ndarray:
    """The ROC AUC of one data set under many weightings at once.

    Row ``b`` gives ``sklearn.metrics.roc_auc_score(y_true, scores, sample_weight=weights[b])``
    (the tests check this): a bootstrap resample that draws image ``i`` ``c_i`` times has the
    AUC of the data weighted by ``c``. It exists for speed: one vectorised pass over the
    resamples instead of a scikit-learn call per resample (1000 calls per interval made the
    evaluation about 20 times slower).

    Args:
        y_true: 1-D 0/1 truth, length N.
        scores: 1-D float scores, length N.
        weights: ``(B, N)`` non-negative weights (bootstrap draw counts).

    Returns:
        float64 ``(B,)``; NaN for a row whose weighted data hold one class only.
    """
    y, s = _binary(y_true, scores)
    w = np.asarray(weights, dtype=np.float64).reshape(-1, y.size)
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s_sorted)) + 1]  # first index of each tied score
    out = np.empty(w.shape[0])
    for lo in range(0, w.shape[0], 256):  # chunks bound the memory on large test sets
        chunk = w[lo : lo + 256, order]
        tp = np.cumsum(np.add.reduceat(chunk * y[order], starts, axis=1), axis=1)
        fp = np.cumsum(np.add.reduceat(chunk * ~y[order], starts, axis=1), axis=1)
        tp0 = np.pad(tp, ((0, 0), (1, 0)))
        fp0 = np.pad(fp, ((0, 0), (1, 0)))
        area = np.sum(np.diff(fp0, axis=1) * (tp0[:, 1:] + tp0[:, :-1]), axis=1) / 2.0
        denom = tp[:, -1] * fp[:, -1]
        out[lo : lo + 256] = np.divide(
            area, denom, out=np.full(area.shape, np.nan), where=denom > 0
        )
    return out


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
    _check_bootstrap_args(groups, y.size, alpha)
    if _auc(y, s) is None:
        return None
    aucs = weighted_aucs(y, s, _draw_counts(groups, n_boot, seed))
    return _percentile_ci(aucs, n_boot, alpha, "bootstrap AUC")


def bootstrap_auc_difference(
    y_true: Any,
    scores_a: Any,
    scores_b: Any,
    groups: Any,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, tuple[float, float] | None] | None:
    """``AUC(a) - AUC(b)`` of two scorings of the same images, with a paired interval.

    Both AUCs are computed on every patient-level resample (the same draws for both), so the
    interval reflects how much the *difference* varies, not the two AUCs' own spread: two
    recipes whose intervals overlap can still differ beyond noise, and the reverse.

    Args:
        y_true: 1-D 0/1 truth, length N.
        scores_a, scores_b: 1-D float scores of the two recipes, length N each.
        groups: 1-D patient ids, length N.
        n_boot, seed, alpha: as in :func:`bootstrap_auc_ci`.

    Returns:
        ``(difference, (low, high))``; the interval is ``None`` when fewer than 10 resamples
        held both classes. ``None`` when the AUC is undefined on the data.
    """
    y, a = _binary(y_true, scores_a)
    _, b = _binary(y_true, scores_b)
    _check_bootstrap_args(groups, y.size, alpha)
    auc_a, auc_b = _auc(y, a), _auc(y, b)
    if auc_a is None or auc_b is None:
        return None
    counts = _draw_counts(groups, n_boot, seed)
    diffs = weighted_aucs(y, a, counts) - weighted_aucs(y, b, counts)
    return auc_a - auc_b, _percentile_ci(diffs, n_boot, alpha, "bootstrap AUC difference")


def _check_bootstrap_args(groups: Any, n: int, alpha: float) -> None:
    if len(groups) != n:
        raise ValueError(f"groups has length {len(groups)}, expected {n}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _draw_counts(groups: Any, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, N)``: how often each patient-level resample draws each image (a resample's
    AUC is the AUC under these weights, see :func:`weighted_aucs`)."""
    n = len(groups)
    draws = [
        np.bincount(idx, minlength=n) for idx in bootstrap_indices(groups, n_boot=n_boot, seed=seed)
    ]
    return np.array(draws).reshape(-1, n)


def _percentile_ci(
    values: np.ndarray, n_boot: int, alpha: float, what: str
) -> tuple[float, float] | None:
    """Percentile interval of the finite resample values (a resample with one class is NaN)."""
    values = values[np.isfinite(values)]
    skipped = n_boot - len(values)
    if skipped:
        log.info("%s: %d of %d resamples had one class and were skipped", what, skipped, n_boot)
    if len(values) < 10:
        return None
    low, high = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


# --- three-class verdicts ------------------------------------------------------------------


def _class_indices(labels: Any, classes: Sequence[str], name: str) -> np.ndarray:
    lookup = {str(c): i for i, c in enumerate(classes)}
    try:
        return np.array([lookup[str(v)] for v in labels], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f"{name} holds {exc.args[0]!r}, expected one of {list(lookup)}") from None


def _verdict_indices(
    y_true: Any, y_pred: Any, classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    t = _class_indices(y_true, classes, "y_true")
    p = _class_indices(y_pred, classes, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels, y_pred {p.size}")
    return t, p


def confusion_matrix(y_true: Any, y_pred: Any, classes: Sequence[str] = CLASSES) -> np.ndarray:
    """Confusion matrix of verdicts (``sklearn.metrics.confusion_matrix``).

    Args:
        y_true: sequence of N truth labels, each in ``classes``.
        y_pred: sequence of N predicted labels, each in ``classes``.
        classes: class order (default normal, benign, malignant).

    Returns:
        int64 ``(C, C)``: ``m[i, j]`` = images of true class ``i`` predicted as class ``j``
        (rows = truth, columns = prediction); all zeros for no images.
    """
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    t, p = _verdict_indices(y_true, y_pred, classes)
    if t.size == 0:
        return np.zeros((len(classes), len(classes)), dtype=np.int64)
    return sk_confusion_matrix(t, p, labels=np.arange(len(classes))).astype(np.int64)


def accuracy(y_true: Any, y_pred: Any, classes: Sequence[str] = CLASSES) -> float | None:
    """Fraction of correct verdicts; ``None`` for no images."""
    m = confusion_matrix(y_true, y_pred, classes)
    total = int(m.sum())
    return None if total == 0 else float(np.trace(m) / total)


def macro_f1(y_true: Any, y_pred: Any, classes: Sequence[str] = CLASSES) -> float | None:
    """Unweighted mean of the per-class F1 scores (``sklearn.metrics.f1_score``).

    A class that occurs neither in the truth nor in the predictions has no F1 and is left out
    of the mean; a class that occurs with no true positives has F1 = 0.

    Returns:
        Macro F1 in ``[0, 1]``; ``None`` for no images.
    """
    from sklearn.metrics import f1_score

    t, p = _verdict_indices(y_true, y_pred, classes)
    present = np.union1d(t, p)
    if present.size == 0:
        return None
    return float(f1_score(t, p, labels=present, average="macro", zero_division=0.0))


def _class_recall(y_true: Any, y_pred: Any, label: Label) -> float | None:
    """Images of class ``label`` predicted as ``label`` / images of class ``label``."""
    m = confusion_matrix(y_true, y_pred, CLASSES)
    i = CLASSES.index(label)
    n = int(m[i].sum())
    return None if n == 0 else float(m[i, i] / n)


def sensitivity_malignant(y_true: Any, y_pred: Any) -> float | None:
    """Recall of the malignant class: malignant images predicted malignant / malignant images.

    Returns:
        Value in ``[0, 1]``, or ``None`` when no image is malignant.
    """
    return _class_recall(y_true, y_pred, Label.MALIGNANT)


def specificity(y_true: Any, y_pred: Any) -> float | None:
    """Normal images predicted normal / normal images.

    Returns:
        Value in ``[0, 1]``, or ``None`` when no image is normal.
    """
    return _class_recall(y_true, y_pred, Label.NORMAL)


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
