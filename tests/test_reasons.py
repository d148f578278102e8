"""Tests of hdcnn.reasons (and the FindingStatus set by Cascade.decide): every verdict names
the rule that decided it with the thresholds in force; every finding the stage that kept or
refused it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hdcnn.cascade import Candidates, Cascade, CascadeTrace, Thresholds, load_cascade
from hdcnn.preprocess import preprocess
from hdcnn.reasons import (
    STATUS_TEXT,
    THRESHOLD_NAMES,
    DecisionStage,
    candidate_rows,
    explain,
    explain_verdict,
    finding_reason,
    supports_verdict,
    thresholds_text,
)
from hdcnn.terms import FindingStatus, Label
from tests.cascade_weights import breast_image, make_weights_dir

BASE = Thresholds(detector_score=0.05, c1_lesion=0.3, abnormal=0.7, malignant=0.4)


@pytest.fixture(scope="module")
def cascade(tmp_path_factory: pytest.TempPathFactory) -> Cascade:
    return load_cascade(make_weights_dir(tmp_path_factory.mktemp("weights")))


@pytest.fixture(scope="module")
def trace() -> CascadeTrace:
    """Three detector boxes: scores 0.9, 0.5, 0.02; P(lesion) 0.6, 0.2, 0.9."""
    prep = preprocess(breast_image(120, 90), long_side=96)
    boxes = np.array([[10, 10, 30, 30], [40, 40, 60, 60], [5, 50, 25, 70]], dtype=np.float32)
    return CascadeTrace(
        prep,
        Candidates(boxes, np.array([0.9, 0.5, 0.02], dtype=np.float32)),
        np.array([0.6, 0.2, 0.9], dtype=np.float32),
        np.array([0.5, 0.5, 0.9], dtype=np.float32),
        np.zeros((3, 16, 16), dtype=np.float32),
    )


def test_candidate_refused_by_the_image_threshold_is_named_so(cascade, trace) -> None:
    # The case: a candidate kept by C1 (0.6 >= 0.3) on an image called normal
    # because P(abnormal) 0.6 < the image-level threshold 0.7.
    pred = cascade.decide(trace, BASE)
    assert pred.label == Label.NORMAL
    assert [f.status for f in pred.findings] == [
        FindingStatus.BELOW_IMAGE_THRESHOLD,
        FindingStatus.REJECTED_BY_C1,
    ]
    why = explain(pred)
    assert why.decided_by == DecisionStage.IMAGE_THRESHOLD
    assert why.threshold == pytest.approx(0.7) and why.value == pytest.approx(0.6)
    assert why.decisive == 1
    assert "image-level abnormal threshold 0.700" in why.headline
    assert "0.600" in why.reason
    assert "image-level abnormal threshold 0.700" in finding_reason(pred.findings[0], BASE)
    assert "Classifier 1 threshold 0.300" in finding_reason(pred.findings[1], BASE)
    assert not any(supports_verdict(f, BASE) for f in pred.findings)


def test_every_verdict_names_its_rule(cascade, trace) -> None:
    benign = cascade.decide(trace, replace(BASE, abnormal=0.5))
    assert benign.label == Label.BENIGN
    why = explain(benign)
    assert why.decided_by == DecisionStage.MALIGNANT_THRESHOLD
    assert why.threshold == pytest.approx(0.4)
    assert "P(malignant) 0.300 (#1) < malignant threshold 0.400" in why.reason
    assert benign.findings[0].status == FindingStatus.BENIGN
    assert supports_verdict(benign.findings[0], benign.thresholds)

    malignant = cascade.decide(trace, replace(BASE, abnormal=0.5, malignant=0.25))
    assert malignant.label == Label.MALIGNANT
    assert explain(malignant).decided_by == DecisionStage.MALIGNANT_THRESHOLD
    assert "≥ malignant threshold 0.250" in explain(malignant).reason

    c1 = cascade.decide(trace, replace(BASE, c1_lesion=0.7, abnormal=0.5))
    assert c1.label == Label.NORMAL
    assert {f.status for f in c1.findings} == {FindingStatus.REJECTED_BY_C1}
    why = explain(c1)
    assert why.decided_by == DecisionStage.CLASSIFIER_1 and why.value == pytest.approx(0.6)
    assert "Classifier 1 threshold 0.700" in why.headline

    none = cascade.decide(trace, replace(BASE, detector_score=0.95))
    assert none.findings == []
    why = explain(none)
    assert why.decided_by == DecisionStage.DETECTOR
    assert why.value == pytest.approx(0.9)
    assert "detector score threshold" in why.headline and "0.950" in why.reason


def test_decide_probabilities_do_not_depend_on_status(cascade, trace) -> None:
    pred = cascade.decide(trace, BASE)
    assert pred.p_abnormal == pytest.approx(0.6)
    assert pred.p_malignant == pytest.approx(0.3)  # computed before the image-level step
    assert [f.label for f in pred.findings] == ["rejected", "rejected"]


def test_candidate_rows_cover_boxes_below_the_detector_threshold(cascade, trace) -> None:
    pred = cascade.decide(trace, BASE)
    rows = candidate_rows(pred)
    assert [r.number for r in rows] == [1, 2, 3]
    assert rows[2].status == FindingStatus.BELOW_DETECTOR_THRESHOLD and rows[2].finding is None
    assert rows[2].reason == "detector score 0.020 < detector score threshold 0.050"
    assert rows[0].finding is pred.findings[0]
    assert set(STATUS_TEXT) == set(FindingStatus)


def test_breast_and_exam_verdicts_and_threshold_text() -> None:
    t = Thresholds(detector_score=0.05, c1_lesion=0.8, abnormal=0.5, malignant=0.4)
    why = explain_verdict("normal", 0.6, 0.1, t, subject="breast")
    assert why.threshold == pytest.approx(0.8)  # the effective image-level threshold
    assert why.reason.startswith("breast P(abnormal) 0.600 < image-level abnormal threshold 0.800")
    text = thresholds_text(t)
    assert "0.050" in text and "0.800" in text and "0.400" in text
    assert "the Classifier 1 threshold, the larger" in text
    assert set(THRESHOLD_NAMES) == set(t.to_dict())
    assert explain_verdict("malignant", 0.9, 0.5, t).to_dict()["decided_by"] == "malignant"


def test_real_prediction_statuses_agree_with_labels(cascade) -> None:
    pred = cascade.predict(breast_image(), detail=True)
    for f in pred.findings:
        assert f.status is not None
        if f.kept:
            assert f.status == f.label
        else:
            assert f.status in (FindingStatus.REJECTED_BY_C1, FindingStatus.BELOW_IMAGE_THRESHOLD)
    assert explain(pred).label == pred.label


def test_status_is_unset_for_findings_built_by_hand(tmp_path: Path) -> None:
    from hdcnn.cascade import Finding
    from hdcnn.reasons import finding_status

    f = Finding((0, 0, 1, 1), 0.5, 0.1, None, "rejected")
    assert f.status is None
    assert finding_status(f, BASE) == FindingStatus.REJECTED_BY_C1
