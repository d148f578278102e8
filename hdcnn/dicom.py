"""DICOM helpers: build, write and de-identify mammography files; decode their pixels.

Writing (for the synthetic cohort, tests and exports; in :mod:`hdcnn.dicom_build`):

- :func:`build_dicom` -- a complete Digital Mammography X-Ray "For Presentation" dataset.
- :func:`write_dicom` -- atomic write, explicit VR little endian, file meta filled.
- :func:`deidentify` -- a copy without identifying tags, private tags or original UIDs.

Reading (used by :func:`hdcnn.reader.read_mammogram`; pixels in :mod:`hdcnn.dicom_pixels`):

- :func:`inflate_deflated` -- a Deflated Explicit VR Little Endian file inflated in bounded
  steps (the header's image size decides how much output may follow).
- :func:`check_modality` -- refuse DICOM objects that are not mammograms (CT, MR, US ...).
- :func:`check_pixel_header` -- refuse unusable files from the header, before any decoding.
- :func:`decode_stored` -- the stored values, after checking the compressed stream's own
  size (:mod:`hdcnn.codestream`).
- :func:`display_pixels` -- modality rescale, VOI LUT / windowing, MONOCHROME1 inversion and
  scaling to float32 ``[0, 1]`` with bright = dense.
- :func:`laterality_from_tags`, :func:`view_from_tags`, :func:`age_from_tags`,
  :func:`pixel_spacing_from_tags` -- metadata from standard tags.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from hdcnn.dicom_build import (
    IDENTIFYING_KEYWORDS,
    VIEW_CODES,
    build_dicom,
    deidentify,
    write_dicom,
)
from hdcnn.dicom_pixels import (
    DEFLATED_TS,
    INFLATE_HEADER_BYTES,
    RESCALE_INTERCEPT_MAX,
    RESCALE_SLOPE_RANGE,
    check_pixel_header,
    decode_stored,
    display_pixels,
    inflate_deflated,
    int_tag,
    modality_values,
    text_tag,
    transfer_syntax,
)
from hdcnn.errors import MammogramError

__all__ = [
    "DEFLATED_TS",
    "IDENTIFYING_KEYWORDS",
    "INFLATE_HEADER_BYTES",
    "MAMMO_MODALITIES",
    "RESCALE_INTERCEPT_MAX",
    "RESCALE_SLOPE_RANGE",
    "VIEW_CODES",
    "age_from_tags",
    "build_dicom",
    "check_modality",
    "check_pixel_header",
    "convention_texts",
    "decode_stored",
    "deidentify",
    "display_pixels",
    "inflate_deflated",
    "int_tag",
    "laterality_from_tags",
    "modality_values",
    "patient_key",
    "pixel_spacing_from_tags",
    "study_key",
    "text_tag",
    "transfer_syntax",
    "view_from_tags",
    "write_dicom",
]

logger = logging.getLogger(__name__)

#: Modalities accepted without further evidence; CR / DX / OT need BodyPartExamined BREAST.
MAMMO_MODALITIES = ("MG",)
_XRAY_MODALITIES = ("CR", "DX", "OT")
#: SOP class names (pydicom's) that may hold a mammogram when Modality is missing.
_IMAGE_CLASS_WORDS = ("Mammography", "X-Ray Image", "Computed Radiography", "Secondary Capture")

#: Key of the study-key HMAC: random per process, never stored (see :func:`study_key`).
_STUDY_KEY_SALT = secrets.token_bytes(32)

_CODE_TO_VIEW = {code: view for view, (code, _) in VIEW_CODES.items()}
_MEANING_TO_VIEW = {
    re.sub(r"[^a-z]", "", meaning): view for view, (_, meaning) in VIEW_CODES.items()
}


def check_modality(ds: Dataset, source: str) -> None:
    """Refuse a DICOM object that is not plausibly a mammogram, from its header.

    Accepted: Modality ``MG``; ``CR`` / ``DX`` / ``OT`` when BodyPartExamined is ``BREAST``
    (computed radiography and secondary captures of mammograms exist); no Modality at all
    when the SOP class is absent, unknown to pydicom, or an X-ray / secondary-capture image.

    Raises:
        MammogramError: naming the modality or SOP class found.
    """
    modality = text_tag(ds, "Modality").upper()[:16]
    if modality in MAMMO_MODALITIES:
        return
    breast = "BREAST" in text_tag(ds, "BodyPartExamined").upper()
    if modality:
        if modality in _XRAY_MODALITIES and breast:
            return
        raise MammogramError(
            source,
            f"DICOM Modality {modality!r} is not mammography (MG): not read as a mammogram",
        )
    sop = text_tag(ds, "SOPClassUID")
    if not sop:
        return
    name = UID(sop).name if re.fullmatch(r"[0-9.]{1,64}", sop) else sop
    if name == sop or any(word in name for word in _IMAGE_CLASS_WORDS):
        return
    raise MammogramError(source, f"DICOM object of class {name!r} is not a mammogram")


def _text(ds: Dataset, keyword: str) -> str:
    return text_tag(ds, keyword).upper()


def laterality_from_tags(ds: Dataset) -> str | None:
    """``"L"`` / ``"R"`` from ImageLaterality, Laterality, then PatientOrientation.

    PatientOrientation is used only where it matches the standard display of one side: a left
    breast is shown with its chest wall on the left, so rows run anterior (``A``) and columns
    toward the patient's right (``R``, ``FR``); a right breast gives ``P`` and ``L`` / ``FL``.
    Any other combination (a flipped image) is ambiguous and gives None.
    """
    for keyword in ("ImageLaterality", "Laterality"):
        value = _text(ds, keyword)
        if value in ("L", "R"):
            return value
    orientation = ds.get("PatientOrientation")
    if isinstance(orientation, (list, pydicom.multival.MultiValue)) and len(orientation) == 2:
        rows, cols = (str(v).strip().upper() for v in orientation)
        cols_side = cols.replace("F", "").replace("H", "")
        if rows == "A" and cols_side == "R":
            return "L"
        if rows == "P" and cols_side == "L":
            return "R"
    return None


def _view_from_text(value: str) -> str | None:
    value = value.strip().upper()
    if not value:
        return None
    if value == "CC":
        return "CC"
    if value == "MLO":
        return "MLO"
    return "other"


def view_from_tags(ds: Dataset) -> str | None:
    """``"CC"`` / ``"MLO"`` / ``"other"`` from ViewPosition, then ViewCodeSequence.

    ViewCodeSequence is matched by SNOMED code (399162004, 399368009, also ``R-`` legacy codes
    via their meaning) or by CodeMeaning ("cranio-caudal", "medio-lateral oblique").
    Finally a PatientOrientation of exactly ``"CC"`` / ``"MLO"`` (as CBIS-DDSM writes it).
    """
    view = _view_from_text(_text(ds, "ViewPosition"))
    if view is not None:
        return view
    for item in ds.get("ViewCodeSequence") or []:
        code = str(item.get("CodeValue", "")).strip()
        meaning = re.sub(r"[^a-z]", "", str(item.get("CodeMeaning", "")).lower())
        if code in _CODE_TO_VIEW:
            return _CODE_TO_VIEW[code]
        if meaning in _MEANING_TO_VIEW:
            return _MEANING_TO_VIEW[meaning]
        if code or meaning:
            return "other"
    orientation = _text(ds, "PatientOrientation")
    if orientation in ("CC", "MLO"):
        return orientation
    return None


_AGE_UNITS = {"Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / 365.25, "D": 1.0 / 365.25}


def age_from_tags(ds: Dataset, *, source: str | None = None) -> float | None:
    """Age in years from PatientAge (``"058Y"``, ``"006M"``, ``"010W"``, ``"020D"``).

    A malformed value is ignored with a warning naming ``source``; the value itself is never
    logged (it may be anything a header can hold).
    """
    text = _text(ds, "PatientAge") if "PatientAge" in ds else ""
    match = re.fullmatch(r"(\d{1,3})\s*([YMWD]?)", text)
    if not match:
        if text:
            logger.warning("%s: ignoring a malformed PatientAge value", source or "DICOM")
        return None
    number, unit = match.groups()
    return float(number) * _AGE_UNITS[unit or "Y"]


def pixel_spacing_from_tags(ds: Dataset) -> tuple[float, float] | None:
    """(row, column) mm per pixel from PixelSpacing, else ImagerPixelSpacing, else None."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            row, col = (float(v) for v in value)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            continue
        if row > 0 and col > 0 and np.isfinite(row) and np.isfinite(col):
            return (row, col)
    return None


