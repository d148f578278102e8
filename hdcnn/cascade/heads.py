"""Crop heads: the classifiers that turn ROI crops into P(lesion) and P(malignant | lesion).

Part of :mod:`hdcnn.cascade` (see its docstring for the rules).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from hdcnn.config import CROP_SOURCES  # noqa: F401  (re-exported by hdcnn.cascade)
from hdcnn.errors import CheckpointError

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- crop heads


# CROP_SOURCES (where crops are cut) is a cascade.json setting: hdcnn.config owns it


def _shares_trunk(a: nn.Module, b: nn.Module) -> bool:
    """Both are feature classifiers over the same trunk and pooled stages."""
    from hdcnn.nets.features import FeatureClassifier

    return (
        isinstance(a, FeatureClassifier)
        and isinstance(b, FeatureClassifier)
        and a.trunk is b.trunk
        and a.config.stages == b.config.stages
    )


class CropHead(Protocol):
    """Turns ROI crops into ``(P(lesion), P(malignant | lesion))``."""

    crop_size: int
    files: dict[str, str]  # weights file name -> sha256
    crop_source: str  # one of CROP_SOURCES

    def probabilities(self, crops: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``crops`` float32 ``(N, 1, s, s)``, ``N >= 1`` -> two float32 ``(N,)`` arrays
        (:meth:`Cascade.classify` answers ``N = 0`` itself)."""
        ...

    def cam_models(self) -> dict[str, tuple[nn.Module, int]]:
        """Grad-CAM targets: stage name -> (classifier, class index to explain)."""
        ...


def _class_index(ckpt: Mapping[str, Any], name: str, path: Path) -> int:
    classes = [str(c) for c in ckpt.get("classes", [])]
    if name not in classes:
        raise CheckpointError(str(path), f"expected a class {name!r}, found classes {classes}")
    return classes.index(name)


def _input_size(ckpt: Mapping[str, Any], path: Path) -> tuple[int, int]:
    size = (ckpt.get("config") or {}).get("input_size")
    if not size or len(size) != 2:
        raise CheckpointError(str(path), "classifier config has no input_size (h, w)")
    return int(size[0]), int(size[1])


@dataclass
class HierarchicalCropHead:
    """Classifier 1 (normal vs lesion) then classifier 2 (benign vs malignant)."""

    c1: nn.Module
    c2: nn.Module
    lesion_index: int
    malignant_index: int
    crop_size: int
    files: dict[str, str]
    crop_source: str = "model"

    def probabilities(self, crops: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        if _shares_trunk(self.c1, self.c2):  # one trunk pass, two linear heads
            feats = self.c1.features(crops)
            logits1, logits2 = self.c1.head(feats), self.c2.head(feats)
        else:
            logits1, logits2 = self.c1(crops), self.c2(crops)
        p1 = torch.softmax(logits1.detach().float(), dim=1)[:, self.lesion_index]
        p2 = torch.softmax(logits2.detach().float(), dim=1)[:, self.malignant_index]
        return p1.numpy().astype(np.float32), p2.numpy().astype(np.float32)

    def cam_models(self) -> dict[str, tuple[nn.Module, int]]:
        """``{"c1": (C1, lesion class), "c2": (C2, malignant class)}``."""
        return {"c1": (self.c1, self.lesion_index), "c2": (self.c2, self.malignant_index)}


@dataclass
class FlatCropHead:
    """One 3-class crop classifier (normal, benign, malignant): the det-flat concept."""

    model: nn.Module
    indices: tuple[int, int, int]  # normal, benign, malignant
    crop_size: int
    files: dict[str, str]
    crop_source: str = "model"

    def probabilities(self, crops: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        p = torch.softmax(self.model(crops).detach().float(), dim=1).numpy()
        _, ib, im = self.indices
        lesion = p[:, ib] + p[:, im]
        mal = np.where(lesion > 0, p[:, im] / np.maximum(lesion, 1e-12), 0.0)
        return lesion.astype(np.float32), mal.astype(np.float32)

    def cam_models(self) -> dict[str, tuple[nn.Module, int]]:
        """``{"flat": (classifier, malignant class)}``."""
        return {"flat": (self.model, self.indices[2])}
