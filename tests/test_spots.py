"""Full-resolution microcalcification-cluster candidates (hdcnn.spots) on SYNTHETIC breasts."""

from __future__ import annotations

import numpy as np
import pytest

from hdcnn.evaluation.metrics import lesion_hits
from hdcnn.preprocess import preprocess
from hdcnn.spots import SpotConfig, breast_mask_original, spot_candidates

#: centre (x, y) of the planted cluster, original pixels
CLUSTER = (230, 330)


def breast(*, specks: bool = True, texture: bool = True) -> np.ndarray:
    """A 600 x 400 SYNTHETIC breast (half ellipse, chest wall on the left), optionally
    textured, with a cluster of 1-2 px bright specks around :data:`CLUSTER`."""
    h, w = 600, 400
    yy, xx = np.mgrid[0:h, 0:w]
    inside = (xx / 330.0) ** 2 + ((yy - 300) / 280.0) ** 2 <= 1.0
    image = np.where(inside, 0.45, 0.0).astype(np.float32)
    rng = np.random.default_rng(0)
    if texture:
        image += inside * rng.normal(0, 0.02, (h, w)).astype(np.float32)
    if specks:
        for dx, dy in rng.integers(-8, 9, size=(12, 2)):
            x, y = CLUSTER[0] + int(dx), CLUSTER[1] + int(dy)
            image[y : y + 2, x : x + 2] = 0.9
    return np.clip(image, 0.0, 1.0)


def cluster_box(prep, side: float = 20.0) -> np.ndarray:
    cx, cy = CLUSTER
    box = np.array([[cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]])
    return prep.geometry.to_model(box)


def test_the_strongest_candidate_is_the_planted_cluster() -> None:
    image = breast()
    prep = preprocess(image, long_side=256)
    boxes, scores = spot_candidates(image, prep, cfg=SpotConfig(k=3))
    assert boxes.dtype == np.float32 and boxes.shape[1] == 4 and 1 <= len(boxes) <= 3
    assert np.all(np.diff(scores) <= 0) and scores[0] > 0
    assert lesion_hits(boxes[:1], cluster_box(prep))[0, 0]
    # boxes lie on the model image
    h, w = prep.image.shape
    assert boxes[:, [0, 2]].min() >= 0 and boxes[:, [0, 2]].max() <= w
    assert boxes[:, [1, 3]].min() >= 0 and boxes[:, [1, 3]].max() <= h


def test_candidates_do_not_depend_on_the_side_of_the_chest_wall() -> None:
    image = breast()
    left = spot_candidates(image, preprocess(image, long_side=256))
    mirrored = image[:, ::-1].copy()
    right = spot_candidates(mirrored, preprocess(mirrored, long_side=256))
    np.testing.assert_allclose(left[0][:1], right[0][:1], atol=1.5)


def test_a_breast_without_specks_gives_no_candidate() -> None:
    image = breast(specks=False, texture=False)
    boxes, scores = spot_candidates(image, preprocess(image, long_side=256))
    assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_k_zero_and_the_original_mask() -> None:
    image = breast()
    prep = preprocess(image, long_side=256)
    boxes, _ = spot_candidates(image, prep, cfg=SpotConfig(k=0))
    assert boxes.shape == (0, 4)
    mask, (x0, y0) = breast_mask_original(prep)
    assert mask.shape == prep.geometry.crop_size
    assert mask[CLUSTER[1] - y0, CLUSTER[0] - x0]  # the cluster lies inside the breast


def test_bad_arguments_are_refused() -> None:
    image = breast()
    prep = preprocess(image, long_side=256)
    with pytest.raises(ValueError, match="original size"):
        spot_candidates(image[:-1], prep)
    with pytest.raises(ValueError, match="pixel_mm"):
        spot_candidates(image, prep, pixel_mm=0.0)
    with pytest.raises(ValueError, match="k must be"):
        SpotConfig(k=-1)
    with pytest.raises(ValueError, match="box_mm"):
        SpotConfig(box_mm=0.0)


def test_find_spots_gives_the_candidates_with_their_speck_features() -> None:
    """find_spots is spot_candidates plus one row of speck features per box; the planted
    cluster's window holds several separate specks, a speckless breast's nothing."""
    from hdcnn.spots import SPECK_FEATURES, find_spots, speck_features, speck_maps

    image = breast()
    prep = preprocess(image, long_side=256)
    spots = find_spots(image, prep, cfg=SpotConfig(k=3))
    boxes, scores = spot_candidates(image, prep, cfg=SpotConfig(k=3))
    np.testing.assert_array_equal(spots.boxes, boxes)
    np.testing.assert_array_equal(spots.scores, scores)
    assert spots.specks.shape == (len(boxes), len(SPECK_FEATURES))
    top = dict(zip(SPECK_FEATURES, spots.specks[0], strict=True))
    assert top["density_peak"] == pytest.approx(float(scores[0]))
    assert top["log_specks"] >= np.log1p(3) and top["speck_z_max"] > 0 and top["contrast"] > 0
    plain = breast(specks=False, texture=False)
    maps = speck_maps(plain, preprocess(plain, long_side=256))
    empty = speck_features(maps, np.array([CLUSTER], float), 40.0)
    assert empty[0, SPECK_FEATURES.index("log_specks")] == 0.0


def test_fine_pixels_are_averaged_down_to_the_work_pixel() -> None:
    """A film with pixels finer than WORK_MM is mapped at WORK_MM: the same breast at twice the
    resolution gives maps of the coarse one's size and finds the planted cluster first, in its
    own (original) pixels."""
    import cv2

    from hdcnn.spots import WORK_MM, find_spots, speck_maps

    coarse = breast()
    fine = cv2.resize(coarse, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    prep_c, prep_f = preprocess(coarse, long_side=256), preprocess(fine, long_side=256)
    maps_c = speck_maps(coarse, prep_c, pixel_mm=WORK_MM)
    maps_f = speck_maps(fine, prep_f, pixel_mm=WORK_MM / 2)
    assert maps_f.step == 2.0 and maps_f.pixel_mm == pytest.approx(WORK_MM)
    assert abs(maps_f.specks.shape[0] - maps_c.specks.shape[0]) <= 2
    spots = find_spots(fine, prep_f, pixel_mm=WORK_MM / 2, cfg=SpotConfig(k=3))
    cx, cy = CLUSTER
    target = prep_f.geometry.to_model(
        np.array([[2 * cx - 20, 2 * cy - 20, 2 * cx + 20, 2 * cy + 20]])
    )
    assert lesion_hits(spots.boxes[:1], target)[0, 0]
