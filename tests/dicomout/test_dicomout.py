"""DICOM outputs: the report (TID 1500 SR) and presentation state of a synthetic DICOM and of a
real CBIS-DDSM view, validated by dciodvfy and dsrdump and read back by highdicom/pydicom."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from hdcnn.cascade import Finding, Prediction, Thresholds
from hdcnn.dicom import deidentify
from hdcnn.dicomout import Algorithm, SourceImage, build_outputs, source_header
from hdcnn.dicomout.gsps import presentation_marks, render_presentation_state
from hdcnn.errors import MammogramError
from hdcnn.reader import read_mammogram
from hdcnn.terms import FindingStatus, Label
from tests.dicom_factory import make_dicom, phantom, write
from tests.dicomout.helpers import dciodvfy_errors, dsrdump, sr_regions

THRESHOLDS = Thresholds(detector_score=0.05, c1_lesion=0.3, abnormal=0.5, malignant=0.5)
ALGORITHM = Algorithm("test-weights", "ab" * 32, THRESHOLDS)


def _prediction(path: Path) -> Prediction:
    """A prediction on a real read of ``path``: two kept findings (one malignant, one benign)
    and a refused candidate, boxes in original pixels."""
    meta = read_mammogram(path).meta
    findings = [
        Finding(
            (20.5, 30.25, 60.0, 80.75),
            0.9,
            0.8,
            0.6,
            "malignant",
            index=0,
            status=FindingStatus.MALIGNANT,
        ),
        Finding(
            (100.0, 50.0, 140.0, 90.0),
            0.7,
            0.55,
            0.2,
            "benign",
            index=1,
            status=FindingStatus.BENIGN,
        ),
        Finding(
            (5.0, 5.0, 15.0, 15.0),
            0.4,
            0.1,
            None,
            "rejected",
            index=2,
            status=FindingStatus.REJECTED_BY_C1,
        ),
    ]
    return Prediction(
        path.name, Label.MALIGNANT, 0.8, 0.6, findings, {"total": 1.0}, meta, thresholds=THRESHOLDS
    )


@pytest.fixture
def synthetic(tmp_path: Path) -> tuple[Path, Prediction]:
    ds = make_dicom(phantom(200, 160), laterality="L", view="CC", patient_id="SYNTH^PATIENT42")
    ds.PatientName = "SYNTHETIC^Jane"
    path = write(tmp_path, "synthetic.dcm", ds)
    return path, _prediction(path)


def test_report_and_presentation_state_of_a_synthetic_dicom(synthetic, tmp_path: Path) -> None:
    path, pred = synthetic
    header = source_header(path)
    out = build_outputs([SourceImage(header, pred)], ALGORITHM)
    files = out.write(tmp_path / "out")
    assert sorted(p.name for p in files) == ["image01_pr.dcm", "image01_sr.dcm"]
    sr_path, pr_path = tmp_path / "out" / "image01_sr.dcm", tmp_path / "out" / "image01_pr.dcm"
    for written in files:
        assert dciodvfy_errors(written) == [], written.name
        ds = pydicom.dcmread(written)
        # filed in the source's study, new series and instance, identity kept (CLI rule)
        assert ds.StudyInstanceUID == header.StudyInstanceUID
        assert ds.SeriesInstanceUID != header.SeriesInstanceUID
        assert ds.SOPInstanceUID != header.SOPInstanceUID
        assert ds.PatientID == header.PatientID
    # the SR: kept findings only, regions = boxes in original pixels on the source image
    regions = sr_regions(sr_path)
    assert set(regions) == {"Image 1 finding #1", "Image 1 finding #2"}
    for f in pred.kept_findings:
        uid, box = regions[f"Image 1 finding #{f.index + 1}"]
        assert uid == header.SOPInstanceUID
        np.testing.assert_allclose(box, f.box, atol=1e-3)
    tree = dsrdump(sr_path)
    for text in (
        "Imaging Measurement Report",
        "Probability of cancer",
        "Malignant threshold",
        "Cascade verdict",
        "Algorithm Version",
        "weights sha256 abab",
    ):
        assert text in tree, text
    # the presentation state: the same boxes, numbered and labelled
    gsps = pydicom.dcmread(pr_path)
    refs = gsps.ReferencedSeriesSequence[0].ReferencedImageSequence
    assert refs[0].ReferencedSOPInstanceUID == header.SOPInstanceUID
    marks = presentation_marks(gsps)
    assert [(m["text"], m["label"]) for m in marks] == [
        ("#1 malignant", "malignant"),
        ("#2 benign", "benign"),
    ]
    for mark, f in zip(marks, pred.kept_findings, strict=True):
        np.testing.assert_allclose(mark["box"], f.box, atol=1e-3)


def test_sr_measurements_and_verdict_read_back_with_highdicom(synthetic) -> None:
    import highdicom as hd

    path, pred = synthetic
    out = build_outputs([SourceImage(source_header(path), pred)], ALGORITHM)
    sr = hd.sr.ComprehensiveSR.from_dataset(
        pydicom.dcmread(
            io.BytesIO(
                __import__("hdcnn.dicomout.export", fromlist=["to_bytes"]).to_bytes(out.reports[0])
            )
        )
    )
    groups = sr.content.get_planar_roi_measurement_groups()
    values = {
        g.tracking_identifier: {m.name.meaning: m.value for m in g.get_measurements()}
        for g in groups
    }
    first = values["Image 1 finding #1"]
    assert first["Probability of cancer"] == pytest.approx(0.6)
    assert first["Probability of lesion (Classifier 1)"] == pytest.approx(0.8)
    assert first["Detector score"] == pytest.approx(0.9)
    image_groups = sr.content.get_image_measurement_groups()
    assert [g.tracking_identifier for g in image_groups] == ["Image 1 verdict"]
    verdict = {
        q.name.meaning: q.value.meaning for q in image_groups[0].get_qualitative_evaluations()
    }
    assert verdict["Cascade verdict"] == "Malignant"
    assert verdict["Decided by"] == "Malignant threshold"


def test_rendered_presentation_state_draws_the_boxes(synthetic) -> None:
    path, pred = synthetic
    out = build_outputs([SourceImage(source_header(path), pred)], ALGORITHM)
    image = read_mammogram(path).pixels
    rgb = render_presentation_state(out.presentation_states[0], image)
    assert rgb.shape == (*image.shape, 3)
    colour = rgb[:, :, 0].astype(int) != rgb[:, :, 2].astype(int)  # grey has r == b
    # the malignant box's left edge (x = 20.5) is drawn in colour; the refused box is not
    assert colour[40:70, 20].any() or colour[40:70, 21].any()
    assert not np.any(rgb[8:12, 8:12, 0] != rgb[8:12, 8:12, 2])


def test_deidentified_outputs_hold_no_identity(synthetic) -> None:
    path, pred = synthetic
    header = source_header(path)
    out = build_outputs([SourceImage(header, pred)], ALGORITHM, deidentified=True)
    data = out.zip_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = sorted(zf.namelist())
        assert names == ["README.txt", "image01_pr.dcm", "image01_sr.dcm"]
        assert "De-identified" in zf.read("README.txt").decode()
        expected_ref = deidentify(header).SOPInstanceUID
        for name in names[1:]:
            raw = zf.read(name)
            assert b"PATIENT42" not in raw and b"Jane" not in raw
            assert header.StudyInstanceUID.encode() not in raw
            ds = pydicom.dcmread(io.BytesIO(raw))
            assert ds.PatientIdentityRemoved == "YES"
            assert ds.PatientID == "" and str(ds.PatientName) == ""
            assert expected_ref.encode() in raw  # references the de-identified source


def test_not_dicom_sources_are_refused(tmp_path: Path) -> None:
    png = tmp_path / "x.png"
    cv2.imwrite(str(png), (phantom(64, 48, bits=8)))
    with pytest.raises(MammogramError, match=r"x\.png: not a DICOM file"):
        source_header(png)


def test_predict_dicom_out_on_a_cbis_ddsm_view(cbis_cases, tmp_path: Path, capsys) -> None:
    """The shipped cascade on a real CBIS-DDSM DICOM: the SR's regions equal the JSON
    report's boxes, dciodvfy finds no error, dsrdump prints the tree."""
    from hdcnn.cli import main

    view = Path(cbis_cases[1]["rmlo"])  # the malignant exam's right MLO: several findings
    out = tmp_path / "dicom"
    report = tmp_path / "report.json"
    assert main(["predict", str(view), "--dicom-out", str(out), "--json", str(report)]) == 0
    doc = json.loads(report.read_text())
    kept = [f for f in doc["results"][0]["findings"] if f["label"] != "rejected"]
    assert kept, "the check needs a view with kept findings"
    sr, pr = out / "image01_sr.dcm", out / "image01_pr.dcm"
    assert dciodvfy_errors(sr) == [] and dciodvfy_errors(pr) == []
    assert "Imaging Measurement Report" in dsrdump(sr)
    source_uid = pydicom.dcmread(view, stop_before_pixels=True).SOPInstanceUID
    regions = sorted(sr_regions(sr).values(), key=lambda r: r[1])
    assert {uid for uid, _ in regions} == {source_uid}
    np.testing.assert_allclose(
        [box for _, box in regions], sorted(f["box"] for f in kept), atol=0.01
    )
    marks = presentation_marks(pydicom.dcmread(pr))
    np.testing.assert_allclose(
        sorted(m["box"] for m in marks), sorted(f["box"] for f in kept), atol=0.01
    )


