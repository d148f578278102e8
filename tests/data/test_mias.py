"""The mini-MIAS adapter on the real folder (fixture ``mias_root``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from hdcnn.data.adapters import ADAPTERS, load_dataset
from hdcnn.data.manifest import Manifest
from hdcnn.errors import DatasetError
from hdcnn.terms import Label, LesionSource


@pytest.fixture(scope="module")
def mias(mias_root: Path) -> Manifest:
    return load_dataset("mias", mias_root)


def _info_rows(mias_root: Path) -> list[list[str]]:
    lines = (mias_root / "Info.txt").read_text(encoding="latin-1").splitlines()
    return [line.split() for line in lines if line.startswith("mdb")]


def test_counts(mias: Manifest, mias_root: Path) -> None:
    assert len(mias) == 242
    assert len(mias.patients()) == 121
    labels = Counter(r.label for r in mias)
    assert labels[Label.NORMAL] == 158
    assert labels[Label.UNKNOWN] == 0
    # every image file on disk is in the manifest, once
    on_disk = sorted(p.name for p in mias_root.glob("mdb*.pgm"))
    assert sorted(r.image_path for r in mias) == on_disk
    assert all(mias.resolve(r).is_file() for r in mias)


def test_patient_pairs_and_laterality(mias: Manifest) -> None:
    for record in mias:
        number = int(record.image_path[3:6])
        assert record.patient_id == f"{(number + 1) // 2:03d}"
        assert record.laterality == ("R" if number % 2 else "L")
        assert record.view == "MLO" and record.age is None
        assert record.density in {"F", "G", "D"}
        assert record.study_id == record.patient_id
    per_patient = Counter(r.patient_id for r in mias)
    assert set(per_patient.values()) == {2}


def test_box_geometry_from_info_rows(mias: Manifest, mias_root: Path) -> None:
    by_name = {r.image_path: r for r in mias}
    # mdb005 has two benign circumscribed masses: (477, 133, r30) and (500, 168, r26)
    mdb005 = by_name["mdb005.pgm"]
    assert mdb005.label == Label.BENIGN
    assert [lesion.box for lesion in mdb005.lesions] == [
        (447.0, 1024 - 133 - 30, 507.0, 1024 - 133 + 30),
        (474.0, 1024 - 168 - 26, 526.0, 1024 - 168 + 26),
    ]
    assert all(
        lesion.kind == "mass" and lesion.source == LesionSource.CIRCLE for lesion in mdb005.lesions
    )
    # every row with coordinates gives exactly its clipped circle box
    expected: dict[str, list[tuple[float, ...]]] = {}
    for row in _info_rows(mias_root):
        if len(row) >= 7 and row[4].isdigit():
            x, y, r = float(row[4]), float(row[5]), float(row[6])
            box = (max(0, x - r), max(0, 1024 - y - r), min(1024, x + r), min(1024, 1024 - y + r))
            expected.setdefault(f"{row[0]}.pgm", []).append(box)
    got = {r.image_path: [lesion.box for lesion in r.lesions] for r in mias if r.lesions}
    assert got == expected
    for record in mias:
        for lesion in record.lesions:
            x1, y1, x2, y2 = lesion.box
            assert 0 <= x1 < x2 <= 1024 and 0 <= y1 < y2 <= 1024


def test_rows_without_coordinates_count_for_label(mias: Manifest, mias_root: Path) -> None:
    by_name = {r.image_path: r for r in mias}
    no_coords = [row for row in _info_rows(mias_root) if row[2] != "NORM" and len(row) < 7]
    no_coords += [row for row in _info_rows(mias_root) if len(row) >= 5 and not row[4].isdigit()]
    assert no_coords, "the real table has rows without coordinates"
    for row in no_coords:
        record = by_name[f"{row[0]}.pgm"]
        expected = Label.MALIGNANT if row[3] == "M" else Label.BENIGN
        assert record.label in {expected, Label.MALIGNANT}
    # mdb059 (CIRC B, no coordinates) and mdb216 (CALC M, "*NOTE 3*"): labelled, no box
    assert by_name["mdb059.pgm"].label == Label.BENIGN and not by_name["mdb059.pgm"].lesions
    assert by_name["mdb216.pgm"].label == Label.MALIGNANT and not by_name["mdb216.pgm"].lesions


def test_image_label_is_worst_row_and_kinds(mias: Manifest, mias_root: Path) -> None:
    rows: dict[str, list[list[str]]] = {}
    for row in _info_rows(mias_root):
        rows.setdefault(f"{row[0]}.pgm", []).append(row)
    kind = {"CIRC": "mass", "SPIC": "mass", "MISC": "mass", "CALC": "calcification"}
    kind |= {"ARCH": "distortion", "ASYM": "asymmetry"}
    for record in mias:
        severities = {row[3] for row in rows[record.image_path] if len(row) > 3}
        if "M" in severities:
            assert record.label == Label.MALIGNANT
        elif "B" in severities:
            assert record.label == Label.BENIGN
        else:
            assert record.label == Label.NORMAL
        boxed = [r for r in rows[record.image_path] if len(r) >= 7 and r[4].isdigit()]
        assert [lesion.kind for lesion in record.lesions] == [kind[r[2]] for r in boxed]
        assert all(lesion.label != Label.UNKNOWN for lesion in record.lesions)


def test_unknown_name_and_bad_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset("ddsm-old", tmp_path)
    assert all(name in str(info.value) for name in ADAPTERS)
    with pytest.raises(DatasetError, match=r"Info\.txt"):
        load_dataset("mias", tmp_path)
    with pytest.raises(DatasetError, match="not found"):
        load_dataset("mias", tmp_path / "absent")
    (tmp_path / "Info.txt").write_text("header only\n")
    with pytest.raises(DatasetError, match="no image"):
        load_dataset("mias", tmp_path)
