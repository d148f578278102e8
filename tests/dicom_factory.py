"""Test helper: small synthetic mammogram arrays and DICOM files made with hdcnn.dicom/pydicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from hdcnn.dicom import build_dicom, write_dicom


def phantom(height: int = 64, width: int = 48, *, bits: int = 12, seed: int = 0) -> np.ndarray:
    """A breast-like uint16 image: a bright half-disc on the left edge, noise, black background.

    Args:
        height, width: image size.
        bits: the stored bit depth the values fit in (values in ``[0, 2**bits - 1]``).
        seed: noise seed.

    Returns:
        uint16 ``(height, width)``; ``bits == 8`` gives uint8.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    r = np.hypot((yy - height / 2) / (height / 2), xx / (0.8 * width))
    top = 2**bits - 1
    tissue = np.clip(1.0 - r, 0.0, 1.0) * 0.8 * top
    img = tissue + (r < 1) * rng.uniform(0, 0.2 * top, size=(height, width))
    img[0, 0] = 0  # make the range deterministic: exact black ...
    img[height // 2, 0] = top  # ... and exact white
    dtype = np.uint8 if bits <= 8 else np.uint16
    return np.clip(np.round(img), 0, top).astype(dtype)


def make_dicom(pixels: np.ndarray | None = None, **kwargs: object) -> Dataset:
    """:func:`hdcnn.dicom.build_dicom` with a default phantom; keyword arguments pass through."""
    return build_dicom(phantom() if pixels is None else pixels, **kwargs)  # type: ignore[arg-type]


def write(tmp_path: Path, name: str, ds: Dataset) -> Path:
    """Write ``ds`` to ``tmp_path / name`` and return the path."""
    path = tmp_path / name
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.save_as(path, enforce_file_format=True)
    else:
        write_dicom(path, ds)
    return path
