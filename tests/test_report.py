"""Tests of hdcnn.report: de-identified JSON/PDF reports and the overlay image."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from hdcnn.cascade import load_cascade
from hdcnn.dicom import build_dicom
from hdcnn.reader import read_mammogram
from hdcnn.report import (
    COLOURS,
    DISCLAIMER,
    IMAGE_FIELDS,
    build_report,
    finding_dicts,
    render_overlay,
    report_json,
    report_pdf,
)
from tests.cascade_weights import breast_image, make_weights_dir

IDENTIFIERS = ("Doe^Jane", "Jane", "PID-4711-XYZ", "ACC998877", "St Elsewhere", "19600101")


@pytest.fixture(scope="module")
def cascade(tmp_path_factory: pytest.TempPathFactory):
    return load_cascade(make_weights_dir(tmp_path_factory.mktemp("weights")))


@pytest.fixture(scope="module")
def identified_dicom() -> bytes:
    """A DICOM whose header carries a patient name, id, birth date, accession and clinic."""
    pixels = (breast_image(160, 120) * 4095).astype(np.uint16)
    ds = build_dicom(
        pixels,
        laterality="L",
        view="CC",
        age_years=57,
        patient_id="PID-4711-XYZ",
        extra={
            "PatientName": "Doe^Jane",
            "PatientBirthDate": "19600101",
            "AccessionNumber": "ACC998877",
            "InstitutionName": "St Elsewhere Clinic",
        },
    )
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    assert b"Doe^Jane" in data and b"PID-4711-XYZ" in data  # the input really is identified
    return data


def test_report_has_no_patient_identifiers(cascade, identified_dicom: bytes) -> None:
    mammo = read_mammogram(identified_dicom, name="Doe_Jane_PID-4711-XYZ.dcm")
    pred = cascade.predict(mammo)
    report = build_report(pred, mammo.meta, model={"name": cascade.name, "sha256": cascade.sha256})

    js = report_json(report)
    pdf_plain = report_pdf(
        report, render_overlay(mammo.pixels, finding_dicts(pred)), compress=False
    )
    pdf = report_pdf(report, render_overlay(mammo.pixels, finding_dicts(pred)))
    for blob in (js, pdf_plain, pdf):
        for ident in IDENTIFIERS:
            assert ident.encode().lower() not in blob.lower(), ident
    # Positive control: the same search does find what the report should contain.
    assert f"Verdict: {str(pred.label).upper()}".encode() in pdf_plain
    assert cascade.sha256.encode() in pdf_plain and cascade.sha256.encode() in js
    assert pdf.startswith(b"%PDF-") and pdf_plain.startswith(b"%PDF-")

    data = json.loads(js)
    assert set(data["image"]) == set(IMAGE_FIELDS)
    assert data["image"]["laterality"] == "L" and data["image"]["view"] == "CC"
    assert data["verdict"]["label"] == str(pred.label)
    assert data["verdict"]["p_abnormal"] == pytest.approx(pred.p_abnormal, abs=1e-6)
    assert len(data["findings"]) == len(pred.findings)
    assert data["disclaimer"] == DISCLAIMER
    assert set(data["timing_ms"]) == set(pred.timing_ms)


def test_report_from_a_plain_dict_prediction() -> None:
    pred = {
        "label": "benign",
        "p_abnormal": 0.8,
        "p_malignant": 0.1,
        "findings": [
            {"box": (10, 20, 30, 40), "label": "benign", "p_lesion": 0.8, "p_malignant": 0.1},
            {"box": [1, 2, 3, 4], "label": "rejected", "p_lesion": 0.1, "p_malignant": None},
        ],
        "timing_ms": {"total": 12.345},
    }
    report = build_report(pred, {"format": "png", "original_size": (50, 60), "source": "x.png"})
    assert report["verdict"] == {"label": "benign", "p_abnormal": 0.8, "p_malignant": 0.1}
    assert report["findings"][0]["box"] == [10.0, 20.0, 30.0, 40.0]
    assert report["findings"][1]["p_malignant"] is None
    assert report["image"]["original_size"] == [50, 60]
    assert "source" not in report["image"]
    assert report["timing_ms"] == {"total": 12.3}
    pdf = report_pdf(report, compress=False)
    assert rb"Findings \(2\)" in pdf  # parentheses are escaped in PDF strings


def test_render_overlay_draws_coloured_boxes_and_shrinks() -> None:
    pixels = np.zeros((2000, 1000), dtype=np.float32)
    findings = [
        {"box": [100, 100, 900, 900], "label": "malignant"},
        {"box": [100, 1000, 900, 1900], "label": "rejected"},
    ]
    rgb = render_overlay(pixels, findings, max_side=500)
    assert rgb.dtype == np.uint8 and rgb.shape == (500, 250, 3)
    # Left edge of each box at x = 100 * 0.25 = 25.
    assert tuple(rgb[112, 25]) == COLOURS["malignant"]
    assert tuple(rgb[362, 25]) == COLOURS["rejected"]
    assert rgb[5:20, 5:20].max() == 0  # nothing drawn outside the boxes
    hidden = render_overlay(pixels, findings, max_side=500, show_rejected=False)
    assert hidden[362, 25].max() == 0


def test_render_overlay_rejects_colour_input() -> None:
    with pytest.raises(ValueError, match="2-D"):
        render_overlay(np.zeros((4, 4, 3), dtype=np.float32), [])


def test_pdf_handles_non_latin1_text(tmp_path: Path) -> None:
    report = build_report({"label": "normal", "findings": []}, model={"name": "модель-α"})
    pdf = report_pdf(report, compress=False)
    assert pdf.startswith(b"%PDF-")


def test_report_and_pdf_name_the_deciding_rule_thresholds_and_domain(cascade) -> None:
    from hdcnn.domain import check_domain

    pred = cascade.predict(breast_image(160, 120), detail=True)
    meta = {"format": "dicom", "original_size": (4000, 3000), "bit_depth": 16}
    report = build_report(pred, meta, domain=check_domain(meta))
    verdict = report["verdict"]
    assert verdict["decided_by"] in {"detector_score", "c1_lesion", "abnormal", "malignant"}
    assert verdict["thresholds"] == pred.thresholds.to_dict() and verdict["reason"]
    assert all(f["status"] and f["reason"] for f in report["findings"])
    assert report["domain"]["in_domain"] is False and "unlike" in report["domain"]["notice"]
    pdf = report_pdf(report, compress=False)
    assert b"Decided by the" in pdf and b"Thresholds in force" in pdf
    assert f"{pred.thresholds.malignant:.3f}".encode() in pdf
    assert b"unlike the images the models were trained on" in pdf
    assert "≥".encode() not in pdf  # spelled >= for the Latin-1 PDF fonts


def test_overlay_numbers_boxes_and_keeps_tags_inside_at_any_count() -> None:
    from hdcnn.report import draw_findings

    grey = np.zeros((300, 200), dtype=np.uint8)
    findings = [
        {"box": [i * 3, i * 3, i * 3 + 40, i * 3 + 40], "label": "rejected", "number": i + 1}
        for i in range(40)
    ] + [{"box": [150, 250, 199, 299], "label": "malignant", "number": 41, "prominent": True}]
    rgb = draw_findings(grey, findings)
    assert rgb.shape == (300, 200, 3)
    # the prominent tag "#41 malignant" is drawn (red fill) and stays inside the image
    assert np.all(rgb == COLOURS["malignant"], axis=2).sum() > 200
    # tags are placed inside the image and clear of one another while there is room
    from hdcnn.overlay import _place

    placed: list[tuple[int, int, int, int]] = []
    for i in range(30):
        x, y = _place((0, 0, 30, 12), (i * 3, i * 3, i * 3 + 40, i * 3 + 40), placed, (200, 300))
        assert 0 <= x <= 200 - 30 and 0 <= y <= 300 - 12
        for a, b, c, d in placed:
            assert x + 30 <= a or a + c <= x or y + 12 <= b or b + d <= y
        placed.append((x, y, 30, 12))
    quiet = draw_findings(grey, findings, show_rejected=False)
    assert not np.any(np.all(quiet == COLOURS["rejected"], axis=2))
