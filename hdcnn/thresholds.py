"""Operating thresholds and the two threshold rules: the math both the cascade and evaluation use.

This module sits below :mod:`hdcnn.config`, :mod:`hdcnn.cascade` and :mod:`hdcnn.evaluation`
(it imports NumPy only), so the cascade can choose thresholds without importing the evaluation
package, which itself imports the cascade. :mod:`hdcnn.evaluation.metrics` re-exports
:func:`threshold_at_sensitivity` and :func:`threshold_youden`: they are part of the one
evaluation engine, written here once.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Threshold of :func:`threshold_at_sensitivity` when there is no positive score to set it.
NEUTRAL_THRESHOLD = 0.5
#: Default detector score a box needs to become a candidate.
DETECTOR_SCORE = 0.05


@dataclass(frozen=True)
class Thresholds:
    """Operating thresholds of the cascade (all probabilities in ``[0, 1]``).

    Attributes:
        detector_score: a detector box is a candidate when its score is at least this.
        c1_lesion: a candidate is a kept finding when classifier 1's P(lesion) is at least this.
        abnormal: the image is abnormal when ``p_abnormal >= max(abnormal, c1_lesion)``.
        malignant: an abnormal image is malignant when ``p_malignant >= malignant``.

    Raises:
        ValueError: a value that is not a finite number in ``[0, 1]``.
    """

    detector_score: float = DETECTOR_SCORE
    c1_lesion: float = NEUTRAL_THRESHOLD
    abnormal: float = NEUTRAL_THRESHOLD
    malignant: float = NEUTRAL_THRESHOLD

    def __post_init__(self) -> None:
        for key, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"threshold {key} must be a number, got {value!r}")
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"threshold {key} must be in [0, 1], got {value!r}")
            object.__setattr__(self, key, float(value))

    @property
    def effective_abnormal(self) -> float:
        """The image-level abnormal threshold actually applied: ``max(abnormal, c1_lesion)``."""
        return max(self.abnormal, self.c1_lesion)

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: Thresholds | None = None) -> Thresholds:
        """Thresholds from a JSON mapping; keys that are absent keep ``base`` (or defaults).

        Raises:
            ValueError: an unknown key, or a value that is not a number in ``[0, 1]``.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"thresholds must be an object, got {type(data).__name__}")
        values = asdict(base or cls())
        unknown = sorted(str(k) for k in data if k not in values)
        if unknown:
            raise ValueError(f"unknown threshold(s) {unknown}; expected some of {list(values)}")
        values.update({k: v for k, v in data.items() if v is not None})
        return cls(**values)


def threshold_at_sensitivity(scores: Any, sensitivity: float) -> float:
    """The largest threshold ``t`` with ``mean(scores >= t) >= sensitivity``.

    The operating-point rule of the cascade's calibration (``choose_thresholds``) and of C1's
    training threshold.

    Args:
        scores: 1-D float scores of the positive examples only, any order.
        sensitivity: wanted fraction of positives at or above ``t``, in ``[0, 1]``.

    Returns:
        ``t``, one of ``scores`` (:data:`NEUTRAL_THRESHOLD` when ``scores`` is empty).
    """
    if not 0.0 <= sensitivity <= 1.0:
        raise ValueError(f"sensitivity must be in [0, 1], got {sensitivity}")
    ordered = np.sort(np.asarray(scores, dtype=np.float64).reshape(-1))[::-1]
    if ordered.size == 0:
        return NEUTRAL_THRESHOLD
    needed = max(1, math.ceil(sensitivity * ordered.size - 1e-9))
    return float(ordered[min(needed, ordered.size) - 1])


def threshold_youden(positives: Any, negatives: Any) -> float:
    """The threshold ``t`` maximising Youden's J = sensitivity + specificity - 1.

    Sensitivity is ``mean(positives >= t)``, specificity ``mean(negatives < t)``; candidates are
    the observed scores (the points of :func:`hdcnn.evaluation.metrics.roc_curve`); among equal
    J the largest ``t`` (the more specific) wins.

    Args:
        positives: 1-D float scores of the positive examples (at least one).
        negatives: 1-D float scores of the negative examples (at least one).

    Returns:
        ``t``, one of the observed scores.
    """
    pos = np.asarray(positives, dtype=np.float64).reshape(-1)
    neg = np.asarray(negatives, dtype=np.float64).reshape(-1)
    if pos.size == 0 or neg.size == 0:
        raise ValueError("threshold_youden needs at least one positive and one negative score")
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise ValueError("scores must be finite")
    candidates = np.unique(np.r_[pos, neg])[::-1]  # every distinct score, largest first
    # the ROC rates at each candidate, as counts over totals (as scikit-learn's roc_curve)
    tpr = (pos.size - np.searchsorted(np.sort(pos), candidates, side="left")) / pos.size
    fpr = (neg.size - np.searchsorted(np.sort(neg), candidates, side="left")) / neg.size
    j = tpr - fpr
    return float(candidates[np.flatnonzero(j >= j.max() - 1e-12)[0]])
