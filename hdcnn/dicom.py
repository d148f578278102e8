"""DICOM helpers: build, write and de-identify mammography files; decode their pixels.

Writing (for the synthetic cohort, tests and exports):

- :func:`build_dicom` -- a complete Digital Mammography X-Ray "For Presentation" dataset.
- :func:`write_dicom` -- atomic write, explicit VR little endian, file meta filled.
- :func:`deidentify` -- a copy without identifying tags, private tags or original UIDs.

Reading (used by :func:`hdcnn.reader.read_mammogram`):

- :func:`check_pixel_header` -- refuse unusable files from the header, before any decoding.
- :func:`display_pixels` -- modality rescale, VOI LUT / windowing, MONOCHROME1 inversion and
  scaling to float32 ``[0, 1]`` with bright = dense.
- :func:`laterality_from_tags`, :func:`view_from_tags`, :func:`age_from_tags`,
  :func:`pixel_spacing_from_tags` -- metadata from standard tags.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import re
import warnings
from collections.abc import Callable

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DigitalMammographyXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from hdcnn.errors import MammogramError
from hdcnn.reader import scale_to_unit
from hdcnn.utils import atomic_path, check_image_size

logger = logging.getLogger(__name__)

#: SNOMED CT codes of the two standard views (ViewCodeSequence, CID 4014).
VIEW_CODES: dict[str, tuple[str, str]] = {
    "CC": ("399162004", "cranio-caudal"),
    "MLO": ("399368009", "medio-lateral oblique"),
}
_CODE_TO_VIEW = {code: view for view, (code, _) in VIEW_CODES.items()}
_MEANING_TO_VIEW = {
    re.sub(r"[^a-z]", "", meaning): view for view, (_, meaning) in VIEW_CODES.items()
}

#: Tags removed by :func:`deidentify` (wherever they occur, nested sequences included).
IDENTIFYING_KEYWORDS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientMotherBirthName",
    "OtherPatientIDs",
    "OtherPatientNames",
    "OtherPatientIDsSequence",
    "IssuerOfPatientID",
    "MedicalRecordLocator",
    "MilitaryRank",
    "BranchOfService",
    "Occupation",
    "PatientReligiousPreference",
    "PatientComments",
    "AdditionalPatientHistory",
    "ResponsiblePerson",
    "ResponsibleOrganization",
    "CountryOfResidence",
    "RegionOfResidence",
    "PatientInsurancePlanCodeSequence",
    "ReferencedPatientSequence",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "InstitutionCodeSequence",
    "StationName",
    "DeviceSerialNumber",
    "ReferringPhysicianName",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence",
    "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence",
    "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence",
    "RequestingPhysician",
    "OperatorsName",
    "OperatorIdentificationSequence",
    "ScheduledPerformingPhysicianName",
    "AccessionNumber",
    "StudyID",
    "RequestAttributesSequence",
    "RequestedProcedureID",
    "ScheduledProcedureStepID",
    "PerformedProcedureStepID",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "AcquisitionDateTime",
    "StudyTime",
    "SeriesTime",
    "AcquisitionTime",
    "ContentTime",
    "InstanceCreationDate",
    "InstanceCreationTime",
    "StudyDescription",
    "SeriesDescription",
    "ProtocolName",
    "ImageComments",
    "DerivationDescription",
    "FrameComments",
)

_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's UID root, as used by generate_uid


def _text_uid(*parts: str) -> UID:
    """A deterministic UID under pydicom's root, derived from ``parts``."""
    return generate_uid(prefix=_PREFIX, entropy_srcs=[str(p) for p in parts])


