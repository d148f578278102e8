"""Tests for hdcnn.preprocess: segmentation, crop box, orientation, resize and box mapping."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from hdcnn.errors import MammogramError
from hdcnn.preprocess import (
    Geometry,
    breast_box,
    chest_wall_score,
    chest_wall_side,
    preprocess,
    segment_breast,
)

H, W = 300, 220
LABEL = (slice(8, 30), slice(185, 210))  # bright film label, top corner opposite the chest wall


def _ellipse_mask(h: int, w: int, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx + 0.5 - cx) / ax) ** 2 + ((yy + 0.5 - cy) / ay) ** 2 <= 1.0


def synthetic_breast(side: str = "left", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A half-ellipse breast against the ``side`` edge, noisy film background, a bright label.

    Returns:
        (image float32 (H, W) in [0, 1], true breast mask bool (H, W)).
    """
    rng = np.random.default_rng(seed)
    truth = _ellipse_mask(H, W, cx=0.0, cy=H / 2, ax=150.0, ay=125.0)
    img = rng.normal(0.03, 0.015, (H, W))
    tissue = 0.45 + 0.1 * np.cos(np.mgrid[0:H, 0:W][1] / 15.0)
    img[truth] = tissue[truth] + rng.normal(0, 0.03, truth.sum())
    img[LABEL] = 0.95
    img = np.clip(img, 0, 1).astype(np.float32)
    if side == "right":
        return np.ascontiguousarray(img[:, ::-1]), np.ascontiguousarray(truth[:, ::-1])
    return img, truth


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _mias_image(root: Path, number: int) -> np.ndarray:
    img = cv2.imread(str(root / f"mdb{number:03d}.pgm"), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.dtype == np.uint8
    return img.astype(np.float32) / 255.0


# --- segmentation --------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["left", "right"])
def test_segment_finds_breast_and_ignores_label(side: str) -> None:
    img, truth = synthetic_breast(side)
    mask = segment_breast(img)
    assert mask.dtype == bool and mask.shape == img.shape
    assert _iou(mask, truth) > 0.95
    label = LABEL if side == "left" else (LABEL[0], slice(W - 210, W - 185))
    assert not mask[label].any()


def test_segment_fills_holes() -> None:
    img, truth = synthetic_breast("left")
    hole = _ellipse_mask(H, W, cx=60, cy=150, ax=15, ay=15)
    img[hole] = 0.0  # a dark region fully inside the breast
    mask = segment_breast(img)
    assert mask[hole].all()
    assert _iou(mask, truth) > 0.95


def test_segment_breast_touching_thin_edge_strip() -> None:
    """A thin bright film-edge strip touching the breast is not part of the breast."""
    img, truth = synthetic_breast("left")
    img[H - 4 :, :] = 0.9
    mask = segment_breast(img)
    assert not mask[H - 2, W - 40 :].any()
    assert _iou(mask, truth) > 0.9


@pytest.mark.parametrize(
    "image, problem",
    [
        (np.zeros((200, 150), np.float32), "the image is empty or constant"),
        (np.full((200, 150), 0.5, np.float32), "the image is empty or constant"),
    ],
)
def test_segment_refuses_empty_images(image: np.ndarray, problem: str) -> None:
    with pytest.raises(MammogramError, match=rf"^scan\.png: no breast found \({problem}"):
        segment_breast(image, source="scan.png")


def test_segment_refuses_tiny_speck() -> None:
    rng = np.random.default_rng(1)
    img = rng.normal(0.02, 0.01, (200, 150)).clip(0, 1).astype(np.float32)
    img[90:100, 70:80] = 0.8  # 100 px = 0.3 % of the image
    with pytest.raises(MammogramError, match=r"^speck\.dcm: no breast found .*at least 2%"):
        segment_breast(img, source="speck.dcm")
    with pytest.raises(MammogramError, match=r"^speck\.dcm: no breast found"):
        preprocess(img, source="speck.dcm")


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((20, 20, 3), np.float32),
        np.full((50, 50), np.nan, np.float32),
        np.zeros((4, 100), np.float32),
    ],
)
def test_segment_refuses_malformed_arrays(image: np.ndarray) -> None:
    with pytest.raises(MammogramError, match=r"^bad\.png: "):
        segment_breast(image, source="bad.png")


# --- crop box and side ---------------------------------------------------------------------


