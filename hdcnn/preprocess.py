"""Mammogram preprocessing: breast segmentation, crop, canonical orientation, resize.

Every step is a function of its own so it can be tested and reused:

1. :func:`segment_breast` - boolean breast mask (Otsu threshold on a smoothed, downsampled copy,
   largest connected component, holes filled). Film labels, markers and scanner noise are
   separate, smaller components and are dropped.
2. :func:`breast_box` - crop box around the mask plus a small margin.
3. :func:`chest_wall_side` - which side of the crop the chest wall (breast base) lies on, from
   the mask's column profile.
4. :func:`preprocess` - all of the above, then a left-right flip so the chest wall is against
   the LEFT edge, and a resize keeping the aspect ratio (longer side = ``long_side``).

The :class:`Geometry` of a preprocessed image maps boxes exactly between original pixels (the
file as read by :func:`hdcnn.reader.read_mammogram`) and model pixels, in both directions.
Boxes are ``[x1, y1, x2, y2]`` float pixel-edge coordinates (pixel ``i`` spans ``[i, i + 1)``),
x to the right, y down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from hdcnn.config import LONG_SIDE
from hdcnn.errors import MammogramError

log = logging.getLogger(__name__)


#: Long side (pixels) of the downsampled copy on which the breast is segmented.
WORK_SIDE = 512
#: A breast must cover at least this fraction of the image.
MIN_BREAST_FRACTION = 0.02
#: Threshold = max(OTSU_FRACTION * Otsu threshold, BACKGROUND_FLOOR) on the normalised copy.
#: Half the Otsu level keeps the faint, thin breast periphery near the skin line; the floor
#: keeps noisy film background out when Otsu is fooled by a mostly dark image.
OTSU_FRACTION = 0.5
BACKGROUND_FLOOR = 0.05
#: |chest-wall score| below this is a tie, broken by the laterality (see :func:`preprocess`).
SIDE_TIE = 0.15
#: Opening disc diameter, as a fraction of the working copy's long side.
OPEN_FRACTION = 0.02


@dataclass(frozen=True)
class Geometry:
    """How a model image was cut out of the original image, and the exact box mapping.

    Original -> model: subtract the crop origin, mirror x (``x -> crop_w - x``) when
    ``flipped``, then scale x by ``output_w / crop_w`` and y by ``output_h / crop_h``.

    Attributes:
        original_size: ``(H, W)`` of the original image.
        crop: ``(x0, y0, x1, y1)`` crop box in original pixels, ``x1``/``y1`` exclusive.
        flipped: whether the crop was mirrored left-right (chest wall was on the right).
        output_size: ``(h, w)`` of the model image.
    """

    original_size: tuple[int, int]
    crop: tuple[int, int, int, int]
    flipped: bool
    output_size: tuple[int, int]

    @property
    def crop_size(self) -> tuple[int, int]:
        """``(crop_h, crop_w)`` in original pixels."""
        x0, y0, x1, y1 = self.crop
        return (y1 - y0, x1 - x0)

    @property
    def scale(self) -> tuple[float, float]:
        """``(sx, sy)``: model pixels per original pixel along x and along y."""
        crop_h, crop_w = self.crop_size
        return (self.output_size[1] / crop_w, self.output_size[0] / crop_h)

    def to_model(self, boxes: np.ndarray, *, clip: bool = False) -> np.ndarray:
        """Map boxes from original pixels to model pixels.

        Args:
            boxes: ``(N, 4)`` ``[x1, y1, x2, y2]`` in original pixels (any real dtype).
            clip: clip the result to the model image ``[0, w] x [0, h]``.

        Returns:
            float64 ``(N, 4)`` ``[x1, y1, x2, y2]`` in model pixels (x1 <= x2 kept after a flip).
        """
        b = _as_boxes(boxes)
        x0, y0, _, _ = self.crop
        crop_w = self.crop_size[1]
        sx, sy = self.scale
        xa, xb = b[:, 0] - x0, b[:, 2] - x0
        if self.flipped:
            xa, xb = crop_w - xb, crop_w - xa
        out = np.stack([xa * sx, (b[:, 1] - y0) * sy, xb * sx, (b[:, 3] - y0) * sy], axis=1)
        if clip:
            h, w = self.output_size
            out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
            out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
        return out

    def to_original(self, boxes: np.ndarray, *, clip: bool = True) -> np.ndarray:
        """Map boxes from model pixels back to original pixels (exact inverse of :meth:`to_model`).

        Args:
            boxes: ``(N, 4)`` ``[x1, y1, x2, y2]`` in model pixels (any real dtype).
            clip: clip the result to the original image ``[0, W] x [0, H]`` (default).

        Returns:
            float64 ``(N, 4)`` ``[x1, y1, x2, y2]`` in original pixels.
        """
        b = _as_boxes(boxes)
        x0, y0, _, _ = self.crop
        crop_w = self.crop_size[1]
        sx, sy = self.scale
        xa, xb = b[:, 0] / sx, b[:, 2] / sx
        if self.flipped:
            xa, xb = crop_w - xb, crop_w - xa
        out = np.stack([xa + x0, b[:, 1] / sy + y0, xb + x0, b[:, 3] / sy + y0], axis=1)
        if clip:
            big_h, big_w = self.original_size
            out[:, [0, 2]] = out[:, [0, 2]].clip(0, big_w)
            out[:, [1, 3]] = out[:, [1, 3]].clip(0, big_h)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain-type form (lists of ints and a bool)."""
        return {
            "original_size": [int(v) for v in self.original_size],
            "crop": [int(v) for v in self.crop],
            "flipped": bool(self.flipped),
            "output_size": [int(v) for v in self.output_size],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "geometry") -> Geometry:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            MammogramError: ``d`` lacks a key or holds values of the wrong shape.
        """
        try:
            orig = tuple(int(v) for v in d["original_size"])
            crop = tuple(int(v) for v in d["crop"])
            out = tuple(int(v) for v in d["output_size"])
            flipped = d["flipped"]
        except (KeyError, TypeError, ValueError) as exc:
            raise MammogramError(source, f"invalid preprocessing geometry {d!r}: {exc}") from exc
        if len(orig) != 2 or len(crop) != 4 or len(out) != 2 or not isinstance(flipped, bool):
            raise MammogramError(source, f"invalid preprocessing geometry {d!r}")
        x0, y0, x1, y1 = crop
        if not (0 <= x0 < x1 <= orig[1] and 0 <= y0 < y1 <= orig[0] and min(out) > 0):
            raise MammogramError(source, f"inconsistent preprocessing geometry {d!r}")
        return cls(original_size=orig, crop=crop, flipped=flipped, output_size=out)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Preprocessed:
    """A model-ready image.

    Attributes:
        image: float32 ``(h, w)`` in ``[0, 1]``, chest wall against the LEFT edge, pixels
            outside the breast mask set to 0 (labels and markers removed).
        mask: bool ``(h, w)`` breast mask on the model image.
        geometry: mapping between original and model pixels.
    """

    image: np.ndarray
    mask: np.ndarray
    geometry: Geometry


def _as_boxes(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {b.shape}")
    return b


def _check_image(image: np.ndarray, source: str) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 2:
        raise MammogramError(source, f"expected a 2-D grey image, got shape {img.shape}")
    if img.shape[0] < 8 or img.shape[1] < 8:
        raise MammogramError(source, f"image of {img.shape[0]}x{img.shape[1]} pixels is too small")
    if img.dtype == bool or not np.issubdtype(img.dtype, np.number):
        raise MammogramError(source, f"expected a numeric image, got dtype {img.dtype}")
    img = img.astype(np.float32, copy=False)
    if not np.isfinite(img).all():
        raise MammogramError(source, "image contains NaN or infinite values")
    return img


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions of uint8 ``mask`` (0/1) that do not touch the border."""
    padded = np.pad(mask, 1).astype(np.uint8)
    flood = padded.copy()
    ff_mask = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(flood, ff_mask, (0, 0), 1)  # (0, 0) is padding, so background
    holes = flood == 0
    padded[holes] = 1
    return padded[1:-1, 1:-1]


