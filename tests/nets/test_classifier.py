from __future__ import annotations

import numpy as np
import pytest
import torch

from hdcnn.nets.classifier import ClassifierConfig, build_classifier, prepare_input


@pytest.mark.parametrize(("num_classes", "size"), [(2, (64, 64)), (3, (64, 40))])
def test_forward_backward_shapes(num_classes: int, size: tuple[int, int]) -> None:
    model = build_classifier(ClassifierConfig(num_classes, size, widths=(8, 16, 32)))
    x = torch.rand(4, 1, *size)
    logits = model(x)
    assert logits.shape == (4, num_classes)
    logits.sum().backward()
    assert model.head.weight.grad is not None


def test_cam_layer_is_last_conv_block() -> None:
    model = build_classifier(ClassifierConfig(2, widths=(8, 16))).eval()
    seen: list[torch.Size] = []
    model.cam_layer.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(torch.rand(2, 1, 64, 64))
    assert seen == [torch.Size([2, 16, 32, 32])]


def test_rejects_wrong_input_and_class_count() -> None:
    model = build_classifier(ClassifierConfig(2, widths=(8,)))
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match="2 classes"):
        build_classifier(ClassifierConfig(1))


def test_prepare_input_resizes_numpy_and_tensor() -> None:
    img = np.random.default_rng(0).random((100, 60), dtype=np.float32)
    out = prepare_input(img, (32, 20))
    assert out.shape == (1, 32, 20) and out.dtype == torch.float32
    same = prepare_input(torch.from_numpy(img)[None], (100, 60))
    assert torch.equal(same[0], torch.from_numpy(img))
    with pytest.raises(ValueError):
        prepare_input(np.zeros((2, 3, 4, 5)), (8, 8))


def test_group_norm_default_behaves_the_same_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = build_classifier(ClassifierConfig(2, (32, 32), widths=(8, 16), dropout=0.0))
    x = torch.rand(4, 1, 32, 32)
    model.train()
    a = model(x)
    model.eval()
    assert torch.allclose(a, model(x), atol=1e-6)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    with pytest.raises(ValueError, match="norm"):
        build_classifier(ClassifierConfig(2, norm="layer"))
