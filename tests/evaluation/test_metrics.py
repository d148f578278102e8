"""Tests for hdcnn.evaluation.metrics on hand-counted cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hdcnn.evaluation.metrics import (
    FROC_HIT,
    accuracy,
    bootstrap_auc_ci,
    bootstrap_auc_difference,
    bootstrap_indices,
    box_iou,
    confusion_matrix,
    froc,
    froc_curve,
    lesion_hits,
    macro_f1,
    roc_auc,
    roc_curve,
    sensitivity_at_specificity,
    sensitivity_malignant,
    specificity,
    threshold_at_sensitivity,
    threshold_at_specificity,
    threshold_youden,
    verdict_summary,
    weighted_aucs,
)
from hdcnn.terms import Label

# --- AUC and ROC ---------------------------------------------------------------------------


def test_auc_perfect_inverted_tied() -> None:
    y = [0, 0, 1, 1]
    assert roc_auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_auc_by_hand_with_ties() -> None:
    # positives 0.35, 0.8, 0.9 vs negatives 0.1, 0.4, 0.35:
    # 0.35 wins 1, loses 1, ties 1 -> 1.5; 0.8 and 0.9 win all 3 -> 7.5 of 9 pairs
    y = [0, 0, 1, 1, 0, 1]
    s = [0.1, 0.4, 0.35, 0.8, 0.35, 0.9]
    assert roc_auc(y, s) == pytest.approx(7.5 / 9)
    assert roc_auc(np.array(y, bool), s) == pytest.approx(7.5 / 9)


def test_auc_matches_sklearn_on_random_data() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(y * 0.7, 1.0), 1)  # rounded: many ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_one_class_is_none_and_bad_input_raises() -> None:
    assert roc_auc([1, 1, 1], [0.1, 0.2, 0.3]) is None
    assert roc_auc([], []) is None
    assert roc_curve([0, 0], [0.1, 0.2]) is None
    with pytest.raises(ValueError, match="one length"):
        roc_auc([0, 1], [0.1])
    with pytest.raises(ValueError, match="0/1"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        roc_auc([0, 1], [0.1, np.nan])


def test_roc_curve_points_by_hand() -> None:
    y = [0, 0, 1, 1, 0, 1]
    s = [0.1, 0.4, 0.35, 0.8, 0.35, 0.9]
    fpr, tpr, thr = roc_curve(y, s)
    np.testing.assert_allclose(thr, [np.inf, 0.9, 0.8, 0.4, 0.35, 0.1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1])
    np.testing.assert_allclose(fpr, [0, 0, 0, 1 / 3, 2 / 3, 1])
    assert np.trapezoid(tpr, fpr) == pytest.approx(7.5 / 9)


def test_sensitivity_at_specificity_by_hand() -> None:
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.2, 0.3, 0.7, 0.25, 0.6, 0.8, 0.9]
    # spec >= 0.75 allows one negative (0.7) above threshold: t = 0.6 -> sens 3/4
    assert sensitivity_at_specificity(y, s, 0.75) == pytest.approx(0.75)
    assert threshold_at_specificity(y, s, 0.75) == pytest.approx(0.6)
    # spec 1.0: t = 0.8 -> sens 2/4
    assert sensitivity_at_specificity(y, s, 1.0) == pytest.approx(0.5)
    assert threshold_at_specificity(y, s, 1.0) == pytest.approx(0.8)
    assert sensitivity_at_specificity(y, s, 0.0) == 1.0
    assert sensitivity_at_specificity([1, 1], [0.2, 0.3]) is None
    with pytest.raises(ValueError, match="specificity"):
        sensitivity_at_specificity(y, s, 1.5)


def test_threshold_at_sensitivity_by_hand() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    assert threshold_at_sensitivity(scores, 0.6) == pytest.approx(0.7)  # 3 of 5 kept
    assert threshold_at_sensitivity(scores[::-1], 0.6) == pytest.approx(0.7)  # any order
    assert threshold_at_sensitivity(scores, 0.61) == pytest.approx(0.2)  # 4 of 5 needed
    assert threshold_at_sensitivity(scores, 0.9) == pytest.approx(0.1)
    assert threshold_at_sensitivity(scores, 1.0) == pytest.approx(0.1)
    assert threshold_at_sensitivity(scores, 0.0) == pytest.approx(0.9)  # at least one kept
    assert threshold_at_sensitivity([], 0.9) == 0.5  # nothing to calibrate on: neutral
    with pytest.raises(ValueError, match="sensitivity"):
        threshold_at_sensitivity(scores, 1.5)


def test_threshold_youden_by_hand() -> None:
    pos = [0.9, 0.8, 0.4]
    neg = [0.5, 0.3, 0.2, 0.1]
    # t = .8: J = 2/3 - 0; t = .4: J = 1 - 1/4 = .75 (best); t = .3: J = 1 - 2/4
    assert threshold_youden(pos, neg) == pytest.approx(0.4)
    # ties in J: t = .9 and t = .6 both give J = 1/2 - 0 -> the larger (more specific) wins
    assert threshold_youden([0.9, 0.1], [0.5, 0.0]) == pytest.approx(0.9)
    assert threshold_youden([0.5], [0.5]) == pytest.approx(0.5)  # J = 0 everywhere
    with pytest.raises(ValueError, match="negative"):
        threshold_youden([0.5], [])


def test_threshold_youden_matches_a_scan_of_every_score() -> None:
    rng = np.random.default_rng(5)
    for _ in range(50):
        pos = np.round(rng.normal(0.6, 0.2, int(rng.integers(1, 20))), 1)
        neg = np.round(rng.normal(0.4, 0.2, int(rng.integers(1, 20))), 1)
        candidates = np.unique(np.r_[pos, neg])[::-1]
        j = [np.mean(pos >= t) + np.mean(neg < t) - 1 for t in candidates]
        assert threshold_youden(pos, neg) == candidates[int(np.argmax(j))]


# --- bootstrap -----------------------------------------------------------------------------


def _cohort(n_patients: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, n_patients)
    groups = np.repeat([f"P{i:03d}" for i in range(n_patients)], sizes)
    y = rng.integers(0, 2, groups.size)
    s = rng.normal(y * 1.0, 1.0)
    return y, s, groups


def test_bootstrap_ci_contains_estimate_and_is_deterministic() -> None:
    y, s, g = _cohort()
    auc = roc_auc(y, s)
    ci = bootstrap_auc_ci(y, s, g, n_boot=300, seed=1)
    assert ci is not None
    low, high = ci
    assert 0.0 <= low < auc < high <= 1.0
    assert bootstrap_auc_ci(y, s, g, n_boot=300, seed=1) == ci
    assert bootstrap_auc_ci(y, s, g, n_boot=300, seed=2) != ci
    narrow = bootstrap_auc_ci(y, s, g, n_boot=300, seed=1, alpha=0.5)
    assert low <= narrow[0] <= narrow[1] <= high


def test_bootstrap_auc_difference_is_paired_on_the_same_resamples() -> None:
    y, s, g = _cohort()
    worse = s + np.random.default_rng(3).normal(0.0, 0.7, s.size)  # the same scores, noisier
    diff, ci = bootstrap_auc_difference(y, s, worse, g, n_boot=200, seed=1)
    assert diff == pytest.approx(roc_auc(y, s) - roc_auc(y, worse))
    # the interval is the percentile interval of the per-resample differences, resampling
    # patients once for both scorings
    naive = []
    for idx in bootstrap_indices(g, n_boot=200, seed=1):
        if len(set(y[idx])) == 2:
            naive.append(roc_auc_score(y[idx], s[idx]) - roc_auc_score(y[idx], worse[idx]))
    np.testing.assert_allclose(ci, np.quantile(naive, [0.025, 0.975]), atol=1e-12)
    assert ci[0] < diff < ci[1]
    # pairing removes the spread the two scorings share: a recipe against itself differs by 0
    assert bootstrap_auc_difference(y, s, s, g, n_boot=50) == (0.0, (0.0, 0.0))
    # and the paired interval is narrower than the two AUCs' own intervals
    low, high = bootstrap_auc_ci(y, s, g, n_boot=200, seed=1)
    assert ci[1] - ci[0] < high - low


def test_bootstrap_auc_difference_refuses_mismatched_inputs() -> None:
    y, s, g = _cohort()
    with pytest.raises(ValueError, match="one length"):
        bootstrap_auc_difference(y, s, s[:-1], g)
    with pytest.raises(ValueError, match="groups has length"):
        bootstrap_auc_difference(y, s, s, g[:-1])
    assert bootstrap_auc_difference(np.ones_like(y), s, s, g) is None  # one class: undefined


def test_weighted_aucs_are_sklearns_with_sample_weights() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 40)
    s = np.round(rng.normal(y * 0.8, 1.0), 1)  # many ties
    w = rng.integers(0, 4, (30, 40))
    w[0] = y * 3  # positives only: undefined
    aucs = weighted_aucs(y, s, w)
    assert aucs.shape == (30,) and np.isnan(aucs[0])
    expected = [roc_auc_score(y, s, sample_weight=row) for row in w[1:]]
    np.testing.assert_allclose(aucs[1:], expected, atol=1e-12)
    np.testing.assert_allclose(weighted_aucs(y, s, np.ones((1, 40))), [roc_auc(y, s)])


def test_bootstrap_resamples_whole_patients() -> None:
    groups = np.array(["a", "a", "a", "b", "c", "c"])
    for idx in bootstrap_indices(groups, n_boot=200, seed=3):
        assert idx.size in range(3, 10)
        counts = np.bincount(idx, minlength=groups.size)
        # every image of a patient is drawn exactly as often as the patient
        assert counts[0] == counts[1] == counts[2]
        assert counts[4] == counts[5]
        assert counts.sum() == 3 * counts[0] + counts[3] + 2 * counts[4]
        assert counts[0] + counts[3] + counts[4] == 3  # three patients drawn


def test_bootstrap_grouping_changes_the_interval() -> None:
    """Duplicating every image inside its patient leaves the patient bootstrap unchanged,
    but a per-image bootstrap of the duplicated data would be (wrongly) narrower."""
    y, s, g = _cohort(seed=4)
    ci = bootstrap_auc_ci(y, s, g, n_boot=300, seed=0)
    order = np.argsort(g, kind="stable")
    y2, s2, g2 = np.repeat(y[order], 2), np.repeat(s[order], 2), np.repeat(g[order], 2)
    ci_dup = bootstrap_auc_ci(y2, s2, g2, n_boot=300, seed=0)
    assert ci_dup == pytest.approx(ci, abs=1e-12)
    per_image = bootstrap_auc_ci(y2, s2, np.arange(y2.size), n_boot=300, seed=0)
    assert per_image[1] - per_image[0] < ci[1] - ci[0]


def test_bootstrap_none_cases() -> None:
    assert bootstrap_auc_ci([1, 1], [0.2, 0.3], ["a", "b"]) is None
    # two patients, one all-negative and one all-positive: most resamples hold one class
    y, s, g = [0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], ["a", "a", "b", "b"]
    ci = bootstrap_auc_ci(y, s, g, n_boot=100)
    assert ci == (1.0, 1.0)
    assert bootstrap_auc_ci(y, s, g, n_boot=5) is None  # < 10 usable resamples
    with pytest.raises(ValueError, match="groups"):
        bootstrap_auc_ci(y, s, ["a"])


# --- verdicts ------------------------------------------------------------------------------

N, B, M = Label.NORMAL, Label.BENIGN, Label.MALIGNANT
TRUTH = [N, N, N, B, B, M, M, M, M, N]
PRED = [N, B, N, B, M, M, M, N, M, N]


def test_confusion_matrix_by_hand() -> None:
    m = confusion_matrix(TRUTH, PRED)
    assert m.dtype == np.int64
    np.testing.assert_array_equal(m, [[3, 1, 0], [0, 1, 1], [1, 0, 3]])
    # plain strings work the same
    assert (confusion_matrix([str(t) for t in TRUTH], [str(p) for p in PRED]) == m).all()
    with pytest.raises(ValueError, match="unknown"):
        confusion_matrix(["unknown"], ["normal"])


def test_verdict_metrics_by_hand() -> None:
    assert accuracy(TRUTH, PRED) == pytest.approx(0.7)
    # F1: normal 2*3/(4+4) = .75, benign 2*1/(2+2) = .5, malignant 2*3/(4+4) = .75
    assert macro_f1(TRUTH, PRED) == pytest.approx(2 / 3)
    assert sensitivity_malignant(TRUTH, PRED) == pytest.approx(0.75)
    assert specificity(TRUTH, PRED) == pytest.approx(0.75)
    summary = verdict_summary(TRUTH, PRED)
    assert json.loads(json.dumps(summary)) == summary
    assert summary["confusion"] == [[3, 1, 0], [0, 1, 1], [1, 0, 3]]


def test_verdict_metrics_undefined_cases() -> None:
    assert sensitivity_malignant([N, B], [N, N]) is None
    assert specificity([M], [M]) is None
    assert accuracy([], []) is None
    assert macro_f1([], []) is None
    assert confusion_matrix([], []).tolist() == [[0, 0, 0]] * 3
    # benign absent from truth and prediction: left out of the macro mean
    assert macro_f1([N, M], [N, M]) == 1.0
    # benign predicted but never true: F1 0 for benign
    assert macro_f1([N, M], [B, M]) == pytest.approx((0 + 0 + 1) / 3)


# --- FROC ----------------------------------------------------------------------------------


def _box_at(cx: float, cy: float, half: float = 3.0) -> list[float]:
    return [cx - half, cy - half, cx + half, cy + half]


def _toy_froc() -> tuple[list[list[tuple[list[float], float]]], list[list[list[float]]]]:
    """3 images, 4 lesions. Lesion best-hit scores: L1 .9, L2 .4, L3 .6, L4 missed.
    False positives: .95, .8, .5, .3; the .7 box is a second hit on L1 (neither TP nor FP)."""
    truths = [
        [[10, 10, 30, 30], [50, 50, 70, 70]],  # image A: L1, L2
        [[0, 0, 20, 20]],  # image B: L3
        [[100, 100, 120, 120]],  # image C: L4
    ]
    predictions = [
        [(_box_at(20, 20), 0.9), (_box_at(200, 200), 0.8), (_box_at(60, 60), 0.4),
         (_box_at(15, 25), 0.7)],
        [(_box_at(150, 10), 0.95), (_box_at(10, 10), 0.6)],
        [(_box_at(10, 150), 0.5), (_box_at(90, 90), 0.3)],
    ]  # fmt: skip
    return predictions, truths


def test_froc_toy_counted_by_hand() -> None:
    predictions, truths = _toy_froc()
    result = froc(predictions, truths)
    # thresholds .95 .9 .8 .6 .5 .4 .3 -> FP 1 1 2 2 3 3 4 (of 3 images), found 0 1 1 2 2 3 3
    # (.7, a second hit on L1, is no operating point of its own)
    assert result["0.5"] == pytest.approx(0.25)  # FP/img 1/3 at .9
    assert result["1"] == pytest.approx(0.75)  # FP/img 1 at .4
    assert result["2"] == pytest.approx(0.75)
    assert result["mean"] == pytest.approx((0.25 + 0.75 + 0.75) / 3)
    assert result["n_images"] == 3 and result["n_lesions"] == 4
    np.testing.assert_allclose(result["fps_per_image"], np.array([0, 1, 1, 2, 2, 3, 3, 4]) / 3)
    np.testing.assert_allclose(result["sensitivity"], np.array([0, 0, 1, 1, 2, 2, 3, 3]) / 4)
    assert result["thresholds"][0] is None
    assert result["thresholds"][1:] == pytest.approx([0.95, 0.9, 0.8, 0.6, 0.5, 0.4, 0.3])
    assert json.loads(json.dumps(result)) == result


def test_froc_accepts_detector_dicts_and_normal_images() -> None:
    predictions, truths = _toy_froc()
    as_dicts = [
        {"boxes": np.array([b for b, _ in p]), "scores": np.array([s for _, s in p])}
        for p in predictions
    ]
    # a fourth, normal image (no lesions) with one false positive at .85
    as_dicts.append({"boxes": np.array([_box_at(5, 5)]), "scores": np.array([0.85])})
    truths = [*truths, []]
    fppi, sens, _ = froc_curve(as_dicts, truths)
    assert fppi[-1] == pytest.approx(5 / 4)
    assert sens[-1] == pytest.approx(0.75)
    result = froc(as_dicts, truths, fp_rates=(0.25, 1))
    assert set(result) >= {"0.25", "1"}
    assert result["0.25"] == pytest.approx(0.25)  # 1 FP of 4 images down to .9, then .85
    assert result["1"] == pytest.approx(0.75)  # FP 4 of 4 images at .4


def test_one_hit_rule_centre_in_box() -> None:
    lesion = [[40, 40, 50, 50]]
    big = [([0, 0, 90, 90], 0.9)]  # centre (45, 45) inside, IoU 100/8100: a hit
    assert froc([big], [lesion])["1"] == 1.0
    lesion = [[0, 0, 10, 10]]
    shifted = [([6, 0, 18, 10], 0.9)]  # centre (12, 5) outside, IoU 40/180 = 0.22: a miss
    assert froc([shifted], [lesion])["1"] == 0.0
    overlapping = [([2, 0, 20, 10], 0.9)]  # centre (11, 5) outside, IoU 80/200 = 0.4: a miss
    assert box_iou(np.array(overlapping[0][0]), np.array(lesion)) >= 0.3
    assert froc([overlapping], [lesion])["1"] == 0.0
    on_border = [([5, 0, 15, 10], 0.9)]  # centre (10, 5) on the border: a hit
    assert froc([on_border], [lesion])["1"] == 1.0
    assert froc([big], [[[40, 40, 50, 50]]], hit=FROC_HIT)["hit"] == "center"
    with pytest.raises(ValueError, match="hit"):
        froc([shifted], [lesion], hit="iou")


def test_lesion_hits_matrix() -> None:
    pred = np.array([[0, 0, 10, 10], [22, 22, 40, 40], [100, 100, 110, 110]])
    lesions = np.array([[0, 0, 30, 30], [25, 25, 35, 35]])
    np.testing.assert_array_equal(
        lesion_hits(pred, lesions), [[True, False], [False, True], [False, False]]
    )
    assert lesion_hits(np.zeros((0, 4)), lesions).shape == (0, 2)
    assert lesion_hits(pred, []).shape == (3, 0)


def test_froc_no_lesions_and_mismatched_lengths() -> None:
    result = froc([[([0, 0, 5, 5], 0.5)], []], [[], []])
    assert result["0.5"] is None and result["n_lesions"] == 0
    assert result["fps_per_image"] == [0.0, 0.5]
    empty = froc([[], []], [[[0, 0, 5, 5]], []])
    assert empty["2"] == 0.0
    with pytest.raises(ValueError, match="truth"):
        froc([[]], [[], []])


def test_box_iou() -> None:
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [20, 20, 30, 30]]))
    assert iou.dtype == np.float64
    np.testing.assert_allclose(iou, [[50 / 150, 0.0]])
    assert box_iou(np.zeros((0, 4)), np.zeros((2, 4))).shape == (0, 2)
    # a box with no area against itself: union 0 -> 0, not NaN
    assert box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]]).tolist() == [[0.0]]
    # views with negative strides are fine
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], dtype=np.float64)
    np.testing.assert_allclose(box_iou(boxes, boxes[::-1]), [[1 / 3, 1.0], [1.0, 1 / 3]])
