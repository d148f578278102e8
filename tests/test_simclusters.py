"""SIMULATED microcalcification clusters (hdcnn.simclusters) on a SYNTHETIC breast."""

from __future__ import annotations

import numpy as np
import pytest

from hdcnn.evaluation.metrics import lesion_hits
from hdcnn.preprocess import preprocess
from hdcnn.simclusters import ClusterStats, insert_cluster, measure_clusters, pooled_stats
from hdcnn.spots import find_spots


def breast() -> np.ndarray:
    """A 600 x 400 SYNTHETIC breast of textured tissue, no speck."""
    h, w = 600, 400
    yy, xx = np.mgrid[0:h, 0:w]
    inside = (xx / 330.0) ** 2 + ((yy - 300) / 280.0) ** 2 <= 1.0
    rng = np.random.default_rng(1)
    image = np.where(inside, 0.45, 0.0) + inside * rng.normal(0, 0.01, (h, w))
    return np.clip(image, 0, 1).astype(np.float32)


def test_an_inserted_cluster_is_found_where_it_was_put_and_measured_back() -> None:
    image = breast()
    prep = preprocess(image, long_side=256)
    stats = ClusterStats(counts=(8,), contrasts=(0.3,))
    made = insert_cluster(image, prep, stats, np.random.default_rng(0), pixel_mm=0.2)
    assert made is not None
    pixels, box = made
    assert pixels.dtype == np.float32 and pixels.shape == image.shape
    changed = np.argwhere(np.abs(pixels - image) > 1e-6)
    x1, y1, x2, y2 = box
    assert len(changed) and x2 - x1 < 16 / 0.2 and y2 - y1 < 16 / 0.2  # within 15 mm
    assert changed[:, 1].min() >= x1 - 4 and changed[:, 1].max() <= x2 + 4
    assert changed[:, 0].min() >= y1 - 4 and changed[:, 0].max() <= y2 + 4
    assert (pixels >= image - 1e-6).all()  # calcium only adds
    # the stream's spots find it first, and measuring it gives back a count and a contrast
    spots = find_spots(pixels, prep, pixel_mm=0.2)
    assert lesion_hits(spots.boxes[:1], prep.geometry.to_model(box[None]))[0, 0]
    ((count, contrast),) = measure_clusters(pixels, prep, box[None], pixel_mm=0.2)
    assert 2 <= count <= 8 and 0.05 < contrast < 0.5
    assert measure_clusters(image, prep, box[None], pixel_mm=0.2) == []


def test_insertion_is_reproducible_and_refuses_a_breast_too_small() -> None:
    image = breast()
    prep = preprocess(image, long_side=256)
    stats = pooled_stats([(5, 0.2), (12, 0.1)])
    a = insert_cluster(image, prep, stats, np.random.default_rng(7), pixel_mm=0.2)
    b = insert_cluster(image, prep, stats, np.random.default_rng(7), pixel_mm=0.2)
    assert a is not None and b is not None
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # a 100-mm margin leaves no place for the centre inside an 80 x 66 mm breast
    rng = np.random.default_rng(0)
    assert insert_cluster(image, prep, stats, rng, pixel_mm=0.2, margin_mm=100.0) is None
    with pytest.raises(ValueError, match="at least one real cluster"):
        ClusterStats(counts=(), contrasts=())
