"""Tiny in-memory datasets and jobs for the training tests (no image files)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from hdcnn.nets.classifier import ClassifierConfig, build_classifier
from hdcnn.nets.detector import DetectorConfig, build_detector
from hdcnn.train.engine import Job


class Blobs(Dataset):
    """``(x (1, 32, 32), label)``: class 1 has a bright square, class 0 noise only."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 1, 32, 32, generator=g) * 0.3
        self.labels = [i % 2 for i in range(n)]
        for i, label in enumerate(self.labels):
            if label:
                self.x[i, 0, 10:20, 12:22] += 0.6

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], self.labels[i]


class BoxImages(Dataset):
    """``(image (1, 64, 48), target)``: even items hold one bright lesion, odd ones none."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            img = torch.rand(1, 64, 48, generator=g) * 0.3
            if i % 2 == 0:
                img[0, 20:36, 14:30] += 0.6
                boxes = torch.tensor([[14.0, 20.0, 30.0, 36.0]])
            else:
                boxes = torch.zeros((0, 4))
            target = {
                "boxes": boxes,
                "labels": torch.ones(len(boxes), dtype=torch.int64),
                "image_id": i,
            }
            self.items.append((img, target))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def collate(batch):
    return tuple(zip(*batch, strict=True))


CLS_CFG = ClassifierConfig(2, (32, 32), widths=(4, 8))
DET_CFG = DetectorConfig(
    long_side=64,
    anchor_sizes=(8, 16, 32, 64, 128),
    widths=(4, 4, 8, 8),
    fpn_channels=8,
    representation_size=16,
    rpn_pre_nms_top_n_train=100,
    rpn_post_nms_top_n_train=50,
    rpn_pre_nms_top_n_test=50,
    rpn_post_nms_top_n_test=20,
    box_batch_size_per_image=16,
)


def classifier_job(epochs: int = 2) -> Job:
    return Job(
        part="c1",
        file="c1_lesion.pt",
        kind="classifier",
        classes=("normal", "lesion"),
        model_config=CLS_CFG,
        build=lambda: build_classifier(CLS_CFG),
        train_set=Blobs(24, 0),
        val_set=Blobs(8, 1),
        epochs=epochs,
        lr=5e-3,
        batch_size=8,
    )


def detector_job(epochs: int = 1) -> Job:
    return Job(
        part="detector",
        file="detector.pt",
        kind="detector",
        classes=("lesion",),
        model_config=DET_CFG,
        build=lambda: build_detector(DET_CFG),
        train_set=BoxImages(4, 0),
        val_set=BoxImages(2, 1),
        epochs=epochs,
        lr=1e-3,
        batch_size=2,
        collate=collate,
    )
