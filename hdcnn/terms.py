"""Domain terms shared by the whole library, the CLI and the app (after MONAI's
``utils/enums.py``): labels, views, laterality, lesion sources, the four concepts, the seven
trainable parts and the status of a detector candidate.

Values are :class:`enum.StrEnum` members, so they compare equal to their plain strings
(``Label.NORMAL == "normal"``, ``Part.C1 == "c1"``), hash like them (a dict keyed by the
strings is found with the members and vice versa) and serialise to CSV/JSON as those strings.
Member order is meaningful where stated (``tuple(Concept)`` is the order of every report).
Colours of labels and concepts: :mod:`hdcnn.palette`.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Label(StrEnum):
    """Image-, breast- or lesion-level diagnosis."""

    NORMAL = "normal"
    BENIGN = "benign"
    MALIGNANT = "malignant"
    UNKNOWN = "unknown"


#: The three classes a verdict can take, in the order used by every model output and matrix.
CLASSES: tuple[Label, ...] = (Label.NORMAL, Label.BENIGN, Label.MALIGNANT)

_SEVERITY = {Label.UNKNOWN: -1, Label.NORMAL: 0, Label.BENIGN: 1, Label.MALIGNANT: 2}


class View(StrEnum):
    """Mammographic projection."""

    CC = "CC"
    MLO = "MLO"
    OTHER = "other"


class Laterality(StrEnum):
    """Which breast."""

    LEFT = "L"
    RIGHT = "R"


class LesionSource(StrEnum):
    """How a lesion's box was obtained from the dataset's annotation."""

    BOX = "box"
    CIRCLE = "circle"
    MASK = "mask"
    POINT = "point"


class Concept(StrEnum):
    """The four ways of using the same data that the thesis experiment compares.

    Iteration order (``tuple(Concept)``) is the order of every report and chart.
    """

    FLAT_WHOLE = "flat-whole"  # whole image, one 3-class CNN
    HIER_WHOLE = "hier-whole"  # whole image, normal/abnormal then benign/malignant
    DET_FLAT = "det-flat"  # detector + 3-class crop CNN
    DET_HIER = "det-hier"  # detector + C1 + C2 (HD-CNN)

    @property
    def uses_detector(self) -> bool:
        """True for the detector concepts (they have findings and a FROC)."""
        return self in (Concept.DET_FLAT, Concept.DET_HIER)


class Part(StrEnum):
    """A trainable part: one network, one checkpoint (``extra["part"]`` in the file)."""

    DETECTOR = "detector"  # Faster R-CNN lesion detector
    C1 = "c1"  # crop classifier 1: normal tissue vs lesion
    C2 = "c2"  # crop classifier 2: benign vs malignant lesion
    CROP_FLAT = "crop-flat"  # crop classifier: normal / benign / malignant
    WHOLE_FLAT = "whole-flat"  # whole image: normal / benign / malignant
    WHOLE_ABNORMAL = "whole-abnormal"  # whole image, level 1: normal vs abnormal
    WHOLE_MALIGNANCY = "whole-malignancy"  # whole image, level 2: benign vs malignant
    C1_CALC = "c1-calc"  # calcification stream: other vs lesion (spot crop + speck features)


class FindingStatus(StrEnum):
    """Which stage of the cascade kept or refused a detector candidate (``Cascade.decide``).

    - ``below_detector_threshold``: detector score < ``t_det`` (not a candidate; such boxes
      appear only in a ``CascadeTrace``, never in ``Prediction.findings``);
    - ``rejected_by_c1``: Classifier 1 P(lesion) < ``t_c1``;
    - ``rejected_by_calc``: a calcification-stream spot whose P(lesion) is below the stream's
      own threshold (``calc_stream.threshold`` of ``cascade.json``);
    - ``below_image_threshold``: kept by Classifier 1, but the image's P(abnormal) is below the
      effective image-level abnormal threshold, so the image is normal and no finding stands;
    - ``benign`` / ``malignant``: a finding of an abnormal image, graded against ``t_malignant``.
    """

    BELOW_DETECTOR_THRESHOLD = "below_detector_threshold"
    REJECTED_BY_C1 = "rejected_by_c1"
    REJECTED_BY_CALC = "rejected_by_calc"
    BELOW_IMAGE_THRESHOLD = "below_image_threshold"
    BENIGN = "benign"
    MALIGNANT = "malignant"


def worst_label(labels: Iterable[Label | str]) -> Label:
    """The most severe of ``labels`` (malignant > benign > normal > unknown).

    An empty iterable gives :attr:`Label.UNKNOWN`.
    """
    worst = Label.UNKNOWN
    for label in labels:
        label = Label(label)
        if _SEVERITY[label] > _SEVERITY[worst]:
            worst = label
    return worst


def parse_label(value: object) -> Label:
    """Label from a loose string (``"B"``, ``"Benign"``, ``"MALIGNANT"``, ``""`` ...)."""
    text = str(value).strip().lower() if value is not None else ""
    if text in {"normal", "norm", "n"}:
        return Label.NORMAL
    if text in {"benign", "b", "benign_without_callback"}:
        return Label.BENIGN
    if text in {"malignant", "m", "cancer"}:
        return Label.MALIGNANT
    return Label.UNKNOWN
