"""SIMULATED microcalcification clusters inserted into normal films (training data only).

Nineteen calcified films are too few for the calcification stream to learn what a cluster
looks like against the vessel calcifications, film specks and noise of normal tissue. This
module draws clusters into the ORIGINAL pixels of normal films, at the film's pixel size:

- each speck is a disc of 0.1 to 1 mm (log-uniform) blurred by the film's pixel (partial
  volume: a speck smaller than a pixel gets the pixel's share of its contrast);
- speck counts and contrasts are sampled from the real annotated clusters of the training
  images (:func:`measure_clusters`; the stream's speck detector, :mod:`hdcnn.spots`, counts
  them), so the inserted clusters are no easier than the real ones;
- specks lie within a disc of 2.5 to 7.5 mm radius around the cluster centre, Gaussian-spread
  (sigma half the radius), as clusters are described in the literature (at least 3 to 5 specks
  within about 1 cm, BI-RADS 5th edition "grouped"/"clustered").

What is inserted is never shown to a user and never scored: the ``simulated-clusters`` row of
``python -m hdcnn cv --ablations`` (:mod:`hdcnn.train.calc`) adds candidates of inserted copies
of a fold's training normals to that fold's calcification classifier only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from hdcnn.preprocess import Preprocessed
from hdcnn.spots import SpotConfig, breast_mask_original, odd_side, speck_maps

#: Speck diameters (mm) drawn log-uniformly.
SPECK_MM = (0.1, 1.0)
#: Cluster radius (mm) drawn uniformly.
RADIUS_MM = (2.5, 7.5)
#: Fewest specks of an inserted cluster (a "cluster" has at least 3).
MIN_SPECKS = 3


@dataclass(frozen=True)
class ClusterStats:
    """Speck counts and contrasts (grey levels above the local background, image in [0, 1])
    of real annotated clusters; each inserted cluster draws one of each."""

    counts: tuple[int, ...]
    contrasts: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.counts or not self.contrasts:
            raise ValueError("cluster statistics need at least one real cluster")


def measure_clusters(
    pixels: np.ndarray,
    prep: Preprocessed,
    boxes: np.ndarray,
    *,
    pixel_mm: float,
    cfg: SpotConfig | None = None,
) -> list[tuple[int, float]]:
    """``(speck count, median speck contrast)`` of each real cluster box (ORIGINAL pixels)
    that holds at least one speck of :func:`hdcnn.spots.speck_maps`."""
    cfg = cfg or SpotConfig()
    maps = speck_maps(pixels, prep, pixel_mm=pixel_mm, cfg=cfg)
    tophat = maps.response
    out = []
    h, w = maps.specks.shape
    for bx1, by1, bx2, by2 in np.asarray(boxes, np.float64).reshape(-1, 4):
        i1, j1 = maps.to_map(bx1, by1)
        i2, j2 = maps.to_map(bx2, by2)
        ys, xs = slice(max(0, i1), min(h, i2 + 1)), slice(max(0, j1), min(w, j2 + 1))
        on = maps.specks[ys, xs] > 0
        if not on.any():
            continue
        n, labels = cv2.connectedComponents(on.astype(np.uint8), connectivity=8)
        peaks = [float(tophat[ys, xs][labels == c].max()) for c in range(1, n)]
        out.append((n - 1, float(np.median(peaks))))
    return out


def insert_cluster(
    pixels: np.ndarray,
    prep: Preprocessed,
    stats: ClusterStats,
    rng: np.random.Generator,
    *,
    pixel_mm: float,
    margin_mm: float = 10.0,
) -> tuple[np.ndarray, np.ndarray] | None:
    """A copy of ``pixels`` with one SIMULATED cluster inside the breast, and the cluster's
    box ``[x1, y1, x2, y2]`` (ORIGINAL pixels); None when the breast is too small to hold it.

    Args:
        pixels: float32 ``(H, W)`` original image in ``[0, 1]``.
        prep: its preprocessing (the breast mask).
        stats: real-cluster statistics to draw count and contrast from.
        rng: the random source (one per inserted image, for reproducible folds).
        pixel_mm: the image's pixel spacing in millimetres.
        margin_mm: the cluster centre keeps this far inside the breast's edge.
    """
    mask, (x0, y0) = breast_mask_original(prep)
    margin = odd_side(2 * margin_mm / pixel_mm)
    inner = cv2.erode(mask.astype(np.uint8), np.ones((margin, margin), np.uint8))
    ys, xs = np.nonzero(inner)
    if len(ys) == 0:
        return None
    pick = int(rng.integers(len(ys)))
    cx, cy = xs[pick] + x0 + 0.5, ys[pick] + y0 + 0.5
    radius = rng.uniform(*RADIUS_MM) / pixel_mm
    n = max(MIN_SPECKS, int(stats.counts[int(rng.integers(len(stats.counts)))]))
    contrast = float(stats.contrasts[int(rng.integers(len(stats.contrasts)))])
    out = np.array(pixels, dtype=np.float32, copy=True)
    h, w = out.shape
    centres = []
    for _ in range(n):
        while True:  # Gaussian spread, kept inside the cluster's disc
            dx, dy = rng.normal(0.0, radius / 2.0, size=2)
            if dx * dx + dy * dy <= radius * radius:
                break
        sx, sy = cx + dx, cy + dy
        diameter = float(np.exp(rng.uniform(*np.log(SPECK_MM)))) / pixel_mm  # pixels
        sigma = max(diameter / 2.355, 0.5)  # FWHM = diameter; at least the pixel's blur
        # partial volume: the speck's integrated contrast spread over the blurred area
        peak = contrast * min(1.0, (diameter / 2.355) ** 2 / sigma**2) * rng.uniform(0.7, 1.3)
        half = int(np.ceil(3 * sigma)) + 1
        xa, xb = max(0, int(sx) - half), min(w, int(sx) + half + 1)
        ya, yb = max(0, int(sy) - half), min(h, int(sy) + half + 1)
        if xb <= xa or yb <= ya:
            continue
        gy, gx = np.mgrid[ya:yb, xa:xb]
        blob = peak * np.exp(-((gx + 0.5 - sx) ** 2 + (gy + 0.5 - sy) ** 2) / (2 * sigma**2))
        out[ya:yb, xa:xb] += blob.astype(np.float32)  # calcium adds to the tissue's attenuation
        centres.append((sx, sy))
    np.clip(out, 0.0, 1.0, out=out)
    pts = np.array(centres).reshape(-1, 2)
    pad = max(1.0 / pixel_mm, 2.0)
    box = np.array(
        [pts[:, 0].min() - pad, pts[:, 1].min() - pad, pts[:, 0].max() + pad, pts[:, 1].max() + pad]
    )
    return out, box


def pooled_stats(measured: Sequence[tuple[int, float]]) -> ClusterStats:
    """:class:`ClusterStats` of measured ``(count, contrast)`` pairs."""
    return ClusterStats(tuple(c for c, _ in measured), tuple(k for _, k in measured))
