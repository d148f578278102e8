"""Tests of hdcnn.explain: Grad-CAM shapes, ranges, mapping back to the image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hdcnn.cascade import load_cascade
from hdcnn.checkpoint import load_model
from hdcnn.explain import (
    finding_cams,
    gradcam,
    heatmap_to_original,
    paste_crop_map,
    whole_image_cam,
)
from hdcnn.preprocess import Geometry
from hdcnn.roi import roi_square
from tests.cascade_weights import WHOLE, breast_image

torch.set_num_threads(1)


def test_gradcam_shapes_range_and_model_untouched(weights_dir: Path) -> None:
    model, _ = load_model(weights_dir / "c1_lesion.pt")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    maps = gradcam(model, torch.rand(3, 1, 16, 16), [0, 1, 1])
    assert maps.shape == (3, 16, 16) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert gradcam(model, torch.rand(0, 1, 16, 16), 1).shape == (0, 16, 16)


def test_finding_cams_on_model_image(weights_dir: Path) -> None:
    cascade = load_cascade(weights_dir)
    pred = cascade.predict(breast_image(left=False), detail=True)
    assert pred.kept_findings, "tiny weights should keep at least one finding"
    cams = finding_cams(cascade, pred)
    assert len(cams) == len(pred.kept_findings)
    shape = pred.trace.preprocessed.image.shape
    for cam, finding in zip(cams, pred.kept_findings, strict=True):
        assert cam.stage == "c2" and cam.index == finding.index
        assert cam.crop_cam.shape == (cascade.head.crop_size,) * 2
        assert cam.image_cam.shape == shape
        assert cam.image_cam.min() >= 0.0 and cam.image_cam.max() <= 1.0
        # the heat lies only inside the finding's crop window
        sx1, sy1, sx2, sy2 = roi_square(finding.model_box, context=cascade.context)
        outside = cam.image_cam.copy()
        outside[
            max(int(sy1) - 1, 0) : int(np.ceil(sy2)) + 1,
            max(int(sx1) - 1, 0) : int(np.ceil(sx2)) + 1,
        ] = 0
        assert cam.image_cam.sum() > 0 and outside.sum() == 0
    c1 = finding_cams(cascade, pred, stage="c1", kept_only=False)
    assert len(c1) == len(pred.findings)
    with pytest.raises(ValueError):
        finding_cams(cascade, cascade.predict(breast_image()))  # no trace


def test_whole_image_cam(weights_dir: Path) -> None:
    model, _ = load_model(weights_dir / "whole_flat.pt")
    image = np.random.default_rng(0).uniform(0, 1, (50, 40)).astype(np.float32)
    cam = whole_image_cam(model, image, 2)
    assert cam.shape == (50, 40) and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() <= 1.0
    assert tuple(model.config.input_size) == WHOLE


def test_paste_and_map_to_original_with_flip() -> None:
    canvas = paste_crop_map(np.ones((8, 8)), [10, 10, 20, 20], (40, 30), context=1.0)
    assert canvas[15, 15] == 1.0 and canvas[0, 0] == 0.0
    geom = Geometry(
        original_size=(100, 80), crop=(30, 10, 80, 90), flipped=True, output_size=(40, 25)
    )
    heat = np.zeros((40, 25), dtype=np.float32)
    heat[:, :5] = 1.0  # model-image left strip = chest wall = original right side of the crop
    orig = heatmap_to_original(heat, geom)
    assert orig.shape == (100, 80)
    assert orig[50, 78] == pytest.approx(1.0)  # right edge of the crop
    assert orig[50, 35] == 0.0
    assert orig[5, 78] == 0.0  # above the crop


def test_cam_overlay_shows_the_tissue_under_the_heat() -> None:
    """A thumbnail is the crop's tissue with the map blended in, not a grey blob of the map."""
    from hdcnn.explain import cam_overlay

    yy, xx = np.mgrid[0:64, 0:64]
    tissue = (0.2 + 0.1 * np.sin(xx / 3.0) * np.cos(yy / 4.0)).astype(np.float32)  # dim texture
    cam = np.zeros((64, 64), np.float32)
    cam[40:, 40:] = 1.0  # heat in one corner only
    out = cam_overlay(tissue, cam)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    cold = out[:32, :32]
    # cold region: grey tissue, contrast-stretched (full range) and unchanged in colour
    assert cold[..., 0].std() > 20 and np.array_equal(cold[..., 0], cold[..., 2])
    hot = out[48:, 48:].astype(int)
    assert (hot[..., 0] - hot[..., 2]).mean() > 40  # red where the heat is
    assert hot[..., 0].std() > 5  # with the tissue still visible under it
    assert cam_overlay(tissue, cam[::2, ::2], side=128).shape == (128, 128, 3)
