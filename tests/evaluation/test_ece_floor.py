"""hdcnn.evaluation.ece_floor: the ECE a perfectly calibrated probability shows on N examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hdcnn.evaluation import calibration as cal
from hdcnn.evaluation.ece_floor import ECE_TARGET, EceFloor, ece_floor, floor_reading


def test_one_bin_floor_is_the_binomial_mean_absolute_deviation() -> None:
    """p = 0.5 everywhere: one bin, ECE = |mean(y) - 0.5|, whose expectation is about
    sqrt(2 / pi) * 0.5 / sqrt(n) (normal approximation of the binomial)."""
    n = 400
    floor = ece_floor(np.full(n, 0.5), n_sim=4000, seed=0)
    expected = math.sqrt(2 / math.pi) * 0.5 / math.sqrt(n)  # 0.0199
    # simulation standard error about 0.015 / sqrt(4000) = 0.00024; tolerance 4 of them
    assert floor.mean == pytest.approx(expected, abs=0.001)
    assert floor.mean < floor.p95 < 3 * expected
    assert floor.n_sim == 4000 and floor.share_at_most_target is None


def test_floor_shrinks_with_more_examples() -> None:
    rng = np.random.default_rng(1)
    small = ece_floor(rng.uniform(0, 1, 100), n_sim=500, seed=0)
    large = ece_floor(rng.uniform(0, 1, 2500), n_sim=500, seed=0)
    # ECE floor ~ 1 / sqrt(n): 25 times the examples, about a fifth of the floor
    assert large.mean < small.mean / 3 and large.p95 < small.p95 / 3


def test_certain_probabilities_have_no_floor() -> None:
    floor = ece_floor([0.0, 1.0, 1.0, 0.0, 1.0], n_sim=50, seed=3, target=ECE_TARGET)
    assert floor.mean == 0.0 and floor.p95 == 0.0 and floor.share_at_most_target == 1.0


def test_miscalibrated_probability_is_far_above_its_floor() -> None:
    p = np.full(200, 0.9)
    truth = np.zeros(200, int)  # says 90 %, never happens
    measured = cal.ece(truth, p)
    floor = ece_floor(p, n_sim=500, seed=0, target=ECE_TARGET)
    assert measured == pytest.approx(0.9)
    assert measured > 10 * floor.p95 and not floor.consistent(measured)
    assert "above the 95th percentile" in floor_reading(measured, floor.to_dict())
    # labels drawn from p itself (this seed's draw): within the floor
    drawn = (np.random.default_rng(7).random(200) < p).astype(int)
    assert floor.consistent(cal.ece(drawn, p))


def test_seeded_share_and_reading() -> None:
    p = np.random.default_rng(2).uniform(0, 1, 242)
    a = ece_floor(p, n_sim=300, seed=5, target=ECE_TARGET)
    assert a == ece_floor(p, n_sim=300, seed=5, target=ECE_TARGET)  # deterministic
    assert a != ece_floor(p, n_sim=300, seed=6, target=ECE_TARGET)
    loose = ece_floor(p, n_sim=300, seed=5, target=1.0)
    strict = ece_floor(p, n_sim=300, seed=5, target=0.0)
    assert loose.share_at_most_target == 1.0 and strict.share_at_most_target == 0.0
    assert 0.0 < a.share_at_most_target < 1.0
    d = a.to_dict()
    assert set(d) == {"mean", "p95", "n_sim", "target", "share_at_most_target"}
    text = floor_reading(a.p95 - 0.001, d)
    assert "within the 95th percentile" in text and "consistent with perfect calibration" in text
    assert f"meets {ECE_TARGET:.2f} in {100 * a.share_at_most_target:.0f} % of draws" in text
    no_target = EceFloor(0.05, 0.07, 10).to_dict()
    assert "draws" not in floor_reading(0.06, no_target)


@pytest.mark.parametrize("bad", [[], [[0.5]], [0.5, 1.2], [-0.1], [float("nan")]])
def test_bad_probabilities_are_refused(bad: list) -> None:
    with pytest.raises(ValueError, match="probabilities"):
        ece_floor(bad)


def test_bad_simulation_count_is_refused() -> None:
    with pytest.raises(ValueError, match="n_sim"):
        ece_floor([0.5], n_sim=0)


def test_summary_carries_the_floor() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 80)
    s = cal.Scores(p, (rng.random(80) < p).astype(int), np.arange(80).astype(str), np.zeros(80))
    out = cal.summary(s, p, n_boot=40, seed=0)
    assert out["ece_floor"] == ece_floor(p, n_sim=40, seed=0, target=ECE_TARGET).to_dict()
