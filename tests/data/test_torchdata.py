from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hdcnn.data.manifest import ImageRecord, Lesion, Manifest
from hdcnn.data.synth import write_cohort
from hdcnn.data.torchdata import (
    ROI_BENIGN,
    ROI_MALIGNANT,
    ROI_NORMAL,
    Augment,
    DetectionDataset,
    RoiDataset,
    collate_detection,
    model_boxes,
)
from hdcnn.errors import MammogramError
from hdcnn.preprocess import Geometry, Preprocessed
from hdcnn.terms import Label

pytest.importorskip("hdcnn.reader")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    out = tmp_path_factory.mktemp("synth")
    write_cohort(out, patients=4, seed=2, size=160)
    return Manifest.load_csv(out / "manifest.csv")


def _abnormal(manifest: Manifest) -> int:
    return next(i for i, r in enumerate(manifest.records) if r.lesions)


def test_detection_items_eval(cohort: Manifest) -> None:
    ds = DetectionDataset(cohort, long_side=128)
    assert len(ds) == 16
    for i in range(len(ds)):
        image, target = ds[i]
        assert image.dtype == torch.float32 and image.ndim == 3 and image.shape[0] == 1
        assert max(image.shape[1:]) == 128
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        boxes = target["boxes"]
        assert boxes.dtype == torch.float32 and boxes.shape == (len(cohort.records[i].lesions), 4)
        assert target["labels"].dtype == torch.int64 and torch.all(target["labels"] == 1)
        assert target["image_id"] == i
        if len(boxes) == 0:
            assert boxes.shape == (0, 4)
        h, w = image.shape[1:]
        for x1, y1, x2, y2 in boxes.tolist():
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            # the lesion is brighter than the whole breast on average
            patch = image[0, int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))]
            assert patch.mean() > image[0][image[0] > 0].mean()
    # eval mode is deterministic
    a, b = ds[_abnormal(cohort)], ds[_abnormal(cohort)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])


def test_detection_boxes_map_through_geometry(cohort: Manifest) -> None:
    i = _abnormal(cohort)
    record = cohort.records[i]
    image, target = DetectionDataset(cohort, long_side=128)[i]
    from hdcnn.preprocess import preprocess
    from hdcnn.reader import read_mammogram

    pre = preprocess(read_mammogram(cohort.resolve(record)).pixels, long_side=128)
    expected = pre.geometry.to_model(np.array([les.box for les in record.lesions]), clip=True)
    np.testing.assert_allclose(target["boxes"].numpy(), expected, rtol=1e-5)
    np.testing.assert_array_equal(image[0].numpy(), pre.image)


def test_detection_train_augmentation_keeps_boxes_valid(cohort: Manifest) -> None:
    torch.manual_seed(0)
    i = _abnormal(cohort)
    ds = DetectionDataset(cohort, long_side=128, train=True)
    plain, _ = DetectionDataset(cohort, long_side=128)[i]
    changed = False
    for _ in range(6):
        image, target = ds[i]
        h, w = image.shape[1:]
        assert image.shape == plain.shape
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        boxes = target["boxes"]
        assert boxes.shape[1] == 4 and len(target["labels"]) == len(boxes)
        assert torch.all(boxes[:, 2] > boxes[:, 0]) and torch.all(boxes[:, 3] > boxes[:, 1])
        assert torch.all(boxes[:, [0, 2]] <= w) and torch.all(boxes[:, [1, 3]] <= h)
        assert torch.all(boxes >= 0)
        changed |= not torch.equal(image, plain)
    assert changed


def test_model_boxes_drops_mostly_outside() -> None:
    geometry = Geometry(
        original_size=(100, 100), crop=(0, 0, 50, 100), flipped=False, output_size=(100, 50)
    )
    pre = Preprocessed(np.zeros((100, 50), np.float32), np.ones((100, 50), bool), geometry)
    record = ImageRecord(
        "x.png",
        "p",
        "p",
        "L",
        "CC",
        None,
        None,
        Label.MALIGNANT,
        lesions=[
            Lesion((10, 10, 20, 20), Label.MALIGNANT),  # inside
            Lesion((40, 10, 60, 20), Label.BENIGN),  # half inside: kept, clipped
            Lesion((45, 30, 90, 40), Label.BENIGN),  # mostly outside: dropped
            Lesion((70, 10, 90, 20), Label.BENIGN),  # outside: dropped
        ],
    )
    boxes, labels = model_boxes(record, pre)
    np.testing.assert_allclose(boxes, [[10, 10, 20, 20], [40, 10, 50, 20]])
    assert labels == [Label.MALIGNANT, Label.BENIGN]


