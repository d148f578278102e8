"""The app with calibrated weights: borderline verdicts and calibrated probabilities on
Diagnose and Exam, the calibration section of the Experiments page."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from hdcnn.calibration import Calibration, ProbabilityMap, ThresholdBand, borderline_text
from hdcnn.cascade import load_cascade
from hdcnn.config import CascadeConfig
from hdcnn.samples import list_samples
from tests.app.test_pages import _experiments, _page, _texts

REPORT = {
    "probabilities": {
        name: {
            "n": 10,
            "n_positive": 4,
            "method": "platt",
            "brier_by_method": {"platt": 0.2, "isotonic": 0.21},
            "before": {
                "brier": 0.25,
                "ece": 0.2,
                "ece_ci": [0.1, 0.3],
                "reliability": [
                    {"low": 0.5, "high": 0.6, "n": 10, "mean_p": 0.55, "frequency": 0.4}
                ],
            },
            "after": {
                "brier": 0.2,
                "ece": 0.05,
                "ece_ci": [0.03, 0.12],
                "reliability": [
                    {"low": 0.4, "high": 0.5, "n": 10, "mean_p": 0.42, "frequency": 0.4}
                ],
            },
        }
        for name in ("p_abnormal", "p_malignant", "p_lesion")
    },
    "n_bins": 10,
    "band_level": 0.5,
    "borderline": {
        "n_images": 10,
        "n_borderline": 3,
        "error_rate_borderline": 0.67,
        "error_rate_clear": 0.14,
    },
    "borderline_cross_fitted": {
        "n_images": 10,
        "n_borderline": 4,
        "error_rate_borderline": 0.75,
        "error_rate_clear": 0.2,
        "n_boot": 200,
    },
    "command": "python -m hdcnn calibrate models/",
}


@pytest.fixture()
def calibrated(app_env: Path, tmp_path: Path, monkeypatch) -> Path:
    """The tiny weights with a calibration whose bands span [0, 1]: every verdict is borderline."""
    folder = tmp_path / "weights"
    shutil.copytree(app_env, folder)
    cfg = CascadeConfig.load(folder)
    t = load_cascade(folder).thresholds
    cal = Calibration(
        {
            "p_abnormal": ProbabilityMap("platt", a=1.0, b=-0.5),
            "p_malignant": ProbabilityMap("platt"),
        },
        {
            "abnormal": ThresholdBand(t.effective_abnormal, 0.0, 1.0),
            "malignant": ThresholdBand(t.malignant, 0.0, 1.0),
        },
        REPORT,
    )
    replace(cfg, calibration=cal).save(folder, hash_files=False)
    monkeypatch.setenv("HDCNN_WEIGHTS", str(folder))
    return folder


def test_diagnose_shows_borderline_and_calibrated(calibrated: Path) -> None:
    sample = next(s for s in list_samples() if s.synthetic and s.truth == "malignant")
    expected = load_cascade(calibrated).predict(sample.read())
    assert expected.borderline and expected.calibrated
    at = _page("pages/diagnose.py")
    at.selectbox(key="diagnose_sample").set_value(sample.key).run()
    assert not at.exception, [e.message for e in at.exception]
    texts = _texts(at)
    assert borderline_text(expected.borderline) in texts
    assert f"abnormal {100 * expected.calibrated['p_abnormal']:.0f} %" in texts


def test_exam_shows_borderline_breasts(calibrated: Path) -> None:
    exams: dict = {}
    for s in list_samples():
        exams.setdefault(s.exam, {})[s.view_key] = s
    name = next(k for k in exams if k.startswith("synthetic"))
    at = _page("pages/exam.py")
    at.selectbox(key="exam_sample").set_value(name).run()
    assert not at.exception, [e.message for e in at.exception]
    assert "Borderline: the breast verdict's" in _texts(at)
    assert "Borderline: the exam verdict's" in _texts(at)


def test_experiments_page_calibration_section(calibrated: Path, monkeypatch, tmp_path) -> None:
    path = tmp_path / "experiments.json"
    path.write_text(json.dumps(_experiments()))
    monkeypatch.setenv("HDCNN_EXPERIMENTS", str(path))
    at = _page("pages/experiments.py")
    table = next(d.value for d in at.dataframe if "map" in d.value.columns)
    assert list(table["map"]) == ["platt"] * 3
    assert table["ECE before → after [95% CI]"][0] == "0.200 → 0.050 [0.030–0.120]"
    assert "wrong 67% of the time" in _texts(at) and "python -m hdcnn calibrate" in _texts(at)
    assert "Checked on held-out folds" in _texts(at) and "wrong 75% of the time" in _texts(at)
    assert "ECE floor" not in _texts(at)  # an older report, without floors


def test_experiments_page_shows_the_ece_floor(
    calibrated: Path, monkeypatch, tmp_path: Path
) -> None:
    cfg = CascadeConfig.load(calibrated)
    report = json.loads(json.dumps(REPORT))
    floors = {"p_abnormal": (0.057, 0.087), "p_malignant": (0.01, 0.02), "p_lesion": (0.02, 0.03)}
    for name, (mean, p95) in floors.items():
        floor = {"mean": mean, "p95": p95, "n_sim": 100, "target": 0.05}
        report["probabilities"][name]["after"]["ece_floor"] = floor
    cal = replace(cfg.calibration, report=report)
    replace(cfg, calibration=cal).save(calibrated, hash_files=False)
    path = tmp_path / "experiments.json"
    path.write_text(json.dumps(_experiments()))
    monkeypatch.setenv("HDCNN_EXPERIMENTS", str(path))
    at = _page("pages/experiments.py")
    # after ECE 0.05 against each floor's 95th percentile; the table keeps its columns
    text = _texts(at)
    assert "P(abnormal) 0.050 against 0.057 [0.087]: within" in text
    assert "P(malignant) 0.050 against 0.010 [0.020]: above" in text
    assert "cannot be told apart from perfect calibration" in text
    table = next(d.value for d in at.dataframe if "map" in d.value.columns)
    assert len(table.columns) == 5


def test_experiments_page_without_calibration_says_so(app_env: Path, monkeypatch, tmp_path) -> None:
    path = tmp_path / "experiments.json"
    path.write_text(json.dumps(_experiments()))
    monkeypatch.setenv("HDCNN_EXPERIMENTS", str(path))
    at = _page("pages/experiments.py")
    assert "ship no probability calibration" in _texts(at)
