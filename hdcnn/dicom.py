"""DICOM helpers: build, write and de-identify mammography files; decode their pixels.

Writing (for the synthetic cohort, tests and exports):

- :func:`build_dicom` -- a complete Digital Mammography X-Ray "For Presentation" dataset.
- :func:`write_dicom` -- atomic write, explicit VR little endian, file meta filled.
- :func:`deidentify` -- a copy without identifying tags, private tags or original UIDs.

Reading (used by :func:`hdcnn.reader.read_mammogram`):

- :func:`inflate_deflated` -- a Deflated Explicit VR Little Endian file inflated in bounded
  steps (the header's image size decides how much output may follow).
- :func:`check_modality` -- refuse DICOM objects that are not mammograms (CT, MR, US ...).
- :func:`check_pixel_header` -- refuse unusable files from the header, before any decoding.
- :func:`display_pixels` -- modality rescale, VOI LUT / windowing, MONOCHROME1 inversion and
  scaling to float32 ``[0, 1]`` with bright = dense.
- :func:`laterality_from_tags`, :func:`view_from_tags`, :func:`age_from_tags`,
  :func:`pixel_spacing_from_tags` -- metadata from standard tags.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import logging
import os
import re
import secrets
import zlib
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

from hdcnn.decoding import quiet_warnings, scale_to_unit
from hdcnn.errors import MammogramError
from hdcnn.utils import atomic_path, check_image_size

logger = logging.getLogger(__name__)

#: Transfer syntax UID of Deflated Explicit VR Little Endian.
DEFLATED_TS = "1.2.840.10008.1.2.1.99"
#: At most this much inflated output is searched for the image header of a deflated file.
INFLATE_HEADER_BYTES = 16 << 20
#: Modalities accepted without further evidence; CR / DX / OT need BodyPartExamined BREAST.
MAMMO_MODALITIES = ("MG",)
_XRAY_MODALITIES = ("CR", "DX", "OT")
#: SOP class names (pydicom's) that may hold a mammogram when Modality is missing.
_IMAGE_CLASS_WORDS = ("Mammography", "X-Ray Image", "Computed Radiography", "Secondary Capture")

#: Key of the study-key HMAC: random per process, never stored (see :func:`study_key`).
_STUDY_KEY_SALT = secrets.token_bytes(32)

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


def int_tag(ds: Dataset, keyword: str) -> int | None:
    """An integer attribute, or None where it is absent or malformed (never raises)."""
    try:
        value = ds.get(keyword)
        if isinstance(value, (list, pydicom.multival.MultiValue)):
            value = value[0] if len(value) else None
        return int(value) if value not in (None, "") else None
    except Exception:  # malformed values raise anything from ValueError to struct.error
        return None


def text_tag(ds: Dataset, keyword: str) -> str:
    """A text attribute stripped, ``""`` where absent or malformed (never raises)."""
    try:
        value = ds.get(keyword)
        if value is None:
            return ""
        if isinstance(value, (list, pydicom.multival.MultiValue)):
            return "\\".join(str(v) for v in value).strip()
        return str(value).strip()
    except Exception:
        return ""


def _find_us(data: bytes, tag: bytes) -> int | None:
    """Value of an explicit-VR little-endian US element ``tag`` (4 bytes) found in ``data``."""
    i = data.find(tag + b"US\x02\x00")
    if i < 0 or i + 10 > len(data):
        return None
    return int.from_bytes(data[i + 8 : i + 10], "little")


def inflate_deflated(raw: bytes, source: str, *, max_pixels: int, min_side: int) -> bytes:
    """Inflate a Deflated Explicit VR Little Endian file in bounded steps.

    The image header (Rows, Columns, BitsAllocated, SamplesPerPixel) is looked for in the
    first :data:`INFLATE_HEADER_BYTES` of output and checked like any header (size limits);
    then inflation stops as soon as the output exceeds what that image can need (header +
    Rows x Columns x samples x bytes, + 1 MiB). A few kilobytes that inflate to gigabytes are
    refused after at most a few megabytes of output.

    Args:
        raw: the whole file.
        source: name for messages.
        max_pixels, min_side: image size limits (:func:`hdcnn.utils.check_image_size`).

    Returns:
        The same file with the data set inflated and the transfer syntax set to Explicit VR
        Little Endian (pydicom then reads it without inflating anything); ``raw`` itself
        when the file is not deflated.

    Raises:
        MammogramError: corrupt deflate stream, no image header, too large an image, or more
            inflated data than the image needs.
    """
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import _read_file_meta_info, read_preamble
    from pydicom.filewriter import write_file_meta_info

    fp = DicomBytesIO(raw)
    try:
        preamble = read_preamble(fp, True)
        meta = _read_file_meta_info(fp)
    except Exception as exc:
        raise MammogramError(
            source, f"corrupt DICOM file meta information ({type(exc).__name__})"
        ) from exc
    if str(meta.get("TransferSyntaxUID", "")).strip() != DEFLATED_TS:
        return raw
    start = fp.tell()
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    pending = raw[start:]

    def more(limit: int) -> bool:
        """Inflate up to ``limit`` more bytes; False once the stream has ended."""
        nonlocal pending
        try:
            out.extend(inflater.decompress(pending, limit))
        except zlib.error as exc:
            raise MammogramError(source, f"corrupt deflated DICOM data ({exc})") from exc
        pending = inflater.unconsumed_tail
        return bool(pending) and not inflater.eof

    going = True
    rows = cols = None
    while going and len(out) < INFLATE_HEADER_BYTES:
        going = more(1 << 20)
        rows = _find_us(bytes(out[:INFLATE_HEADER_BYTES]), b"\x28\x00\x10\x00")
        cols = _find_us(bytes(out[:INFLATE_HEADER_BYTES]), b"\x28\x00\x11\x00")
        if rows is not None and cols is not None:
            break
    if rows is None or cols is None:
        if going:
            raise MammogramError(
                source,
                f"deflated DICOM: no Rows/Columns in the first {INFLATE_HEADER_BYTES} bytes "
                "of inflated data",
            )
        rows = cols = 0  # small file without an image header: pydicom reports what is missing
    else:
        check_image_size(source, rows, cols, max_pixels=max_pixels, min_side=min_side)
    head = bytes(out[: min(len(out), INFLATE_HEADER_BYTES)])
    bits = _find_us(head, b"\x28\x00\x00\x01") or 16
    samples = _find_us(head, b"\x28\x00\x02\x00") or 1
    need = rows * cols * max(1, min(samples, 4)) * max(1, (min(bits, 64) + 7) // 8)
    limit = len(head) + need + (1 << 20)
    while going:
        going = more(1 << 20)
        if len(out) > limit:
            raise MammogramError(
                source,
                f"deflated DICOM inflates to more than {limit} bytes, more than its "
                f"{rows}x{cols} image needs",
            )
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    buffer.write((preamble or b"\x00" * 128) + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=False)
    return buffer.getvalue() + bytes(out)


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
    rows, cols = int_tag(ds, "Rows"), int_tag(ds, "Columns")
    if rows is None or cols is None:
        raise MammogramError(source, "DICOM file lacks valid Rows/Columns")
    n_frames = int_tag(ds, "NumberOfFrames") or 1
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
    from hdcnn.decoding import decoder_stderr

    tsyntax = transfer_syntax(ds)
    quiet = decoder_stderr() if tsyntax.is_compressed else contextlib.nullcontext()
    try:
        with quiet:
            arr = ds.pixel_array
    except MemoryError:
        raise
    except BaseException as exc:  # decoders raise anything from ValueError to RuntimeError
        if not isinstance(exc, Exception) and not _is_decoder_panic(exc):
            raise  # KeyboardInterrupt, SystemExit
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise MammogramError(
            source, f"could not decode DICOM pixel data ({tsyntax.name}): {text}"
        ) from exc
    return np.asarray(arr)


def _is_decoder_panic(exc: BaseException) -> bool:
    """A Rust decoder's panic (``pylibjpeg-rle`` on damaged RLE data): pyo3 raises it as
    ``pyo3_runtime.PanicException``, a ``BaseException`` from a module that cannot be imported."""
    return type(exc).__name__ == "PanicException"


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


#: Modality rescale values outside these bounds are refused (real ones are near 1 and 0).
RESCALE_SLOPE_RANGE = (1e-12, 1e12)
RESCALE_INTERCEPT_MAX = 1e12
#: Pixels per block when a VOI transform runs in float64 (bounds the temporary memory).
_BLOCK = 1 << 20


def _number(ds: Dataset, keyword: str, default: float, source: str) -> float:
    try:
        value = ds.get(keyword)
        if isinstance(value, (list, pydicom.multival.MultiValue)):
            value = value[0] if len(value) else None
        return float(value) if value not in (None, "") else default
    except Exception as exc:
        raise MammogramError(source, f"malformed DICOM {keyword} ({type(exc).__name__})") from exc


def modality_values(ds: Dataset, stored: np.ndarray, source: str) -> np.ndarray:
    """Stored values through the modality LUT or rescale slope/intercept.

    Without a rescale (slope 1, intercept 0) the stored array itself is returned; a rescale is
    computed in float32 after checking that slope and intercept are finite and plausible;
    a ModalityLUTSequence goes through pydicom, any failure of it becomes a MammogramError.

    Raises:
        MammogramError: malformed or implausible modality LUT / rescale values, or a result
            that is not finite.
    """
    try:
        has_lut = bool(ds.get("ModalityLUTSequence"))
    except Exception as exc:
        raise MammogramError(source, "malformed DICOM ModalityLUTSequence") from exc
    if has_lut:
        try:
            with np.errstate(all="ignore"), quiet_warnings():
                values = np.asarray(apply_modality_lut(stored, ds))
        except Exception as exc:  # IndexError, TypeError, struct.error, UFuncTypeError ...
            raise MammogramError(
                source,
                f"malformed DICOM modality LUT (ModalityLUTSequence: {type(exc).__name__})",
            ) from exc
        if values.shape != stored.shape or values.dtype.kind not in "uif":
            raise MammogramError(source, "malformed DICOM modality LUT (unusable output)")
        if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
            raise MammogramError(source, "DICOM modality LUT gives non-finite values")
        return values
    slope = _number(ds, "RescaleSlope", 1.0, source)
    intercept = _number(ds, "RescaleIntercept", 0.0, source)
    low, high = RESCALE_SLOPE_RANGE
    if not (np.isfinite(slope) and low <= abs(slope) <= high):
        raise MammogramError(
            source,
            f"implausible DICOM RescaleSlope {slope:g} (expected {low:g} to {high:g} in magnitude)",
        )
    if not (np.isfinite(intercept) and abs(intercept) <= RESCALE_INTERCEPT_MAX):
        raise MammogramError(
            source,
            f"implausible DICOM RescaleIntercept {intercept:g} (expected at most "
            f"{RESCALE_INTERCEPT_MAX:g} in magnitude)",
        )
    if slope == 1.0 and intercept == 0.0:
        return stored
    values = stored.astype(np.float32)
    values *= np.float32(slope)
    values += np.float32(intercept)
    return values


def display_pixels(ds: Dataset, stored: np.ndarray, source: str) -> np.ndarray:
    """Stored values to the displayed image, float32 ``(H, W)`` in ``[0, 1]``, bright = dense.

    Steps: colour images to luminance; modality LUT / rescale slope and intercept
    (:func:`modality_values`); then a VOI LUT (VOILUTSequence, first item) or windowing
    (WindowCenter/Width, first pair, LINEAR, LINEAR_EXACT or SIGMOID), scaled from its
    displayed output range to ``[0, 1]``. Without a VOI transform the modality values are
    min-max scaled over the image's actual range (so a 12-bit image stored in 16 bits is not
    dimmed). MONOCHROME1 is inverted last. An invalid VOI (e.g. window width 0) is ignored
    with a warning. The VOI runs in blocks of about a million pixels, so its float64
    temporaries stay small whatever the image size.

    Args:
        ds: the dataset (its VOI and modality attributes).
        stored: the decoded stored values from :func:`decode_stored`.
        source: name for messages.

    Returns:
        float32 ``(H, W)`` in ``[0, 1]``.

    Raises:
        MammogramError: the image is constant, contains non-finite values, or has malformed
            modality LUT / rescale values.
    """
    photometric = text_tag(ds, "PhotometricInterpretation").upper() or "MONOCHROME2"
    if photometric == "PALETTE COLOR" and stored.ndim == 2:
        try:
            stored = apply_color_lut(stored, ds)
        except Exception as exc:  # malformed palette
            raise MammogramError(
                source, f"invalid DICOM palette colour LUT ({type(exc).__name__})"
            ) from exc
    if stored.ndim == 3:
        # pydicom converts YBR to RGB on decoding; a mammogram in colour is shown as luminance.
        values = np.empty(stored.shape[:2], np.float32)
        weights = np.array([0.299, 0.587, 0.114], np.float32)
        for r in range(0, stored.shape[0], 256):
            values[r : r + 256] = stored[r : r + 256, :, :3].astype(np.float32) @ weights
        return scale_to_unit(values, source, inplace=True)
    if stored.ndim != 2:
        raise MammogramError(
            source, f"expected a 2-D image, got pixel array of shape {stored.shape}"
        )
    if stored.min() == stored.max():
        raise MammogramError(source, "image is constant (every pixel has the same value)")
    values = modality_values(ds, stored, source)
    try:
        has_voi = bool(ds.get("VOILUTSequence")) or (
            "WindowCenter" in ds and "WindowWidth" in ds and photometric.startswith("MONOCHROME")
        )
    except Exception:  # a malformed VOI LUT sequence: treated as absent below
        has_voi = False
        logger.warning("%s: ignoring a malformed VOI LUT sequence", source)
    image: np.ndarray | None = None
    if has_voi:
        use_lut = False
        with_lut_integral = False
        try:
            use_lut = bool(ds.get("VOILUTSequence"))
            if use_lut and values.dtype.kind == "f":
                with_lut_integral = bool(np.all(values == np.round(values)))
        except Exception:
            use_lut = False

        def voi(a: np.ndarray) -> np.ndarray:
            with np.errstate(all="ignore"), quiet_warnings():
                return apply_voi_lut(a, ds, index=0, prefer_lut=True)

        own = False
        try:
            low, high = _displayed_range(ds, voi)
            usable = bool(np.isfinite(low) and np.isfinite(high) and high > low)
            if usable:
                # a float32 modality result is ours: the VOI output overwrites it in blocks
                own = (
                    values is not stored
                    and values.dtype == np.float32
                    and values.flags.c_contiguous
                )
                shown = values if own else np.empty(values.shape, np.float32)
                flat_in, flat_out = values.reshape(-1), shown.reshape(-1)
                for i in range(0, flat_in.size, _BLOCK):
                    block = flat_in[i : i + _BLOCK]
                    if use_lut and (with_lut_integral or block.dtype.kind != "f"):
                        block = block.astype(np.int64)  # LUTs index by integer input values
                    flat_out[i : i + _BLOCK] = voi(block)
        except Exception as exc:  # invalid VOI attributes: fall back to min-max
            logger.warning("%s: ignoring invalid VOI LUT / window (%s)", source, type(exc).__name__)
            if own:  # partly overwritten: compute the modality values again
                values = modality_values(ds, stored, source)
        else:
            if usable:
                image = scale_to_unit(shown, source, low=low, high=high, inplace=True)
            else:
                logger.warning("%s: VOI LUT / window has an empty output range; ignored", source)
        if image is not None and float(image.min()) == float(image.max()):
            raise MammogramError(source, "image is constant after applying its VOI LUT / window")
    if image is None:
        image = scale_to_unit(values, source, inplace=values is not stored)
    if photometric == "MONOCHROME1":
        np.subtract(np.float32(1.0), image, out=image)
    return image


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
