"""Test helper: a complete weights directory of tiny random-weight models (CPU, < 1 s).

No trained weights are needed to test the cascade's plumbing: shapes, mappings, JSON schema.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch

from hdcnn.cascade import stamp_known_answers
from hdcnn.checkpoint import save_checkpoint
from hdcnn.config import CONFIG_FILE, WEIGHT_FILES
from hdcnn.errors import HDCNNError
from hdcnn.nets import ClassifierConfig, DetectorConfig, build_classifier, build_detector
from hdcnn.terms import Part

LONG_SIDE = 96
CROP = 16
WHOLE = (32, 24)

CLASSIFIERS: dict[str, tuple[tuple[str, ...], tuple[int, int]]] = {
    w.file: (w.classes, WHOLE if w.part.startswith("whole") else (CROP, CROP))
    for w in WEIGHT_FILES.values()
    if w.part != Part.DETECTOR
}


def tiny_detector_config() -> DetectorConfig:
    """A very small detector that returns many low-score boxes with random weights."""
    return DetectorConfig(
        long_side=LONG_SIDE,
        anchor_sizes=(8, 16, 32, 64, 128),
        widths=(4, 8, 8, 8),
        fpn_channels=8,
        representation_size=16,
        rpn_pre_nms_top_n_test=50,
        rpn_post_nms_top_n_test=20,
        box_score_thresh=0.0,
        box_detections_per_img=10,
    )


def make_weights_dir(
    path: Path, *, seed: int = 0, config: dict | None = None, stamp: bool = True
) -> Path:
    """Write every weights file of docs/ARCHITECTURE.md plus ``cascade.json`` into ``path``.

    Args:
        path: folder to create.
        seed: torch seed of the random weights.
        config: extra/overriding ``cascade.json`` keys.
        stamp: also write the known answers (as shipping does), when the folder loads.

    Returns:
        ``path``.
    """
    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    det_cfg = tiny_detector_config()
    save_checkpoint(
        path / WEIGHT_FILES[Part.DETECTOR].file,
        kind="detector",
        config=det_cfg,
        model=build_detector(det_cfg),
        classes=["lesion"],
    )
    for name, (classes, size) in CLASSIFIERS.items():  # the file table's classes
        cfg = ClassifierConfig(num_classes=len(classes), input_size=size, widths=(4, 8))
        model = build_classifier(cfg)
        with torch.no_grad():  # spread the logits so probabilities are not all ~0.5
            model.head.weight.mul_(20.0)
        save_checkpoint(path / name, kind="classifier", config=cfg, model=model, classes=classes)
    cascade = {
        "name": "tiny-test",
        "preprocess": {"long_side": LONG_SIDE},
        "roi": {"crop_size": CROP, "context": 1.5},
        "max_candidates": 5,
        "thresholds": {"detector_score": 0.0, "c1_lesion": 0.3, "abnormal": 0.3, "malignant": 0.2},
    }
    cascade.update(config or {})
    (path / CONFIG_FILE).write_text(json.dumps(cascade, indent=2))
    if stamp:
        with contextlib.suppress(HDCNNError):  # a deliberately broken folder: left as asked
            stamp_known_answers(path)
    return path


def breast_image(height: int = 120, width: int = 90, *, left: bool = True, seed: int = 0):
    """A float32 breast-like image in [0, 1]: bright half-disc on one edge, noise elsewhere."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    dx = xx if left else (width - 1 - xx)
    r = np.hypot((yy - height / 2) / (height / 2.2), dx / (0.75 * width))
    img = np.clip(1.0 - r, 0.0, 1.0) * 0.7 + (r < 1) * rng.uniform(0, 0.25, (height, width))
    return img.astype(np.float32)


#: The SYNTHETIC calcification stream's threshold (:func:`add_calc_stream`).
CALC_THRESHOLD = 0.5


def calc_params(seed: int = 0) -> tuple[np.ndarray, ...]:
    """Fixed SYNTHETIC logistic parameters of a calcification-stream classifier: P(lesion) =
    sigmoid(2 x density_peak - 1 + a small fixed weight on the trunk features)."""
    from hdcnn.nets.features import FeatureConfig
    from hdcnn.spots import SPECK_FEATURES

    n_trunk = FeatureConfig(num_classes=2).n_features
    n = n_trunk + len(SPECK_FEATURES)
    coef = np.zeros((1, n), np.float32)
    coef[0, :n_trunk] = np.random.default_rng(seed).normal(0, 1e-3, n_trunk)
    coef[0, n_trunk + SPECK_FEATURES.index("density_peak")] = 2.0
    return np.zeros(n, np.float32), np.ones(n, np.float32), coef, np.array([-1.0], np.float32)


def add_calc_stream(folder: Path, *, threshold: float = CALC_THRESHOLD, stamp: bool = True) -> Path:
    """Give a weights folder a SYNTHETIC calcification stream (:func:`calc_params`, 20 spots)
    and, with ``stamp``, new known answers."""
    from hdcnn.cascade.calc import save_calc_stream
    from hdcnn.cascade.loading import stamp_known_answers
    from hdcnn.spots import SpotConfig

    save_calc_stream(folder, calc_params(), threshold, spots=SpotConfig(k=20))
    if stamp:
        stamp_known_answers(folder)
    return folder