def build_dicom(
    pixels: np.ndarray,
    *,
    laterality: str | None = None,
    view: str | None = None,
    age_years: int | None = None,
    patient_id: str = "ANON",
    study_uid: str | None = None,
    photometric: str = "MONOCHROME2",
    pixel_spacing: float | None = None,
    extra: dict[str, object] | None = None,
) -> Dataset:
    """A Digital Mammography X-Ray Image Storage - For Presentation dataset.

    UIDs are deterministic: the study UID (unless given) derives from ``patient_id``; series
    and instance UIDs derive from the study UID, laterality, view and a hash of the pixels, so
    the same inputs give the same file byte for byte.

    Args:
        pixels: ``uint16`` or ``uint8`` array ``(H, W)``; stored as is (no inversion), with
            ``BitsAllocated`` = ``BitsStored`` = 16 or 8 from the dtype.
        laterality: ``"L"`` / ``"R"`` written to ImageLaterality (and Laterality), or None.
        view: ``"CC"`` / ``"MLO"`` written to ViewPosition and ViewCodeSequence (SNOMED
            399162004 / 399368009); ``"other"`` or None leaves both empty.
        age_years: PatientAge as ``"nnnY"``, or None for an empty PatientAge.
        patient_id: PatientID and PatientName.
        study_uid: StudyInstanceUID; derived from ``patient_id`` when None.
        photometric: ``"MONOCHROME2"`` (bright = dense) or ``"MONOCHROME1"`` (the caller
            supplies inverted pixels).
        pixel_spacing: mm per pixel (square pixels) for PixelSpacing and
            ImagerPixelSpacing, or None.
        extra: keyword -> value set last (overrides anything above), e.g.
            ``{"WindowCenter": 2048, "WindowWidth": 4096}``.

    Returns:
        The dataset with ``file_meta`` filled (explicit VR little endian).

    Raises:
        MammogramError: ``pixels`` is not a 2-D uint8/uint16 array, or an argument is invalid.
    """
    arr = np.asarray(pixels)
    if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16):
        raise MammogramError(
            "build_dicom",
            f"pixels must be a 2-D uint8 or uint16 array, got {arr.dtype} {arr.shape}",
        )
    if laterality not in (None, "L", "R"):
        raise MammogramError(
            "build_dicom", f"laterality must be 'L', 'R' or None, got {laterality!r}"
        )
    if view not in (None, "CC", "MLO", "other"):
        raise MammogramError(
            "build_dicom", f"view must be 'CC', 'MLO', 'other' or None, got {view!r}"
        )
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise MammogramError(
            "build_dicom", f"photometric must be MONOCHROME1/2, got {photometric!r}"
        )
    arr = np.ascontiguousarray(arr)
    bits = arr.dtype.itemsize * 8
    pixel_hash = hashlib.sha256(arr.tobytes()).hexdigest()
    study = UID(study_uid) if study_uid else _text_uid("study", patient_id)
    series = _text_uid("series", study, laterality or "", view or "")
    instance = _text_uid("instance", study, laterality or "", view or "", pixel_hash)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalMammographyXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "HDCNN_MAMMO"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.SOPClassUID = DigitalMammographyXRayImageStorageForPresentation
    ds.SOPInstanceUID = instance
    ds.Modality = "MG"
    ds.ConversionType = "SYN"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PatientName = patient_id
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "F"
    ds.PatientAge = f"{int(age_years):03d}Y" if age_years is not None else ""
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "BREAST"
    ds.ImageLaterality = laterality or ""
    ds.Laterality = laterality or ""
    ds.ViewPosition = view if view in VIEW_CODES else ""
    code_items = Sequence()
    if view in VIEW_CODES:
        code, meaning = VIEW_CODES[view]
        item = Dataset()
        item.CodeValue = code
        item.CodingSchemeDesignator = "SCT"
        item.CodeMeaning = meaning
        code_items.append(item)
    ds.ViewCodeSequence = code_items
    ds.PatientOrientation = _standard_orientation(laterality, view)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = arr.shape
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    if pixel_spacing is not None:
        spacing = float(pixel_spacing)
        ds.PixelSpacing = [spacing, spacing]
        ds.ImagerPixelSpacing = [spacing, spacing]
    ds.PixelData = arr.tobytes()
    ds["PixelData"].VR = "OW" if bits == 16 else "OB"
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    return ds


def _standard_orientation(laterality: str | None, view: str | None) -> list[str] | str:
    """PatientOrientation of a breast in standard display (chest wall on the far side).

    A left breast is displayed with its chest wall on the left (rows run anterior: ``A``),
    a right breast with its chest wall on the right (``P``). Empty when unknown.
    """
    if laterality not in ("L", "R") or view not in ("CC", "MLO"):
        return ""
    rows = "A" if laterality == "L" else "P"
    other = "R" if laterality == "L" else "L"
    cols = other if view == "CC" else f"F{other}"
    return [rows, cols]


def write_dicom(path: str | os.PathLike[str], ds: Dataset) -> None:
    """Write ``ds`` to ``path`` atomically as a DICOM Part 10 file.

    Args:
        path: target file; parent folders are created.
        ds: the dataset; missing file meta elements are filled (class and instance UIDs from
            the dataset). An uncompressed dataset is written explicit VR little endian; a
            compressed one keeps its transfer syntax.
    """
    if not hasattr(ds, "file_meta") or ds.file_meta is None:
        ds.file_meta = FileMetaDataset()
    meta = ds.file_meta
    tsyntax = meta.get("TransferSyntaxUID")
    if tsyntax is None or not UID(tsyntax).is_compressed:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = meta.get("ImplementationClassUID") or PYDICOM_IMPLEMENTATION_UID
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


def _hashed_uid(value: str) -> UID:
    """A deterministic replacement for an instance UID: ``2.25.`` + 128 bits of SHA-512."""
    digest = hashlib.sha512(f"hdcnn-deid:{value}".encode()).digest()
    return UID(f"2.25.{int.from_bytes(digest[:16], 'big')}")


