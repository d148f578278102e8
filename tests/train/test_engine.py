from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hdcnn.checkpoint import load_checkpoint, load_model
from hdcnn.errors import CheckpointError
from hdcnn.evaluation.metrics import froc
from hdcnn.train.distributed import DistContext
from hdcnn.train.engine import (
    classifier_metrics,
    detector_metrics,
    fit,
    threshold_at_sensitivity,
)
from tests.train.tiny import classifier_job, detector_job

CTX = DistContext()


def test_detector_metrics_by_hand() -> None:
    gt = np.array([[10.0, 10.0, 20.0, 20.0]])
    results = [
        # image 0: a hit at score 0.9, a false positive at 0.8
        (np.array([[12.0, 12.0, 18.0, 18.0], [50.0, 50.0, 60.0, 60.0]]), np.array([0.9, 0.8]), gt),
        # image 1: its lesion found only at score 0.3, after two false positives
        (
            np.array([[0.0, 0.0, 5, 5], [30, 30, 40, 40], [11, 11, 19, 19]]),
            np.array([0.7, 0.6, 0.3]),
            gt,
        ),
    ]
    m = detector_metrics(results)
    assert m["n_lesions"] == 2 and m["n_images"] == 2
    # curve: 0.9 -> (0 fpi, .5); .8 -> (.5, .5); .7 -> (1, .5); .6 -> (1.5, .5); .3 -> (1.5, 1)
    assert m["recall_at_1fp"] == pytest.approx(0.5)
    assert m["froc"] == pytest.approx((0.5 + 0.5 + 0.5 + 1.0) / 4)
    assert math.isnan(detector_metrics([(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 4)))])["froc"])


def test_model_selection_uses_the_reported_froc_rule() -> None:
    """Training's FROC is hdcnn.evaluation.metrics.froc: same hit rule (centre in box)."""
    gt = np.array([[0.0, 0.0, 10.0, 10.0]])
    # centre (11, 5) lies outside the lesion although IoU = 0.4: a false positive, not a hit
    offset = (np.array([[2.0, 0.0, 20.0, 10.0]]), np.array([0.9]), gt)
    m = detector_metrics([offset])
    assert m["froc"] == 0.0 and m["recall_at_1fp"] == 0.0
    rng = np.random.default_rng(0)
    results = []
    for _ in range(6):
        xy = rng.uniform(0, 80, (5, 2))
        boxes = np.c_[xy, xy + rng.uniform(5, 30, (5, 2))]
        lesions = np.c_[xy[:2] + 3, xy[:2] + 20] if rng.random() < 0.7 else np.zeros((0, 4))
        results.append((boxes, rng.random(5).round(1), lesions))
    reported = froc(
        [{"boxes": b, "scores": s} for b, s, _ in results],
        [g for *_, g in results],
        fp_rates=(0.25, 0.5, 1.0, 2.0),
    )
    m = detector_metrics(results)
    assert m["froc"] == pytest.approx(reported["mean"])
    assert m["recall_at_1fp"] == pytest.approx(reported["1"])
    assert m["n_lesions"] == reported["n_lesions"]


def test_classifier_metrics_and_threshold() -> None:
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    m = classifier_metrics(probs, np.array([0, 1, 0, 1]))
    assert m["auc"] == pytest.approx(0.75) and m["accuracy"] == pytest.approx(0.5)
    assert math.isnan(classifier_metrics(probs, np.array([1, 1, 1, 1]))["auc"])
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    assert threshold_at_sensitivity(scores, 0.6) == pytest.approx(0.7)  # 3 of 5 kept
    assert threshold_at_sensitivity(scores, 0.9) == pytest.approx(0.1)
    assert threshold_at_sensitivity(np.array([]), 0.9) == 0.5


def test_fit_classifier_writes_best_and_last(tmp_path: Path) -> None:
    result = fit(classifier_job(epochs=2), tmp_path, CTX, progress=False)
    assert len(result.history) == 2 and 1 <= result.best_epoch <= 2
    model, ckpt = load_model(tmp_path / "c1_lesion.pt")
    assert ckpt["extra"]["part"] == "c1" and ckpt["extra"]["epoch"] == result.best_epoch
    last = torch.load(tmp_path / "last_c1.pt", weights_only=True)
    assert last["training"]["epoch"] == 2
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), result.model(x))


def test_fit_detector_one_epoch_with_negatives(tmp_path: Path) -> None:
    result = fit(detector_job(epochs=1), tmp_path, CTX, progress=False)
    assert result.history[0]["n_lesions"] == 1
    assert np.isfinite(result.history[0]["train_loss"])
    model, ckpt = load_model(tmp_path / "detector.pt")
    assert ckpt["kind"] == "detector"
    with torch.no_grad():
        out = model([torch.rand(1, 64, 48)])
    assert out[0]["boxes"].shape[1] == 4


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    full = fit(classifier_job(epochs=2), tmp_path / "full", CTX, seed=3, progress=False)
    part = tmp_path / "part"
    first = fit(classifier_job(epochs=2), part, CTX, seed=3, progress=False, stop_after=1)
    assert len(first.history) == 1
    assert load_checkpoint(part / "last_c1.pt")["training"]["epoch"] == 1
    resumed = fit(classifier_job(epochs=2), part, CTX, seed=3, progress=False, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1.0, 2.0]
    a = torch.load(tmp_path / "full" / "last_c1.pt", weights_only=True)
    b = torch.load(part / "last_c1.pt", weights_only=True)
    for key, value in a["model"].items():
        assert torch.allclose(value.float(), b["model"][key].float()), key
    assert full.best_epoch == resumed.best_epoch


def test_resume_rejects_another_parts_state(tmp_path: Path) -> None:
    fit(classifier_job(epochs=1), tmp_path, CTX, progress=False)
    (tmp_path / "last_c1.pt").rename(tmp_path / "last_detector.pt")
    with pytest.raises(CheckpointError, match="last_detector"):
        fit(detector_job(), tmp_path, CTX, progress=False, resume=True)
