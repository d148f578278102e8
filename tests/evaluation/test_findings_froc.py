"""The FROC of merged findings against the candidate FROC."""

from __future__ import annotations

import numpy as np
import pytest

from hdcnn.evaluation.findings_froc import findings_froc, findings_froc_curve, merged_counts
from hdcnn.evaluation.froc import froc, lesion_hits

LESION = np.array([[100.0, 100.0, 140.0, 140.0]])


def _shifted(box: list[float], dx: float) -> list[float]:
    return [box[0] + dx, box[1], box[2] + dx, box[3]]


def test_overlapping_false_positives_count_once() -> None:
    """Five overlapping boxes on normal tissue: five candidate false positives, one finding."""
    spot = [400.0, 400.0, 440.0, 440.0]
    normal = {"boxes": [_shifted(spot, d) for d in range(0, 10, 2)], "scores": [0.9] * 5}
    lesion = {"boxes": [[105.0, 105.0, 135.0, 135.0]], "scores": [0.8]}
    preds, truths = [normal, lesion], [np.zeros((0, 4)), LESION]
    assert froc(preds, truths, fp_rates=(0.5, 2.5))["0.5"] == 0.0
    merged = findings_froc(preds, truths, fp_rates=(0.5, 2.5))
    assert merged["0.5"] == 1.0  # one false-positive finding over two images
    fppi, sens, _ = findings_froc_curve(preds, truths)
    assert fppi.max() == pytest.approx(0.5) and sens.max() == 1.0


def test_a_lesion_hit_only_by_a_lower_member_of_a_finding_is_not_found() -> None:
    """The finding is shown as its best-scored member: when that member misses the lesion,
    the finding is a false positive even though a merged lower-scored member hits it."""
    leader = [20.0, 20.0, 140.0, 140.0]  # centre (80, 80): outside the lesion
    member = [95.0, 95.0, 135.0, 135.0]  # centre (115, 115): inside it, and inside the leader
    preds = [{"boxes": [leader, member], "scores": [0.9, 0.5]}]
    assert froc(preds, [LESION])["2"] == 1.0
    fps, found = merged_counts(np.array([leader, member]), lesion_hits([leader, member], LESION))
    assert fps.tolist() == [0, 1, 1] and found.tolist() == [0, 0, 0]
    assert findings_froc(preds, [LESION])["2"] == 0.0


def test_without_overlaps_it_is_the_candidate_froc() -> None:
    rng = np.random.default_rng(0)
    preds, truths = [], []
    for i in range(12):
        x = np.arange(6) * 150.0  # 100-px boxes 150 px apart: none overlaps
        boxes = np.stack([x, x * 0 + 10, x + 100, x * 0 + 110], axis=1)
        preds.append({"boxes": boxes, "scores": rng.random(6)})
        truths.append(boxes[[i % 6]] + np.array([-5, -5, 5, 5]) if i % 3 else np.zeros((0, 4)))
    a, b = froc(preds, truths), findings_froc(preds, truths)
    for key in ("0.5", "1", "2", "mean"):
        assert a[key] == pytest.approx(b[key])


def test_a_bridging_candidate_joins_two_findings() -> None:
    """A lower-scored box linking two false-positive findings makes them one: the false
    positives fall as the threshold falls."""
    left, right = [0.0, 0.0, 100.0, 100.0], [90.0, 0.0, 190.0, 100.0]  # IoU 0.05: apart
    bridge = [45.0, 0.0, 145.0, 100.0]  # IoU 0.33 with each
    preds = [{"boxes": [left, right, bridge], "scores": [0.9, 0.8, 0.7]}]
    fppi, _, thresholds = findings_froc_curve(preds, [np.zeros((0, 4))])
    assert fppi.tolist() == [0.0, 1.0, 2.0, 1.0]
    assert thresholds[1:].tolist() == [0.9, 0.8, 0.7]


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="1 prediction lists but 2 truth lists"):
        findings_froc_curve([{"boxes": [], "scores": []}], [LESION, LESION])