def test_breast_box_margin_and_clipping() -> None:
    mask = np.zeros((100, 200), bool)
    mask[20:70, 0:100] = True  # 100 wide, 50 high, touching the left edge
    assert breast_box(mask, margin=0.0) == (0, 20, 100, 70)
    assert breast_box(mask, margin=0.1) == (0, 15, 110, 75)  # x0 clipped at 0
    with pytest.raises(MammogramError, match=r"^m\.png: no breast found"):
        breast_box(np.zeros((10, 10), bool), source="m.png")


@pytest.mark.parametrize("side", ["left", "right"])
def test_chest_wall_side_from_mask_and_image(side: str) -> None:
    img, truth = synthetic_breast(side)
    assert chest_wall_side(truth) == side
    assert chest_wall_side(img) == side
    score = chest_wall_score(truth)
    assert (score > 0.3) if side == "left" else (score < -0.3)


def test_chest_wall_score_symmetric_is_zero() -> None:
    mask = _ellipse_mask(100, 100, 50, 50, 30, 40)
    assert chest_wall_score(mask) == pytest.approx(0.0, abs=1e-9)
    assert chest_wall_score(np.zeros((5, 5), bool)) == 0.0


# --- preprocess and geometry ---------------------------------------------------------------


@pytest.mark.parametrize("side", ["left", "right"])
def test_preprocess_orients_crops_and_resizes(side: str) -> None:
    img, _ = synthetic_breast(side)
    out = preprocess(img, long_side=128, source="x.png")
    geo = out.geometry
    assert out.image.dtype == np.float32 and out.mask.dtype == bool
    assert out.image.shape == out.mask.shape == geo.output_size
    assert max(out.image.shape) == 128
    assert out.image.min() >= 0.0 and out.image.max() <= 1.0
    assert geo.flipped == (side == "right")
    assert chest_wall_side(out.mask) == "left"
    assert out.mask[:, 0].mean() > 0.7  # the breast base lies on the left edge
    # crop aspect ratio kept (to rounding), label outside the mask removed
    crop_h, crop_w = geo.crop_size
    assert abs(geo.output_size[1] - crop_w * 128 / crop_h) <= 0.5
    assert (out.image[~out.mask] == 0).all()
    assert out.image.max() < 0.9  # the 0.95 label is gone


def test_preprocess_refuses_unscaled_pixels() -> None:
    img, _ = synthetic_breast("left")
    with pytest.raises(MammogramError, match=r"^raw\.npy: pixel values span .*expected \[0, 1\]"):
        preprocess(img * 4095, source="raw.npy")


def test_preprocess_mislabelled_laterality_is_ignored() -> None:
    img, _ = synthetic_breast("left")
    assert not preprocess(img, long_side=64, laterality="R").geometry.flipped
    img, _ = synthetic_breast("right")
    assert preprocess(img, long_side=64, laterality="L").geometry.flipped


def test_preprocess_laterality_breaks_ties() -> None:
    rng = np.random.default_rng(3)
    img = rng.normal(0.03, 0.01, (160, 160))
    img[_ellipse_mask(160, 160, 80, 80, 50, 60)] = 0.5  # symmetric: no chest wall visible
    img = img.clip(0, 1).astype(np.float32)
    assert preprocess(img, long_side=64, laterality="R").geometry.flipped
    assert not preprocess(img, long_side=64, laterality="L").geometry.flipped
    assert not preprocess(img, long_side=64).geometry.flipped


@pytest.mark.parametrize("side", ["left", "right"])
def test_box_round_trip_within_one_pixel(side: str) -> None:
    img, _ = synthetic_breast(side)
    geo = preprocess(img, long_side=100).geometry
    rng = np.random.default_rng(42)
    x0, y0, x1, y1 = geo.crop
    xa = rng.uniform(x0, x1, (50, 2))
    ya = rng.uniform(y0, y1, (50, 2))
    boxes = np.stack([xa.min(1), ya.min(1), xa.max(1), ya.max(1)], axis=1)
    model = geo.to_model(boxes)
    assert model.shape == (50, 4)
    assert (model[:, 0] <= model[:, 2]).all() and (model[:, 1] <= model[:, 3]).all()
    h, w = geo.output_size
    assert (model >= -1e-9).all() and (model[:, [0, 2]] <= w + 1e-9).all()
    assert (model[:, [1, 3]] <= h + 1e-9).all()
    back = geo.to_original(model)
    assert np.abs(back - boxes).max() < 1.0
    np.testing.assert_allclose(back, boxes, atol=1e-6)  # in fact exact up to float error


