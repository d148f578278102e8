from __future__ import annotations

import numpy as np
import pytest

from hdcnn.roi import crop_rois, roi_square


def test_roi_square_is_centred_and_scaled() -> None:
    x1, y1, x2, y2 = roi_square([10, 20, 50, 40], context=1.5)
    assert (x1 + x2) / 2 == pytest.approx(30)
    assert (y1 + y2) / 2 == pytest.approx(30)
    assert x2 - x1 == pytest.approx(60)  # longer side 40 * 1.5
    assert y2 - y1 == pytest.approx(60)


def test_roi_square_minimum_side() -> None:
    x1, y1, x2, y2 = roi_square([100, 100, 102, 103], min_side=24)
    assert x2 - x1 == pytest.approx(24)
    assert y2 - y1 == pytest.approx(24)


@pytest.mark.parametrize("box", [[0, 0, 1], [5, 0, 1, 1], [0, 0, np.nan, 1], [0, 5, 1, 1]])
def test_roi_square_rejects_bad_boxes(box: list[float]) -> None:
    with pytest.raises(ValueError):
        roi_square(box)


def test_crop_rois_shapes_and_empty() -> None:
    image = np.random.default_rng(0).random((80, 60), dtype=np.float32)
    out = crop_rois(image, np.zeros((0, 4)), size=32)
    assert out.shape == (0, 32, 32) and out.dtype == np.float32
    out = crop_rois(image, np.array([[10, 10, 30, 30], [0, 0, 5, 5]], float), size=32)
    assert out.shape == (2, 32, 32) and out.dtype == np.float32


def test_crop_rois_identity_when_side_equals_size() -> None:
    image = np.arange(100 * 100, dtype=np.float32).reshape(100, 100) / 1e4
    # box 40..60 (side 20) with context 2 -> window 30..70, side 40 == size
    crop = crop_rois(image, np.array([[40.0, 40.0, 60.0, 60.0]]), size=40, context=2.0)[0]
    np.testing.assert_array_equal(crop, image[30:70, 30:70])


def test_crop_rois_centres_bright_blob_and_pads_with_zeros() -> None:
    image = np.full((100, 100), 0.5, dtype=np.float32)
    image[45:55, 45:55] = 1.0
    crop = crop_rois(image, np.array([[45.0, 45.0, 55.0, 55.0]]), size=30, context=3.0)[0]
    centre = crop[12:18, 12:18]
    assert np.all(centre == pytest.approx(1.0))
    assert crop[0, 0] == pytest.approx(0.5)

    # a box at the corner: the part of the window outside the image is zero
    corner = crop_rois(image, np.array([[0.0, 0.0, 10.0, 10.0]]), size=30, context=3.0)[0]
    assert corner[0, 0] == 0.0
    assert corner[-1, -1] == pytest.approx(0.5)


def test_crop_rois_shrinks_large_window() -> None:
    image = np.ones((400, 400), dtype=np.float32)
    crop = crop_rois(image, np.array([[100.0, 100.0, 300.0, 300.0]]), size=16)[0]
    assert crop.shape == (16, 16)
    # window 300 px centred at 200 -> 50..350, entirely inside: all ones
    np.testing.assert_allclose(crop, 1.0, rtol=1e-5)


def test_crop_rois_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        crop_rois(np.zeros((4, 4, 3), np.float32), np.zeros((0, 4)))
    with pytest.raises(ValueError):
        crop_rois(np.zeros((4, 4), np.float32), np.zeros((2, 3)))
    with pytest.raises(ValueError):
        crop_rois(np.zeros((4, 4), np.float32), np.zeros((0, 4)), size=0)
