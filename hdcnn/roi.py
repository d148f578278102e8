"""Square regions of interest around boxes: the one crop function of training and inference.

:class:`hdcnn.data.torchdata.RoiDataset` (training crops) and the cascade (crops of detector
boxes) both call :func:`crop_rois`, so a classifier sees at inference exactly the kind of crop
it was trained on.

All coordinates are model-image pixels, boxes ``[x1, y1, x2, y2]`` (float, x right, y down,
origin at the top-left corner of the image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from hdcnn.config import CONTEXT, CROP_SIZE

if TYPE_CHECKING:
    from hdcnn.preprocess import Geometry

#: Default ratio of the crop side to the longer side of the box (the box plus its surroundings).
DEFAULT_CONTEXT = CONTEXT  # the one default is hdcnn.config.CONTEXT
#: Default smallest crop side in model pixels, so tiny findings (calcifications) keep context.
DEFAULT_MIN_SIDE = 24.0


def roi_square(
    box: Sequence[float] | np.ndarray,
    *,
    context: float = DEFAULT_CONTEXT,
    min_side: float = DEFAULT_MIN_SIDE,
) -> tuple[float, float, float, float]:
    """The square crop window centred on ``box``.

    Args:
        box: ``[x1, y1, x2, y2]`` float pixels (model image).
        context: crop side as a multiple of the box's longer side (``> 0``).
        min_side: the side is at least this many pixels (``>= 1``).

    Returns:
        ``(x1, y1, x2, y2)`` float pixels of the square, same centre as ``box``, side
        ``max(max(w, h) * context, min_side)``. It may extend beyond the image.

    Raises:
        ValueError: ``box`` is not four finite numbers with ``x2 >= x1`` and ``y2 >= y1``, or
            ``context`` / ``min_side`` are out of range.
    """
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.shape != (4,) or not np.all(np.isfinite(values)):
        raise ValueError(f"box must be four finite numbers [x1, y1, x2, y2], got {box!r}")
    x1, y1, x2, y2 = (float(v) for v in values)
    if x2 < x1 or y2 < y1:
        raise ValueError(f"box must have x2 >= x1 and y2 >= y1, got {box!r}")
    if not context > 0:
        raise ValueError(f"context must be > 0, got {context!r}")
    if not min_side >= 1:
        raise ValueError(f"min_side must be >= 1, got {min_side!r}")
    side = max(max(x2 - x1, y2 - y1) * context, float(min_side))
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    half = side / 2.0
    return (cx - half, cy - half, cx + half, cy + half)


def _padded_window(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """``image[y0:y0+side, x0:x0+side]`` with zeros where the window leaves the image."""
    h, w = image.shape
    out = np.zeros((side, side), dtype=np.float32)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def crop_rois(
    image: np.ndarray,
    boxes: np.ndarray,
    *,
    size: int = CROP_SIZE,
    context: float = DEFAULT_CONTEXT,
    min_side: float = DEFAULT_MIN_SIDE,
) -> np.ndarray:
    """Square crops around ``boxes``, resized to ``size x size``.

    Each crop is the :func:`roi_square` window of its box, rounded to whole pixels, with zero
    padding where it extends beyond the image, resized with area averaging when shrinking
    (no aliasing of fine texture) and bilinear interpolation when enlarging.

    Args:
        image: float32 ``(h, w)`` model image, values in ``[0, 1]``.
        boxes: ``(N, 4)`` float ``[x1, y1, x2, y2]`` model pixels; ``N`` may be 0.
        size: side of each output crop in pixels (``>= 1``).
        context: passed to :func:`roi_square`.
        min_side: passed to :func:`roi_square`.

    Returns:
        float32 ``(N, size, size)`` crops in the same order as ``boxes``.

    Raises:
        ValueError: ``image`` is not 2-D, ``boxes`` is not ``(N, 4)`` of valid boxes, or
            ``size`` < 1.
    """
    img = np.asarray(image)
    if img.ndim != 2 or img.size == 0:
        raise ValueError(f"image must be a non-empty 2-D (h, w) array, got shape {img.shape}")
    img = img.astype(np.float32, copy=False)
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {arr.shape}")
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    size = int(size)

    crops = np.zeros((len(arr), size, size), dtype=np.float32)
    for i, box in enumerate(arr):
        sx1, sy1, sx2, sy2 = roi_square(box, context=context, min_side=min_side)
        side = max(1, round(sx2 - sx1))
        x0 = math.floor(sx1 + 0.5 * ((sx2 - sx1) - side) + 0.5)
        y0 = math.floor(sy1 + 0.5 * ((sy2 - sy1) - side) + 0.5)
        window = _padded_window(img, x0, y0, side)
        if side == size:
            crops[i] = window
        else:
            interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
            crops[i] = cv2.resize(window, (size, size), interpolation=interp)
    return crops


def crop_rois_full_resolution(
    pixels: np.ndarray,
    geometry: Geometry,
    model_boxes: np.ndarray,
    *,
    size: int,
    context: float = DEFAULT_CONTEXT,
    min_side: float = DEFAULT_MIN_SIDE,
) -> np.ndarray:
    """Crops of model-image boxes taken from the ORIGINAL pixels, in model orientation.

    The detector works on the downsampled model image; small findings (calcifications) need
    the original resolution. Each box is mapped back with ``geometry.to_original``, cropped
    there by :func:`crop_rois` (``min_side`` is converted to original pixels, so the window is
    the same region as on the model image), and mirrored when the model image is.

    Args:
        pixels: float32 ``(H, W)`` original image in ``[0, 1]``.
        geometry: the :class:`~hdcnn.preprocess.Geometry` of the model image.
        model_boxes: ``(N, 4)`` boxes in model-image pixels.
        size: output crop side.
        context: passed to :func:`roi_square`.
        min_side: smallest window side in MODEL pixels.

    Returns:
        float32 ``(N, size, size)``.
    """
    boxes = np.asarray(model_boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros((0, int(size), int(size)), dtype=np.float32)
    original = geometry.to_original(boxes, clip=False)
    scale = min(geometry.scale)
    crops = crop_rois(
        pixels, original, size=size, context=context, min_side=max(1.0, min_side / scale)
    )
    return np.ascontiguousarray(crops[:, :, ::-1]) if geometry.flipped else crops
