"""Grad-CAM heatmaps for the cascade's findings and for whole-image classifiers.

Built on the maintained ``pytorch_grad_cam`` library (PyPI ``grad-cam``). Every heatmap is
float32 in ``[0, 1]`` (per map min-max scaled; an all-zero map stays zero).

- :func:`gradcam` -- raw Grad-CAM of any classifier on a batch of inputs.
- :func:`finding_cams` -- one map per finding, computed on its classifier crop and pasted back
  onto the model image at the crop window (:func:`hdcnn.roi.roi_square`).
- :func:`whole_image_cam` -- a whole-image classifier's map on the model image.
- :func:`heatmap_to_original` -- a model-image map to original pixels (undo resize, flip, crop).
- :func:`cam_overlay` -- a heatmap over the tissue it explains, for display.

Thread safety: Grad-CAM needs gradients and registers hooks, so it runs on a private copy of
the classifier (they are small); the shared :class:`~hdcnn.cascade.Cascade` is never modified.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from torch import nn

from hdcnn.roi import roi_square

if TYPE_CHECKING:
    from hdcnn.cascade import Cascade, Prediction
    from hdcnn.preprocess import Geometry


def cam_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM should use: ``model.cam_layer`` if present, else the last Conv2d.

    Raises:
        ValueError: the model has no convolution.
    """
    layer = getattr(model, "cam_layer", None)
    if isinstance(layer, nn.Module):
        return layer
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("model has no Conv2d layer for Grad-CAM")
    return convs[-1]


def gradcam(
    model: nn.Module, inputs: torch.Tensor, target_class: int | Sequence[int]
) -> np.ndarray:
    """Grad-CAM of a classifier.

    Args:
        model: ``(B, 1, h, w) -> logits (B, C)`` classifier (not modified: a copy is used).
        inputs: float ``(B, 1, h, w)``.
        target_class: class index to explain, one for all or one per input.

    Returns:
        float32 ``(B, h, w)`` heatmaps in ``[0, 1]``.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if inputs.ndim != 4 or inputs.shape[1] != 1:
        raise ValueError(f"inputs must be (B, 1, h, w), got {tuple(inputs.shape)}")
    batch = int(inputs.shape[0])
    if batch == 0:
        return np.zeros((0, *inputs.shape[2:]), dtype=np.float32)
    classes = [int(target_class)] * batch if isinstance(target_class, int) else list(target_class)
    if len(classes) != batch:
        raise ValueError(f"need {batch} target classes, got {len(classes)}")
    private = copy.deepcopy(model).eval()
    for p in private.parameters():
        p.requires_grad_(True)
    with torch.inference_mode(False), torch.enable_grad():
        # the input needs a gradient: frozen trunks (feature classifiers) have none of their own
        x = inputs.detach().clone().float().requires_grad_(True)
        with GradCAM(model=private, target_layers=[cam_layer(private)]) as cam:
            maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in classes])
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0)
    return np.clip(maps, 0.0, 1.0)


@dataclass(frozen=True)
class FindingCam:
    """Grad-CAM of one finding.

    Attributes:
        index: candidate row in the prediction's trace (``Finding.index``).
        stage: which classifier was explained (``"c1"``, ``"c2"`` or ``"flat"``).
        crop: float32 ``(s, s)`` the classifier crop.
        crop_cam: float32 ``(s, s)`` heatmap on the crop, ``[0, 1]``.
        image_cam: float32 ``(h, w)`` heatmap pasted on the model image (0 outside the crop).
    """

    index: int
    stage: str
    crop: np.ndarray
    crop_cam: np.ndarray
    image_cam: np.ndarray


def paste_crop_map(
    crop_map: np.ndarray,
    model_box: Sequence[float],
    image_shape: tuple[int, int],
    *,
    context: float,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Paste a crop-sized map back onto the model image at the box's crop window.

    Args:
        crop_map: float ``(s, s)`` map over the crop of ``model_box``.
        model_box: ``[x1, y1, x2, y2]`` model pixels (the box the crop was made from).
        image_shape: ``(h, w)`` of the model image.
        context: the ROI context factor used for the crop.
        out: float32 ``(h, w)`` canvas to combine into with ``max`` (new zeros if None).

    Returns:
        float32 ``(h, w)``.
    """
    h, w = image_shape
    canvas = np.zeros((h, w), dtype=np.float32) if out is None else out
    sx1, sy1, sx2, sy2 = roi_square(model_box, context=context)
    side = max(1, round(sx2 - sx1))
    x0 = int(np.floor(sx1 + 0.5 * ((sx2 - sx1) - side) + 0.5))
    y0 = int(np.floor(sy1 + 0.5 * ((sy2 - sy1) - side) + 0.5))
    window = cv2.resize(crop_map.astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + side, w), min(y0 + side, h)
    if cx1 > cx0 and cy1 > cy0:
        part = window[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        np.maximum(canvas[cy0:cy1, cx0:cx1], part, out=canvas[cy0:cy1, cx0:cx1])
    return canvas


def finding_cams(
    cascade: Cascade, prediction: Prediction, *, stage: str | None = None, kept_only: bool = True
) -> list[FindingCam]:
    """Grad-CAM of each finding of a prediction made with ``detail=True``.

    Args:
        cascade: the cascade that made ``prediction``.
        prediction: result of ``cascade.predict(..., detail=True)``.
        stage: ``"c1"`` (why a lesion), ``"c2"`` (why malignant) or ``"flat"``; default: the
            last stage of the cascade's crop head (``"c2"`` for the hierarchical cascade).
        kept_only: explain only kept findings (rejected ones have no malignancy score).

    Returns:
        One :class:`FindingCam` per explained finding, in the order of ``prediction.findings``.

    Raises:
        ValueError: the prediction has no trace, or ``stage`` is unknown.
    """
    trace = prediction.trace
    if trace is None:
        raise ValueError("finding_cams needs a prediction made with detail=True")
    models = cascade.head.cam_models()
    stage = stage or list(models)[-1]
    if stage not in models:
        raise ValueError(f"stage must be one of {sorted(models)}, got {stage!r}")
    model, target = models[stage]
    chosen = [  # the detector's crops (the calcification stream's are not C1/C2 inputs)
        f for f in prediction.findings if (f.kept or not kept_only) and f.stream == "mass"
    ]
    if not chosen:
        return []
    crops = np.stack([trace.crops[f.index] for f in chosen]).astype(np.float32)
    maps = gradcam(model, torch.from_numpy(crops)[:, None], target)
    shape = trace.preprocessed.image.shape
    return [
        FindingCam(
            index=f.index,
            stage=stage,
            crop=crops[k],
            crop_cam=maps[k],
            image_cam=paste_crop_map(maps[k], f.model_box, shape, context=cascade.context),
        )
        for k, f in enumerate(chosen)
    ]


def whole_image_cam(model: nn.Module, image: np.ndarray, target_class: int) -> np.ndarray:
    """Grad-CAM of a whole-image classifier on a model image.

    Args:
        model: a whole-image :class:`~hdcnn.nets.classifier.CompactCNN` (its
            ``config.input_size`` is the network input; other models get ``image`` as is).
        image: float32 ``(h, w)`` model image in ``[0, 1]``.
        target_class: class index to explain.

    Returns:
        float32 ``(h, w)`` heatmap in ``[0, 1]`` on the model image.
    """
    from hdcnn.nets.classifier import prepare_input

    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"image must be (h, w), got {img.shape}")
    config = getattr(model, "config", None)
    size = tuple(config.input_size) if config is not None else img.shape
    x = prepare_input(img, size)[None]
    cam = gradcam(model, x, int(target_class))[0]
    return cv2.resize(cam, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)


