"""Tests for hdcnn.dicom: building, writing and de-identifying mammography DICOM files."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from dicom_factory import make_dicom, phantom
from pydicom.uid import DigitalMammographyXRayImageStorageForPresentation, ExplicitVRLittleEndian

from hdcnn.dicom import (
    age_from_tags,
    build_dicom,
    deidentify,
    laterality_from_tags,
    view_from_tags,
    write_dicom,
)
from hdcnn.errors import MammogramError


def test_build_and_write_round_trip(tmp_path):
    pixels = phantom(70, 50)
    ds = build_dicom(
        pixels, laterality="R", view="MLO", age_years=61, patient_id="P7", pixel_spacing=0.07
    )
    path = tmp_path / "sub" / "r_mlo.dcm"
    write_dicom(path, ds)
    assert not list(path.parent.glob(".*tmp*"))  # nothing half-written left behind

    back = pydicom.dcmread(path)  # not force: preamble and file meta must be present
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (
        back.file_meta.MediaStorageSOPClassUID == DigitalMammographyXRayImageStorageForPresentation
    )
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
    assert back.SOPClassUID == DigitalMammographyXRayImageStorageForPresentation
    assert back.Modality == "MG"
    assert back.PresentationIntentType == "FOR PRESENTATION"
    assert back.ImageLaterality == "R"
    assert back.ViewPosition == "MLO"
    assert back.ViewCodeSequence[0].CodeValue == "399368009"
    assert back.ViewCodeSequence[0].CodingSchemeDesignator == "SCT"
    assert back.PatientAge == "061Y"
    assert [float(v) for v in back.PixelSpacing] == [0.07, 0.07]
    assert (back.BitsAllocated, back.BitsStored, back.HighBit) == (16, 16, 15)
    np.testing.assert_array_equal(back.pixel_array, pixels)
    assert laterality_from_tags(back) == "R"
    assert view_from_tags(back) == "MLO"
    assert age_from_tags(back) == 61.0


def test_build_uint8_and_cc_code():
    ds = build_dicom(phantom(40, 40, bits=8), laterality="L", view="CC")
    assert (ds.BitsAllocated, ds.BitsStored) == (8, 8)
    assert ds.ViewCodeSequence[0].CodeValue == "399162004"
    assert list(ds.PatientOrientation) == ["A", "R"]


def test_build_is_deterministic():
    a = build_dicom(phantom(), laterality="L", view="CC", patient_id="X")
    b = build_dicom(phantom(), laterality="L", view="CC", patient_id="X")
    c = build_dicom(phantom(), laterality="R", view="CC", patient_id="X")
    assert a.SOPInstanceUID == b.SOPInstanceUID
    assert a.StudyInstanceUID == c.StudyInstanceUID
    assert a.SOPInstanceUID != c.SOPInstanceUID


def test_build_extra_overrides():
    ds = build_dicom(
        phantom(), extra={"WindowCenter": 100, "PresentationIntentType": "FOR PROCESSING"}
    )
    assert ds.WindowCenter == 100
    assert ds.PresentationIntentType == "FOR PROCESSING"


@pytest.mark.parametrize(
    "pixels", [np.zeros((40, 40), np.float32), np.zeros((2, 40, 40), np.uint16)]
)
def test_build_rejects_bad_pixels(pixels):
    with pytest.raises(MammogramError, match="uint8 or uint16"):
        build_dicom(pixels)


def test_deidentify_removes_identity_and_keeps_pixels():
    ds = make_dicom(laterality="L", view="CC", age_years=50, patient_id="Jane^Doe-123")
    ds.PatientBirthDate = "19700101"
    ds.InstitutionName = "General Hospital"
    ds.ReferringPhysicianName = "Dr^Who"
    ds.AccessionNumber = "ACC42"
    ds.OtherPatientIDs = "MRN-9"
    ds.add_new(0x00091010, "LO", "private secret")
    item = pydicom.Dataset()
    item.PatientName = "Nested^Name"
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    item.ReferencedSOPClassUID = ds.SOPClassUID
    ds.ReferencedImageSequence = [item]
    original_study = ds.StudyInstanceUID

    out = deidentify(ds)

    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "InstitutionName",
        "ReferringPhysicianName",
        "AccessionNumber",
        "OtherPatientIDs",
    ):
        assert keyword not in out, keyword
    assert "PatientName" not in out.ReferencedImageSequence[0]
    assert 0x00091010 not in out
    text = str(out)
    assert "Jane" not in text and "Hospital" not in text and "MRN-9" not in text
    # UIDs: replaced, deterministic, references kept consistent; class UIDs untouched
    assert out.StudyInstanceUID != original_study
    assert out.StudyInstanceUID == deidentify(ds).StudyInstanceUID
    assert out.ReferencedImageSequence[0].ReferencedSOPInstanceUID == out.SOPInstanceUID
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.SOPClassUID == DigitalMammographyXRayImageStorageForPresentation
    assert out.ReferencedImageSequence[0].ReferencedSOPClassUID == ds.SOPClassUID
    # clinical content kept, original untouched
    np.testing.assert_array_equal(out.pixel_array, ds.pixel_array)
    assert (out.PatientAge, out.ImageLaterality, out.ViewPosition) == ("050Y", "L", "CC")
    assert out.PatientIdentityRemoved == "YES"
    assert ds.PatientName == "Jane^Doe-123"


def test_deidentified_file_writes(tmp_path):
    out = deidentify(make_dicom(patient_id="Someone"))
    path = tmp_path / "anon.dcm"
    write_dicom(path, out)
    back = pydicom.dcmread(path)
    assert "PatientName" not in back
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
