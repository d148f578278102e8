"""Domain terms shared by the whole library: labels, views, laterality, lesion sources.

Values are :class:`enum.StrEnum` members, so they compare equal to their plain strings
(``Label.NORMAL == "normal"``) and serialise to CSV/JSON as those strings.
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
