"""The training wing's image source: exact model images from the spill, no pixels held."""

from __future__ import annotations

import numpy as np
import pytest

from hdcnn.train.distributed import DistContext


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from hdcnn.data.manifest import Manifest
    from hdcnn.data.synth import write_cohort
    from hdcnn.train.images import ImageSource

    root = tmp_path_factory.mktemp("synth_images")
    write_cohort(root, patients=2, seed=1, size=160)
    src = ImageSource(Manifest.load_csv(root / "manifest.csv"), 96, root / "spill")
    src.prepare(DistContext(), progress=False)
    return src


def test_model_images_come_back_exactly_as_preprocessed(source) -> None:  # type: ignore[no-untyped-def]
    from hdcnn.preprocess import preprocess
    from hdcnn.reader import read_mammogram

    for item in source.items:
        record = item.record
        mammo = read_mammogram(source.manifest.resolve(record))
        ref = preprocess(
            mammo.pixels,
            long_side=96,
            source=mammo.meta.source,
            laterality=mammo.meta.laterality or record.laterality,
        )
        image = source.image(item.index)
        assert np.array_equal(image.prep.image, ref.image)
        assert np.array_equal(image.prep.mask, ref.mask)
        assert image.prep.geometry == ref.geometry
        assert np.array_equal(image.pixels, mammo.pixels)
        assert item.meta.original_size == tuple(mammo.meta.original_size)
        assert len(item.gt) == len(item.gt_labels) == len(item.gt_kinds)


def test_items_hold_no_pixels(source) -> None:  # type: ignore[no-untyped-def]
    """What the run keeps per image is a few numbers: its lesion boxes and header facts."""
    for item in source.items:
        arrays = [v for v in vars(item).values() if isinstance(v, np.ndarray)]
        assert sum(a.nbytes for a in arrays) <= 16 * max(len(item.gt), 1)


def test_a_second_prepare_reads_nothing(source, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import hdcnn.reader

    def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("read again")

    monkeypatch.setattr(hdcnn.reader, "read_mammogram", fail)
    assert len(source.prepare(DistContext(), progress=False)) == len(source.items)


def test_the_recipe_keeps_lesions_the_from_scratch_datasets_drop() -> None:
    """One box mapping, two keep rules: ``hdcnn cv`` keeps a lesion with a pixel inside the
    model image; the from-scratch datasets drop one mostly outside it."""
    from hdcnn.data.manifest import ImageRecord, Lesion
    from hdcnn.data.torchdata import model_boxes, visible_lesions
    from hdcnn.preprocess import preprocess

    image = np.zeros((100, 60), np.float32)
    image[10:90, :40] = 0.5  # breast on the left; the crop keeps columns 0 to about 40
    pre = preprocess(image, long_side=100, laterality="L")
    record = ImageRecord(
        image_path="x.png",
        patient_id="p",
        study_id="p",
        laterality="L",
        view="CC",
        age=None,
        density=None,
        label="benign",
        lesions=(Lesion(box=(30.0, 40.0, 58.0, 50.0), label="benign", kind="mass"),),
    )
    width = pre.geometry.to_model(np.array([[30.0, 40.0, 58.0, 50.0]]), clip=True)
    assert width[0, 2] - width[0, 0] >= 1  # a part of it lies inside
    assert len(visible_lesions(record, pre, min_visible=0.0)[0]) == 1
    assert len(model_boxes(record, pre)[0]) == 0


def test_a_dataset_without_normal_images_is_refused_before_training() -> None:
    """CBIS-DDSM lists no normal view: the whole-image abnormal head cannot be fitted, so the
    run stops at once, naming the dataset and what is missing."""
    from types import SimpleNamespace

    from hdcnn.errors import DatasetError
    from hdcnn.terms import Label
    from hdcnn.train.folds import check_label_mix

    items = [SimpleNamespace(label=label) for label in (Label.BENIGN, Label.MALIGNANT)]
    with pytest.raises(DatasetError, match=r"CBIS.*no normal image among its 2"):
        check_label_mix(items, "CBIS")  # type: ignore[arg-type]
    check_label_mix([*items, SimpleNamespace(label=Label.NORMAL)], "x")  # type: ignore[list-item]