def _is_registered_uid(value: str) -> bool:
    """True for well-known UIDs (SOP classes, transfer syntaxes, coding schemes ...)."""
    return UID(value).name != str(value)


def deidentify(ds: Dataset) -> Dataset:
    """A de-identified copy of ``ds``; ``ds`` itself is not changed.

    Removes the tags of :data:`IDENTIFYING_KEYWORDS` (names, IDs, birth date, addresses,
    institution, physicians, operators, accession and study IDs, dates and times, free-text
    descriptions) at every nesting level, and all private tags. Every UID that is not a
    registered DICOM UID (study, series, instance, frame of reference, referenced instances,
    file meta instance) is replaced by a deterministic ``2.25.`` UID hashed from the original,
    so files of one study still share a study UID. Pixel data, age, sex, laterality, view and
    spacing are kept. PatientIdentityRemoved is set to ``"YES"``.

    Args:
        ds: any dataset (with or without file meta).

    Returns:
        The de-identified copy.
    """
    out = copy.deepcopy(ds)
    out.remove_private_tags()
    removed = set(IDENTIFYING_KEYWORDS)

    def scrub(dataset: Dataset, elem: pydicom.DataElement) -> None:
        if elem.keyword in removed:
            del dataset[elem.tag]
        elif elem.VR == "UI" and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            new = [v if _is_registered_uid(v) else _hashed_uid(v) for v in values]
            elem.value = new if elem.VM > 1 else new[0]

    out.walk(scrub)
    meta = getattr(out, "file_meta", None)
    if meta is not None and "SOPInstanceUID" in out:
        meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = "hdcnn.dicom.deidentify: identifying and private tags removed"
    return out


# ----------------------------------------------------------------------------- reading


def check_pixel_header(ds: Dataset, source: str, *, max_pixels: int, min_side: int) -> None:
    """Refuse a dataset whose pixels cannot be used, from its header alone.

    Args:
        ds: the dataset as read (pixel data not yet decoded).
        source: the name used in error messages.
        max_pixels: refuse ``Rows * Columns`` above this.
        min_side: refuse images with a side shorter than this.

    Raises:
        MammogramError: no pixel data, missing or implausible Rows/Columns, multi-frame, or a
            transfer syntax without an installed decoder.
    """
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise MammogramError(source, "DICOM float pixel data is not supported")
        raise MammogramError(source, "DICOM file has no pixel data")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as exc:
        raise MammogramError(source, "DICOM file lacks valid Rows/Columns") from exc
    frames = ds.get("NumberOfFrames")
    try:
        n_frames = int(frames) if frames not in (None, "") else 1
    except (TypeError, ValueError):
        n_frames = 1
    if n_frames > 1:
        raise MammogramError(
            source, f"multi-frame DICOM ({n_frames} frames) is not supported; expected one image"
        )
    check_image_size(source, rows, cols, max_pixels=max_pixels, min_side=min_side)
    tsyntax = transfer_syntax(ds)
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as exc:
        raise MammogramError(
            source, f"unsupported DICOM transfer syntax {tsyntax} ({tsyntax.name})"
        ) from exc
    if not decoder.is_available:
        raise MammogramError(
            source, f"no decoder installed for DICOM transfer syntax {tsyntax.name} ({tsyntax})"
        )


def transfer_syntax(ds: Dataset) -> UID:
    """The dataset's transfer syntax; for files without file meta, from how it was read."""
    meta = getattr(ds, "file_meta", None)
    tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if tsyntax:
        return UID(tsyntax)
    implicit, little = getattr(ds, "original_encoding", (True, True))
    uid = ImplicitVRLittleEndian if implicit in (True, None) else ExplicitVRLittleEndian
    if little is False:
        uid = UID("1.2.840.10008.1.2.2")  # explicit VR big endian
    if meta is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid
    return uid


