"""hdcnn.evaluation.out_of_fold: cv's C1 threshold on the pooled out-of-fold candidates."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from hdcnn.evaluation.out_of_fold import Scored, lesion_level_threshold
from hdcnn.thresholds import NEUTRAL_THRESHOLD


def _scored(index: int, boxes: list, scores: list, p_lesion: list) -> Scored:
    trace = SimpleNamespace(
        candidates=SimpleNamespace(
            boxes=np.asarray(boxes, np.float64).reshape(-1, 4), scores=np.asarray(scores)
        ),
        p_lesion=np.asarray(p_lesion, np.float64),
    )
    return Scored(index, 0, {}, {"det-hier": trace})


def _image(*gt: list[float]) -> SimpleNamespace:
    return SimpleNamespace(gt=np.asarray(gt, np.float64).reshape(-1, 4))


def test_each_lesion_scores_its_best_hitting_candidate_and_missed_ones_are_left_out() -> None:
    images = [_image([0, 0, 10, 10], [50, 50, 60, 60]), _image([0, 0, 10, 10]), _image()]
    scored = [
        # lesion 0 hit twice (best 0.8), lesion 1 hit only by a box below the detector floor
        _scored(0, [[2, 2, 8, 8], [1, 1, 9, 9], [52, 52, 58, 58]], [0.9, 0.5, 0.01], [0.3, 0.8, 1]),
        # hit by the third candidate, beyond the top k = 2: left out as missed
        _scored(1, [[30, 30, 40, 40], [30, 30, 40, 40], [2, 2, 8, 8]], [0.9, 0.8, 0.7], [0, 0, 1]),
        _scored(2, [[2, 2, 8, 8]], [0.9], [0.99]),  # no lesion: not counted
    ]
    t = lesion_level_threshold(scored, images, "det-hier", 0.05, 2, 0.9)
    assert t == pytest.approx(0.8)
    # no floor and k = 3 let the other two lesions in (best 1.0 each): keeping 90 % of the
    # three keeps all of them, keeping 60 % only the two best
    assert lesion_level_threshold(scored, images, "det-hier", 0.0, 3, 0.9) == pytest.approx(0.8)
    assert lesion_level_threshold(scored, images, "det-hier", 0.0, 3, 0.6) == pytest.approx(1.0)


def test_without_a_hit_lesion_the_threshold_is_neutral() -> None:
    scored = [_scored(0, [[30, 30, 40, 40]], [0.9], [0.7])]
    t = lesion_level_threshold(scored, [_image([0, 0, 10, 10])], "det-hier", 0.05, 5, 0.9)
    assert t == NEUTRAL_THRESHOLD
