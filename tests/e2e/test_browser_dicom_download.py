"""End-to-end: the Diagnose page's DICOM results download in headless Chromium.

Uploads a real CBIS-DDSM DICOM, clicks "Download DICOM results (.zip)" and opens what the
browser saved: a structured report and a presentation state that reference the
de-identified source, with no patient id in them. Uses the server and browser fixtures of
``test_browser.py`` (skipped the same way without Chromium).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pydicom
import pytest

from tests.e2e.test_browser import _go, _open, _upload, browser, server  # noqa: F401

pytestmark = pytest.mark.e2e


def test_diagnose_downloads_deidentified_dicom_results(
    browser,  # noqa: F811
    server: str,  # noqa: F811
    cbis_cases,
    tmp_path: Path,
) -> None:
    source = Path(cbis_cases[1]["lcc"])
    page = _open(browser, server)
    _go(page, "Diagnose")
    _upload(page, source)
    button = page.get_by_text("Download DICOM results (.zip)")
    button.wait_for()
    page.get_by_text("De-identified with hdcnn.dicom.deidentify").first.wait_for()
    with page.expect_download() as info:
        button.click()
    saved = tmp_path / "results.zip"
    info.value.save_as(saved)
    page.close()
    with zipfile.ZipFile(saved) as zf:
        names = sorted(zf.namelist())
        assert names == ["README.txt", "image01_pr.dcm", "image01_sr.dcm"]
        blobs = {n: zf.read(n) for n in names[1:]}
    original = pydicom.dcmread(source, stop_before_pixels=True)
    for name, blob in blobs.items():
        assert b"P_00820" not in blob, name
        assert original.SOPInstanceUID.encode() not in blob, name
        ds = pydicom.dcmread(io.BytesIO(blob))
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.Modality == ("SR" if name.endswith("_sr.dcm") else "PR")
