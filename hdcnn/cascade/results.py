"""Result types of the cascade: findings, candidates, traces, image/breast/exam verdicts.

Part of :mod:`hdcnn.cascade` (see its docstring for the rules).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hdcnn.terms import FindingStatus, Label

if TYPE_CHECKING:
    from hdcnn.preprocess import Preprocessed
    from hdcnn.reader import MammogramMeta

from hdcnn.cascade.rules import Thresholds

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- results


def _verdict_json(label: Label, p_abnormal: float, p_malignant: float) -> dict[str, Any]:
    """The verdict fields shared by the image, breast and exam JSON forms."""
    return {
        "label": str(label),
        "p_abnormal": round(float(p_abnormal), 6),
        "p_malignant": round(float(p_malignant), 6),
    }


@dataclass(frozen=True)
class Finding:
    """One detector candidate after classification.

    Attributes:
        box: ``(x1, y1, x2, y2)`` float, ORIGINAL image pixels.
        detector_score: detector confidence in ``[0, 1]``.
        p_lesion: classifier 1 P(lesion) in ``[0, 1]``.
        p_malignant: ``p_lesion * P(malignant | lesion)`` for kept findings, ``None`` when
            rejected.
        label: ``"benign"``, ``"malignant"`` or ``"rejected"``.
        model_box: the same box in model-image pixels (for drawing on the preprocessed image).
        index: row of this candidate in the trace (``CascadeTrace.candidates``, ``.crops``).
        status: the stage that kept or refused it (:class:`FindingStatus`); None for findings
            built outside :meth:`Cascade.decide`.
    """

    box: tuple[float, float, float, float]
    detector_score: float
    p_lesion: float
    p_malignant: float | None
    label: str
    model_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    index: int = -1
    status: FindingStatus | None = None

    @property
    def kept(self) -> bool:
        return self.label != "rejected"

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"box", "detector_score", "p_lesion", "p_malignant", "label"}``."""
        return {
            "box": [round(float(v), 2) for v in self.box],
            "detector_score": round(float(self.detector_score), 6),
            "p_lesion": round(float(self.p_lesion), 6),
            "p_malignant": None if self.p_malignant is None else round(self.p_malignant, 6),
            "label": self.label,
        }


@dataclass(frozen=True)
class Candidates:
    """Raw detector output on the model image, highest score first.

    Attributes:
        boxes: float32 ``(N, 4)`` ``[x1, y1, x2, y2]`` model-image pixels.
        scores: float32 ``(N,)`` detector scores in ``[0, 1]``, descending.
    """

    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class CascadeTrace:
    """Every intermediate result of one prediction (for the app's step-through page).

    Attributes:
        preprocessed: the model image, its breast mask and its :class:`Geometry`.
        candidates: ALL ``N`` detector boxes, before the score threshold.
        p_lesion: float32 ``(K,)`` crop-level P(lesion) of the first ``K = min(N,
            max_candidates)`` candidates (the highest scores: every threshold selects among
            them, so re-thresholding never needs the classifiers again).
        p_malignant_given_lesion: float32 ``(K,)`` crop-level P(malignant | lesion).
        crops: float32 ``(K, s, s)`` classifier crops of those candidates.
    """

    preprocessed: Preprocessed
    candidates: Candidates
    p_lesion: np.ndarray
    p_malignant_given_lesion: np.ndarray
    crops: np.ndarray


@dataclass(frozen=True)
class Prediction:
    """The verdict on one image.

    Attributes:
        source: display name of the input (file name; never a patient id).
        label: ``Label.NORMAL``, ``Label.BENIGN`` or ``Label.MALIGNANT``.
        p_abnormal: image P(abnormal) in ``[0, 1]``.
        p_malignant: image P(malignant) in ``[0, 1]``, ``<= p_abnormal``.
        findings: candidates (kept and rejected), highest detector score first.
        timing_ms: ``{"read", "preprocess", "detect", "classify", "total"}`` milliseconds.
        meta: the reader's metadata (laterality, view, de-identified study key), if read.
        trace: intermediate results when ``predict(..., detail=True)``.
        thresholds: the thresholds the verdict was made with.
    """

    source: str
    label: Label
    p_abnormal: float
    p_malignant: float
    findings: list[Finding]
    timing_ms: dict[str, float]
    meta: MammogramMeta | None = None
    trace: CascadeTrace | None = field(default=None, repr=False)
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def kept_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.kept]

    def to_dict(self) -> dict[str, Any]:
        """JSON form used by ``predict --json``."""
        return {
            "input": self.source,
            **_verdict_json(self.label, self.p_abnormal, self.p_malignant),
            "findings": [f.to_dict() for f in self.findings],
            "timing_ms": {k: round(float(v), 1) for k, v in self.timing_ms.items()},
        }


@dataclass(frozen=True)
class BreastVerdict:
    """Verdict on one breast from its views (max rule)."""

    laterality: str  # "L" | "R" | "unknown"
    label: Label
    p_abnormal: float
    p_malignant: float
    views: list[str]  # view of each image ("CC", "MLO", "other" or "?")
    inputs: list[str]  # source name of each image

    def to_dict(self) -> dict[str, Any]:
        return {
            "laterality": self.laterality,
            **_verdict_json(self.label, self.p_abnormal, self.p_malignant),
            "views": list(self.views),
            "inputs": list(self.inputs),
        }


@dataclass(frozen=True)
class ExamPrediction:
    """Verdict on one exam: per breast, then the worse breast."""

    key: str | None  # de-identified study key, or None
    label: Label
    p_abnormal: float
    p_malignant: float
    breasts: dict[str, BreastVerdict]
    images: list[Prediction] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "exam": self.key,
            **_verdict_json(self.label, self.p_abnormal, self.p_malignant),
            "breasts": {k: v.to_dict() for k, v in self.breasts.items()},
        }