def test_geometry_known_mapping_and_clipping() -> None:
    geo = Geometry(original_size=(100, 200), crop=(50, 10, 150, 60), flipped=True,
                   output_size=(20, 40))  # fmt: skip
    # crop 100 x 50 -> 40 x 20: scale 0.4 both ways; x mirrored inside the crop
    np.testing.assert_allclose(geo.to_model(np.array([[60, 10, 70, 20]])), [[32, 0, 36, 4]])
    np.testing.assert_allclose(geo.to_original(np.array([[32, 0, 36, 4]])), [[60, 10, 70, 20]])
    np.testing.assert_allclose(geo.to_original(np.array([[-10, -10, 50, 50]])), [[25, 0, 175, 100]])
    assert geo.to_model(np.zeros((0, 4))).shape == (0, 4)
    np.testing.assert_allclose(
        geo.to_model(np.array([[0, 0, 200, 100]]), clip=True), [[0, 0, 40, 20]]
    )
    with pytest.raises(ValueError, match="shape"):
        geo.to_model(np.zeros((3, 3)))


@pytest.mark.parametrize("side", ["left", "right"])
def test_mapped_box_covers_the_same_content(side: str) -> None:
    img, _ = synthetic_breast(side)
    box = (40, 120, 60, 150) if side == "left" else (W - 60, 120, W - 40, 150)
    img[box[1] : box[3], box[0] : box[2]] = 1.0
    out = preprocess(img, long_side=150)
    mx1, my1, mx2, my2 = out.geometry.to_model(np.array([box], float))[0]
    bright = np.argwhere(out.image > 0.9)  # (row, col)
    assert len(bright) > 0.5 * (mx2 - mx1) * (my2 - my1)
    assert bright[:, 1].min() >= mx1 - 1 and bright[:, 1].max() + 1 <= mx2 + 1
    assert bright[:, 0].min() >= my1 - 1 and bright[:, 0].max() + 1 <= my2 + 1


def test_geometry_dict_round_trip_and_validation() -> None:
    img, _ = synthetic_breast("right")
    geo = preprocess(img, long_side=64).geometry
    d = json.loads(json.dumps(geo.to_dict()))
    assert Geometry.from_dict(d) == geo
    assert Geometry.from_dict(d).to_dict() == geo.to_dict()
    with pytest.raises(MammogramError, match=r"^cache/a\.npz: invalid"):
        Geometry.from_dict({"crop": [0, 0, 1, 1]}, source="cache/a.npz")
    bad = dict(d, crop=[10, 0, 5, 5])
    with pytest.raises(MammogramError, match="inconsistent"):
        Geometry.from_dict(bad)


# --- real mini-MIAS films ------------------------------------------------------------------


def test_mias_right_and_left_breasts(mias_root: Path) -> None:
    # mdb(2k-1) is a right breast (chest wall on the right of the film), mdb(2k) a left one.
    for number, side in [(3, "right"), (4, "left")]:
        img = _mias_image(mias_root, number)
        mask = segment_breast(img, source=f"mdb{number:03d}")
        assert 0.1 < mask.mean() < 0.9
        assert chest_wall_side(mask) == side
        out = preprocess(img, source=f"mdb{number:03d}")
        assert out.geometry.flipped == (side == "right")
        assert chest_wall_side(out.mask) == "left"
        assert max(out.image.shape) == 512
        assert 0.4 < out.mask.mean() < 0.95  # the crop is mostly breast


def test_mias_all_images(mias_root: Path) -> None:
    """Every mini-MIAS film preprocesses, with a plausible breast and the chest wall on the left.

    Content alone orients 240 of the 242; the two breasts that fill the whole film are ties
    decided by the laterality, as the MIAS adapter supplies it.
    """
    files = sorted(mias_root.glob("mdb*.pgm"))
    assert len(files) >= 200
    undecided = 0
    for path in files:
        number = int(re.findall(r"\d+", path.stem)[0])
        laterality = "R" if number % 2 else "L"
        img = _mias_image(mias_root, number)
        out = preprocess(img, long_side=256, source=path.name, laterality=laterality)
        geo = out.geometry
        x0, y0, x1, y1 = geo.crop
        area = (x1 - x0) * (y1 - y0) / (img.shape[0] * img.shape[1])
        assert 0.1 < area <= 1.0, path.name
        assert 0.3 < out.mask.mean() < 0.98, path.name
        assert geo.flipped == (laterality == "R"), path.name
        if abs(chest_wall_score(out.mask)) < 0.15:
            undecided += 1
    assert undecided <= 3
