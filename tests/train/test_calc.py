"""The calcification stream's training helpers that need no cross-validation run."""

from __future__ import annotations

import numpy as np
import pytest

from hdcnn.train.calc import lesion_odds, logistic_probability, moved_to_odds
from hdcnn.train.heads import fit_logistic


def test_lesion_odds_counts_negatives_per_positive_and_skips_unknown() -> None:
    assert lesion_odds(np.array([0, 0, 0, 1, 2, -1])) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="0 positives"):
        lesion_odds(np.array([0, 0, -1]))
    with pytest.raises(ValueError, match="0 negatives"):
        lesion_odds(np.array([1, 2]))


def test_moved_to_odds_shifts_the_logit_by_the_log_odds_ratio() -> None:
    """A balanced fit on a 1:9 set moved onto a 1:1 set's scale: every logit lower by log 9,
    the ranking unchanged; moved onto its own odds, nothing changes."""
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(20, np.int64), np.zeros(180, np.int64)]
    x = rng.normal(size=(200, 3)) + y[:, None]
    params, _ = fit_logistic(x, y, seed=0, c=1.0)
    p = logistic_probability(params, x)
    moved = logistic_probability(moved_to_odds(params, y, 1.0), x)
    logit = np.log(p / (1 - p)) - np.log(moved / (1 - moved))
    assert np.allclose(logit, np.log(9.0))
    assert (np.argsort(p) == np.argsort(moved)).all()
    same = logistic_probability(moved_to_odds(params, y, 9.0), x)
    assert np.allclose(same, p)


def test_moved_to_odds_makes_a_balanced_fit_match_the_true_frequency() -> None:
    """Why the move is right: on a rare class, a balanced fit overstates P(class 1); moved onto
    the odds of 1 (no inflation) its mean matches the class's frequency."""
    rng = np.random.default_rng(1)
    y = (rng.random(4000) < 0.02).astype(np.int64)
    x = rng.normal(size=(4000, 2)) + 1.5 * y[:, None]
    params, _ = fit_logistic(x, y, seed=0, c=1.0)
    balanced = logistic_probability(params, x).mean()
    moved = logistic_probability(moved_to_odds(params, y, 1.0), x).mean()
    assert balanced > 5 * y.mean()
    assert moved == pytest.approx(y.mean(), rel=0.35)
