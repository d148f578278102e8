"""hdcnn.evaluation.calibration: metrics, cross-fitted maps, bands and calibrate_folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hdcnn.config import CascadeConfig
from hdcnn.errors import DatasetError
from hdcnn.evaluation import calibration as cal
from hdcnn.evaluation.experiment import ConceptOutput, ImageResult
from hdcnn.terms import Label


def test_ece_brier_reliability_by_hand() -> None:
    y = np.array([0, 1, 1, 0])
    p = np.array([0.05, 0.15, 0.85, 0.95])
    # bins 0, 1, 8, 9: |0.05-0|, |0.15-1|, |0.85-1|, |0.95-0| each weighted 1/4
    assert cal.ece(y, p) == pytest.approx((0.05 + 0.85 + 0.15 + 0.95) / 4)
    assert cal.brier(y, p) == pytest.approx((0.05**2 + 0.85**2 + 0.15**2 + 0.95**2) / 4)
    rows = cal.reliability([0, 1, 1], [0.52, 0.58, 1.0])
    assert [(r["low"], r["n"], r["frequency"]) for r in rows] == [(0.5, 2, 0.5), (0.9, 1, 1.0)]
    assert cal.ece([1, 1], [1.0, 1.0]) == 0.0


def test_maps_calibrate_a_miscalibrated_score() -> None:
    rng = np.random.default_rng(0)
    truth_p = rng.uniform(0, 1, 4000)
    y = (rng.uniform(0, 1, 4000) < truth_p).astype(int)
    score = truth_p**3  # monotone, badly calibrated
    for method in ("platt", "isotonic"):
        fn = cal.fit_map(method, score, y)
        assert cal.ece(y, fn(score)) < 0.05 < cal.ece(y, score)
    # isotonic steps are Laplace-smoothed: a step of n examples, all positive, says (n+1)/(n+2)
    fn = cal.fit_map("isotonic", [0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])
    assert fn([0.0, 1.0]) == pytest.approx([1 / 4, 3 / 4])
    with pytest.raises(ValueError, match="positive and negative"):
        cal.fit_map("platt", score, np.ones_like(y))


def _results(n_patients: int = 60, seed: int = 0) -> list[ImageResult]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_patients):
        for j in range(2):
            truth = [Label.NORMAL, Label.NORMAL, Label.BENIGN, Label.MALIGNANT][(i + j) % 4]
            abnormal = truth != Label.NORMAL
            pa = float(np.clip(rng.normal(0.7 if abnormal else 0.4, 0.15), 0, 1))
            pm = pa * float(
                np.clip(rng.normal(0.7 if truth == Label.MALIGNANT else 0.4, 0.2), 0, 1)
            )
            lesion = [(100.0, 100.0, 200.0, 200.0)] if abnormal else []
            boxes = np.array([[120.0, 120.0, 160.0, 160.0], [400.0, 400.0, 450.0, 450.0]])
            scores = np.array([pa, pa * 0.5])
            label = Label.NORMAL if pa < 0.55 else (Label.MALIGNANT if pm >= 0.4 else Label.BENIGN)
            r = ImageResult(2 * i + j, f"p{i:03d}", truth, lesion)
            r.outputs["det-hier"] = ConceptOutput(pa, pm, label, boxes, scores)
            out.append(r)
    return out


CONFIG = {
    "thresholds": {"c1_lesion": 0.3, "abnormal": 0.55, "malignant": 0.4},
    "operating_points": {"rule": "youden"},
    "split": {"folds": {f"fold{k}": [f"p{i:03d}" for i in range(k, 60, 3)] for k in range(3)}},
}


def test_scores_truth_and_folds() -> None:
    results = _results()
    folds = cal.patient_folds(CONFIG["split"], [r.patient_id for r in results])
    assert len(set(folds.values())) == 3
    data = cal.probability_scores(results, folds)
    assert len(data["p_abnormal"].scores) == 120
    assert data["p_malignant"].truth.sum() == 30
    # the first box of an abnormal image hits its lesion, the second never does
    assert len(data["p_lesion"].scores) == 240 and data["p_lesion"].truth.sum() == 60
    s = data["p_abnormal"]
    held = cal.cross_fitted("isotonic", s)
    fold0 = s.folds == 0
    alone = cal.fit_map("isotonic", s.scores[~fold0], s.truth[~fold0])(s.scores[fold0])
    assert held[fold0] == pytest.approx(alone)  # held out: fitted without its own fold


def test_fit_calibration_report_and_bands() -> None:
    calib = cal.fit_calibration(_results(), CONFIG, n_boot=50, seed=0)
    assert set(calib.maps) == {"p_abnormal", "p_malignant", "p_lesion"}
    for name, r in calib.report["probabilities"].items():
        assert r["method"] == calib.maps[name].method
        assert r["brier_by_method"][r["method"]] == min(r["brier_by_method"].values())
        assert r["after"]["brier"] == r["brier_by_method"][r["method"]]
        assert r["after"]["ece"] < r["before"]["ece"] or name == "p_lesion"
    band = calib.bands["abnormal"]
    assert band.low <= 0.55 <= band.high and band.threshold == 0.55
    bl = calib.report["borderline"]
    assert 0 < bl["n_borderline"] < bl["n_images"] == 120
    assert bl["verdicts_changed_if_decided_on_calibrated"] >= 0
    cf = calib.report["borderline_cross_fitted"]
    assert cf["n_images"] == 120 and 0 < cf["n_borderline"] < 120
    assert calib.report["command"] == cal.COMMAND


def test_partial_fit_leaves_out_a_probability_without_positives() -> None:
    """No box hits a lesion (a weak detector on a small cohort): P(lesion) cannot be fitted;
    refused by default, left out and named with ``partial``; nothing fittable: refused."""
    results = _results()
    for r in results:
        r.lesion_boxes = [(600.0, 600.0, 700.0, 700.0)] if r.lesion_boxes else []
    with pytest.raises(DatasetError, match="p_lesion"):
        cal.fit_calibration(results, CONFIG, n_boot=20)
    calib = cal.fit_calibration(results, CONFIG, n_boot=20, partial=True)
    assert set(calib.maps) == {"p_abnormal", "p_malignant"}
    assert "0 positive" in calib.report["not_fitted"]["p_lesion"]
    assert calib.probability("p_lesion", 0.5) is None  # shown raw
    normal = [r for r in results if r.truth == Label.NORMAL]
    with pytest.raises(DatasetError, match="positive and negative"):
        cal.fit_calibration(normal, CONFIG, n_boot=20, partial=True)


def test_evaluate_calibration_on_other_images() -> None:
    calib = cal.fit_calibration(_results(seed=0), CONFIG, n_boot=20)
    other = _results(seed=1)  # fresh draws: held out from the fit
    figures = cal.evaluate_calibration(other, calib, n_boot=20)
    assert set(figures) == {"p_abnormal", "p_malignant", "p_lesion"}
    for name, r in figures.items():
        s = cal.probability_scores(other, {p.patient_id: 0 for p in other})[name]
        assert r["before"]["brier"] == round(cal.brier(s.truth, s.scores), 6)
        assert r["after"]["brier"] == round(cal.brier(s.truth, calib.maps[name](s.scores)), 6)
    assert figures["p_abnormal"]["after"]["ece"] < figures["p_abnormal"]["before"]["ece"]
    assert cal.evaluate_calibration([], calib) == {}


def test_calibrate_folder_writes_cascade_json(tmp_path) -> None:
    cfg = CascadeConfig.from_json({**CONFIG, "name": "x", "files": {"a.pt": "0" * 64}})
    cfg.save(tmp_path, hash_files=False)
    doc = {"images": [r.to_dict() for r in _results()]}
    (tmp_path / "oof_predictions.json").write_text(json.dumps(doc))
    calib = cal.calibrate_folder(tmp_path, n_boot=20)
    back = CascadeConfig.load(tmp_path)
    assert back.calibration is not None and back.calibration.to_json() == calib.to_json()
    assert back.files == {"a.pt": "0" * 64} and back.thresholds == cfg.thresholds
    assert not list(tmp_path.glob("*.tmp-*"))
    with pytest.raises(DatasetError, match=r"nothing\.json"):
        cal.calibrate_folder(tmp_path, tmp_path / "nothing.json")


def test_calibrate_command(tmp_path, capsys) -> None:
    from hdcnn.cli import main

    CascadeConfig.from_json(CONFIG).save(tmp_path, hash_files=False)
    doc = {"images": [r.to_dict() for r in _results()]}
    (tmp_path / "oof_predictions.json").write_text(json.dumps(doc))
    assert main(["calibrate", str(tmp_path), "--n-boot", "20"]) == 0
    out = capsys.readouterr().out
    assert "| p_malignant | 120 (30) |" in out and "Borderline:" in out
    assert "| p_lesion | 0.0–0.1 |" in out  # the reliability bins
    assert "Cross-fitted (thresholds and bands from the other folds)" in out
    assert "ECE floor" in out and "- p_abnormal after: " in out  # the sampling floor's reading
    assert "percentile" in out.split("- p_malignant after: ")[1]
    assert main(["calibrate", str(tmp_path / "missing")]) == 2
