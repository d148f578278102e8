"""Helpers shared by the dataset adapters: file checks, table reading, label conventions."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from hdcnn.data.tables import unreadable_reason
from hdcnn.errors import DatasetError
from hdcnn.terms import Label

logger = logging.getLogger(__name__)


def require_file(root: Path, relative: str, dataset: str) -> Path:
    """``root / relative`` if it is a file, else DatasetError naming the missing file."""
    path = root / relative
    if not path.is_file():
        raise DatasetError(str(path), f"not found: {root} does not look like a {dataset} root")
    return path


def clean(value: object) -> str:
    """A table cell as a stripped string; NaN/None become ``""``; embedded newlines removed."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip()


def parse_age(value: object) -> float | None:
    """Age in years from ``61``, ``61.0``, ``"053Y"``, ``"6M"`` ...; ``None`` if not parseable."""
    text = clean(value).upper()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([YMWD]?)", text)
    if not match:
        return None
    number = float(match.group(1))
    return number / {"": 1, "Y": 1, "M": 12, "W": 52.1775, "D": 365.25}[match.group(2)]


def parse_view(value: object) -> str | None:
    """``"CC"``/``"MLO"`` as is, anything else non-empty -> ``"other"``, empty -> ``None``."""
    text = clean(value).upper()
    if not text:
        return None
    return text if text in {"CC", "MLO"} else "other"


def parse_laterality(value: object) -> str | None:
    """``"L"``/``"R"`` from ``L``, ``LEFT``, ``r`` ...; ``None`` otherwise."""
    text = clean(value).upper()
    if text in {"L", "LEFT"}:
        return "L"
    if text in {"R", "RIGHT"}:
        return "R"
    return None


def density_letter(value: object) -> str | None:
    """BI-RADS density letter from ``"DENSITY B"``, ``"B"``, ``2``, ``"2.0"``; else ``None``."""
    text = clean(value).upper().replace("DENSITY", "").strip()
    if text in {"A", "B", "C", "D"}:
        return text
    try:
        number = float(text)
    except ValueError:
        return None
    return {1.0: "A", 2.0: "B", 3.0: "C", 4.0: "D"}.get(number)


def birads_label(value: object) -> Label:
    """Proxy label from a BI-RADS category: 1 -> normal, 2-3 -> benign, 4x/5/6 -> malignant.

    Accepts ``"BI-RADS 4"``, ``"4a"``, ``5``, ``"2.0"``; 0 or unparseable -> unknown.
    """
    text = clean(value).upper().replace("BI-RADS", "").replace("BIRADS", "").strip()
    match = re.match(r"(\d)", text)
    if not match:
        return Label.UNKNOWN
    category = int(match.group(1))
    if category == 1:
        return Label.NORMAL
    if category in {2, 3}:
        return Label.BENIGN
    if category in {4, 5, 6}:
        return Label.MALIGNANT
    return Label.UNKNOWN


def lesion_kind(name: str) -> str:
    """Lesion kind from a free-text finding name (``"Mass"``, ``"Suspicious Calcification"``)."""
    text = name.lower()
    if "calc" in text or "micro" in text or "cluster" in text:
        return "calcification"
    if "distortion" in text:
        return "distortion"
    if "asym" in text:
        return "asymmetry"
    if "mass" in text or "spicul" in text:
        return "mass"
    return "other"


def clip_box(
    box: tuple[float, float, float, float], height: int, width: int
) -> tuple[float, float, float, float] | None:
    """``box`` clipped to a ``(height, width)`` image; ``None`` if nothing is left inside."""
    x1, y1, x2, y2 = box
    x1, x2 = max(0.0, min(float(width), x1)), max(0.0, min(float(width), x2))
    y1, y2 = max(0.0, min(float(height), y1)), max(0.0, min(float(height), y2))
    if x2 <= x1 or y2 <= y1:
        return None
    return (x1, y1, x2, y2)


def warn_missing(dataset: str, missing: list[str]) -> None:
    """Log (once) how many listed images were not found on disk."""
    if missing:
        logger.warning(
            "%s: %d listed image(s) not found on disk and skipped (first: %s)",
            dataset,
            len(missing),
            missing[0],
        )


def dicom_header(path: Path) -> Dataset:
    """The DICOM header of ``path`` (pixels not read).

    Raises:
        DatasetError: not a readable DICOM file.
    """
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        reason = unreadable_reason(exc) if isinstance(exc, OSError) else "no valid DICOM header"
        raise DatasetError(str(path), f"not a readable DICOM file ({reason})") from exc


def is_for_processing(ds: Dataset) -> bool:
    """True for raw detector images (``PresentationIntentType`` ``FOR PROCESSING``)."""
    return str(ds.get("PresentationIntentType", "")).strip().upper() == "FOR PROCESSING"
