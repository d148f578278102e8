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
    from hdcnn.calibration import Calibration
    from hdcnn.cascade.calc import CalcTrace
    from hdcnn.preprocess import Preprocessed
    from hdcnn.reader import MammogramMeta

from hdcnn.cascade.rules import Thresholds

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- results

#: The candidate streams of a cascade: the detector's and the calcification stream's.
STREAMS = ("mass", "calcification")


def _verdict_json(
    label: Label,
    p_abnormal: float,
    p_malignant: float,
    calibrated: dict[str, float] | None = None,
    borderline: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The verdict fields shared by the image, breast and exam JSON forms; ``calibrated`` and
    ``borderline`` only when the weights ship a calibration."""
    out: dict[str, Any] = {
        "label": str(label),
        "p_abnormal": round(float(p_abnormal), 6),
        "p_malignant": round(float(p_malignant), 6),
    }
    if calibrated is not None:
        out["calibrated"] = {k: round(float(v), 6) for k, v in calibrated.items()}
        out["borderline"] = list(borderline)
    return out


@dataclass(frozen=True)
class Finding:
    """One candidate after classification: a detector box (the mass stream) or a spot of the
    calcification stream.

    Attributes:
        box: ``(x1, y1, x2, y2)`` float, ORIGINAL image pixels.
        detector_score: detector confidence in ``[0, 1]`` (0 for a calcification spot).
        p_lesion: P(lesion) in ``[0, 1]`` of the stream's classifier (Classifier 1, or the
            calcification stream's).
        p_malignant: ``p_lesion * P(malignant | lesion)`` for kept findings, ``None`` when
            rejected.
        label: ``"benign"``, ``"malignant"`` or ``"rejected"``.
        model_box: the same box in model-image pixels (for drawing on the preprocessed image).
        index: row of this candidate in the trace (``CascadeTrace.candidates``, ``.crops``;
            ``CascadeTrace.calc`` for a calcification spot).
        status: the stage that kept or refused it (:class:`FindingStatus`); None for findings
            built outside :meth:`Cascade.decide`.
        p_lesion_calibrated: ``p_lesion`` through the shipped calibration map (None without
            one): the probability that this box points at a lesion.
        stream: ``"mass"`` (the detector's) or ``"calcification"`` (:data:`STREAMS`).
        spot_density: the spot's cluster density (calcification stream only).
        stream_threshold: the P(lesion) threshold of the finding's own stream when it is not
            Classifier 1's (the calcification stream's); None for the mass stream.
        number: the number shown for the finding when it is not ``index + 1`` (calcification
            spots are numbered after the mass stream's classified candidates).
    """

    box: tuple[float, float, float, float]
    detector_score: float
    p_lesion: float
    p_malignant: float | None
    label: str
    model_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    index: int = -1
    status: FindingStatus | None = None
    p_lesion_calibrated: float | None = None
    stream: str = "mass"
    spot_density: float | None = None
    stream_threshold: float | None = None
    number: int | None = None

    @property
    def kept(self) -> bool:
        return self.label != "rejected"

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"stream", "box", "detector_score", "p_lesion", "p_malignant",
        "label"}`` (and ``p_lesion_calibrated`` when calibrated, ``spot_density`` for a
        calcification spot)."""
        out: dict[str, Any] = {
            "stream": self.stream,
            "box": [round(float(v), 2) for v in self.box],
            "detector_score": round(float(self.detector_score), 6)
            if self.stream == "mass"
            else None,
            "p_lesion": round(float(self.p_lesion), 6),
            "p_malignant": None if self.p_malignant is None else round(self.p_malignant, 6),
            "label": self.label,
        }
        if self.p_lesion_calibrated is not None:
            out["p_lesion_calibrated"] = round(float(self.p_lesion_calibrated), 6)
        if self.spot_density is not None:
            out["spot_density"] = round(float(self.spot_density), 6)
        return out


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
        calc: the calcification stream's results (None: the cascade has no such stream).
    """

    preprocessed: Preprocessed
    candidates: Candidates
    p_lesion: np.ndarray
    p_malignant_given_lesion: np.ndarray
    crops: np.ndarray
    calc: CalcTrace | None = None


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
        calibration: the weights' shipped calibration (None: not fitted); breast and exam
            verdicts built from this prediction use it too.
        calibrated: ``{"p_abnormal", "p_malignant"}`` through the calibration maps (None
            without a calibration).
        borderline: the decisions of this verdict that were near calls
            (:meth:`hdcnn.calibration.Calibration.borderline`; empty: a clear verdict).
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
    calibration: Calibration | None = field(default=None, repr=False)
    calibrated: dict[str, float] | None = None
    borderline: tuple[str, ...] = ()

    @property
    def kept_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.kept]

    def to_dict(self) -> dict[str, Any]:
        """JSON form used by ``predict --json``."""
        return {
            "input": self.source,
            **_verdict_json(
                self.label, self.p_abnormal, self.p_malignant, self.calibrated, self.borderline
            ),
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
    calibrated: dict[str, float] | None = None  # as Prediction.calibrated
    borderline: tuple[str, ...] = ()  # as Prediction.borderline

    def to_dict(self) -> dict[str, Any]:
        return {
            "laterality": self.laterality,
            **_verdict_json(
                self.label, self.p_abnormal, self.p_malignant, self.calibrated, self.borderline
            ),
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
    calibrated: dict[str, float] | None = None  # as Prediction.calibrated
    borderline: tuple[str, ...] = ()  # as Prediction.borderline

    def to_dict(self) -> dict[str, Any]:
        return {
            "exam": self.key,
            **_verdict_json(
                self.label, self.p_abnormal, self.p_malignant, self.calibrated, self.borderline
            ),
            "breasts": {k: v.to_dict() for k, v in self.breasts.items()},
        }
