"""The fine-tuned crop network of the ``fine-tuned`` ablation (hdcnn.train.finetune)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdcnn.train.finetune import CropNet, FineTuneConfig, finetune, probabilities

torch.set_num_threads(1)


def _crops(n: int = 24, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """SYNTHETIC crops: noise, with a bright disc on the lesion crops (labels 1, 2, -1)."""
    rng = np.random.default_rng(0)
    crops = rng.uniform(0.2, 0.4, size=(n, size, size)).astype(np.float32)
    labels = np.array([0, 0, 1, 2, 0, -1] * (n // 6))
    yy, xx = np.mgrid[:size, :size]
    disc = np.hypot(yy - size / 2, xx - size / 2) < size / 5
    crops[labels != 0] += 0.5 * disc
    return crops, labels


def test_finetune_gives_probabilities_per_crop_and_is_deterministic() -> None:
    crops, labels = _crops()
    cfg = FineTuneConfig(epochs=1, batch=8)
    a = probabilities(finetune(crops, labels, cfg), crops)
    b = probabilities(finetune(crops, labels, cfg), crops)
    for p in a:
        assert p.shape == (len(crops),) and p.dtype == np.float32
        assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)
    np.testing.assert_allclose(a[1], b[1], atol=1e-5)


def test_finetune_updates_the_pretrained_trunk_but_keeps_its_batchnorm_statistics() -> None:
    crops, labels = _crops()
    start = CropNet((1, 2, 3))
    net = finetune(crops, labels, FineTuneConfig(epochs=1, batch=8))
    before = dict(start.trunk.named_parameters())
    moved = [n for n, p in net.trunk.named_parameters() if not torch.equal(p, before[n])]
    assert moved, "the trunk is trained, not frozen"
    bn_start = {n: b for n, b in start.trunk.named_buffers() if n.endswith("running_mean")}
    for name, buf in net.trunk.named_buffers():
        if name.endswith("running_mean"):
            assert torch.equal(buf, bn_start[name]), name


@pytest.mark.parametrize("labels", [np.zeros(6, int), np.ones(6, int)])
def test_finetune_needs_lesion_and_normal_crops(labels: np.ndarray) -> None:
    with pytest.raises(ValueError, match="both lesion and normal"):
        finetune(np.zeros((6, 16, 16), np.float32), labels, FineTuneConfig(epochs=1))


def test_probabilities_of_no_crop_are_empty() -> None:
    p_lesion, p_mal = probabilities(CropNet((1, 2, 3)).eval(), np.zeros((0, 16, 16), np.float32))
    assert p_lesion.shape == p_mal.shape == (0,)
