"""Tests of hdcnn.analysis: the app's image and exam analysis without Streamlit."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from hdcnn.analysis import (
    CLOSEUP_SIDE,
    DISPLAY_SIDE,
    Analysis,
    analyse_bytes,
    analyse_exam,
    analyse_mammogram,
    assemble_exam,
    group_exams,
    place_view,
    redecide,
)
from hdcnn.cascade import load_cascade
from hdcnn.commands import predict
from hdcnn.domain import TrainingDomain
from hdcnn.reader import Mammogram, MammogramMeta
from hdcnn.terms import Label
from tests.cascade_weights import breast_image, make_weights_dir


@pytest.fixture(scope="module")
def cascade(tmp_path_factory: pytest.TempPathFactory):
    return load_cascade(make_weights_dir(tmp_path_factory.mktemp("weights")))


def _png(seed: int = 0, *, left: bool = True) -> bytes:
    ok, buf = cv2.imencode(".png", (breast_image(seed=seed, left=left) * 255).astype(np.uint8))
    assert ok
    return buf.tobytes()


def _mammogram(
    lat: str | None,
    view: str | None,
    *,
    seed: int = 0,
    study: str | None = None,
    patient: str | None = None,
    fmt: str = "dicom",
):
    pixels = breast_image(seed=seed, left=lat != "R")
    meta = MammogramMeta(
        source=f"{lat}{view}.dcm",
        format=fmt,
        patient_key=patient,
        original_size=pixels.shape,
        bit_depth=16,
        laterality=lat,
        view=view,
        study_key=study,
    )
    return Mammogram(pixels, meta)


def test_analyse_bytes_explains_checks_domain_and_reports(cascade) -> None:
    data = _png()
    a = analyse_bytes(data, "scan.png", cascade)
    assert isinstance(a, Analysis) and len(a.key) == 64
    pred = a.prediction
    assert pred.trace is not None
    assert a.explanation.label == pred.label
    assert a.report["verdict"]["reason"] == a.explanation.reason
    assert a.report["verdict"]["thresholds"] == pred.thresholds.to_dict()
    assert not a.domain.in_domain  # a 120 x 90 PNG is not a 1024 px mini-MIAS film
    assert a.report["domain"]["notice"] == a.domain.notice
    assert "read" in pred.timing_ms and pred.timing_ms["total"] >= pred.timing_ms["read"]
    assert [f["number"] for f in a.findings] == [f.index + 1 for f in pred.findings]
    assert all(f["status"] for f in a.findings)
    assert a.overlay().shape == (120, 90, 3) and a.overlay(refused=True).dtype == np.uint8
    assert a.overlay_jpeg().startswith(b"\xff\xd8") and a.overlay_jpeg() is a.overlay_jpeg()
    assert a.pdf.startswith(b"%PDF-")
    same = analyse_bytes(
        data, "scan.png", cascade, domain=TrainingDomain(formats=("png",), size=None)
    )
    assert same.key == a.key and same.domain.in_domain


def test_without_pixels_keeps_the_overlay_and_refuses_to_draw_more(cascade) -> None:
    a = analyse_bytes(_png(2), "scan.png", cascade)
    light = a.without_pixels(side=64)
    assert light.mammogram.pixels.size == 0 and a.mammogram.pixels.shape == (120, 90)
    assert light.overlay_jpeg(max_side=64) == a.overlay_jpeg(max_side=64)
    assert light.prediction is a.prediction and light.mammogram.meta is a.mammogram.meta
    with pytest.raises(ValueError, match=r"scan\.png: its full-resolution pixels were released"):
        light.overlay_jpeg()  # another side: needs the pixels


def test_prepare_display_encodes_the_overlay_and_close_ups_once(cascade) -> None:
    a = analyse_bytes(_png(2), "scan.png", cascade)
    assert a.prepare_display() is a
    images = a.__dict__["_images"]
    assert images[("jpeg", False, DISPLAY_SIDE)] is a.overlay_jpeg()  # no second encoding
    for number in a.closeup_numbers():
        assert images[("closeup", number, CLOSEUP_SIDE)] is a.closeup_jpeg(number)


def test_redecide_runs_no_network_and_changes_the_verdict(cascade) -> None:
    a = analyse_bytes(_png(1), "scan.png", cascade)
    assert redecide(a, cascade) is a  # same thresholds: same analysis
    high = redecide(a, cascade, detector_score=1.0)
    assert high.prediction.label == Label.NORMAL and high.prediction.findings == []
    assert high.prediction.trace is a.prediction.trace
    assert high.key == a.key and high.explanation.decided_by == "detector_score"


def test_place_view_trusts_the_header_and_warns_on_a_mismatch() -> None:
    same = place_view("lcc", "L", "CC")
    assert same.key == "lcc" and same.warning is None
    swapped = place_view("rcc", "L", "CC")  # a left CC dropped into the Right CC slot
    assert swapped.key == "lcc" and swapped.laterality == "L"
    assert "Right CC slot" in swapped.warning and "Left CC" in swapped.warning
    unknown = place_view("rmlo", None, None)  # no header: the slot decides, silently
    assert unknown.key == "rmlo" and unknown.warning is None
    partial = place_view("rmlo", None, "CC")
    assert partial.key == "rcc" and partial.warning
    assert place_view(None, "R", "MLO").key == "rmlo"


def test_assemble_exam_uses_header_views_and_flags_a_swapped_slot(cascade) -> None:
    views = [
        ("rcc", analyse_mammogram(_mammogram("L", "CC"), cascade, key="a", name="a.dcm")),
        ("lmlo", analyse_mammogram(_mammogram("L", "MLO", seed=2), cascade, key="b", name="b.dcm")),
        ("rmlo", analyse_mammogram(_mammogram("R", "MLO", seed=3), cascade, key="c", name="c.dcm")),
    ]
    exam = assemble_exam(views, cascade.thresholds)
    assert set(exam.grid) == {"lcc", "lmlo", "rmlo"}
    assert exam.grid["lcc"].analysis.name == "a.dcm"
    assert len(exam.warnings) == 1 and exam.warnings[0].startswith("a.dcm: ")
    assert set(exam.prediction.breasts) == {"L", "R"}
    assert exam.prediction.breasts["L"].views == ["CC", "MLO"]
    expected = max(v[1].prediction.p_abnormal for v in views[:2])
    assert exam.prediction.breasts["L"].p_abnormal == pytest.approx(expected)
    assert exam.explanation.label == exam.prediction.label
    assert "breast P(abnormal)" in exam.breast_explanation("L").reason


def test_assemble_exam_flags_duplicate_views_and_other_studies(cascade) -> None:
    a = analyse_mammogram(_mammogram("L", "CC", study="s1"), cascade, key="a", name="a.dcm")
    b = analyse_mammogram(_mammogram("L", "CC", seed=4, study="s1"), cascade, key="b", name="b.dcm")
    exam = assemble_exam([("lcc", a), ("rcc", b)], cascade.thresholds)
    text = " ".join(exam.warnings)
    assert "2 images are Left CC views" in text
    assert len(exam.extra_views) == 1 and exam.extra_views[0].analysis.name == "b.dcm"
    c = analyse_mammogram(_mammogram("R", "CC", study="s2"), cascade, key="c", name="c.dcm")
    d = analyse_mammogram(_mammogram("R", "CC", seed=5, study="s3"), cascade, key="d", name="d.dcm")
    exam = assemble_exam([("rcc", c), ("lcc", d)], cascade.thresholds)
    assert any("different studies" in w for w in exam.warnings)


def test_assemble_exam_refuses_two_patients_and_flags_a_film_without_identity(cascade) -> None:
    def view(lat, v, name, **kw):
        return analyse_mammogram(_mammogram(lat, v, **kw), cascade, key=name, name=name)

    one = [
        ("lcc", view("L", "CC", "a.dcm", study="s1", patient="p1")),
        ("rcc", view("R", "CC", "b.dcm", study="s1", patient="p1")),
    ]
    exam = assemble_exam(one, cascade.thresholds)
    assert exam.refusal is None and not exam.warnings
    two = [*one, ("lmlo", view("L", "MLO", "c.dcm", study="s9", patient="p2"))]
    exam = assemble_exam(two, cascade.thresholds)
    assert exam.refusal and "2 different patients" in exam.refusal
    assert "p1" not in exam.refusal and "p2" not in exam.refusal  # keys never shown
    film = [*one, ("rmlo", view("R", "MLO", "mdb002.pgm", fmt="pgm"))]
    exam = assemble_exam(film, cascade.thresholds)
    assert exam.refusal is None
    assert any(w.startswith("mdb002.pgm (PGM): no patient identity") for w in exam.warnings)


def test_patient_key_ignores_the_parts_naming_the_image(cbis_cases) -> None:
    from hdcnn.reader import read_mammogram

    keys = [{read_mammogram(p).meta.patient_key for p in case.values()} for case in cbis_cases]
    assert all(len(k) == 1 and None not in k for k in keys)  # one patient per exam
    assert keys[0] != keys[1]  # two patients
    assert all(len(next(iter(k))) == 16 for k in keys)


def test_group_exams_is_the_rule_the_cli_uses() -> None:
    lcc, rcc, rmlo = ("L", "CC", "p1"), ("R", "CC", "p2"), ("R", "MLO", "p3")
    assert group_exams({"a": [lcc], "b": [rcc], "c": [rmlo]}) == {None: [lcc, rcc, rmlo]}
    two = {"a": [lcc], "b": [("L", "CC", "p4")]}
    assert group_exams(two) == two
    shared = {"a": [lcc, rcc], "b": [rmlo]}
    assert group_exams(shared) == shared
    assert predict.exam_groups(two) == group_exams(two)


def test_analyse_exam_reports_progress_per_view(cascade, tmp_path: Path) -> None:
    calls = []
    inputs = {"lcc": (_png(1), "l.png"), "rcc": (_png(2, left=False), "r.png")}
    exam = analyse_exam(inputs, cascade, progress=lambda d, t, n: calls.append((d, t, n)))
    assert calls == [(0, 2, "r.png"), (1, 2, "l.png"), (2, 2, "")]
    assert [v.placement.slot for v in exam.views] == ["rcc", "lcc"]
    assert exam.warnings == []  # PNGs carry no header view: the slots decide
    assert exam.seconds > 0
