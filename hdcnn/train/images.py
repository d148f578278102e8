"""The training wing's one image source: manifest records -> model images, lesion boxes and,
when a crop needs them, the original pixels.

Nothing is held per image beyond a few numbers (:class:`Item`): the first pass
(:meth:`ImageSource.prepare`) reads every image once, preprocesses it (or takes its model image
from the preprocessed cache of ``python -m hdcnn dataset cache``) and spills the exact float32
model image, its mask and geometry to ``<out>/images/<key>.npz``. Every later stage reads the
model image back from there when it needs it (:meth:`ImageSource.image`), and the original
pixels from the dataset itself, so peak memory does not grow with the number of images.
Under ``torchrun`` the first pass is sharded across ranks; each spill file is written by the
rank that read the image (files of distinct images, written atomically).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from tqdm import tqdm

from hdcnn.data.manifest import ImageRecord, Manifest
from hdcnn.data.torchdata import visible_lesions
from hdcnn.preprocess import Geometry, Preprocessed
from hdcnn.terms import Label
from hdcnn.train.distributed import DistContext, barrier, shard
from hdcnn.utils import atomic_path

log = logging.getLogger(__name__)

#: Folder of the spilled model images inside a run folder.
IMAGES_DIR = "images"


@dataclass(frozen=True)
class ImageFacts:
    """What the run keeps of an image's header (for the training-domain notice and spots);
    spilled as ``asdict`` and read back through :meth:`of`."""

    format: str
    original_size: tuple[int, int]
    bit_depth: int
    pixel_spacing: tuple[float, float] | None

    @staticmethod
    def of(meta: Any) -> ImageFacts:
        spacing = meta.pixel_spacing
        return ImageFacts(
            str(meta.format),
            (int(meta.original_size[0]), int(meta.original_size[1])),
            int(meta.bit_depth),
            None if spacing is None else (float(spacing[0]), float(spacing[1])),
        )


@dataclass(frozen=True)
class Item:
    """One developer image as the run knows it between reads (no pixels).

    Attributes:
        index: position in the manifest.
        record: the manifest record (boxes in original pixels).
        gt: float32 ``(G, 4)`` lesion boxes, model pixels (clipped; tiny leftovers dropped).
        gt_labels / gt_kinds: per lesion.
        meta: header facts.
    """

    index: int
    record: ImageRecord
    gt: np.ndarray
    gt_labels: tuple[Label, ...]
    gt_kinds: tuple[str, ...]
    meta: ImageFacts

    @property
    def patient(self) -> str:
        return str(self.record.patient_id)

    @property
    def label(self) -> Label:
        return Label(self.record.label)

    def gt_of_kind(self, kind: str) -> np.ndarray:
        """The lesion boxes (model pixels) of one lesion kind; ``"all"``: every box."""
        keep = [kind in ("all", k) for k in self.gt_kinds]
        return self.gt[np.array(keep, dtype=bool).reshape(-1)]


class Image:
    """One image read when needed: :attr:`prep` from the spill, :attr:`pixels` from the
    dataset. Drop it after use; nothing else keeps its pixels."""

    def __init__(self, source: ImageSource, item: Item) -> None:
        self.source, self.item = source, item

    @cached_property
    def prep(self) -> Preprocessed:
        return self.source.model(self.item.index)

    @cached_property
    def pixels(self) -> np.ndarray:
        """float32 ``(H, W)`` original image in ``[0, 1]``."""
        return self.source.original(self.item.index)


class ImageSource:
    """Model images, lesion boxes and original pixels of a manifest, read when needed.

    Args:
        manifest: the dataset.
        long_side: model-image long side.
        spill_dir: where the exact model images are kept between stages.
        cache_dir: optional preprocessed cache (``python -m hdcnn dataset cache``) to take the
            model images from instead of preprocessing the originals (its 16-bit PNGs round
            the pixels: figures differ slightly from a run without it).
    """

    def __init__(
        self,
        manifest: Manifest,
        long_side: int,
        spill_dir: Path,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.manifest = manifest
        self.long_side = int(long_side)
        self.spill_dir = Path(spill_dir)
        self.cache_dir = cache_dir
        self.items: list[Item] = []

    def __len__(self) -> int:
        return len(self.manifest.records)

    def _spill_path(self, index: int) -> Path:
        from hdcnn.data.cache import cache_key

        return self.spill_dir / f"{cache_key(self.manifest.records[index].image_path)}.npz"

    def prepare(self, ctx: DistContext, *, progress: bool) -> list[Item]:
        """Read every image not yet spilled (this rank's shard), then load every :class:`Item`.

        Raises:
            HDCNNError: an unreadable image (named).
        """
        todo = [i for i in shard(range(len(self)), ctx) if not self._spill_path(i).is_file()]
        for i in tqdm(todo, desc="read", disable=not progress, leave=False):
            self._spill(i)
        barrier(ctx)
        self.items = [self._item(i) for i in range(len(self))]
        return self.items

    def _spill(self, index: int) -> None:
        from hdcnn.preprocess import preprocess
        from hdcnn.reader import read_mammogram

        record = self.manifest.records[index]
        mammo = read_mammogram(self.manifest.resolve(record))
        prep = None
        if self.cache_dir is not None:
            from hdcnn.data.cache import load_cached

            prep = load_cached(self.cache_dir, record.image_path, long_side=self.long_side)
        if prep is None:
            prep = preprocess(
                mammo.pixels,
                long_side=self.long_side,
                source=mammo.meta.source,
                laterality=mammo.meta.laterality or record.laterality,
            )
        # the shipped recipe keeps every lesion with at least a pixel inside the model image
        boxes, kept = visible_lesions(record, prep, min_visible=0.0)
        facts = ImageFacts.of(mammo.meta)
        info = {
            "geometry": prep.geometry.to_dict(),
            "labels": [str(record.lesions[k].label) for k in kept],
            "kinds": [str(record.lesions[k].kind) for k in kept],
            "meta": asdict(facts),
        }
        with atomic_path(self._spill_path(index)) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                image=prep.image.astype(np.float32, copy=False),
                mask=prep.mask,
                gt=boxes.astype(np.float32).reshape(-1, 4),
                info=np.array(json.dumps(info)),
            )

    def _item(self, index: int) -> Item:
        path = self._spill_path(index)
        with np.load(path, allow_pickle=False) as data:
            info, gt = json.loads(str(data["info"])), data["gt"]
        facts = ImageFacts.of(SimpleNamespace(**info["meta"]))
        labels = tuple(Label(v) for v in info["labels"])
        return Item(index, self.manifest.records[index], gt, labels, tuple(info["kinds"]), facts)

    def model(self, index: int) -> Preprocessed:
        """The model image of image ``index`` (exactly as the first pass made it)."""
        path = self._spill_path(index)
        with np.load(path, allow_pickle=False) as data:
            info = json.loads(str(data["info"]))
            image, mask = data["image"], data["mask"]
        geometry = Geometry.from_dict(info["geometry"], source=str(path))
        return Preprocessed(image=image, mask=mask, geometry=geometry)

    def original(self, index: int) -> np.ndarray:
        """The original pixels of image ``index``, read from the dataset now."""
        from hdcnn.reader import read_mammogram

        record = self.manifest.records[index]
        return read_mammogram(self.manifest.resolve(record)).pixels

    def image(self, index: int) -> Image:
        """Image ``index``, read when its pixels are first asked for."""
        return Image(self, self.items[index])