def test_collate_and_dataloader(cohort: Manifest) -> None:
    loader = DataLoader(
        DetectionDataset(cohort, long_side=96), batch_size=3, collate_fn=collate_detection
    )
    images, targets = next(iter(loader))
    assert len(images) == len(targets) == 3
    assert all(img.shape[0] == 1 for img in images)
    assert [t["image_id"] for t in targets] == [0, 1, 2]


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not a dicom")
    manifest = Manifest(
        [ImageRecord("bad.dcm", "p", "p", "L", "CC", None, None, Label.NORMAL)], root=tmp_path
    )
    with pytest.raises(MammogramError, match=r"bad\.dcm"):
        DetectionDataset(manifest)[0]


def test_roi_items_from_manifest_alone(tmp_path: Path) -> None:
    # files do not exist: construction must not read pixels
    records = [
        ImageRecord(
            "a.dcm",
            "p1",
            "p1",
            "L",
            "CC",
            None,
            None,
            Label.MALIGNANT,
            lesions=[Lesion((1, 1, 5, 5), Label.MALIGNANT), Lesion((8, 8, 9, 9), Label.UNKNOWN)],
        ),
        ImageRecord(
            "b.dcm",
            "p2",
            "p2",
            "R",
            "CC",
            None,
            None,
            Label.BENIGN,
            lesions=[Lesion((1, 1, 5, 5), Label.BENIGN)],
        ),
        ImageRecord("c.dcm", "p3", "p3", "R", "CC", None, None, Label.NORMAL),
    ]
    ds = RoiDataset(Manifest(records, root=tmp_path), normals_per_image=2)
    assert sorted(ds.labels) == [0] * 6 + [ROI_BENIGN, ROI_MALIGNANT]
    assert len(ds) == 8


def test_roi_crops(cohort: Manifest) -> None:
    ds = RoiDataset(cohort, crop_size=32, long_side=128, normals_per_image=1, seed=3)
    assert ROI_NORMAL in ds.labels and (ROI_BENIGN in ds.labels or ROI_MALIGNANT in ds.labels)
    for i in range(len(ds)):
        crop, label = ds[i]
        assert crop.shape == (1, 32, 32) and crop.dtype == torch.float32
        assert label == ds.labels[i]
        assert float(crop.min()) >= 0.0 and float(crop.max()) <= 1.0
    # deterministic in eval mode, also for the sampled normal-tissue crops
    for i in range(len(ds)):
        assert torch.equal(ds[i][0], ds[i][0])
    other_seed = RoiDataset(cohort, crop_size=32, long_side=128, seed=4)
    normal = ds.labels.index(ROI_NORMAL)
    assert not torch.equal(ds[normal][0], other_seed[normal][0])


def test_roi_normal_boxes_avoid_lesions_and_stay_in_breast(cohort: Manifest) -> None:
    ds = RoiDataset(cohort, crop_size=32, long_side=128, normals_per_image=5)
    for index, item in enumerate(ds.items):
        if item.label != ROI_NORMAL:
            continue
        pre = ds._images[item.image_index]
        box = ds.crop_box(index, pre)
        lesions, _ = model_boxes(cohort.records[item.image_index], pre)
        for les in lesions:
            iw = min(box[2], les[2]) - max(box[0], les[0])
            ih = min(box[3], les[3]) - max(box[1], les[1])
            assert iw <= 0 or ih <= 0
        cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
        assert pre.mask[cy, cx]


def test_roi_train_jitter_varies(cohort: Manifest) -> None:
    torch.manual_seed(1)
    ds = RoiDataset(cohort, crop_size=32, long_side=128, train=True)
    lesion = next(i for i, lab in enumerate(ds.labels) if lab != ROI_NORMAL)
    crops = [ds[lesion][0] for _ in range(4)]
    assert any(not torch.equal(crops[0], c) for c in crops[1:])
    assert all(c.shape == (1, 32, 32) for c in crops)


def test_lru_bounded(cohort: Manifest) -> None:
    ds = RoiDataset(cohort, crop_size=16, long_side=96, cache_images=2)
    for i in range(len(ds)):
        ds[i]
    assert len(ds._images._lru) <= 2


def test_crop_augmentation_is_a_dihedral_turn_with_intensity_change() -> None:
    crop = torch.zeros(1, 12, 12)
    crop[0, 2:5, 1:9] = 0.6  # an asymmetric bright bar on a zero background
    crop[0, 6, 3] = 0.9
    turns = [crop.rot90(k, dims=(-2, -1)) for k in range(4)]
    dihedral = [t for r in turns for t in (r, r.flip(-1))]
    torch.manual_seed(3)
    seen = set()
    for _ in range(40):
        out = Augment().crop(crop)
        assert out.shape == crop.shape and out.min() >= 0.0 and out.max() <= 1.0
        matches = [i for i, d in enumerate(dihedral) if torch.equal(out > 0, d > 0)]
        assert matches, "background stays zero and the breast pixels move rigidly"
        seen.add(matches[0])
    assert len(seen) > 4  # flips and quarter turns are drawn
    torch.manual_seed(3)
    first = Augment().crop(crop)
    torch.manual_seed(3)
    assert torch.equal(Augment().crop(crop), first)  # torch's RNG only
