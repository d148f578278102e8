"""The settings of the spot finder (:func:`hdcnn.spots.find_spots`), in a module of their own:
:mod:`hdcnn.config` reads them from ``cascade.json`` (a calcification stream's ``spots``) and
must not import the image code of :mod:`hdcnn.spots`, which imports it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpotConfig:
    """Sizes (millimetres) and thresholds of :func:`spot_candidates`.

    Attributes:
        k: at most this many candidates per image.
        tophat_mm: diameter of the top-hat's structuring element (specks narrower than this
            are kept).
        z: a speck is a top-hat response this many robust standard deviations above the
            breast's median.
        density_mm: sigma of the Gaussian that turns specks into a cluster density.
        nms_mm: side of the window in which a candidate must be the density maximum.
        box_mm: side of each candidate box.
        margin_mm: the breast mask is eroded by this much (the skin line looks like specks).
    """

    k: int = 5
    tophat_mm: float = 1.8
    z: float = 4.0
    density_mm: float = 2.4
    nms_mm: float = 6.2
    box_mm: float = 8.0
    margin_mm: float = 3.1

    def __post_init__(self) -> None:
        if self.k < 0:
            raise ValueError(f"k must be >= 0, got {self.k!r}")
        for name in ("tophat_mm", "density_mm", "nms_mm", "box_mm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not self.margin_mm >= 0:
            raise ValueError(f"margin_mm must be >= 0, got {self.margin_mm!r}")
