"""Preprocessed image cache: cropped, oriented, resized 16-bit PNGs plus geometry.

Reading and preprocessing a full-field mammogram (a 30-60 MB DICOM) takes far longer than a
training step on its model image, so :func:`build_cache` does it once per image:

    cache_dir/cache.json                  format, long side, source manifest root, counts
    cache_dir/manifest.csv                the cached images as a Manifest (boxes in cache pixels)
    cache_dir/images/<key>.png            16-bit grey model image (chest wall on the left)
    cache_dir/images/<key>.json           hdcnn.preprocess.Geometry.to_dict() + source path

``<key>`` is :func:`cache_key` of the record's ``image_path``. Inside the breast mask every
pixel is stored as at least 1 and outside it as 0, so the mask is recovered exactly as
``png > 0``. Each file is written atomically and the JSON last, so an image is finished when
its JSON exists; a rerun skips finished images (resumable). Images are processed in parallel
(``ProcessPoolExecutor``); an unreadable image is reported in the summary, not fatal.

:class:`hdcnn.data.torchdata.DetectionDataset` / ``RoiDataset`` read from the cache with
``cache_dir=...`` (via :func:`load_cached`), resizing when their ``long_side`` differs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from hdcnn.data.manifest import ImageRecord, Lesion, Manifest
from hdcnn.errors import HDCNNError, MammogramError
from hdcnn.preprocess import Geometry, Preprocessed
from hdcnn.utils import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

CACHE_FORMAT = "hdcnn-cache-1"
IMAGES_DIR = "images"


def cache_key(image_path: str) -> str:
    """File stem of a cached image: readable stem of ``image_path`` plus a short hash.

    Args:
        image_path: the record's ``image_path`` exactly as in the manifest.

    Returns:
        e.g. ``"SYN00001_L_CC-3f2a9c0d1e"`` (hash of the whole path, so equal stems in
        different folders do not collide).
    """
    stem = PurePosixPath(str(image_path).replace("\\", "/")).stem
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:60] or "image"
    digest = hashlib.sha1(str(image_path).encode("utf-8")).hexdigest()[:10]
    return f"{safe}-{digest}"


def _paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    folder = cache_dir / IMAGES_DIR
    return folder / f"{key}.png", folder / f"{key}.json"


def encode_model_image(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint16 PNG pixels of a model image: 0 outside ``mask``, at least 1 inside.

    Args:
        image: float32 ``(h, w)`` in ``[0, 1]``.
        mask: bool ``(h, w)`` breast mask.

    Returns:
        uint16 ``(h, w)``.
    """
    scaled = np.round(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)
    return np.where(mask, np.maximum(scaled, 1), 0).astype(np.uint16)


def _cache_one(
    src: str, key: str, out_dir: str, long_side: int, laterality: str | None
) -> tuple[str, str | None]:
    """Preprocess one image into the cache. Runs in a worker process.

    Returns:
        ``(key, None)`` on success, ``(key, reason)`` when the image could not be used.
    """
    from hdcnn.preprocess import preprocess
    from hdcnn.reader import read_mammogram

    png_path, json_path = _paths(Path(out_dir), key)
    try:
        mg = read_mammogram(src)
        pre = preprocess(
            mg.pixels,
            long_side=long_side,
            source=mg.meta.source,
            laterality=laterality or mg.meta.laterality,
        )
    except HDCNNError as exc:
        return key, str(exc)
    except OSError as exc:
        return key, f"{src}: {exc}"
    ok, buf = cv2.imencode(".png", encode_model_image(pre.image, pre.mask))
    if not ok:  # pragma: no cover - cv2 failure on a valid uint16 array
        return key, f"{src}: could not encode the cached PNG"
    atomic_write_bytes(png_path, buf.tobytes())
    info = {"source": src, "long_side": long_side, "geometry": pre.geometry.to_dict()}
    atomic_write_text(json_path, json.dumps(info, indent=1))
    return key, None


