"""Microcalcification-cluster candidates at full resolution (a small-scale candidate path).

The detector sees the 512-px model image, where clusters of microcalcifications (each speck
0.1-1 mm) nearly vanish. This module looks for them on the original pixels instead, the way
classical CAD did:

1. a white top-hat (elliptical element, :attr:`SpotConfig.tophat_mm`) keeps bright specks
   smaller than the element and removes the tissue background;
2. the response is standardised inside the breast (median and MAD), and what exceeds
   :attr:`SpotConfig.z` robust standard deviations counts as a speck;
3. a Gaussian (:attr:`SpotConfig.density_mm`) turns specks into a cluster density;
4. the ``k`` highest local maxima of the density (at least :attr:`SpotConfig.nms_mm` apart)
   become square candidate boxes of side :attr:`SpotConfig.box_mm`.

Nothing here is learnt, so the candidates of an image never depend on any training data. The
sizes are physical; pass the image's pixel spacing. Measured use: the ``calc-spots`` row of
``python -m hdcnn cv --ablations`` (:mod:`hdcnn.train.ablations`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np

from hdcnn.domain import MIAS_DOMAIN
from hdcnn.preprocess import Preprocessed
from hdcnn.spotconfig import SpotConfig  # the spot finder's settings (re-exported here)

#: Pixel spacing (mm) assumed when an image states none: mini-MIAS's, on which the sizes of
#: :class:`SpotConfig` were set.
DEFAULT_PIXEL_MM = cast(float, MIAS_DOMAIN.pixel_spacing_mm)
#: The spot finder's default settings.
DEFAULT_SPOTS = SpotConfig()


def odd_side(pixels: float) -> int:
    """The odd integer kernel side nearest to ``pixels`` (at least 3)."""
    return max(3, 2 * round(pixels / 2) + 1)


def breast_mask_original(prep: Preprocessed) -> tuple[np.ndarray, tuple[int, int]]:
    """The model image's breast mask on the original pixels of its crop box.

    Returns:
        ``(mask, (x0, y0))``: bool ``(crop_h, crop_w)`` mask and the crop's origin in original
        pixels (the inverse of the resize and mirror of :func:`hdcnn.preprocess.preprocess`).
    """
    g = prep.geometry
    crop_h, crop_w = g.crop_size
    mask = prep.mask[:, ::-1] if g.flipped else prep.mask
    up = cv2.resize(mask.astype(np.uint8), (crop_w, crop_h), interpolation=cv2.INTER_NEAREST)
    return up.astype(bool), (g.crop[0], g.crop[1])


#: Finest pixel (mm) the speck maps are computed at: images with smaller pixels (CBIS-DDSM's
#: 0.05 mm) are area-averaged down to it first. Specks of 0.1-1 mm are still 1-10 map pixels,
#: and a 12-Mpx DICOM costs a quarter of the pixels and a sixteenth of the top-hat's work.
WORK_MM = 0.1


@dataclass(frozen=True)
class SpeckMaps:
    """The speck maps of one image's breast crop, at map pixels of ``pixel_mm``
    (``max(image pixel, WORK_MM)``; one map pixel spans ``step`` original pixels).

    Attributes:
        specks: float32 ``(map_h, map_w)``: how far each pixel's top-hat response lies above
            :attr:`SpotConfig.z` robust standard deviations (0 elsewhere and outside the
            eroded breast).
        density: float32, ``specks`` blurred into a cluster density.
        crop: float32 grey levels of the crop at map pixels.
        response: float32 white top-hat response of ``crop`` (grey levels above the local
            background).
        origin: the crop's ``(x0, y0)`` in original pixels.
        breast_median: median grey level inside the eroded breast (0 without breast).
        pixel_mm: the map pixel in millimetres.
        step: original pixels per map pixel (1 when the image's pixels are not finer than
            :data:`WORK_MM`).
    """

    specks: np.ndarray
    density: np.ndarray
    crop: np.ndarray
    response: np.ndarray
    origin: tuple[int, int]
    breast_median: float
    pixel_mm: float = DEFAULT_PIXEL_MM
    step: float = 1.0

    def to_map(self, x: float, y: float) -> tuple[int, int]:
        """Map pixel ``(row, column)`` of an original-pixel point."""
        return int((y - self.origin[1]) / self.step), int((x - self.origin[0]) / self.step)


def speck_maps(
    pixels: np.ndarray,
    prep: Preprocessed,
    *,
    pixel_mm: float = DEFAULT_PIXEL_MM,
    cfg: SpotConfig = DEFAULT_SPOTS,
) -> SpeckMaps:
    """Bright specks and their cluster density on the breast crop of the original image.

    Args:
        pixels: float ``(H, W)`` original image in ``[0, 1]`` (the one ``prep`` was made from).
        prep: its preprocessing (crop box, mirror, breast mask).
        pixel_mm: the original image's pixel spacing in millimetres (> 0).
        cfg: sizes and thresholds.

    Raises:
        ValueError: ``pixels`` is not the 2-D image ``prep`` was made from, or ``pixel_mm``
            is not positive.
    """
    if not pixel_mm > 0:
        raise ValueError(f"pixel_mm must be > 0, got {pixel_mm!r}")
    img = np.asarray(pixels)
    if img.ndim != 2 or tuple(img.shape) != tuple(prep.geometry.original_size):
        raise ValueError(
            f"pixels of shape {img.shape} do not match the preprocessed image's original size "
            f"{tuple(prep.geometry.original_size)}"
        )
    mask, (x0, y0) = breast_mask_original(prep)
    crop_h, crop_w = mask.shape
    crop = np.ascontiguousarray(img[y0 : y0 + crop_h, x0 : x0 + crop_w], dtype=np.float32)
    step = max(1.0, WORK_MM / pixel_mm)
    if step > 1.0:  # finer than the work pixel: area-average down to it
        size = (max(1, round(crop_w / step)), max(1, round(crop_h / step)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    pixel_mm = pixel_mm * step
    margin = odd_side(2 * cfg.margin_mm / pixel_mm)
    inner = cv2.erode(mask.astype(np.uint8), np.ones((margin, margin), np.uint8)).astype(bool)
    empty = np.zeros(crop.shape, np.float32)
    if inner.sum() < 100:  # too little breast to estimate the background
        return SpeckMaps(empty, empty.copy(), crop, empty.copy(), (x0, y0), 0.0, pixel_mm, step)
    side = odd_side(cfg.tophat_mm / pixel_mm)
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    response = cv2.morphologyEx(crop, cv2.MORPH_TOPHAT, element)
    values = response[inner]
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median))) + 1e-6
    specks = (np.clip((response - median) / spread - cfg.z, 0.0, None) * inner).astype(np.float32)
    density = cv2.GaussianBlur(specks, (0, 0), cfg.density_mm / pixel_mm)
    median_grey = float(np.median(crop[inner]))
    return SpeckMaps(specks, density, crop, response, (x0, y0), median_grey, pixel_mm, step)


#: The speck features of a candidate (:func:`speck_features`), in order.
SPECK_FEATURES: tuple[str, ...] = (
    "density_peak",
    "density_mean",
    "log_specks",
    "speck_z_max",
    "speck_z_mean",
    "speck_fraction",
    "contrast",
    "texture",
)


def speck_features(maps: SpeckMaps, centres: np.ndarray, side: float) -> np.ndarray:
    """What the speck maps say inside square windows of ``side`` original pixels.

    Args:
        maps: the image's :class:`SpeckMaps`.
        centres: float ``(N, 2)`` window centres ``(x, y)``, original pixels.
        side: window side in original pixels.

    Returns:
        float32 ``(N, len(SPECK_FEATURES))``: density at the centre and its mean, log(1 +
        number of separate specks), largest and mean speck strength, share of speck pixels,
        mean grey level minus the breast's median, grey-level standard deviation.
    """
    out = np.zeros((len(centres), len(SPECK_FEATURES)), np.float32)
    h, w = maps.specks.shape
    half = max(1, round(side / maps.step / 2))
    for n, (cx, cy) in enumerate(np.asarray(centres, np.float64).reshape(-1, 2)):
        i, j = maps.to_map(cx, cy)
        ys, xs = (
            slice(max(0, i - half), min(h, i + half + 1)),
            slice(max(0, j - half), min(w, j + half + 1)),
        )
        window = maps.specks[ys, xs]
        if window.size == 0:
            continue
        grey = maps.crop[ys, xs]
        on = window > 0
        count = cv2.connectedComponents(on.astype(np.uint8), connectivity=8)[0] - 1
        out[n] = (
            maps.density[min(max(i, 0), h - 1), min(max(j, 0), w - 1)],
            float(maps.density[ys, xs].mean()),
            np.log1p(count),
            float(window.max()),
            float(window[on].mean()) if on.any() else 0.0,
            float(on.mean()),
            float(grey.mean()) - maps.breast_median,
            float(grey.std()),
        )
    return out


@dataclass(frozen=True)
class Spots:
    """One image's spot candidates: ``boxes`` float32 ``(n, 4)`` in MODEL-image pixels,
    ``scores`` float32 ``(n,)`` cluster densities (strongest first) and ``specks`` float32
    ``(n, len(SPECK_FEATURES))`` (:func:`speck_features` of each box)."""

    boxes: np.ndarray
    scores: np.ndarray
    specks: np.ndarray


def find_spots(
    pixels: np.ndarray,
    prep: Preprocessed,
    *,
    pixel_mm: float = DEFAULT_PIXEL_MM,
    cfg: SpotConfig = DEFAULT_SPOTS,
) -> Spots:
    """The ``cfg.k`` strongest microcalcification-cluster candidates of one image, with their
    speck features; ``n <= cfg.k``, and 0 when the breast holds no speck.

    Args:
        pixels / prep / pixel_mm / cfg: as in :func:`speck_maps`.
    """
    maps = speck_maps(pixels, prep, pixel_mm=pixel_mm, cfg=cfg)
    density = maps.density
    x0, y0 = maps.origin
    window = odd_side(cfg.nms_mm / maps.pixel_mm)
    peaks = (density == cv2.dilate(density, np.ones((window, window), np.uint8))) & (density > 0)
    ys, xs = np.nonzero(peaks)
    scores = density[ys, xs]
    order = np.argsort(-scores, kind="stable")[: cfg.k]
    side = cfg.box_mm / pixel_mm
    cx, cy = x0 + (xs[order] + 0.5) * maps.step, y0 + (ys[order] + 0.5) * maps.step
    boxes = np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)
    model = prep.geometry.to_model(boxes.reshape(-1, 4), clip=True)
    specks = speck_features(maps, np.stack([cx, cy], axis=1), side)
    return Spots(model.astype(np.float32), scores[order].astype(np.float32), specks)


def spot_candidates(
    pixels: np.ndarray,
    prep: Preprocessed,
    *,
    pixel_mm: float = DEFAULT_PIXEL_MM,
    cfg: SpotConfig = DEFAULT_SPOTS,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``cfg.k`` strongest microcalcification-cluster candidates of one image.

    Returns:
        ``(boxes, scores)`` of :func:`find_spots`.
    """
    spots = find_spots(pixels, prep, pixel_mm=pixel_mm, cfg=cfg)
    return spots.boxes, spots.scores