def _keyed(value: str) -> str:
    """First 16 hex digits of HMAC-SHA256(value) under the per-process random key."""
    digest = hmac.new(_STUDY_KEY_SALT, value.encode("utf-8", "replace"), hashlib.sha256)
    return digest.hexdigest()[:16]


def study_key(ds: Dataset) -> str | None:
    """A study key that groups the views of one study within this process, or None.

    First 16 hex digits of HMAC-SHA256(StudyInstanceUID) under a random key drawn once per
    process and never stored: files of one study read by the same process (one CLI run, one
    app server) share a key, but a key cannot be traced back to the UID or linked across
    runs (an unsalted hash could be recomputed by anyone holding the UID).
    """
    uid = text_tag(ds, "StudyInstanceUID")
    return _keyed(uid) if uid else None


#: Parts of a CBIS-DDSM PatientID that name the image, not the patient
#: (``Mass-Test_P_00173_LEFT_CC``: the abnormality type and split, then breast and view).
_IMAGE_PARTS = re.compile(
    r"^(?:MASS|CALC)-(?:TRAINING|TEST)_|(?:[_ -](?:LEFT|RIGHT|L|R))?[_ -](?:CC|MLO)(?:[_ -]\d+)?$"
)


def patient_key(ds: Dataset) -> str | None:
    """A patient key that tells one patient's files from another's within this process, or None.

    Keyed like :func:`study_key` (never shown, not linkable back or across runs), over
    PatientID, else PatientName, upper-cased, without the parts that name the image rather
    than the patient (CBIS-DDSM gives every view its own PatientID, e.g.
    ``Mass-Test_P_00173_LEFT_CC``: the patient is ``P_00173``).
    """
    identity = text_tag(ds, "PatientID") or text_tag(ds, "PatientName")
    identity = _IMAGE_PARTS.sub("", identity.strip().upper())
    return _keyed(f"patient:{identity}") if identity else None


def convention_texts(ds: Dataset) -> list[str]:
    """Free-text fields that may hold dataset naming conventions (``..._RIGHT_CC``).

    For :mod:`hdcnn.reader` only: these are parsed for laterality and view, never exposed.
    """
    keys = ("SeriesDescription", "ProtocolName", "StudyDescription", "PatientName", "PatientID")
    return [str(ds.get(k, "") or "") for k in keys]