def build_cache(
    manifest: Manifest,
    out_dir: str | os.PathLike[str],
    *,
    long_side: int = 1024,
    workers: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Preprocess every image of ``manifest`` into ``out_dir`` (parallel, resumable).

    Args:
        manifest: images to cache (paths resolved with :meth:`Manifest.resolve`).
        out_dir: cache folder (created).
        long_side: longer side of the cached model images in pixels.
        workers: worker processes; ``<= 1`` runs in this process.
        progress: show a tqdm progress bar.

    Returns:
        JSON-ready summary ``{"written": int, "skipped": int, "failed": [{"image_path": str,
        "reason": str}, ...], "cache_dir": str, "long_side": int, "manifest": str}``.
        ``manifest`` is the cache's own ``manifest.csv`` (finished images only, lesion boxes
        mapped to cache pixels; boxes that leave the crop entirely are dropped).

    Raises:
        DatasetError: ``out_dir`` holds a cache of another long side.
    """
    from tqdm import tqdm

    from hdcnn.errors import DatasetError

    if long_side < 8:
        raise ValueError(f"long_side must be at least 8, got {long_side}")
    out = Path(out_dir)
    info_path = out / "cache.json"
    if info_path.is_file():
        old = _read_json(info_path)
        if int(old.get("long_side", long_side)) != long_side:
            raise DatasetError(
                str(out),
                f"holds a cache with long side {old.get('long_side')}, not {long_side}; "
                "use another folder",
            )
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)

    keys = [cache_key(rec.image_path) for rec in manifest.records]
    todo: list[int] = []
    skipped = 0
    for i, key in enumerate(keys):
        if _paths(out, key)[1].is_file():
            skipped += 1
        elif i == keys.index(key):  # the same image listed twice is processed once
            todo.append(i)
    failed: dict[str, str] = {}
    written = 0
    jobs = [
        (
            str(manifest.resolve(manifest.records[i])),
            keys[i],
            str(out),
            long_side,
            manifest.records[i].laterality,
        )
        for i in todo
    ]
    bar = tqdm(total=len(jobs), desc="cache", unit="img", disable=not progress or None)
    try:
        if workers <= 1 or len(jobs) <= 1:
            results = (_cache_one(*job) for job in jobs)
            for key, reason in results:
                written, failed = _count(key, reason, written, failed)
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(_cache_one, *job) for job in jobs]
                for fut in as_completed(futures):
                    key, reason = fut.result()
                    written, failed = _count(key, reason, written, failed)
                    bar.update(1)
    finally:
        bar.close()

    cached = _cache_manifest(manifest, keys, out)
    cached.save_csv(out / "manifest.csv")
    summary: dict[str, Any] = {
        "written": written,
        "skipped": skipped,
        "failed": [
            {"image_path": manifest.records[keys.index(k)].image_path, "reason": r}
            for k, r in failed.items()
        ],
        "cache_dir": str(out),
        "long_side": long_side,
        "manifest": str(out / "manifest.csv"),
    }
    atomic_write_text(
        info_path,
        json.dumps(
            {
                "format": CACHE_FORMAT,
                "long_side": long_side,
                "source_root": str(manifest.root) if manifest.root else None,
                "images": len(cached),
                "failed": len(failed),
            },
            indent=1,
        ),
    )
    for item in summary["failed"]:
        logger.warning("not cached: %s", item["reason"])
    logger.info("cache %s: %d written, %d skipped, %d failed", out, written, skipped, len(failed))
    return summary


def _count(
    key: str, reason: str | None, written: int, failed: dict[str, str]
) -> tuple[int, dict[str, str]]:
    if reason is None:
        return written + 1, failed
    failed[key] = reason
    return written, failed


def _cache_manifest(manifest: Manifest, keys: list[str], out: Path) -> Manifest:
    """The finished images as a Manifest of cached PNGs, boxes mapped to cache pixels."""
    records: list[ImageRecord] = []
    for rec, key in zip(manifest.records, keys, strict=True):
        png_path, json_path = _paths(out, key)
        if not json_path.is_file():
            continue
        geometry = Geometry.from_dict(_read_json(json_path)["geometry"], source=str(json_path))
        lesions: list[Lesion] = []
        if rec.lesions:
            boxes = geometry.to_model(np.array([les.box for les in rec.lesions]), clip=True)
            for les, box in zip(rec.lesions, boxes, strict=True):
                if box[2] - box[0] >= 1 and box[3] - box[1] >= 1:
                    lesions.append(replace(les, box=tuple(float(v) for v in box)))
        records.append(replace(rec, image_path=f"{IMAGES_DIR}/{png_path.name}", lesions=lesions))
    return Manifest(records, root=out)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MammogramError(str(path), f"unreadable cache file: {exc}") from exc
    if not isinstance(data, dict):
        raise MammogramError(str(path), "cache file does not hold a JSON object")
    return data


def load_cached(
    cache_dir: str | os.PathLike[str], image_path: str, *, long_side: int | None = None
) -> Preprocessed | None:
    """The cached model image of a manifest ``image_path``, or None when it is not cached.

    Args:
        cache_dir: folder written by :func:`build_cache`.
        image_path: the record's ``image_path`` exactly as in the source manifest.
        long_side: resize to this longer side (the geometry follows); None keeps the cached
            size.

    Returns:
        :class:`hdcnn.preprocess.Preprocessed` (float32 image in ``[0, 1]``, bool mask, geometry
        mapping original pixels to the returned image) or None.

    Raises:
        MammogramError: the cached files exist but cannot be read.
    """
    png_path, json_path = _paths(Path(cache_dir), cache_key(image_path))
    if not json_path.is_file() or not png_path.is_file():
        return None
    geometry = Geometry.from_dict(_read_json(json_path)["geometry"], source=str(json_path))
    raw = cv2.imread(str(png_path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 2 or raw.shape != tuple(geometry.output_size):
        raise MammogramError(str(png_path), "cached image is unreadable or does not fit its JSON")
    mask = raw > 0
    image = raw.astype(np.float32) / 65535.0
    if long_side is not None and max(raw.shape) != long_side:
        crop_h, crop_w = geometry.crop_size  # same size rule as hdcnn.preprocess.preprocess
        factor = long_side / max(crop_h, crop_w)
        size = (max(1, round(crop_w * factor)), max(1, round(crop_h * factor)))
        factor = size[0] / raw.shape[1]
        interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, size, interpolation=interp)
        mask = cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=interp) >= 128
        image = np.where(mask, image, 0.0).astype(np.float32)
        geometry = replace(geometry, output_size=(size[1], size[0]))
    return Preprocessed(image=image, mask=mask, geometry=geometry)