def heatmap_to_original(heatmap: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Map a model-image heatmap to original pixels (inverse of crop, flip, resize).

    Args:
        heatmap: float ``(h, w)`` on the model image (``geometry.output_size``).
        geometry: the preprocessing geometry of that image.

    Returns:
        float32 ``(H, W)`` (``geometry.original_size``), 0 outside the breast crop.
    """
    x0, y0, x1, y1 = (int(v) for v in geometry.crop)
    height, width = (int(v) for v in geometry.original_size)
    out = np.zeros((height, width), dtype=np.float32)
    cw, ch = max(1, x1 - x0), max(1, y1 - y0)
    resized = cv2.resize(heatmap.astype(np.float32), (cw, ch), interpolation=cv2.INTER_LINEAR)
    if geometry.flipped:
        resized = resized[:, ::-1]
    out[y0 : y0 + ch, x0 : x0 + cw] = resized[: height - y0, : width - x0]
    return out


#: Heat-map weight at full heat in :func:`cam_overlay` (the tissue keeps the rest).
CAM_ALPHA = 0.5


def cam_overlay(image: np.ndarray, cam: np.ndarray, *, side: int | None = None) -> np.ndarray:
    """A Grad-CAM map drawn over the tissue it explains (for thumbnails and figures).

    The tissue is contrast-stretched (min-max of the crop) so it shows even where the crop is
    dim; the map is coloured (jet: blue low, red high) and blended in proportion to its
    heat, so cold regions show the tissue unchanged.

    Args:
        image: float ``(h, w)`` the classifier crop (or model image) the map belongs to.
        cam: float ``(h, w)`` heatmap in ``[0, 1]`` (resized to ``image`` if it differs).
        side: longer side of the result (default: the image's size).

    Returns:
        uint8 RGB ``(h', w', 3)``.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"image must be (h, w), got {img.shape}")
    h, w = img.shape
    heat = np.clip(np.asarray(cam, dtype=np.float32), 0.0, 1.0)
    if heat.shape != img.shape:
        heat = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
    lo, hi = float(img.min()), float(img.max())
    grey = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    tissue = np.repeat((grey * 255.0)[:, :, None], 3, axis=2)
    colour = cv2.applyColorMap(np.round(heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    colour = colour[:, :, ::-1].astype(np.float32)  # BGR -> RGB
    weight = (CAM_ALPHA * heat)[:, :, None]
    out = np.clip(tissue * (1.0 - weight) + colour * weight + 0.5, 0, 255).astype(np.uint8)
    if side is not None and max(h, w) != side:
        scale = side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        out = cv2.resize(out, size, interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
    return out
