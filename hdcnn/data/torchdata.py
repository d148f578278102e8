"""Lazy PyTorch datasets over a :class:`~hdcnn.data.manifest.Manifest`.

Both datasets read **one image per** ``__getitem__`` (``read_mammogram`` + ``preprocess``, or
the preprocessed cache of :mod:`hdcnn.data.cache` when ``cache_dir`` is given), so memory does
not grow with the number of images. An optional LRU holds at most ``cache_images`` decoded
model images per dataset object (per DataLoader worker).

- :class:`DetectionDataset` -- model image + lesion boxes in model pixels (Faster R-CNN
  targets). A lesion box is mapped with :meth:`Geometry.to_model` and clipped to the model
  image; it is dropped when less than half of its area, or less than 1 pixel of width or
  height, remains inside (it lay mostly outside the breast crop).
- :class:`RoiDataset` -- square crops (:func:`hdcnn.roi.crop_rois`) for the crop classifiers:
  1 = benign lesion, 2 = malignant lesion, 0 = normal tissue sampled inside the breast mask
  away from every lesion. Its item list comes from the manifest alone (no pixels read).

Augmentation (``train=True`` only) uses ``torchvision.transforms.v2`` so boxes move with the
image; see :class:`Augment`. Random draws come from torch's RNG (seed it, or rely on the
DataLoader's per-worker seeds); with ``train=False`` every item is deterministic.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from hdcnn.config import LONG_SIDE
from hdcnn.data.manifest import ImageRecord, Manifest
from hdcnn.preprocess import Preprocessed, preprocess
from hdcnn.roi import DEFAULT_CONTEXT, crop_rois
from hdcnn.terms import Label

logger = logging.getLogger(__name__)

#: RoiDataset class indices.
ROI_NORMAL, ROI_BENIGN, ROI_MALIGNANT = 0, 1, 2
_ROI_LABEL = {Label.BENIGN: ROI_BENIGN, Label.MALIGNANT: ROI_MALIGNANT}
#: A detection box is kept when at least this fraction of its area lies inside the model image.
MIN_VISIBLE_FRACTION = 0.5


@dataclass(frozen=True)
class Augment:
    """Training augmentation (defaults are mild: mammograms have a canonical layout).

    Attributes:
        hflip: probability of a left-right flip. Default 0: every model image has the chest
            wall on the left (``preprocess``), so a flip makes images the model never sees.
        vflip: probability of an up-down flip (a valid breast layout).
        degrees: maximum rotation of the small random affine, in degrees.
        translate: maximum shift as a fraction of width/height.
        scale: range of the random zoom.
        brightness: multiplicative brightness factor range ``1 +- brightness``.
        contrast: contrast factor range ``1 +- contrast`` (about the breast mean).
        gamma: range of the gamma exponent.
    """

    hflip: float = 0.0
    vflip: float = 0.5
    degrees: float = 5.0
    translate: float = 0.03
    scale: tuple[float, float] = (0.95, 1.05)
    brightness: float = 0.1
    contrast: float = 0.1
    gamma: tuple[float, float] = (0.8, 1.25)

    def geometric(self) -> v2.Compose:
        """Flips + small affine on ``(Image, BoundingBoxes)``; boxes left empty are dropped."""
        return v2.Compose(
            [
                v2.RandomHorizontalFlip(self.hflip),
                v2.RandomVerticalFlip(self.vflip),
                v2.RandomAffine(
                    degrees=self.degrees,
                    translate=(self.translate, self.translate),
                    scale=self.scale,
                    fill=0.0,
                ),
                v2.ClampBoundingBoxes(),
                v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=None),
            ]
        )

    def intensity(self, image: torch.Tensor) -> torch.Tensor:
        """Random gamma, contrast and brightness of a ``(1, h, w)`` image in ``[0, 1]``.

        Zero (background) pixels stay zero, so the breast outline is unchanged.
        """
        breast = image > 0
        gamma = _uniform(*self.gamma)
        out = image.clamp(0, 1) ** gamma
        if breast.any():
            mean = out[breast].mean()
            out = (out - mean) * _uniform(1 - self.contrast, 1 + self.contrast) + mean
        out = out * _uniform(1 - self.brightness, 1 + self.brightness)
        return torch.where(breast, out.clamp(0, 1), torch.zeros_like(out))

    def crop(self, crop: torch.Tensor) -> torch.Tensor:
        """Random left-right and up-down flips (each with probability 0.5), a random quarter
        turn and :meth:`intensity` of a square ``(1, s, s)`` ROI crop.

        Unlike a whole model image, a crop has no canonical layout, so every flip and turn is
        a valid example. The augmentation of every crop dataset (:class:`RoiDataset`, the
        training package's detector hard negatives).
        """
        if torch.rand(()) < 0.5:
            crop = crop.flip(-1)
        if torch.rand(()) < 0.5:
            crop = crop.flip(-2)
        crop = torch.rot90(crop, int(torch.randint(0, 4, ())), dims=(-2, -1))
        return self.intensity(crop)

    def draw_flip_gamma(self, rng: np.random.Generator) -> tuple[bool, float]:
        """The random draws of :meth:`flip_gamma` (drawn apart so that processes that share a
        generator stay in step while each applies only its own images' draws)."""
        flip = bool(rng.random() < self.vflip)
        lo, hi = self.gamma
        return flip, float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

    def flip_gamma(
        self, image: torch.Tensor, boxes: torch.Tensor, draw: tuple[bool, float]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The pretrained detector's augmentation (``hdcnn cv``): an up-down mirror and a gamma
        (:meth:`draw_flip_gamma`) of a ``(1, h, w)`` model image and its ``(N, 4)`` boxes; the
        chest wall stays on the left."""
        flip, gamma = draw
        if flip:
            h = image.shape[-2]
            image = image.flip(-2)
            if len(boxes):
                boxes = boxes[:, [0, 3, 2, 1]] * torch.tensor(
                    [1.0, -1.0, 1.0, -1.0]
                ) + torch.tensor([0.0, h, 0.0, h])
        return image.clamp(0, 1) ** gamma, boxes


def _uniform(lo: float, hi: float) -> float:
    return float(torch.empty(()).uniform_(lo, hi)) if hi > lo else float(lo)


class _ModelImages:
    """Loads model images for manifest records, from the originals or a cache; small LRU."""

    def __init__(
        self,
        manifest: Manifest,
        long_side: int,
        cache_dir: str | os.PathLike[str] | None,
        cache_images: int,
    ) -> None:
        if long_side < 8:
            raise ValueError(f"long_side must be at least 8, got {long_side}")
        self.manifest = manifest
        self.long_side = int(long_side)
        self.cache_dir = cache_dir
        self.capacity = max(0, int(cache_images))
        self._lru: OrderedDict[int, Preprocessed] = OrderedDict()

    def __getitem__(self, index: int) -> Preprocessed:
        hit = self._lru.get(index)
        if hit is not None:
            self._lru.move_to_end(index)
            return hit
        pre = self._load(self.manifest.records[index])
        if self.capacity:
            self._lru[index] = pre
            while len(self._lru) > self.capacity:
                self._lru.popitem(last=False)
        return pre

    def _load(self, record: ImageRecord) -> Preprocessed:
        if self.cache_dir is not None:
            from hdcnn.data.cache import load_cached

            cached = load_cached(self.cache_dir, record.image_path, long_side=self.long_side)
            if cached is not None:
                return cached
            logger.debug(
                "%s not in cache %s; reading the original", record.image_path, self.cache_dir
            )
        from hdcnn.reader import read_mammogram

        mg = read_mammogram(self.manifest.resolve(record))
        return preprocess(
            mg.pixels,
            long_side=self.long_side,
            source=mg.meta.source,
            laterality=record.laterality or mg.meta.laterality,
        )


def visible_lesions(
    record: ImageRecord, pre: Preprocessed, *, min_visible: float = MIN_VISIBLE_FRACTION
) -> tuple[np.ndarray, list[int]]:
    """A record's lesion boxes in model pixels, clipped, and the indices of the kept lesions.

    A lesion is kept when at least 1 pixel of width and height and ``min_visible`` of its area
    remain inside the model image (the from-scratch datasets use
    :data:`MIN_VISIBLE_FRACTION`; the pretrained recipe of ``hdcnn cv`` keeps every lesion with
    a pixel inside, ``min_visible=0``).

    Returns:
        ``(boxes, kept)``: float32 ``(N, 4)`` ``[x1, y1, x2, y2]`` model pixels and the kept
        lesions' positions in ``record.lesions``.
    """
    if not record.lesions:
        return np.zeros((0, 4), dtype=np.float32), []
    mapped = pre.geometry.to_model(np.array([les.box for les in record.lesions]))
    clipped = pre.geometry.to_model(np.array([les.box for les in record.lesions]), clip=True)
    area = (mapped[:, 2] - mapped[:, 0]) * (mapped[:, 3] - mapped[:, 1])
    w, h = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    keep = (w >= 1) & (h >= 1) & (w * h >= min_visible * np.maximum(area, 1e-9))
    return clipped[keep].astype(np.float32), [int(k) for k in np.flatnonzero(keep)]


def model_boxes(record: ImageRecord, pre: Preprocessed) -> tuple[np.ndarray, list[Label]]:
    """A record's lesion boxes in model pixels, clipped; mostly-outside boxes dropped
    (:func:`visible_lesions` with :data:`MIN_VISIBLE_FRACTION`).

    Returns:
        ``(boxes, labels)``: float32 ``(N, 4)`` ``[x1, y1, x2, y2]`` model pixels and the kept
        lesions' labels.
    """
    boxes, kept = visible_lesions(record, pre)
    return boxes, [record.lesions[k].label for k in kept]


class DetectionDataset(Dataset):
    """Model images with lesion boxes for the Faster R-CNN detector.

    Args:
        manifest: the images (boxes in original pixels).
        long_side: longer side of the model image (``preprocess``).
        train: apply :class:`Augment` (random) when True.
        cache_dir: read preprocessed images from this :func:`hdcnn.data.cache.build_cache`
            folder (falls back to the original file for an image not in it).
        augment: augmentation settings for ``train=True``.
        cache_images: keep up to this many decoded model images in an LRU (0 = none).

    Item ``i``:
        ``(image, target)``: image float32 tensor ``(1, h, w)`` in ``[0, 1]``; target
        ``{"boxes": float32 (N, 4) model pixels [x1, y1, x2, y2], "labels": int64 (N,) all 1,
        "image_id": int i}``. A normal image has ``boxes`` of shape ``(0, 4)``.
    """

    def __init__(
        self,
        manifest: Manifest,
        *,
        long_side: int = LONG_SIDE,
        train: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        augment: Augment | None = None,
        cache_images: int = 0,
    ) -> None:
        self.manifest = manifest
        self.train = train
        self.augment = augment or Augment()
        self._images = _ModelImages(manifest, long_side, cache_dir, cache_images)
        self._geometric = self.augment.geometric()

    def __len__(self) -> int:
        return len(self.manifest.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        pre = self._images[index]
        boxes, _ = model_boxes(self.manifest.records[index], pre)
        # a copy: the LRU keeps pre.image, callers may modify the tensor in place
        image = torch.from_numpy(np.array(pre.image, dtype=np.float32))[None]
        box_t = torch.from_numpy(boxes).reshape(-1, 4)
        if self.train:
            h, w = pre.image.shape
            img_tv = tv_tensors.Image(image)
            box_tv = tv_tensors.BoundingBoxes(box_t, format="XYXY", canvas_size=(h, w))
            img_tv, box_tv = self._geometric(img_tv, box_tv)
            image = self.augment.intensity(img_tv.as_subclass(torch.Tensor))
            box_t = box_tv.as_subclass(torch.Tensor).reshape(-1, 4)
        target = {
            "boxes": box_t.to(torch.float32),
            "labels": torch.ones(len(box_t), dtype=torch.int64),
            "image_id": index,
        }
        return image.to(torch.float32), target


def collate_detection(
    batch: list[tuple[torch.Tensor, dict[str, Any]]],
) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """DataLoader ``collate_fn`` for :class:`DetectionDataset`: images of different sizes.

    Returns:
        ``(images, targets)``: lists, as torchvision detection models take them.
    """
    images = [item[0] for item in batch]
    targets = [item[1] for item in batch]
    return images, targets


@dataclass(frozen=True)
class RoiItem:
    """One crop of a :class:`RoiDataset`, known from the manifest alone.

    Attributes:
        image_index: record index in the manifest.
        box: lesion box in original pixels, or None for a normal-tissue crop (its box is drawn
            inside the breast mask, away from lesions, when the item is loaded).
        label: 0 normal tissue, 1 benign, 2 malignant.
        draw: index of the normal-tissue draw on this image (0 for lesions).
    """

    image_index: int
    box: tuple[float, float, float, float] | None
    label: int
    draw: int = 0


class RoiDataset(Dataset):
    """Square crops for the crop classifiers: lesions and normal tissue.

    Args:
        manifest: the images (boxes in original pixels). Lesions labelled unknown are skipped.
        crop_size: side of each returned crop in pixels.
        long_side: longer side of the model image the crops are cut from.
        train: jitter lesion crops (shift and size) and flip/rotate/intensity-augment crops.
        cache_dir: see :class:`DetectionDataset`.
        normals_per_image: normal-tissue crops per image (every image, normal or not).
        context: crop side / box side (:func:`hdcnn.roi.crop_rois`).
        jitter: maximum shift (fraction of the box side) and size change in train mode.
        seed: seed of the normal-tissue boxes in eval mode (train mode draws fresh ones).
        cache_images: LRU size of decoded model images (crops of one image are adjacent).

    Item ``i``:
        ``(crop, label)``: float32 tensor ``(1, crop_size, crop_size)`` and int label
        0 = normal tissue, 1 = benign lesion, 2 = malignant lesion.
    """

    def __init__(
        self,
        manifest: Manifest,
        *,
        crop_size: int = 96,
        long_side: int = LONG_SIDE,
        train: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        normals_per_image: int = 1,
        context: float = DEFAULT_CONTEXT,
        jitter: float = 0.15,
        seed: int = 0,
        cache_images: int = 4,
    ) -> None:
        if crop_size < 1:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        self.manifest = manifest
        self.crop_size = int(crop_size)
        self.train = train
        self.context = context
        self.jitter = jitter
        self.seed = seed
        self.augment = Augment()
        self._images = _ModelImages(manifest, long_side, cache_dir, cache_images)
        self.items: list[RoiItem] = []
        sides: list[float] = []
        for i, record in enumerate(manifest.records):
            for les in record.lesions:
                if les.label in _ROI_LABEL:
                    self.items.append(RoiItem(i, les.box, _ROI_LABEL[les.label]))
                    sides.append(max(les.box[2] - les.box[0], les.box[3] - les.box[1]))
            self.items.extend(RoiItem(i, None, ROI_NORMAL, d) for d in range(normals_per_image))
        #: lesion sides in original pixels: normal-tissue boxes copy their size distribution
        self._lesion_sides = np.array(sorted(sides), dtype=np.float64)

    @property
    def labels(self) -> list[int]:
        """Label of every item (for class weights or a balanced sampler)."""
        return [item.label for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def _rng(self, index: int) -> np.random.Generator:
        if self.train:
            return np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
        return np.random.default_rng(np.random.SeedSequence([self.seed, index]))

    def crop_box(self, index: int, pre: Preprocessed) -> np.ndarray:
        """The model-pixel box of item ``index`` on its preprocessed image.

        Returns:
            float64 ``(4,)`` ``[x1, y1, x2, y2]`` model pixels (before the context margin).
        """
        item = self.items[index]
        rng = self._rng(index)
        record = self.manifest.records[item.image_index]
        if item.box is not None:
            box = pre.geometry.to_model(np.array([item.box]))[0]
            if self.train and self.jitter > 0:
                side = max(box[2] - box[0], box[3] - box[1], 1.0)
                shift = rng.uniform(-self.jitter, self.jitter, 2) * side
                grow = rng.uniform(1 - self.jitter, 1 + self.jitter)
                cx, cy = (box[0] + box[2]) / 2 + shift[0], (box[1] + box[3]) / 2 + shift[1]
                hw, hh = (box[2] - box[0]) * grow / 2, (box[3] - box[1]) * grow / 2
                box = np.array([cx - hw, cy - hh, cx + hw, cy + hh])
            return box
        lesions, _ = model_boxes(record, pre)
        return _normal_box(pre, lesions, self._normal_side(pre, rng), rng)

    def _normal_side(self, pre: Preprocessed, rng: np.random.Generator) -> float:
        scale = min(pre.geometry.scale)
        if len(self._lesion_sides):
            side = float(rng.choice(self._lesion_sides)) * scale
        else:
            side = rng.uniform(0.04, 0.15) * max(pre.image.shape)
        return float(np.clip(side, 8.0, 0.5 * min(pre.image.shape)))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        item = self.items[index]
        pre = self._images[item.image_index]
        box = self.crop_box(index, pre)
        crop = crop_rois(pre.image, box[None], size=self.crop_size, context=self.context)[0]
        tensor = torch.from_numpy(crop)[None]
        if self.train:
            tensor = self.augment.crop(tensor)
        return tensor.contiguous(), item.label


def _normal_box(
    pre: Preprocessed, lesions: np.ndarray, side: float, rng: np.random.Generator, tries: int = 64
) -> np.ndarray:
    """A ``side``-sized box centred inside the breast mask, not overlapping any lesion.

    The lesion boxes are grown by half a side so the crop (with its context) stays clear of
    them. Centres are drawn from mask pixels whose whole box lies mostly inside the breast;
    after ``tries`` failures the candidate with the least lesion overlap is used.
    """
    mask = pre.mask
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    half = side / 2.0
    if len(xs) == 0:  # no breast at all: centre of the image
        return np.array([w / 2 - half, h / 2 - half, w / 2 + half, h / 2 + half])
    grown = lesions.astype(np.float64).copy()
    if len(grown):
        grown[:, :2] -= half
        grown[:, 2:] += half
    best, best_score = None, np.inf
    for _ in range(tries):
        k = int(rng.integers(len(xs)))
        cx, cy = xs[k] + rng.uniform(0, 1), ys[k] + rng.uniform(0, 1)
        box = np.array([cx - half, cy - half, cx + half, cy + half])
        overlap = _overlap(box, grown)
        x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
        x1, y1 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
        inside = mask[y0:y1, x0:x1].mean() if (x1 > x0 and y1 > y0) else 0.0
        score = overlap + (1.0 - inside)
        if overlap == 0 and inside >= 0.8:
            return box
        if score < best_score:
            best, best_score = box, score
    return best  # type: ignore[return-value]


def _overlap(box: np.ndarray, others: np.ndarray) -> float:
    """Largest intersection area of ``box`` with any row of ``others`` (0 when none)."""
    if len(others) == 0:
        return 0.0
    iw = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    ih = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    return float(np.max(np.clip(iw, 0, None) * np.clip(ih, 0, None)))
