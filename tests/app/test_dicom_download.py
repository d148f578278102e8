"""The app's DICOM download: offered for DICOM inputs (de-identified, and it says so), a clear
note for the others; the zip holds a valid report and presentation states of the analysis."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pydicom
from streamlit.testing.v1 import AppTest

from hdcnn.analysis import analyse_bytes, assemble_exam
from hdcnn.cascade import load_cascade
from hdcnn.dicomout.export import analysis_zip
from tests.dicom_factory import phantom
from tests.dicomout.helpers import dciodvfy_errors, sr_regions

APP = Path(__file__).resolve().parents[2] / "app.py"


def _diagnose_with(name: str, data: bytes, mime: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page("pages/diagnose.py").run()
    at.file_uploader(key="diagnose_upload").upload(name, data, mime).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_diagnose_offers_the_dicom_zip_for_a_dicom(app_env: Path, cbis_cases) -> None:
    path = Path(cbis_cases[1]["lcc"])
    at = _diagnose_with(path.name, path.read_bytes(), "application/dicom")
    labels = [b.label for b in at.get("download_button")]
    assert "Download DICOM results (.zip)" in labels
    captions = " ".join(c.value for c in at.caption)
    assert "De-identified with hdcnn.dicom.deidentify" in captions


def test_diagnose_explains_why_a_png_has_no_dicom_results(app_env: Path) -> None:
    _ok, png = cv2.imencode(".png", phantom(256, 200, bits=8))
    at = _diagnose_with("view.png", png.tobytes(), "image/png")
    labels = [b.label for b in at.get("download_button")]
    assert "Download DICOM results (.zip)" not in labels
    captions = " ".join(c.value for c in at.caption)
    assert "DICOM output needs a DICOM source: this is a PNG image" in captions


def test_exam_zip_is_deidentified_and_matches_the_analysis(app_env: Path, cbis_cases) -> None:
    cascade = load_cascade(app_env)
    files = {k: Path(p).read_bytes() for k, p in cbis_cases[1].items()}
    views = [(k, analyse_bytes(data, f"{k}.dcm", cascade)) for k, data in files.items()]
    exam = assemble_exam(views, cascade.thresholds)
    data = analysis_zip(
        {hashlib.sha256(b).hexdigest(): b for b in files.values()},
        [a for _, a in views],
        cascade,
        exam=exam.prediction,
    )
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = sorted(zf.namelist())
        assert names == ["README.txt", "exam_sr.dcm"] + [f"image0{i}_pr.dcm" for i in range(1, 5)]
        raw = {n: zf.read(n) for n in names if n.endswith(".dcm")}
    for name, blob in raw.items():
        assert b"P_00820" not in blob, name  # CBIS-DDSM's patient id: removed
        ds = pydicom.dcmread(io.BytesIO(blob))
        assert ds.PatientIdentityRemoved == "YES"
    # the report's regions are the analyses' kept findings, on the de-identified sources
    from hdcnn.dicom import deidentify

    regions = sr_regions(pydicom.dcmread(io.BytesIO(raw["exam_sr.dcm"])))
    for key, a in views:
        header = pydicom.dcmread(io.BytesIO(files[key]), stop_before_pixels=True)
        uid = deidentify(header).SOPInstanceUID
        boxes = sorted(box for ref, box in regions.values() if ref == uid)
        expected = sorted(f.box for f in a.prediction.kept_findings)
        np.testing.assert_allclose(
            np.reshape(boxes, (-1, 4)), np.reshape(expected, (-1, 4)), atol=1e-3
        )


def test_exam_zip_objects_pass_dciodvfy(app_env: Path, cbis_cases, tmp_path: Path) -> None:
    cascade = load_cascade(app_env)
    path = Path(cbis_cases[0]["rcc"])
    blob = path.read_bytes()
    analysis = analyse_bytes(blob, path.name, cascade)
    data = analysis_zip({analysis.key: blob}, [analysis], cascade)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for name in zf.namelist():
            if name.endswith(".dcm"):
                (tmp_path / name).write_bytes(zf.read(name))
                assert dciodvfy_errors(tmp_path / name) == [], name
