"""Crop features of the pretrained recipe: which crops (lesion, normal tissue, candidates), cut
as the cascade cuts them, and their pooled frozen-trunk features.

Every function reads its images from the :class:`~hdcnn.train.images.ImageSource` one at a time
(the original pixels only while that image's crops are cut). Under ``torchrun`` the per-image
work of :func:`crop_features` and :func:`whole_features` is sharded across the processes and
gathered, so every process returns the full arrays.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from hdcnn.evaluation.metrics import lesion_hits
from hdcnn.nets.classifier import prepare_input
from hdcnn.nets.efficientnet import LiteTrunk, pooled_features
from hdcnn.nets.features import FeatureConfig
from hdcnn.roi import crop_rois, crop_rois_full_resolution
from hdcnn.terms import Label
from hdcnn.train.distributed import DistContext, gather, shard
from hdcnn.train.images import Image, ImageSource, Item

if TYPE_CHECKING:
    from hdcnn.train.recipe import CVConfig

#: Crop-label index: 0 normal, 1 benign, 2 malignant (-1: a lesion of unknown grade).
LABEL_INDEX = {Label.NORMAL: 0, Label.BENIGN: 1, Label.MALIGNANT: 2}


class FeatureExtractor:
    """Crops of model boxes (as the cascade cuts them) -> pooled frozen-trunk features."""

    def __init__(
        self,
        cfg: CVConfig,
        device: torch.device,
        *,
        pretrained: bool = True,
        crop_source: str | None = None,
        stages: tuple[int, ...] | None = None,
        backbone: str | None = None,
    ):
        from hdcnn.nets.features import shared_trunk

        self.cfg = cfg
        self.crop_source = crop_source or cfg.cascade.crop_source
        self.device = device
        # the shipped heads' feature layout unless a row asks for other trunk stages or trunk
        features = FeatureConfig(num_classes=2)
        if stages is not None:
            features = replace(features, stages=stages)
        if backbone is not None:
            features = replace(features, backbone=backbone)
        self.stages, self.n_features = features.stages, features.n_features
        if pretrained:
            self.trunk: torch.nn.Module = shared_trunk(True, features.backbone)
            if self.device.type != "cpu":  # the process-wide trunk stays on the CPU
                self.trunk = copy.deepcopy(self.trunk).to(self.device)
        else:
            torch.manual_seed(cfg.seed)
            self.trunk = LiteTrunk(pretrained=False, name=features.backbone)
            self.trunk = self.trunk.eval().to(self.device)

    def crops(self, image: Image, boxes: np.ndarray) -> np.ndarray:
        c = self.cfg.cascade
        if self.crop_source == "original":
            return crop_rois_full_resolution(
                image.pixels, image.prep.geometry, boxes, size=c.crop_size, context=c.context
            )
        return crop_rois(image.prep.image, boxes, size=c.crop_size, context=c.context)

    @torch.inference_mode()
    def features(self, crops: np.ndarray, batch: int = 64) -> np.ndarray:
        out = []
        for s in range(0, len(crops), batch):
            x = torch.from_numpy(np.ascontiguousarray(crops[s : s + batch]))[:, None]
            out.append(pooled_features(self.trunk(x.to(self.device)), self.stages).cpu().numpy())
        if not out:
            return np.zeros((0, self.n_features), np.float32)
        return np.concatenate(out).astype(np.float32)

    @torch.inference_mode()
    def whole(self, image: Image) -> np.ndarray:
        x = prepare_input(image.prep.image, self.cfg.cascade.whole_size)[None].to(self.device)
        features = pooled_features(self.trunk(x), self.stages).cpu().numpy()
        return features[0].astype(np.float32)


def _jittered(box: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = max(x2 - x1, 2.0), max(y2 - y1, 2.0)
    out = [box]
    for _ in range(n):
        s = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
        cx = (x1 + x2) / 2 + rng.uniform(-0.15, 0.15) * w
        cy = (y1 + y2) / 2 + rng.uniform(-0.15, 0.15) * h
        out.append(np.array([cx - s * w / 2, cy - s * h / 2, cx + s * w / 2, cy + s * h / 2]))
    return np.array(out, dtype=np.float32)


def normal_tissue_boxes(
    mask: np.ndarray, lesions: np.ndarray, rng: np.random.Generator, n: int
) -> np.ndarray:
    """``n`` random square boxes (12 to 80 px, log-uniform) centred on breast-mask pixels,
    none hitting a lesion by the FROC rule: the pretrained recipe's C1 negatives."""
    ys, xs = np.nonzero(mask)
    boxes: list[np.ndarray] = []
    for _ in range(50 * max(n, 1)):
        if len(boxes) >= n or len(ys) == 0:
            break
        j = int(rng.integers(len(ys)))
        side = float(np.exp(rng.uniform(np.log(12), np.log(80))))
        cx, cy = float(xs[j]), float(ys[j])
        box = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)
        if len(lesions) and lesion_hits(box[None], lesions).any():
            continue
        boxes.append(box)
    return np.array(boxes, dtype=np.float32).reshape(-1, 4)