def test_predict_dicom_out_refuses_a_png_with_a_clear_message(tmp_path, capsys) -> None:
    from hdcnn.cli import main

    png = tmp_path / "view.png"
    cv2.imwrite(str(png), (phantom(256, 200, bits=8)))
    code = main(["predict", str(png), "--dicom-out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert "view.png: no DICOM output: DICOM output needs a DICOM source: this is a PNG" in err
    assert not (tmp_path / "out").exists()


def test_predict_exam_dicom_out_writes_one_report_per_exam(cbis_cases, tmp_path: Path) -> None:
    """``--exam``: one report for the exam (breast and exam verdicts, every image's findings)
    and one presentation state per image; a PNG among the inputs gets the message."""
    from hdcnn.cli import main

    views = [Path(cbis_cases[1][k]) for k in ("rcc", "lcc")]
    png = tmp_path / "extra.png"
    cv2.imwrite(str(png), phantom(256, 200, bits=8))
    out = tmp_path / "dicom"
    report = tmp_path / "report.json"
    argv = ["predict", *map(str, views), str(png), "--exam", "--dicom-out", str(out)]
    assert main([*argv, "--json", str(report)]) == 1  # the PNG has no DICOM output
    assert sorted(p.name for p in out.iterdir()) == [
        "exam01_sr.dcm",
        "image01_pr.dcm",
        "image02_pr.dcm",
    ]
    sr = out / "exam01_sr.dcm"
    assert dciodvfy_errors(sr) == []
    tree = dsrdump(sr)
    assert "Breast R verdict" in tree and "Breast L verdict" in tree and "Exam verdict" in tree
    doc = json.loads(report.read_text())
    regions = sr_regions(sr)
    for n, (view, result) in enumerate(zip(views, doc["results"], strict=False), 1):
        uid = pydicom.dcmread(view, stop_before_pixels=True).SOPInstanceUID
        kept = sorted(f["box"] for f in result["findings"] if f["label"] != "rejected")
        boxes = sorted(box for ref, box in regions.values() if ref == uid)
        assert all(k.startswith(f"Image {n} ") for k, (ref, _) in regions.items() if ref == uid)
        np.testing.assert_allclose(np.reshape(boxes, (-1, 4)), np.reshape(kept, (-1, 4)), atol=0.01)
