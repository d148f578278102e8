"""Adapters on tiny fixtures that copy each dataset's distributed format and quirks."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from dataset_fixtures import (
    CMMD_FILES,
    IMAGE_B,
    IMAGES_A,
    STUDY_A,
    build_cbis,
    build_cmmd,
    build_inbreast,
    build_rsna,
    build_vindr,
)

from hdcnn.data.adapters import ADAPTERS, load_dataset
from hdcnn.data.manifest import ImageRecord, Lesion, Manifest
from hdcnn.errors import DatasetError
from hdcnn.terms import Label, LesionSource


def _by(manifest: Manifest, key: str = "image_path") -> dict[str, ImageRecord]:
    return {getattr(r, key): r for r in manifest}


def test_registry_names() -> None:
    expected = {"mias", "cbis-ddsm", "vindr", "cmmd", "rsna", "inbreast", "folder", "synth"}
    assert set(ADAPTERS) == expected


@pytest.mark.parametrize(
    ("name", "missing"),
    [
        ("cbis-ddsm", "mass_case_description_train_set.csv"),
        ("vindr", "breast-level_annotations.csv"),
        ("cmmd", "CMMD_clinicaldata_revision.xlsx"),
        ("rsna", "train.csv"),
        ("inbreast", "INbreast.xls"),
        ("folder", "labels.csv"),
        ("synth", "manifest.csv"),
    ],
)
def test_wrong_root_names_missing_file(tmp_path: Path, name: str, missing: str) -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset(name, tmp_path)
    assert missing in str(info.value)


# ----------------------------------------------------------------------------------- CBIS-DDSM
def test_cbis_ddsm(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    boxes = build_cbis(tmp_path)
    with caplog.at_level(logging.WARNING):
        manifest = load_dataset("cbis-ddsm", tmp_path)
    assert "1 listed image(s) not found" in caplog.text  # P_00009: folder not downloaded
    assert len(manifest) == 2  # P_00001 LEFT CC (mass + calc rows merged), P_00002 RIGHT MLO
    left = next(r for r in manifest if r.patient_id == "P_00001")
    right = next(r for r in manifest if r.patient_id == "P_00002")
    assert (left.laterality, left.view, right.laterality, right.view) == ("L", "CC", "R", "MLO")
    assert left.label == Label.MALIGNANT and right.label == Label.MALIGNANT
    assert left.density == "C" and right.density == "B"  # breast_density vs `breast density`
    assert (left.source_split, right.source_split) == ("train", "test")
    assert left.age is None and left.study_id == "P_00001"
    assert left.image_path.startswith("CBIS-DDSM/Mass-Training_P_00001_LEFT_CC/")
    assert manifest.resolve(left).is_file()
    # boxes from the mask (not the crop, not the full-size decoy), one per abnormality row
    assert [(les.box, les.label, les.kind) for les in left.lesions] == [
        (boxes["Mass-Training_P_00001_LEFT_CC_1"], Label.MALIGNANT, "mass"),
        (boxes["Mass-Training_P_00001_LEFT_CC_2"], Label.BENIGN, "mass"),  # WITHOUT_CALLBACK
        (boxes["Calc-Training_P_00001_LEFT_CC_1"], Label.BENIGN, "calcification"),
    ]
    assert [(les.box, les.kind) for les in right.lesions] == [
        (boxes["Calc-Test_P_00002_RIGHT_MLO_1"], "calcification")
    ]
    assert all(les.source == LesionSource.MASK for r in manifest for les in r.lesions)


def test_cbis_ddsm_old_layout_and_missing_mask(tmp_path: Path) -> None:
    build_cbis(tmp_path)
    # the old download names the full image 000000.dcm; a lost ROI folder keeps the label only
    new = tmp_path / "CBIS-DDSM/Calc-Test_P_00002_RIGHT_MLO"
    dcm = next(new.rglob("1-1.dcm"))
    dcm.rename(dcm.with_name("000000.dcm"))
    for path in (tmp_path / "CBIS-DDSM/Calc-Test_P_00002_RIGHT_MLO_1").rglob("*.dcm"):
        path.unlink()
    right = next(r for r in load_dataset("cbis", tmp_path) if r.patient_id == "P_00002")
    assert right.image_path.endswith("/000000.dcm")
    assert right.label == Label.MALIGNANT and right.lesions == []


def test_cbis_ddsm_bad_csv(tmp_path: Path) -> None:
    (tmp_path / "mass_case_description_test_set.csv").write_text(
        "patient_id,pathology\nP_1,BENIGN\n"
    )
    with pytest.raises(DatasetError, match="missing column"):
        load_dataset("cbis-ddsm", tmp_path)


# ----------------------------------------------------------------------------------- VinDr-Mammo
def test_vindr(tmp_path: Path) -> None:
    build_vindr(tmp_path)
    manifest = load_dataset("vindr", tmp_path)
    records = _by(manifest)
    assert len(manifest) == 4  # FOR PROCESSING image skipped, missing image skipped
    assert not any(IMAGE_B in p for p in records)
    ids = list(IMAGES_A)
    for image_id, (side, view, _) in IMAGES_A.items():
        record = records[f"images/{STUDY_A}/{image_id}.dicom"]
        assert (record.laterality, record.view) == (side, view)
        assert record.patient_id == record.study_id == STUDY_A
        assert record.density == "C" and record.source_split == "train"
    labels = [records[f"images/{STUDY_A}/{i}.dicom"].label for i in ids]
    assert labels == [Label.NORMAL, Label.NORMAL, Label.MALIGNANT, Label.BENIGN]  # proxy
    ages = [records[f"images/{STUDY_A}/{i}.dicom"].age for i in ids]
    assert ages == [47.0, 53.0, 61.0, None]  # DICOM PatientAge, metadata.csv "053Y", none
    assert records[f"images/{STUDY_A}/{ids[0]}.dicom"].lesions == []  # ['No Finding']
    mass, calc = records[f"images/{STUDY_A}/{ids[2]}.dicom"].lesions
    assert mass == Lesion((10.5, 12.0, 30.25, 40.0), Label.MALIGNANT, "mass", LesionSource.BOX)
    assert calc.kind == "calcification" and calc.label == Label.BENIGN
    assert calc.box == (1.0, 2.0, 48.0, 64.0)  # clipped to width x height
    (asym,) = records[f"images/{STUDY_A}/{ids[3]}.dicom"].lesions
    assert asym.kind == "asymmetry" and asym.label == Label.UNKNOWN  # empty finding_birads


# ------------------------------------------------------------------------------------------ CMMD
def test_cmmd(tmp_path: Path) -> None:
    build_cmmd(tmp_path)
    manifest = load_dataset("cmmd", tmp_path)
    assert len(manifest) == 8 and manifest.patients() == ["D1-0001", "D2-0002"]
    for record in manifest:
        side, view = CMMD_FILES[Path(record.image_path).name]
        assert (record.laterality, record.view) == (side, view)  # from tags, not file number
        assert record.image_path.startswith(f"CMMD/{record.patient_id}/")
        assert record.lesions == [] and record.density is None
        if record.patient_id == "D1-0001":
            # only the right breast has a row: the left is unknown, never normal
            expected = Label.MALIGNANT if side == "R" else Label.UNKNOWN
            assert record.label == expected and record.age == 44.0
        else:
            assert record.label == Label.BENIGN and record.age == 66.0


# ------------------------------------------------------------------------------------------ RSNA
def test_rsna(tmp_path: Path) -> None:
    build_rsna(tmp_path)
    manifest = load_dataset("rsna", tmp_path)
    records = _by(manifest)
    assert len(manifest) == 4  # 102733848 not on disk
    normal = records["train_images/10006/462822612.dcm"]
    assert (normal.label, normal.age, normal.density, normal.view) == (
        Label.NORMAL,
        61.0,
        None,
        "CC",
    )
    assert records["train_images/10006/1459541791.dcm"].label == Label.BENIGN  # biopsy, no cancer
    cancer = records["train_images/10011/220375232.dcm"]
    assert (cancer.label, cancer.age, cancer.density) == (Label.MALIGNANT, None, "C")
    assert records["train_images/10011/270344397.dcm"].view == "other"  # AT
    assert manifest.patients() == ["10006", "10011"]
    assert all(r.lesions == [] and r.patient_id == r.study_id for r in manifest)


# -------------------------------------------------------------------------------------- INbreast
def test_inbreast(tmp_path: Path) -> None:
    build_inbreast(tmp_path)
    manifest = load_dataset("inbreast", tmp_path)
    assert len(manifest) == 4  # both totals rows dropped
    records = {Path(r.image_path).name.split("_")[0]: r for r in manifest}
    assert records["22678646"].view == "MLO"  # "ML" means MLO
    assert records["22678622"].patient_id == "61b13c59bcba149e"  # "removed" -> file-name hash
    assert records["20586908"].study_id == "6c613a14b80a8591"
    assert [records[k].label for k in ("22678622", "20586908", "20586934")] == [
        Label.NORMAL,
        Label.MALIGNANT,  # 4c
        Label.BENIGN,
    ]
    assert records["22678622"].density == "D" and records["20586908"].density == "B"
    assert records["22678622"].age is None and records["22678622"].lesions == []
    mass, calc = records["20586908"].lesions
    assert mass == Lesion((10.5, 12.25, 20.0, 30.0), Label.MALIGNANT, "mass", LesionSource.MASK)
    assert calc.source == LesionSource.POINT and calc.kind == "calcification"
    assert calc.box == (22.0, 32.0, 38.0, 48.0)
    (cluster,) = records["20586934"].lesions
    assert cluster.kind == "calcification" and cluster.box == (1.0, 2.0, 5.0, 9.0)


def test_inbreast_bad_xml(tmp_path: Path) -> None:
    build_inbreast(tmp_path)
    (tmp_path / "AllXML" / "20586908.xml").write_text("<plist><dict><key>Images")
    with pytest.raises(DatasetError, match=r"20586908\.xml"):
        load_dataset("inbreast", tmp_path)


# ---------------------------------------------------------------------------------- folder, synth
def test_folder(tmp_path: Path) -> None:
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / "img").mkdir(exist_ok=True)
        (tmp_path / "img" / name).write_bytes(b"")
    (tmp_path / "labels.csv").write_text(
        "Image_Path,Label,patient_id,laterality,view,age,density,x1,y1,x2,y2,lesion_kind\n"
        "img/a.png,malignant,p1,left,cc,50,2,1,2,3,4,mass\n"
        "img/a.png,benign,p1,left,cc,50,2,5,6,7,8,calcification\n"
        "img/b.png,N,p1,R,MLO,,,,,,,\n"
        "img/c.png,normal,,,,,,,,,,\n"
        "img/missing.png,normal,,,,,,,,,,\n"
    )
    manifest = load_dataset("folder", tmp_path)
    a, b, c = manifest
    assert (a.label, a.laterality, a.view, a.age, a.density) == (
        Label.MALIGNANT,
        "L",
        "CC",
        50.0,
        "B",
    )
    assert [les.label for les in a.lesions] == [Label.MALIGNANT, Label.BENIGN]
    assert a.lesions[1].box == (5.0, 6.0, 7.0, 8.0) and a.lesions[1].kind == "calcification"
    assert b.label == Label.NORMAL and b.lesions == [] and b.patient_id == "p1"
    assert c.patient_id == "c" and c.study_id == "c"
    assert manifest.resolve(c) == (tmp_path / "img" / "c.png").absolute()
    # the CSV may also be given directly
    assert len(load_dataset("folder", tmp_path / "labels.csv")) == 3


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("image_path\na.png\n", "missing column(s) label"),
        ("image_path,label\na.png,sick\n", "row 1, column 'label'"),
        ("image_path,label,age\na.png,normal,x\n", "row 1, column 'age'"),
        ("image_path,label,x1,y1,x2,y2\na.png,benign,9,9,1,1\n", "row 1, column 'x1'"),
    ],
)
def test_folder_errors(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "labels.csv").write_text(content)
    with pytest.raises(DatasetError) as info:
        load_dataset("folder", tmp_path)
    assert expected in str(info.value) and "labels.csv" in str(info.value)


def test_synth_loads_generator_manifest(tmp_path: Path) -> None:
    record = ImageRecord(
        "images/x.dcm",
        "S1",
        "S1",
        "L",
        "CC",
        55,
        "B",
        Label.BENIGN,
        [Lesion((1, 1, 5, 5), Label.BENIGN)],
    )
    Manifest([record], root=tmp_path).save_csv(tmp_path / "manifest.csv")
    manifest = load_dataset("synth", tmp_path)
    assert manifest[0].lesions == record.lesions and manifest[0].dataset == "synth"
    assert manifest.resolve(manifest[0]) == (tmp_path / "images" / "x.dcm").absolute()
