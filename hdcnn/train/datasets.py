"""Glue between the data package's datasets and the seven trainable parts.

These wrappers do not read images themselves: they relabel, filter, resize and memoise items of
:class:`hdcnn.data.torchdata.DetectionDataset` / ``RoiDataset``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from hdcnn.nets.classifier import prepare_input
from hdcnn.terms import Label, Part

log = logging.getLogger(__name__)

#: RoiDataset labels: 0 normal tissue, 1 benign lesion, 2 malignant lesion -> part labels
CROP_LABELS: dict[Part, dict[int, int]] = {
    Part.C1: {0: 0, 1: 1, 2: 1},
    Part.C2: {1: 0, 2: 1},
    Part.CROP_FLAT: {0: 0, 1: 1, 2: 2},
}

#: image labels -> whole-image part labels (images with other labels are left out)
WHOLE_LABELS: dict[Part, dict[Label, int]] = {
    Part.WHOLE_FLAT: {Label.NORMAL: 0, Label.BENIGN: 1, Label.MALIGNANT: 2},
    Part.WHOLE_ABNORMAL: {Label.NORMAL: 0, Label.BENIGN: 1, Label.MALIGNANT: 1},
    Part.WHOLE_MALIGNANCY: {Label.BENIGN: 0, Label.MALIGNANT: 1},
}


def dataset_labels(ds: Dataset) -> list[int]:
    """Integer labels of a classification dataset of ``(x, label)`` items.

    Uses ``ds.labels`` when the dataset offers it (no image is read), else reads every item.
    """
    labels = getattr(ds, "labels", None)
    if labels is not None:
        return [int(v) for v in labels]
    return [int(ds[i][1]) for i in range(len(ds))]  # type: ignore[arg-type]


class Relabeled(Dataset):
    """Items ``indices`` of a ``(x, label)`` dataset with labels mapped through ``mapping``.

    Args:
        base: dataset of ``(x FloatTensor (1, h, w), label int)``.
        mapping: base label -> new label; items whose label is not a key are left out.
        base_labels: labels of ``base`` (from :func:`dataset_labels`).
        indices: optional subset of base indices to keep (before the mapping filter).
    """

    def __init__(
        self,
        base: Dataset,
        mapping: Mapping[int, int],
        base_labels: Sequence[int],
        indices: Sequence[int] | None = None,
    ) -> None:
        candidates = range(len(base_labels)) if indices is None else indices
        self.base = base
        self.mapping = dict(mapping)
        self.indices = [int(i) for i in candidates if int(base_labels[i]) in self.mapping]
        self.labels = [self.mapping[int(base_labels[i])] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, _ = self.base[self.indices[i]]
        return x, self.labels[i]


class WholeImages(Dataset):
    """Whole model images as classifier inputs.

    Args:
        detection: a ``DetectionDataset`` over ``records`` (same order); item
            ``(image (1, h, w), target)``.
        labels: one label per record, ``None`` to leave the image out.
        input_size: ``(H, W)`` the images are resized to.

    Items: ``(FloatTensor (1, H, W), int label)``.
    """

    def __init__(
        self, detection: Dataset, labels: Sequence[int | None], input_size: tuple[int, int]
    ) -> None:
        self.detection = detection
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.indices = [i for i, v in enumerate(labels) if v is not None]
        self.labels = [int(labels[i]) for i in self.indices]  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, _ = self.detection[self.indices[i]]
        return prepare_input(image, self.input_size), self.labels[i]


class Memoized(Dataset):
    """Keeps every item of a deterministic (non-augmenting) dataset in memory after first use.

    Validation sets are read once per part instead of once per epoch.
    """

    def __init__(self, base: Dataset) -> None:
        self.base = base
        self._items: dict[int, Any] = {}
        labels = getattr(base, "labels", None)
        if labels is not None:
            self.labels = labels

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        if i not in self._items:
            self._items[i] = self.base[i]
        return self._items[i]


def class_weights(labels: Sequence[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency cross-entropy weights ``(C,)`` float32, mean 1 over present classes."""
    counts = torch.bincount(torch.as_tensor(list(labels), dtype=torch.int64), minlength=num_classes)
    counts = counts[:num_classes].float()
    weights = torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp(min=1)), 0.0)
    present = weights > 0
    if present.any():
        weights = weights / weights[present].mean()
    return torch.where(present, weights, torch.ones_like(weights))


class BoxCrops(Dataset):
    """ROI crops at given boxes of model images, all with one label (detector hard negatives).

    Args:
        detection: a ``DetectionDataset`` with ``train=False`` (item ``(image (1, h, w), _)``).
        boxes: ``(image index, [x1, y1, x2, y2] model pixels)`` pairs.
        label: label of every crop.
        crop_size: crop side in pixels.
        context: crop side / box side (:func:`hdcnn.roi.crop_rois`).
        train: the crop augmentation of :class:`hdcnn.data.torchdata.RoiDataset`
            (:meth:`hdcnn.data.torchdata.Augment.crop`).

    Items: ``(FloatTensor (1, crop_size, crop_size), label)``.
    """

    def __init__(
        self,
        detection: Dataset,
        boxes: Sequence[tuple[int, Sequence[float]]],
        *,
        label: int,
        crop_size: int,
        context: float,
        train: bool = False,
    ) -> None:
        from hdcnn.data.torchdata import Augment

        self.detection = detection
        self.boxes = [(int(i), [float(v) for v in box]) for i, box in boxes]
        self.labels = [int(label)] * len(self.boxes)
        self.crop_size = int(crop_size)
        self.context = float(context)
        self.train = train
        self.augment = Augment()

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        import numpy as np

        from hdcnn.roi import crop_rois

        index, box = self.boxes[i]
        image, _ = self.detection[index]
        crop = crop_rois(
            image[0].numpy(), np.array([box]), size=self.crop_size, context=self.context
        )[0]
        x = torch.from_numpy(crop)[None]
        if self.train:
            x = self.augment.crop(x)
        return x.contiguous(), self.labels[i]


class Joined(Dataset):
    """Concatenation of ``(x, label)`` datasets that keeps a ``labels`` list."""

    def __init__(self, parts: Sequence[Dataset]) -> None:
        self.parts = [p for p in parts if len(p) > 0]  # type: ignore[arg-type]
        self.offsets: list[int] = []
        self.labels: list[int] = []
        for p in self.parts:
            self.offsets.append(len(self.labels))
            self.labels.extend(dataset_labels(p))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Any:
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = max(j for j, off in enumerate(self.offsets) if off <= i)
        return self.parts[k][i - self.offsets[k]]
