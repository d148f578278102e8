from __future__ import annotations

import pytest
import torch

from hdcnn.nets.detector import DetectorConfig, build_detector

TINY = DetectorConfig(long_side=128, widths=(8, 8, 16, 16), fpn_channels=16, representation_size=32)


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {
            "boxes": torch.tensor([[20.0, 30.0, 50.0, 60.0]]),
            "labels": torch.ones(1, dtype=torch.int64),
        },
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)},
    ]


def test_train_forward_backward_with_normal_image() -> None:
    torch.manual_seed(0)
    model = build_detector(TINY).train()
    images = [torch.rand(1, 128, 80), torch.rand(1, 128, 96)]
    losses = model(images, _targets())
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_eval_returns_boxes_in_model_pixels() -> None:
    model = build_detector(TINY).eval()
    with torch.no_grad():
        out = model([torch.rand(1, 128, 80)])
    assert len(out) == 1
    boxes = out[0]["boxes"]
    assert boxes.ndim == 2 and boxes.shape[1] == 4
    assert out[0]["scores"].shape[0] == boxes.shape[0]
    if len(boxes):  # not rescaled: boxes lie inside the (128 x 80) input
        assert float(boxes[:, 2].max()) <= 80.0 + 1e-3
        assert float(boxes[:, 3].max()) <= 128.0 + 1e-3


def test_default_detector_is_compact() -> None:
    model = build_detector(DetectorConfig())
    n_bytes = sum(p.numel() * 4 for p in model.state_dict().values() if p.is_floating_point())
    assert n_bytes < 15e6


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="backbone"):
        build_detector(DetectorConfig(backbone="resnet9000"))
    with pytest.raises(ValueError, match="anchor_sizes"):
        build_detector(DetectorConfig(anchor_sizes=(16, 32)))


def test_mobilenet_backbone_runs_on_one_channel() -> None:
    cfg = DetectorConfig(
        long_side=128, backbone="mobilenet_v3_small", fpn_channels=16, representation_size=32
    )
    model = build_detector(cfg).train()
    losses = model([torch.rand(1, 128, 96)], _targets()[:1])
    assert torch.isfinite(sum(losses.values()))


def test_config_round_trips_through_dict() -> None:
    from dataclasses import asdict

    data = asdict(TINY)
    data["anchor_sizes"] = list(data["anchor_sizes"])
    assert DetectorConfig.from_dict(data) == TINY
    with pytest.raises(ValueError, match="unknown"):
        DetectorConfig.from_dict({"bogus": 1})


def test_pretrained_backbone_from_file_only(tmp_path) -> None:
    from torchvision.models import mobilenet_v3_small

    from hdcnn.errors import CheckpointError

    cfg = DetectorConfig(
        long_side=128, backbone="mobilenet_v3_small", fpn_channels=16, representation_size=32
    )
    net = mobilenet_v3_small(weights=None)
    with torch.no_grad():
        net.features[0][0].weight.fill_(0.25)
    path = tmp_path / "mnv3.pth"
    torch.save(net.state_dict(), path)
    model = build_detector(cfg, pretrained_backbone=path)
    first = next(p for n, p in model.backbone.named_parameters() if n.endswith("0.0.weight"))
    assert torch.all(first == 0.25)
    with pytest.raises(CheckpointError, match="not found"):
        build_detector(cfg, pretrained_backbone=tmp_path / "missing.pth")
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="mobilenet_v3_small"):
        build_detector(cfg, pretrained_backbone=tmp_path / "other.pth")
    with pytest.raises(ValueError, match="mobilenet_v3_small"):
        build_detector(TINY, pretrained_backbone=path)


def test_group_norm_backbone_option() -> None:
    from dataclasses import replace

    model = build_detector(replace(TINY, norm="group")).train()
    losses = model([torch.rand(1, 128, 80)], _targets()[:1])
    assert torch.isfinite(sum(losses.values()))
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    with pytest.raises(ValueError, match="norm"):
        build_detector(replace(TINY, norm="instance"))
