"""Shared pieces of the DICOM outputs: the analysed source image, the algorithm's identity,
the codes the report uses, and the equipment that writes the objects.

Coordinates: a finding's box ``[x1, y1, x2, y2]`` is in original pixels (the file as read,
origin at the top-left corner of the top-left pixel); DICOM 2-D coordinates (SCOORD, GSPS
``PIXEL`` units) use the same origin as ``(column, row)``, so a box corner is written as is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from hdcnn import __version__
from hdcnn.terms import FindingStatus, Label

if TYPE_CHECKING:
    from hdcnn.cascade import Prediction, Thresholds

# highdicom logs every attribute it copies at INFO, which the CLI shows: keep its warnings only.
logging.getLogger("highdicom").setLevel(logging.WARNING)

#: Manufacturer written in every object (Equipment module).
MANUFACTURER = "HD-CNN Mammo (research demo, not a medical device)"
#: Series numbers of the report and presentation-state series (high, so they sort after the
#: acquisition's own series in a viewer).
SR_SERIES_NUMBER = 9901
PR_SERIES_NUMBER = 9902  # left breast (and unknown side); right breast: 9903
SR_SERIES_DESCRIPTION = "HD-CNN Mammo findings (research demo)"
PR_SERIES_DESCRIPTION = "HD-CNN Mammo marks (research demo)"

#: The project's local coding scheme (a ``99`` designator: private by the standard's rule).
LOCAL_SCHEME = "99HDCNN"


def _local(value: str, meaning: str) -> Code:
    return Code(value, LOCAL_SCHEME, meaning)


#: Concepts without a standard code get a local one; standard codes where DICOM has them.
P_LESION = _local("P_LESION", "Probability of lesion (Classifier 1)")
P_ABNORMAL = _local("P_ABNORMAL", "Probability of abnormality")
P_MALIGNANT = codes.DCM.ProbabilityOfCancer  # (111047, DCM, "Probability of cancer")
DETECTOR_SCORE = _local("DET_SCORE", "Detector score")
VERDICT = _local("VERDICT", "Cascade verdict")
DECIDED_BY = _local("DECIDED_BY", "Decided by")
DECISION_RULE = _local("RULE", "Decision rule")
STAGE = _local("STAGE", "Deciding stage")
STREAM = _local("STREAM", "Candidate stream")
SUPPORTS_VERDICT = _local("SUPPORTS", "Verdict rests on this finding")
THRESHOLD_CONCEPTS: dict[str, Code] = {
    "detector_score": _local("T_DET", "Detector score threshold"),
    "c1_lesion": _local("T_C1", "Classifier 1 threshold"),
    "abnormal": _local("T_ABN", "Image-level abnormal threshold"),
    "malignant": _local("T_MAL", "Malignant threshold"),
    "calc_stream": _local("T_CALC", "Calcification stream threshold"),
}
#: The verdict labels as SNOMED CT codes.
LABEL_CODES: dict[Label, Code] = {
    Label.NORMAL: codes.SCT.Normal,
    Label.BENIGN: codes.SCT.Benign,
    Label.MALIGNANT: codes.SCT.Malignant,
}
#: Each kept finding's deciding stage (:class:`FindingStatus`) as a local code.
STAGE_CODES: dict[FindingStatus, Code] = {
    FindingStatus.BENIGN: _local(
        "C2_BENIGN", "Classifier 2: P(malignant) below the malignant threshold"
    ),
    FindingStatus.MALIGNANT: _local(
        "C2_MALIGNANT", "Classifier 2: P(malignant) at or above the malignant threshold"
    ),
}
#: The shipped cascade's candidates come from one stream: the Faster R-CNN detector; weights
#: with a calcification stream add its spots (:mod:`hdcnn.cascade.calc`).
DETECTOR_STREAM = _local("DETECTOR", "Faster R-CNN detector candidates")
CALC_STREAM = _local("CALC_SPOTS", "Calcification stream: speck-density spots")
#: Each finding's stream (``Finding.stream``) as a local code.
STREAM_CODES: dict[str, Code] = {"mass": DETECTOR_STREAM, "calcification": CALC_STREAM}
LATERALITY_CODES: dict[str, Code] = {"L": codes.SCT.Left, "R": codes.SCT.Right}
YES, NO = codes.SCT.Yes, codes.SCT.No
UNITLESS = codes.UCUM.NoUnits


@dataclass(frozen=True)
class Algorithm:
    """The algorithm that made the findings (TID 4019 Algorithm Identification).

    Attributes:
        name: the weights' name (``cascade.json`` ``name``).
        sha256: hash of the loaded weight files (:attr:`hdcnn.cascade.Cascade.sha256`).
        thresholds: the operating thresholds the verdicts were made with.
        version: the software version (``hdcnn.__version__``).
    """

    name: str
    sha256: str
    thresholds: Thresholds
    version: str = __version__

    @classmethod
    def from_cascade(cls, cascade: Any) -> Algorithm:
        return cls(str(cascade.name), str(cascade.sha256), cascade.thresholds)

    def parameters(self) -> list[str]:
        """Algorithm parameters as text: the weights hash, then each threshold in force."""
        t = self.thresholds
        return (
            [f"weights sha256 {self.sha256}"]
            + [f"{key} threshold {value:.6f}" for key, value in t.to_dict().items()]
            + [f"effective abnormal threshold {t.effective_abnormal:.6f}"]
        )


@dataclass(frozen=True)
class SourceImage:
    """One analysed image: its DICOM header (no pixels needed) and its prediction.

    Attributes:
        header: the source's header as filed in the PACS (identity kept) or de-identified;
            every output references its SOP Instance UID and study.
        prediction: the cascade's :class:`hdcnn.cascade.Prediction` of that image; its
            finding boxes are in the source's original pixels.
    """

    header: Dataset
    prediction: Prediction

    @property
    def size(self) -> tuple[int, int]:
        """``(rows, columns)`` of the source image."""
        return int(self.header.Rows), int(self.header.Columns)

    @property
    def laterality(self) -> str | None:
        meta = self.prediction.meta
        return getattr(meta, "laterality", None)

    @property
    def view(self) -> str | None:
        meta = self.prediction.meta
        return getattr(meta, "view", None)


def rectangle(box: Sequence[float]) -> np.ndarray:
    """A box ``[x1, y1, x2, y2]`` as a closed polyline ``(5, 2)`` of ``(column, row)`` points,
    clockwise from the top-left corner (the form of both the SCOORD and the GSPS)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]], dtype=np.float32)


def box_of(points: np.ndarray) -> tuple[float, float, float, float]:
    """The box ``(x1, y1, x2, y2)`` bounding ``(N, 2)`` ``(column, row)`` points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return (
        float(pts[:, 0].min()),
        float(pts[:, 1].min()),
        float(pts[:, 0].max()),
        float(pts[:, 1].max()),
    )


def kept_findings(prediction: Prediction) -> list[tuple[tuple[float, float, float, float], dict]]:
    """The kept findings of a prediction: ``(box, row)`` with the box at full precision in
    original pixels (the finding's own) and the row of :func:`hdcnn.report.finding_dicts`
    (number, label, status, reason, prominent, probabilities), in the prediction's order."""
    from hdcnn.report import finding_dicts

    rows = finding_dicts(prediction)
    return [
        (tuple(float(v) for v in finding.box), row)  # type: ignore[misc]
        for finding, row in zip(prediction.findings, rows, strict=True)
        if row["label"] != "rejected"
    ]
