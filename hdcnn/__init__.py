"""HD-CNN Mammo: hierarchical deep CNNs for finding and grading breast lesions.

Research demo, not a medical device.

The public API is imported lazily so that ``import hdcnn`` stays light (reading an image does
not import torch):

- :func:`read_mammogram` / :class:`Mammogram` -- any mammogram file or upload to one image.
- :mod:`hdcnn.preprocess` -- segmentation, crop, orientation, resize and the inverse mapping.
- :func:`load_dataset` / :class:`Manifest` -- one manifest for every supported dataset.
- :func:`load_cascade` -- the detector + hierarchical classifier cascade.
"""

from __future__ import annotations

import importlib
from typing import Any

from hdcnn.errors import CheckpointError, DatasetError, HDCNNError, MammogramError
from hdcnn.terms import CLASSES, Label, Laterality, LesionSource, View

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "read_mammogram": "hdcnn.reader",
    "Mammogram": "hdcnn.reader",
    "MammogramMeta": "hdcnn.reader",
    "Manifest": "hdcnn.data.manifest",
    "ImageRecord": "hdcnn.data.manifest",
    "Lesion": "hdcnn.data.manifest",
    "load_dataset": "hdcnn.data.adapters",
    "load_cascade": "hdcnn.cascade",
    "Cascade": "hdcnn.cascade",
}

__all__ = [
    "CLASSES",
    "CheckpointError",
    "DatasetError",
    "HDCNNError",
    "Label",
    "Laterality",
    "LesionSource",
    "MammogramError",
    "View",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hdcnn' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