def static_crops(source: ImageSource, cfg: CVConfig) -> dict[str, np.ndarray]:
    """Fold-independent crop boxes: jittered lesion boxes and random normal-tissue boxes.

    Returns arrays ``image (N,)``, ``boxes (N, 4)``, ``label (N,)`` (0 normal, 1 benign,
    2 malignant, -1 unknown), ``mirror (N,)`` (use the vertically mirrored crop).
    """
    rng = np.random.default_rng(cfg.seed + 1)
    image, boxes, label, mirror = [], [], [], []
    for item in source.items:
        for box, lab in zip(item.gt, item.gt_labels, strict=True):
            jit = _jittered(box, rng, cfg.lesion_jitter)
            for m in (False, True):
                image += [item.index] * len(jit)
                boxes.append(jit)
                label += [LABEL_INDEX.get(lab, -1)] * len(jit)
                mirror += [m] * len(jit)
        mask = source.model(item.index).mask
        nb = normal_tissue_boxes(mask, item.gt, rng, cfg.normal_crops)
        image += [item.index] * len(nb)
        boxes.append(nb)
        label += [0] * len(nb)
        mirror += [False] * len(nb)
    return {
        "image": np.array(image, np.int64),
        "boxes": np.concatenate(boxes).astype(np.float32).reshape(-1, 4),
        "label": np.array(label, np.int64),
        "mirror": np.array(mirror, bool),
    }


def per_image(
    source: ImageSource,
    indices: Sequence[int],
    work: Callable[[Image], Any],
    ctx: DistContext,
    *,
    desc: str,
    progress: bool,
) -> dict[int, Any]:
    """``work(image)`` of every image of ``indices``, each process doing its share; every
    process gets every result."""
    mine = shard(sorted({int(i) for i in indices}), ctx)
    local = [
        (i, work(source.image(i))) for i in tqdm(mine, desc=desc, disable=not progress, leave=False)
    ]
    return dict(gather(local, ctx))


def crops_by_image(
    ext: FeatureExtractor,
    source: ImageSource,
    image: np.ndarray,
    boxes: np.ndarray,
    mirror: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(rows, crops)`` per image: the crops of ``boxes[rows]`` on that image, cut as the
    cascade cuts them; rows with ``mirror`` set are mirrored vertically."""
    for idx in np.unique(image):
        rows = np.flatnonzero(image == idx)
        yield rows, _cut(ext, source.image(int(idx)), boxes[rows], mirror, rows)


def _cut(
    ext: FeatureExtractor,
    image: Image,
    boxes: np.ndarray,
    mirror: np.ndarray | None,
    rows: np.ndarray,
) -> np.ndarray:
    crops = ext.crops(image, boxes)
    if mirror is not None:
        crops[mirror[rows]] = crops[mirror[rows]][:, ::-1, :]
    return crops


def crop_features(
    ext: FeatureExtractor,
    source: ImageSource,
    image: np.ndarray,
    boxes: np.ndarray,
    mirror: np.ndarray | None = None,
    *,
    ctx: DistContext,
    desc: str,
    progress: bool,
) -> np.ndarray:
    """Features of the crops ``boxes[i]`` on image ``image[i]``, grouped per image."""

    def work(im: Image) -> np.ndarray:
        rows = np.flatnonzero(image == im.item.index)
        return ext.features(_cut(ext, im, boxes[rows], mirror, rows))

    feats = np.zeros((len(image), ext.n_features), np.float32)
    done = per_image(source, image, work, ctx, desc=desc, progress=progress)
    for idx, x in done.items():
        feats[image == idx] = x
    return feats


def whole_features(
    ext: FeatureExtractor, source: ImageSource, ctx: DistContext, *, progress: bool
) -> dict[str, np.ndarray]:
    """Whole-model-image features ``x`` and labels ``y`` of every image."""
    done = per_image(
        source, range(len(source.items)), ext.whole, ctx, desc="whole images", progress=progress
    )
    x = np.stack([done[i] for i in range(len(source.items))])
    y = np.array([LABEL_INDEX.get(it.label, -1) for it in source.items])
    return {"x": x, "y": y}


def candidate_labels(item: Item, boxes: np.ndarray) -> np.ndarray:
    """Each box's label: the worst label of the lesions it hits (FROC rule), 0 for none."""
    hits = lesion_hits(boxes, item.gt)
    out = []
    for j in range(len(boxes)):
        labs = [LABEL_INDEX.get(item.gt_labels[g], -1) for g in np.flatnonzero(hits[j])]
        out.append(max(labs) if labs else 0)
    return np.array(out, np.int64)