def decode_stored(ds: Dataset, source: str) -> np.ndarray:
    """The stored values of the (single) frame, ``(H, W)`` or ``(H, W, 3)``, decoded.

    Raises:
        MammogramError: the pixel data is truncated or cannot be decoded.
    """
    tsyntax = transfer_syntax(ds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except Exception as exc:  # decoders raise anything from ValueError to RuntimeError
        raise MammogramError(
            source, f"could not decode DICOM pixel data ({tsyntax.name}): {exc}"
        ) from exc
    return np.asarray(arr)


def _displayed_range(ds: Dataset, voi: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float]:
    """(low, high) output of the VOI transform over every possible input value."""
    probe = [np.array([-(2.0**40), 2.0**40])]
    lut = ds.get("VOILUTSequence")
    if lut:
        n_entries, first, _ = (int(v) for v in lut[0].LUTDescriptor)
        n_entries = n_entries or 2**16
        probe = [np.array([first - 1, first + n_entries]), np.arange(first, first + n_entries)]
    out = np.concatenate(
        [np.asarray(voi(p.astype(np.int64 if lut else np.float64)), float) for p in probe]
    )
    return float(out.min()), float(out.max())


def display_pixels(ds: Dataset, stored: np.ndarray, source: str) -> np.ndarray:
    """Stored values to the displayed image, float32 ``(H, W)`` in ``[0, 1]``, bright = dense.

    Steps: colour images to luminance; modality LUT / rescale slope and intercept; then a VOI
    LUT (VOILUTSequence, first item) or windowing (WindowCenter/Width, first pair, LINEAR,
    LINEAR_EXACT or SIGMOID), scaled from its displayed output range to ``[0, 1]``. Without a
    VOI transform the modality values are min-max scaled over the image's actual range (so a
    12-bit image stored in 16 bits is not dimmed). MONOCHROME1 is inverted last. An invalid
    VOI (e.g. window width 0) is ignored with a warning.

    Args:
        ds: the dataset (its VOI and modality attributes).
        stored: the decoded stored values from :func:`decode_stored`.
        source: name for messages.

    Returns:
        float32 ``(H, W)`` in ``[0, 1]``.

    Raises:
        MammogramError: the image is constant or contains non-finite values.
    """
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric == "PALETTE COLOR" and stored.ndim == 2:
        try:
            stored = apply_color_lut(stored, ds)
        except Exception as exc:  # malformed palette
            raise MammogramError(source, f"invalid DICOM palette colour LUT: {exc}") from exc
    if stored.ndim == 3:
        # pydicom converts YBR to RGB on decoding; a mammogram in colour is shown as luminance.
        values = stored[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return scale_to_unit(values, source)
    if stored.ndim != 2:
        raise MammogramError(
            source, f"expected a 2-D image, got pixel array of shape {stored.shape}"
        )
    if stored.min() == stored.max():
        raise MammogramError(source, "image is constant (every pixel has the same value)")
    values = apply_modality_lut(stored, ds)
    has_voi = bool(ds.get("VOILUTSequence")) or (
        "WindowCenter" in ds and "WindowWidth" in ds and photometric.startswith("MONOCHROME")
    )
    image: np.ndarray | None = None
    if has_voi:
        integral = np.issubdtype(values.dtype, np.floating) and np.all(values == np.round(values))
        if ds.get("VOILUTSequence") and integral:
            values = values.astype(np.int64)  # LUTs index by integer input values

        def voi(a: np.ndarray) -> np.ndarray:
            with np.errstate(over="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return apply_voi_lut(a, ds, index=0, prefer_lut=True)

        try:
            low, high = _displayed_range(ds, voi)
            shown = voi(values)
        except Exception as exc:  # invalid VOI attributes: fall back to min-max
            logger.warning("%s: ignoring invalid VOI LUT / window (%s)", source, exc)
        else:
            if high > low:
                image = scale_to_unit(shown, source, low=low, high=high)
            else:
                logger.warning("%s: VOI LUT / window has an empty output range; ignored", source)
        if image is not None and float(image.min()) == float(image.max()):
            raise MammogramError(source, "image is constant after applying its VOI LUT / window")
    if image is None:
        image = scale_to_unit(values, source)
    if photometric == "MONOCHROME1":
        np.subtract(np.float32(1.0), image, out=image)
    return image


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (list, pydicom.multival.MultiValue)):
        return "\\".join(str(v) for v in value).strip().upper()
    return str(value).strip().upper()


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


def age_from_tags(ds: Dataset) -> float | None:
    """Age in years from PatientAge (``"058Y"``, ``"006M"``, ``"010W"``, ``"020D"``)."""
    text = _text(ds, "PatientAge")
    match = re.fullmatch(r"(\d{1,3})\s*([YMWD]?)", text)
    if not match:
        if text:
            logger.warning("ignoring malformed PatientAge %r", text)
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


def study_key(ds: Dataset) -> str | None:
    """First 16 hex digits of sha256(StudyInstanceUID), or None without one."""
    uid = str(ds.get("StudyInstanceUID", "") or "").strip()
    return hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()[:16] if uid else None


def convention_texts(ds: Dataset) -> list[str]:
    """Free-text fields that may hold dataset naming conventions (``..._RIGHT_CC``).

    For :mod:`hdcnn.reader` only: these are parsed for laterality and view, never exposed.
    """
    keys = ("SeriesDescription", "ProtocolName", "StudyDescription", "PatientName", "PatientID")
    return [str(ds.get(k, "") or "") for k in keys]
