"""The PACS round trip against a real Orthanc: ``python -m hdcnn pacs`` fetches a CBIS-DDSM
exam over DICOMweb, analyses it, stores the report and presentation states back; the test
reads them back and checks them against its own analysis. Failures store nothing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from hdcnn.cli import main
from hdcnn.dicomout.gsps import presentation_marks
from tests.dicom_factory import make_dicom, phantom
from tests.dicomout.helpers import dciodvfy_errors, sr_regions
from tests.dicomout.orthanc import free_port, instance_count, orthanc_server, upload

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    with orthanc_server(tmp_path_factory.mktemp("orthanc")) as url:
        yield url


def _exam_files(case: dict[str, str]) -> dict[str, bytes]:
    """The four views of a CBIS-DDSM exam filed as one study (CBIS-DDSM gives every view its
    own StudyInstanceUID; a screening exam is one study), pixel data untouched."""
    study = generate_uid(entropy_srcs=["hdcnn-test-exam", *sorted(map(str, case.values()))])
    out = {}
    for key, path in case.items():
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study
        ds.PatientID = ds.PatientName = "CBIS-DDSM-P_00820"
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out[key] = buf.getvalue()
    return out


def test_round_trip_of_a_cbis_ddsm_exam(server: str, cbis_cases, capsys) -> None:
    from dicomweb_client.api import DICOMwebClient

    from hdcnn.cascade import load_cascade

    files = _exam_files(cbis_cases[1])
    for data in files.values():
        upload(server, data)
    headers = {k: pydicom.dcmread(io.BytesIO(v), stop_before_pixels=True) for k, v in files.items()}
    study = next(iter(headers.values())).StudyInstanceUID
    assert main(["pacs", "--url", server, "--study", study]) == 0
    printed = capsys.readouterr().out
    assert "stored 1 report(s) and 4 presentation state(s)" in printed

    client = DICOMwebClient(url=f"{server}/dicom-web")
    series = client.search_for_series(study)
    modalities = sorted(s["00080060"]["Value"][0] for s in series)
    assert modalities == ["MG"] * 4 + ["PR", "PR", "SR"]  # one PR series per breast
    stored = []
    for s in series:
        if s["00080060"]["Value"][0] in ("SR", "PR"):
            stored += client.retrieve_series(study, s["0020000E"]["Value"][0])
    reports = [ds for ds in stored if ds.Modality == "SR"]
    states = [ds for ds in stored if ds.Modality == "PR"]
    assert len(reports) == 1 and len(states) == 4
    assert all(ds.StudyInstanceUID == study for ds in stored)
    assert all(ds.PatientID == "CBIS-DDSM-P_00820" for ds in stored)  # filed with the study

    # the test's own analysis of the same files
    cascade = load_cascade(MODELS)
    expected: dict[str, list[tuple[float, ...]]] = {}
    for key, data in files.items():
        from hdcnn.reader import read_mammogram

        pred = cascade.predict(read_mammogram(data, name=key))
        expected[headers[key].SOPInstanceUID] = sorted(f.box for f in pred.kept_findings)
    assert any(expected.values()), "the check needs findings"
    found: dict[str, list[tuple[float, ...]]] = {uid: [] for uid in expected}
    for uid, box in sr_regions(reports[0]).values():
        found[uid].append(box)
    for uid, boxes in expected.items():
        np.testing.assert_allclose(sorted(found[uid]), boxes, atol=1e-3)
    for state in states:
        uid = state.ReferencedSeriesSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID
        marks = sorted(tuple(m["box"]) for m in presentation_marks(state))
        np.testing.assert_allclose(marks, expected[uid], atol=1e-3)


def test_unreachable_server_is_a_clear_error(capsys) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert main(["pacs", "--url", url, "--study", "1.2.3"]) == 2
    assert "cannot reach the DICOMweb server" in capsys.readouterr().err


def test_unknown_study_stores_nothing(server: str, capsys) -> None:
    before = instance_count(server)
    assert main(["pacs", "--url", server, "--study", "1.2.826.0.1.3680043.8.498.1"]) == 2
    assert "study 1.2.826.0.1.3680043.8.498.1 not found" in capsys.readouterr().err
    assert instance_count(server) == before


def test_study_without_mammograms_stores_nothing(server: str, capsys) -> None:
    ds = make_dicom(phantom(128, 96), patient_id="SYNTHETIC-CT", extra={"Modality": "CT"})
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    upload(server, buf.getvalue())
    before = instance_count(server)
    assert main(["pacs", "--url", server, "--study", ds.StudyInstanceUID]) == 2
    assert "holds no mammograms (series modalities: CT)" in capsys.readouterr().err
    assert instance_count(server) == before


def test_unusable_mammogram_stores_nothing(server: str, capsys) -> None:
    flat = np.full((128, 96), 1000, np.uint16)  # constant: not a usable mammogram
    ds = make_dicom(flat, laterality="L", view="CC", patient_id="SYNTHETIC-FLAT")
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    upload(server, buf.getvalue())
    before = instance_count(server)
    assert main(["pacs", "--url", server, "--study", ds.StudyInstanceUID]) == 2
    assert "image 1 of the study" in capsys.readouterr().err
    assert instance_count(server) == before


def test_stored_objects_pass_dciodvfy(server: str, tmp_path: Path) -> None:
    """What the round trip stored, as Orthanc serves it, is still valid."""
    import requests

    ids = requests.get(f"{server}/instances", timeout=10).json()
    checked = 0
    for orthanc_id in ids:
        tags = requests.get(f"{server}/instances/{orthanc_id}/simplified-tags", timeout=10).json()
        if tags.get("Modality") not in ("SR", "PR"):
            continue
        path = tmp_path / f"{orthanc_id}.dcm"
        path.write_bytes(requests.get(f"{server}/instances/{orthanc_id}/file", timeout=30).content)
        assert dciodvfy_errors(path) == [], tags.get("Modality")
        checked += 1
    if checked == 0:
        pytest.skip("the round-trip test did not run first (nothing stored to check)")
