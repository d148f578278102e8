"""Manifest records, CSV round trip and malformed-CSV errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hdcnn.data.manifest import COLUMNS, ImageRecord, Lesion, Manifest
from hdcnn.errors import DatasetError
from hdcnn.terms import Label, LesionSource


def _manifest(root: Path) -> Manifest:
    return Manifest(
        [
            ImageRecord(
                image_path="images/a.png",
                patient_id="001",
                study_id="s1",
                laterality="L",
                view="CC",
                age=61.5,
                density="B",
                label=Label.MALIGNANT,
                lesions=[
                    Lesion((10, 20, 30.5, 40), Label.MALIGNANT, "mass", LesionSource.CIRCLE),
                    Lesion((1, 2, 3, 4), "benign", "calcification", "point"),
                ],
                dataset="test",
                source_split="train",
            ),
            ImageRecord(
                image_path=str(root / "elsewhere" / "b.dcm"),
                patient_id="002",
                study_id="002",
                laterality=None,
                view=None,
                age=None,
                density=None,
                label=Label.NORMAL,
            ),
        ],
        root=root,
    )


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    csv_path = tmp_path / "manifest.csv"
    manifest.save_csv(csv_path)
    loaded = Manifest.load_csv(csv_path)
    assert loaded.root == tmp_path.absolute()

    def fields(m: Manifest) -> list[dict]:
        return [{**r.__dict__, "image_path": m.resolve(r)} for r in m]

    assert fields(loaded) == fields(manifest)
    assert loaded[1].image_path == "elsewhere/b.dcm"  # inside the CSV folder -> relative
    assert loaded.resolve(loaded[0]) == (tmp_path / "images" / "a.png").absolute()
    assert loaded.patients() == ["001", "002"]
    assert loaded.patient_labels() == {"001": Label.MALIGNANT, "002": Label.NORMAL}
    assert not list(tmp_path.glob("*.tmp-*")) and not list(tmp_path.glob(".*.tmp-*"))


def test_csv_layout_and_relative_paths(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "data")
    out = tmp_path / "data" / "out" / "m.csv"
    manifest.save_csv(out)
    frame = manifest.to_frame()
    assert tuple(frame.columns) == COLUMNS
    lines = out.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS)
    # image outside the CSV folder -> absolute; paths resolve to the same files after loading
    loaded = Manifest.load_csv(out)
    assert [loaded.resolve(r) for r in loaded] == [manifest.resolve(r) for r in manifest]
    assert '"box": [10.0, 20.0, 30.5, 40.0]' in lines[1].replace('""', '"')


def test_subset_keeps_root_and_order(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    sub = manifest.subset(["002"])
    assert len(sub) == 1 and sub[0].patient_id == "002" and sub.root == manifest.root


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("image_path,label\na.png,normal\n", "missing column(s) patient_id"),
        ("image_path,patient_id,label\na.png,1,sick\n", "row 1, column 'label'"),
        (
            "image_path,patient_id,label,age\na.png,1,normal,\nb.png,2,normal,old\n",
            "row 2, column 'age'",
        ),
        (
            "image_path,patient_id,label,lesions\na.png,1,benign,[{\n",
            "column 'lesions': not valid JSON",
        ),
        (
            'image_path,patient_id,label,lesions\na.png,1,benign,"[{""box"": [5, 5, 1, 1]}]"\n',
            "row 1, column 'lesions': lesion 0",
        ),
        ("image_path,patient_id,label,view\na.png,1,normal,LAT\n", "column 'view'"),
        ("image_path,patient_id,label,laterality\na.png,1,normal,X\n", "column 'laterality'"),
        ("image_path,patient_id,label\n,1,normal\n", "column 'image_path'"),
        ("", "not a readable CSV table"),
    ],
)
def test_malformed_csv_raises_dataset_error(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DatasetError) as info:
        Manifest.load_csv(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_missing_csv(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        Manifest.load_csv(tmp_path / "nope.csv")


def test_lesion_validation() -> None:
    with pytest.raises(ValueError):
        Lesion((0, 0, 1, 1), Label.NORMAL)
    with pytest.raises(ValueError):
        Lesion((0, 0, 1), Label.BENIGN)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Lesion((0, 0, 1, 1), Label.BENIGN, kind="tumour")
