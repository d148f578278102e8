"""hdcnn.calibration: maps, bands, the borderline rule, cascade.json and the cascade."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hdcnn.calibration import Calibration, ProbabilityMap, ThresholdBand
from hdcnn.cascade import Thresholds, combine_exam
from hdcnn.config import CascadeConfig
from hdcnn.errors import CheckpointError
from hdcnn.terms import Label
from tests.cascade_weights import breast_image
from tests.test_cascade import fixed_cascade

ISO = ProbabilityMap("isotonic", x=(0.0, 0.5, 1.0), y=(0.1, 0.2, 0.9))
PLATT = ProbabilityMap("platt", a=2.0, b=-1.0)
BANDS = {
    "abnormal": ThresholdBand(0.5, 0.45, 0.6),
    "malignant": ThresholdBand(0.4, 0.3, 0.42),
}
CAL = Calibration({"p_abnormal": ISO, "p_malignant": ISO, "p_lesion": PLATT}, BANDS)


def test_maps() -> None:
    assert ISO([0.0, 0.25, 0.75, 1.5]) == pytest.approx([0.1, 0.15, 0.55, 0.9])
    p = np.array([0.1, 0.5, 0.9])
    expected = 1 / (1 + np.exp(-(2 * np.log(p / (1 - p)) - 1)))
    assert PLATT(p) == pytest.approx(expected)
    assert np.all(np.diff(PLATT(np.linspace(0, 1, 50))) >= 0)
    for bad in (
        dict(method="isotonic", x=(0.5, 0.2), y=(0.1, 0.2)),
        dict(method="isotonic", x=(0.1, 0.2), y=(0.3, 0.2)),
        dict(method="platt", a=-1.0),
        dict(method="beta"),
    ):
        with pytest.raises(ValueError):
            ProbabilityMap(**bad)


def test_band_moves_with_the_threshold_in_force() -> None:
    band = BANDS["malignant"]
    assert band.around(0.4) == pytest.approx((0.3, 0.42))
    assert band.around(0.6) == pytest.approx((0.5, 0.62))
    assert band.contains(0.35, 0.4) and not band.contains(0.43, 0.4)
    with pytest.raises(ValueError):
        ThresholdBand(0.5, 0.6, 0.7)  # the band must hold its threshold


def test_borderline_rule() -> None:
    t = Thresholds(c1_lesion=0.3, abnormal=0.5, malignant=0.4)
    assert CAL.borderline(Label.NORMAL, 0.47, 0.39, t) == ("abnormal",)
    # a normal verdict never reached the malignant decision
    assert CAL.borderline(Label.NORMAL, 0.2, 0.39, t) == ()
    assert CAL.borderline(Label.BENIGN, 0.8, 0.39, t) == ("malignant",)
    assert CAL.borderline(Label.MALIGNANT, 0.55, 0.41, t) == ("abnormal", "malignant")
    assert CAL.borderline(Label.MALIGNANT, 0.9, 0.9, t) == ()
    # the abnormal band sits around the effective threshold max(abnormal, c1_lesion)
    assert CAL.borderline(Label.NORMAL, 0.62, 0.0, Thresholds(c1_lesion=0.65)) == ("abnormal",)


def test_cascade_json_round_trip_and_errors(tmp_path) -> None:
    cfg = CascadeConfig(name="x", calibration=CAL)
    cfg.save(tmp_path, hash_files=False)
    back = CascadeConfig.load(tmp_path)
    assert back.calibration is not None
    assert back.calibration.to_json() == CAL.to_json()
    assert "calibration" not in CascadeConfig().to_json()  # optional: absent when not fitted
    data = json.loads((tmp_path / "cascade.json").read_text())
    data["calibration"]["maps"]["p_other"] = data["calibration"]["maps"]["p_lesion"]
    (tmp_path / "cascade.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"cascade\.json.*unknown names"):
        CascadeConfig.load(tmp_path)
    data["calibration"] = {"maps": {"p_lesion": {"method": "platt", "a": "x"}}}
    (tmp_path / "cascade.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="bad calibration"):
        CascadeConfig.load(tmp_path)


def _pred(pa: float, pm: float, *, calibration=CAL):
    casc = fixed_cascade(
        [[5, 5, 15, 15]], [0.9], [pa], [pm / pa], c1_lesion=0.3, abnormal=0.5, malignant=0.4
    )
    casc.calibration = calibration
    return casc.predict(breast_image(), name="x")


def test_cascade_applies_calibration_without_changing_verdicts() -> None:
    for pa, pm in ((0.45, 0.1), (0.55, 0.41), (0.9, 0.2), (0.95, 0.9)):
        raw, cal = _pred(pa, pm, calibration=None), _pred(pa, pm)
        assert raw.label == cal.label and raw.p_abnormal == cal.p_abnormal
        assert raw.to_dict().keys() == cal.to_dict().keys() - {"calibrated", "borderline"}
    pred = _pred(0.55, 0.41)
    assert pred.borderline == ("abnormal", "malignant")
    assert pred.calibrated == pytest.approx(
        {"p_abnormal": float(ISO(0.55)), "p_malignant": float(ISO(0.41))}
    )
    doc = pred.to_dict()
    assert doc["borderline"] == ["abnormal", "malignant"]
    assert doc["findings"][0]["p_lesion_calibrated"] == pytest.approx(float(PLATT(0.55)), 1e-5)
    assert _pred(0.95, 0.9).to_dict()["borderline"] == []


def test_exam_verdicts_are_calibrated_and_flagged() -> None:
    t = Thresholds(c1_lesion=0.3, abnormal=0.5, malignant=0.4)
    items = [
        ("L", "CC", _pred(0.9, 0.41)),
        ("L", "MLO", _pred(0.6, 0.2)),
        ("R", "CC", _pred(0.9, 0.1)),
    ]
    exam = combine_exam(items, t)
    left, right = exam.breasts["L"], exam.breasts["R"]
    assert left.label == Label.MALIGNANT and left.borderline == ("malignant",)
    assert right.label == Label.BENIGN and right.borderline == ()
    assert left.calibrated == pytest.approx({"p_abnormal": 0.76, "p_malignant": 0.182})
    assert exam.to_dict()["borderline"] == ["malignant"]
    plain = combine_exam(
        [(lat, v, _pred(p.p_abnormal, 0.1, calibration=None)) for lat, v, p in items], t
    )
    assert "borderline" not in plain.to_dict() and plain.breasts["L"].calibrated is None


def test_reports_carry_calibration_and_borderline() -> None:
    from hdcnn.report import build_report, report_json, report_pdf

    pred = _pred(0.55, 0.41)
    report = build_report(pred)
    assert report["verdict"]["borderline"] == ["abnormal", "malignant"]
    assert report["verdict"]["calibrated"]["p_abnormal"] == pytest.approx(float(ISO(0.55)))
    assert report["findings"][0]["p_lesion_calibrated"] == pytest.approx(float(PLATT(0.55)), 1e-5)
    assert json.loads(report_json(report))["verdict"]["borderline"] == ["abnormal", "malignant"]
    pdf = report_pdf(report, compress=False)
    assert b"Borderline: the verdict" in pdf and rb"Calibrated: P\(abnormal\)" in pdf
    plain = build_report(_pred(0.55, 0.41, calibration=None))
    assert "borderline" not in plain["verdict"] and b"Borderline" not in report_pdf(
        plain, compress=False
    )


def test_cli_table_marks_borderline_verdicts() -> None:
    from hdcnn.commands.predict import format_table

    pred = _pred(0.9, 0.41)
    exam = combine_exam([("L", "CC", pred)], pred.thresholds)
    doc = {"results": [pred.to_dict()], "exams": [exam.to_dict()]}
    text = format_table(doc)
    assert "malignant (borderline: malignant)" in text
    assert f"(cal {ISO(0.41):.2f})" in text
    assert "L: malignant (borderline: malignant)" in text
    clear = _pred(0.95, 0.9).to_dict()
    assert "borderline" not in format_table({"results": [clear], "exams": []})
