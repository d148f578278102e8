from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hdcnn.data.cache import build_cache, cache_key, encode_model_image, load_cached
from hdcnn.data.manifest import ImageRecord, Manifest
from hdcnn.data.synth import write_cohort
from hdcnn.data.torchdata import DetectionDataset
from hdcnn.errors import DatasetError
from hdcnn.terms import Label

pytest.importorskip("hdcnn.reader")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    out = tmp_path_factory.mktemp("synth")
    write_cohort(out, patients=2, seed=4, size=160)
    return Manifest.load_csv(out / "manifest.csv")


def test_cache_key_is_stable_and_distinct() -> None:
    a = cache_key("x/SYN00001_L_CC.dcm")
    assert a == cache_key("x/SYN00001_L_CC.dcm")
    assert a.startswith("SYN00001_L_CC-")
    assert a != cache_key("y/SYN00001_L_CC.dcm")
    assert "/" not in cache_key("../we ird/na:me.dcm")


def test_encode_keeps_mask_exact() -> None:
    image = np.array([[0.0, 0.0, 0.5], [1.0, 0.2, 0.0]], dtype=np.float32)
    mask = np.array([[False, True, True], [True, True, False]])
    encoded = encode_model_image(image, mask)
    assert encoded.dtype == np.uint16
    np.testing.assert_array_equal(encoded > 0, mask)
    assert encoded[1, 0] == 65535


def test_build_cache_and_resume(cohort: Manifest, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    summary = build_cache(cohort, out, long_side=96, workers=2, progress=False)
    assert summary["written"] == len(cohort) and summary["skipped"] == 0
    assert summary["failed"] == []
    assert json.loads((out / "cache.json").read_text())["images"] == len(cohort)
    pngs = sorted((out / "images").glob("*.png"))
    assert len(pngs) == len(cohort)
    mtimes = {p: p.stat().st_mtime_ns for p in pngs}

    again = build_cache(cohort, out, long_side=96, workers=2, progress=False)
    assert again["written"] == 0 and again["skipped"] == len(cohort)
    assert {p: p.stat().st_mtime_ns for p in pngs} == mtimes

    # a half-finished image (PNG without its JSON) is redone
    victim = out / "images" / (cache_key(cohort.records[0].image_path) + ".json")
    victim.unlink()
    third = build_cache(cohort, out, long_side=96, workers=1, progress=False)
    assert third["written"] == 1 and third["skipped"] == len(cohort) - 1

    with pytest.raises(DatasetError):
        build_cache(cohort, out, long_side=128, progress=False)


def test_cached_images_match_originals(cohort: Manifest, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    build_cache(cohort, out, long_side=128, workers=1, progress=False)
    original = DetectionDataset(cohort, long_side=128)
    cached = DetectionDataset(cohort, long_side=128, cache_dir=out)
    for i in range(len(cohort)):
        (img_a, tgt_a), (img_b, tgt_b) = original[i], cached[i]
        assert img_a.shape == img_b.shape
        assert float((img_a - img_b).abs().max()) <= 2.0 / 65535
        assert torch.allclose(tgt_a["boxes"], tgt_b["boxes"])

    # a smaller long side is resized from the cache, boxes follow
    small = DetectionDataset(cohort, long_side=64, cache_dir=out)
    direct = DetectionDataset(cohort, long_side=64)
    i = next(i for i, r in enumerate(cohort.records) if r.lesions)
    (img_s, tgt_s), (img_d, tgt_d) = small[i], direct[i]
    assert img_s.shape == img_d.shape
    torch.testing.assert_close(tgt_s["boxes"], tgt_d["boxes"], atol=0.5, rtol=0)

    # the cache's own manifest: PNG paths, boxes in cache pixels
    own = Manifest.load_csv(out / "manifest.csv")
    assert len(own) == len(cohort)
    for rec, orig in zip(own.records, cohort.records, strict=True):
        assert rec.image_path.endswith(".png") and rec.patient_id == orig.patient_id
        pre = load_cached(out, orig.image_path)
        assert pre is not None
        assert own.resolve(rec).is_file()
        expected = pre.geometry.to_model(np.array([les.box for les in orig.lesions]), clip=True)
        got = np.array([les.box for les in rec.lesions]).reshape(-1, 4)
        np.testing.assert_allclose(got, expected.reshape(-1, 4), atol=0.01)


def test_unreadable_image_is_reported_not_fatal(cohort: Manifest, tmp_path: Path) -> None:
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"garbage")
    records = [*cohort.records[:2]]
    root = cohort.root
    assert root is not None
    records = [
        ImageRecord(
            str(root / r.image_path),
            r.patient_id,
            r.study_id,
            r.laterality,
            r.view,
            r.age,
            r.density,
            r.label,
            r.lesions,
        )
        for r in records
    ]
    records.append(ImageRecord(str(bad), "px", "px", "L", "CC", None, None, Label.NORMAL))
    summary = build_cache(
        Manifest(records), tmp_path / "c", long_side=64, workers=1, progress=False
    )
    assert summary["written"] == 2
    assert len(summary["failed"]) == 1
    assert "broken.dcm" in summary["failed"][0]["reason"]
    assert load_cached(tmp_path / "c", str(bad)) is None
