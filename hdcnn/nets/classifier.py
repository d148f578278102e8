"""One compact CNN family for every classifier of the cascade.

Used for Classifier 1 (normal tissue vs lesion crops), Classifier 2 (benign vs malignant crops),
the flat crop classifier (normal/benign/malignant) and the whole-image models (flat 3-class,
normal-vs-abnormal, benign-vs-malignant on the whole model image resized to ``input_size``).

Architecture: ``len(widths)`` stages of two conv-norm-ReLU blocks followed by 2x2 max-pooling
(no pooling after the last stage), global average pooling, dropout, a linear layer.
The last conv block is exposed as ``model.cam_layer`` for Grad-CAM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hdcnn.nets._config import config_from_dict


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything needed to rebuild a classifier; stored in its checkpoint.

    Attributes:
        num_classes: number of outputs (logits), in the order of the checkpoint's ``classes``.
        input_size: ``(h, w)`` the network is trained on; inputs are resized to it with
            :func:`prepare_input` (crops: ``(64, 64)``; whole images e.g. ``(256, 160)``).
        widths: channels of each stage; every stage but the last halves the resolution.
        dropout: dropout probability before the final linear layer.
        norm: ``"group"`` (GroupNorm, 8 channels per group: the same in training and inference,
            robust to the small batches and short runs of this project) or ``"batch"``.
    """

    num_classes: int
    input_size: tuple[int, int] = (64, 64)
    widths: tuple[int, ...] = (16, 32, 64, 128)
    dropout: float = 0.3
    norm: str = "group"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierConfig:
        """Rebuild from ``dataclasses.asdict`` output (lists become tuples; unknown keys fail).

        Raises:
            ValueError: a key that is not a field.
        """
        return config_from_dict(cls, data, "classifier")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(max(1, channels // 8), channels)
    raise ValueError(f"unknown norm {kind!r}; expected 'group' or 'batch'")


def _block(cin: int, cout: int, norm: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        _norm(norm, cout),
        nn.ReLU(inplace=False),  # not in-place: Grad-CAM hooks read this output
    )


class CompactCNN(nn.Module):
    """``(B, 1, h, w)`` float in ``[0, 1]`` -> logits ``(B, num_classes)``.

    Attributes:
        cam_layer: the last conv-norm-ReLU block; its output ``(B, widths[-1], h', w')`` is the
            feature map Grad-CAM should use.
    """

    def __init__(self, cfg: ClassifierConfig) -> None:
        super().__init__()
        if cfg.num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {cfg.num_classes}")
        self.config = cfg
        stages: list[nn.Module] = []
        cin = 1
        for i, width in enumerate(cfg.widths):
            stages.append(_block(cin, width, cfg.norm))
            stages.append(_block(width, width, cfg.norm))
            if i < len(cfg.widths) - 1:
                stages.append(nn.MaxPool2d(2))
            cin = width
        self.features = nn.Sequential(*stages)
        self.cam_layer: nn.Module = stages[-1]
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cin, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x float ``(B, 1, h, w)`` in ``[0, 1]``. Returns: logits ``(B, C)``."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected input of shape (B, 1, h, w), got {tuple(x.shape)}")
        feats = self.features(x - 0.5)
        pooled = F.adaptive_avg_pool2d(feats, 1).flatten(1)
        return self.head(self.dropout(pooled))


def build_classifier(cfg: ClassifierConfig) -> CompactCNN:
    """Build a randomly initialised classifier (see :class:`CompactCNN` for the contract)."""
    return CompactCNN(cfg)


def prepare_input(image: np.ndarray | torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
    """Resize one image or crop to a classifier's input.

    Args:
        image: float ``(h, w)`` or ``(1, h, w)`` in ``[0, 1]`` (numpy or torch).
        input_size: ``(H, W)`` target size.

    Returns:
        FloatTensor ``(1, H, W)`` (bilinear, no aspect-ratio padding: whole model images already
        share the canonical orientation and a similar aspect ratio).
    """
    t = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
    t = t.float()
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[0] != 1:
        raise ValueError(f"expected an image (h, w) or (1, h, w), got {tuple(t.shape)}")
    h, w = (int(v) for v in input_size)
    if tuple(t.shape[1:]) == (h, w):
        return t
    return F.interpolate(t[None], size=(h, w), mode="bilinear", align_corners=False)[0]