def segment_breast(image: np.ndarray, *, source: str = "image") -> np.ndarray:
    """Boolean breast mask of a mammogram.

    The image is downsampled (INTER_AREA) to a long side of :data:`WORK_SIDE`, smoothed,
    normalised to ``[0, 1]`` and thresholded at ``max(0.5 * Otsu, 0.05)``. An opening (disc of
    2 % of the long side) cuts thin film-edge strips and bridges to labels; the largest
    connected component is kept, its outline restored from the unopened threshold within one
    disc, holes filled, and the mask scaled back to the original size.

    Args:
        image: float ``(H, W)`` mammogram, bright = dense (any real dtype is accepted).
        source: name used in error messages.

    Returns:
        bool ``(H, W)`` mask, True on the breast.

    Raises:
        MammogramError: not a 2-D numeric image, non-finite values, an empty or constant image,
            or a largest bright region covering less than :data:`MIN_BREAST_FRACTION`.
    """
    img = _check_image(image, source)
    big_h, big_w = img.shape
    lo, hi = float(img.min()), float(img.max())
    if hi - lo < 1e-6:
        raise MammogramError(source, "no breast found (the image is empty or constant)")

    factor = min(1.0, WORK_SIDE / max(big_h, big_w))
    small_w, small_h = max(1, round(big_w * factor)), max(1, round(big_h * factor))
    small = cv2.resize(img, (small_w, small_h), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (5, 5), 0)
    small = (small - lo) / (hi - lo)
    small8 = np.clip(small * 255.0 + 0.5, 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(small8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    level = max(OTSU_FRACTION * otsu / 255.0, BACKGROUND_FLOOR)
    fg = (small > level).astype(np.uint8)
    # Opening with a disc ~2 % of the long side cuts thin film-edge strips and bridges to
    # markers; the chosen component then gets back its own outline (within the disc) below.
    k = 2 * max(1, round(OPEN_FRACTION * max(small_h, small_w) / 2)) + 1
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    opened = cv2.morphologyEx(fg, cv2.MORPH_OPEN, disc)

    n, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    if n <= 1:
        raise MammogramError(source, "no breast found (nothing brighter than the background)")
    areas = stats[1:, cv2.CC_STAT_AREA]
    best = 1 + int(np.argmax(areas))
    fraction = float(areas[best - 1]) / float(small_w * small_h)
    if fraction < MIN_BREAST_FRACTION:
        raise MammogramError(
            source,
            f"no breast found (largest bright region covers {fraction:.1%} of the image, "
            f"expected at least {MIN_BREAST_FRACTION:.0%})",
        )
    core = (labels == best).astype(np.uint8)
    mask = _fill_holes(cv2.dilate(core, disc) & fg)
    log.debug("%s: breast threshold %.3f, area %.1f%%", source, level, 100 * mask.mean())
    if factor < 1.0:
        up = cv2.resize(mask * 255, (big_w, big_h), interpolation=cv2.INTER_LINEAR)
        return up >= 128
    return mask.astype(bool)


def breast_box(
    mask: np.ndarray, *, margin: float = 0.02, source: str = "image"
) -> tuple[int, int, int, int]:
    """Crop box around a breast mask.

    Args:
        mask: bool ``(H, W)`` breast mask.
        margin: added on each side, as a fraction of the mask's bounding-box width (for x) and
            height (for y); the box is clipped to the image.
        source: name used in error messages.

    Returns:
        ``(x0, y0, x1, y1)`` int pixels, ``x1``/``y1`` exclusive, inside ``[0, W] x [0, H]``.

    Raises:
        MammogramError: the mask is empty.
    """
    m = np.asarray(mask, dtype=bool)
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        raise MammogramError(source, "no breast found (empty breast mask)")
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    dx, dy = round(margin * (x1 - x0)), round(margin * (y1 - y0))
    h, w = m.shape
    return (max(0, x0 - dx), max(0, y0 - dy), min(w, x1 + dx), min(h, y1 + dy))


def chest_wall_score(mask: np.ndarray) -> float:
    """How strongly the breast leans against the left (+) or right (-) side of its box.

    The breast is widest at its base (the chest wall) and tapers to the nipple: the outer third
    of the mask's bounding box on the chest-wall side holds more breast than the opposite
    third, and the outermost 5 % of columns there are almost fully covered while the nipple
    side is only touched by the rounded skin line. The score is the mean of the two balances.

    Args:
        mask: bool ``(H, W)`` breast mask (the whole image or a crop).

    Returns:
        float in ``[-1, 1]``: > 0 chest wall on the left, < 0 on the right; 0 for an empty or
        left-right symmetric mask. On mini-MIAS, correct sides score >= 0.33 except for two
        breasts that fill the whole film (|score| < 0.1).
    """
    m = np.asarray(mask, dtype=bool)
    cols = np.flatnonzero(m.any(axis=0))
    if cols.size == 0:
        return 0.0
    profile = m[:, cols[0] : cols[-1] + 1].sum(axis=0).astype(np.float64)
    balances = []
    for fraction in (1 / 3, 0.05):
        n = max(1, int(profile.size * fraction))
        left, right = profile[:n].sum(), profile[-n:].sum()
        balances.append((left - right) / (left + right))
    return float(np.mean(balances))


def chest_wall_side(image_or_mask: np.ndarray, *, source: str = "image") -> str:
    """Which side of the image the chest wall is on.

    Args:
        image_or_mask: a bool ``(H, W)`` breast mask, or a float ``(H, W)`` image (segmented
            with :func:`segment_breast` first).
        source: name used in error messages when an image has to be segmented.

    Returns:
        ``"left"`` or ``"right"`` (``"left"`` when the mask is symmetric).
    """
    arr = np.asarray(image_or_mask)
    mask = arr if arr.dtype == bool else segment_breast(arr, source=source)
    return "left" if chest_wall_score(mask) >= 0 else "right"


def preprocess(
    image: np.ndarray,
    *,
    long_side: int = LONG_SIDE,
    source: str = "image",
    laterality: str | None = None,
) -> Preprocessed:
    """Segment, crop, orient (chest wall on the left) and resize a mammogram.

    The side is decided from the mask (:func:`chest_wall_score`); only when that is a near tie
    (``|score| < SIDE_TIE``) does ``laterality`` decide ("L" = chest wall on the left, as left
    breasts are displayed, "R" = right). So a mislabelled file is still oriented correctly.
    Pixels outside the breast mask are set to 0.

    Args:
        image: float32 ``(H, W)`` in ``[0, 1]``, bright = dense (original pixels).
        long_side: longer side of the model image in pixels.
        source: name used in error messages (e.g. the file name).
        laterality: ``"L"``, ``"R"`` or None, used only as a tie-breaker.

    Returns:
        :class:`Preprocessed` with the float32 model image, its bool mask and the geometry.

    Raises:
        MammogramError: values outside ``[0, 1]``, or see :func:`segment_breast`.
    """
    if long_side < 8:
        raise ValueError(f"long_side must be at least 8, got {long_side}")
    img = _check_image(image, source)
    if img.min() < -1e-3 or img.max() > 1.0 + 1e-3:
        raise MammogramError(
            source,
            f"pixel values span [{img.min():g}, {img.max():g}], expected [0, 1] "
            "(read the file with hdcnn.reader.read_mammogram)",
        )
    mask = segment_breast(img, source=source)
    x0, y0, x1, y1 = breast_box(mask, source=source)
    crop_img, crop_mask = img[y0:y1, x0:x1], mask[y0:y1, x0:x1]

    score = chest_wall_score(crop_mask)
    if abs(score) >= SIDE_TIE or laterality not in ("L", "R"):
        flipped = score < 0
    else:
        flipped = laterality == "R"
        log.debug("%s: chest-wall side is a tie (%.3f); laterality %s", source, score, laterality)
    if flipped:
        crop_img, crop_mask = crop_img[:, ::-1], crop_mask[:, ::-1]

    crop_h, crop_w = crop_img.shape
    factor = long_side / max(crop_h, crop_w)
    out_w, out_h = max(1, round(crop_w * factor)), max(1, round(crop_h * factor))
    interp = cv2.INTER_AREA if factor < 1.0 else cv2.INTER_LINEAR
    model_img = cv2.resize(np.ascontiguousarray(crop_img), (out_w, out_h), interpolation=interp)
    model_mask = cv2.resize(
        np.ascontiguousarray(crop_mask).astype(np.uint8) * 255, (out_w, out_h), interpolation=interp
    )
    model_mask = model_mask >= 128
    model_img = np.where(model_mask, np.clip(model_img, 0.0, 1.0), 0.0).astype(np.float32)
    geometry = Geometry(
        original_size=(int(img.shape[0]), int(img.shape[1])),
        crop=(x0, y0, x1, y1),
        flipped=bool(flipped),
        output_size=(out_h, out_w),
    )
    return Preprocessed(image=model_img, mask=model_mask, geometry=geometry)
