"""Network definitions: the lesion detector and the compact classifier family."""

from __future__ import annotations

from hdcnn.nets.classifier import ClassifierConfig, CompactCNN, build_classifier, prepare_input
from hdcnn.nets.detector import DetectorConfig, build_detector

__all__ = [
    "ClassifierConfig",
    "CompactCNN",
    "DetectorConfig",
    "build_classifier",
    "build_detector",
    "prepare_input",
]
