"""Writing mammography DICOM files: build, write and de-identify (re-exported by
:mod:`hdcnn.dicom`).

- :func:`build_dicom` -- a complete Digital Mammography X-Ray "For Presentation" dataset.
- :func:`write_dicom` -- atomic write, explicit VR little endian, file meta filled.
- :func:`deidentify` -- a copy without identifying tags, private tags or original UIDs.
"""

from __future__ import annotations

import copy
import hashlib
import os

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DigitalMammographyXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

from hdcnn.errors import MammogramError
from hdcnn.utils import atomic_path

#: SNOMED CT codes of the two standard views (ViewCodeSequence, CID 4014).
VIEW_CODES: dict[str, tuple[str, str]] = {
    "CC": ("399162004", "cranio-caudal"),
    "MLO": ("399368009", "medio-lateral oblique"),
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


def text_uid(*parts: str) -> UID:
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
    study = UID(study_uid) if study_uid else text_uid("study", patient_id)
    series = text_uid("series", study, laterality or "", view or "")
    instance = text_uid("instance", study, laterality or "", view or "", pixel_hash)

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
