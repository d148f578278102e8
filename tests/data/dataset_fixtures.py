"""Builders of tiny copies of each public dataset's distributed layout (for adapter tests).

Every builder writes into a given folder files whose names, columns and quirks copy the real
distribution (see /work/shared/docs/DATASETS.md), with 64 x 48 DICOM images.
"""

from __future__ import annotations

import plistlib
from pathlib import Path

import numpy as np
import pandas as pd

from hdcnn.dicom import build_dicom, write_dicom

H, W = 64, 48


def image(seed: int = 0, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    """A uint16 ``shape`` image with many grey levels (so it is never mistaken for a mask)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4096, size=shape, dtype=np.uint16)


def dicom(path: Path, pixels: np.ndarray | None = None, **tags: object) -> Path:
    """Write a small DICOM at ``path``; ``tags`` go to :func:`hdcnn.dicom.build_dicom`."""
    extra = tags.pop("extra", None)
    ds = build_dicom(image() if pixels is None else pixels, extra=extra, **tags)  # type: ignore[arg-type]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_dicom(path, ds)
    return path


# ----------------------------------------------------------------------------------- CBIS-DDSM
MASS_HEADER = (
    "patient_id,breast_density,left or right breast,image view,abnormality id,abnormality type,"
    "mass shape,mass margins,assessment,pathology,subtlety,image file path,"
    "cropped image file path,ROI mask file path"
)
CALC_HEADER = (
    "patient_id,breast density,left or right breast,image view,abnormality id,abnormality type,"
    "calc type,calc distribution,assessment,pathology,subtlety,image file path,"
    "cropped image file path,ROI mask file path"
)
UID = "1.3.6.1.4.1.9590.100.1.2.{}"


def _mask(rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[rows, cols] = 255
    return mask


def _cbis_paths(folder: str) -> tuple[str, str, str]:
    """CSV path cells (UID folders that do NOT match the disk; the last ends in a newline)."""
    full = f"{folder}/{UID.format(1)}/{UID.format(2)}/000000.dcm"
    crop = f"{folder}_1/{UID.format(3)}/{UID.format(4)}/000000.dcm"
    roi = f"{folder}_1/{UID.format(3)}/{UID.format(5)}/000001.dcm\n"
    return full, crop, roi


def build_cbis(root: Path) -> dict[str, tuple[float, float, float, float]]:
    """CBIS-DDSM: 3 of 4 description CSVs, current and old TCIA layouts.

    Returns:
        Expected mask boxes ``{ROI folder name: (x1, y1, x2, y2)}``.
    """
    tree = root / "CBIS-DDSM"
    # P_00001 LEFT CC: mass 1 (malignant, current layout: crop 1-1.dcm, mask 1-2.dcm),
    # mass 2 (benign without callback, OLD layout: 000000.dcm is a full-size NON-binary
    # decoy, 000001.dcm the mask, in separate series folders); calc 1 (benign) in Calc-Training.
    full = "Mass-Training_P_00001_LEFT_CC"
    dicom(
        tree / full / "07-20-2016-DDSM-NA-74994/1.000000-full mammogram images-24515/1-1.dcm",
        image(1),
        laterality="L",
        view="CC",
    )
    roi1 = tree / f"{full}_1/07-21-2016-DDSM-NA-56257/1.000000-ROI mask images-14987"
    dicom(roi1 / "1-1.dcm", image(2, (20, 16)))  # cropped lesion: small, many grey levels
    dicom(roi1 / "1-2.dcm", _mask(slice(10, 20), slice(5, 15)))
    roi2 = tree / f"{full}_2/{UID.format(7)}"
    dicom(roi2 / f"{UID.format(8)}/000000.dcm", image(3))  # decoy: full shape, not binary
    dicom(roi2 / f"{UID.format(9)}/000001.dcm", _mask(slice(30, 41), slice(20, 22)))
    calc_full = "Calc-Training_P_00001_LEFT_CC"
    dicom(
        tree / calc_full / "08-07-2016-DDSM-NA-1/1.000000-full mammogram images-2/1-1.dcm",
        image(1),
        laterality="L",
        view="CC",
    )
    roi3 = tree / f"{calc_full}_1/08-07-2016-DDSM-NA-3/1.000000-ROI mask images-4"
    dicom(roi3 / "1-1.dcm", _mask(slice(0, 3), slice(40, 48)))  # mask first this time
    dicom(roi3 / "1-2.dcm", image(4, (6, 10)))
    # P_00002 RIGHT MLO: calc test, malignant, current layout
    test_full = "Calc-Test_P_00002_RIGHT_MLO"
    dicom(
        tree / test_full / "08-29-2017-DDSM-NA-5/1.000000-full mammogram images-6/1-1.dcm",
        image(5),
        laterality="R",
        view="MLO",
    )
    roi4 = tree / f"{test_full}_1/08-29-2017-DDSM-NA-7/1.000000-ROI mask images-8"
    dicom(roi4 / "1-1.dcm", image(6, (9, 9)))
    dicom(roi4 / "1-2.dcm", _mask(slice(60, 64), slice(0, 4)))

    f1, c1, r1 = _cbis_paths(full)
    c2 = f"{full}_2/{UID.format(7)}/{UID.format(8)}/000000.dcm"
    r2 = f"{full}_2/{UID.format(7)}/{UID.format(9)}/000001.dcm\n"
    mass = [
        MASS_HEADER,
        f"P_00001,3,LEFT,CC,1,mass,IRREGULAR-ARCHITECTURAL_DISTORTION,SPICULATED,4,MALIGNANT,4,"
        f'{f1},{c1},"{r1}"',
        f'P_00001,3,LEFT,CC,2,mass,OVAL,CIRCUMSCRIBED,3,BENIGN_WITHOUT_CALLBACK,2,{f1},{c2},"{r2}"',
        # listed, but its images were not downloaded: skipped with a warning
        'P_00009,2,RIGHT,CC,1,mass,ROUND,OBSCURED,4,BENIGN,3,"Mass-Training_P_00009_RIGHT_CC/'
        f'{UID.format(1)}/000000.dcm\n",x,"y\n"',
    ]
    (root / "mass_case_description_train_set.csv").write_text("\n".join(mass) + "\n")
    f3, c3, r3 = _cbis_paths(calc_full)
    calc = [
        CALC_HEADER,
        f'P_00001,3,LEFT,CC,1,calcification,AMORPHOUS,CLUSTERED,3,BENIGN,2,{f3},{c3},"{r3}"',
    ]
    (root / "calc_case_description_train_set.csv").write_text("\n".join(calc) + "\n")
    f4, c4, r4 = _cbis_paths(test_full)
    calc_test = [
        CALC_HEADER,
        f'P_00002,2,RIGHT,MLO,1,calcification,PLEOMORPHIC,SEGMENTAL,5,MALIGNANT,5,{f4},{c4},"{r4}"',
    ]
    (root / "calc_case_description_test_set.csv").write_text("\n".join(calc_test) + "\n")
    return {
        f"{full}_1": (5.0, 10.0, 15.0, 20.0),
        f"{full}_2": (20.0, 30.0, 22.0, 41.0),
        f"{calc_full}_1": (40.0, 0.0, 48.0, 3.0),
        f"{test_full}_1": (0.0, 60.0, 4.0, 64.0),
    }


# ----------------------------------------------------------------------------------- VinDr-Mammo
STUDY_A = "0025a5dc99fd5c742026f0b2b030d3e9"
STUDY_B = "d8125545210c08e1b1793a5af6458ee2"
IMAGES_A = {  # image_id -> (laterality, view, breast_birads)
    "2ddfad7286c2b016931ceccd1e2c7bbc": ("L", "CC", "BI-RADS 1"),
    "451a7e5ffb8e8e9e9c3bbbd8e8cf2b6a": ("L", "MLO", "BI-RADS 1"),
    "47c8858666bcce92bcbd57974b5ce522": ("R", "CC", "BI-RADS 4"),
    "fcf12c2803ba8dc564bf1287c0c97d9a": ("R", "MLO", "BI-RADS 3"),
}
IMAGE_B = "4e3a578fe535ea4f5258d3f7f4419db8"  # FOR PROCESSING: skipped
IMAGE_MISSING = "a0e2b9b1d0b0e1f1a1b2c3d4e5f60718"


def build_vindr(root: Path) -> None:
    """VinDr-Mammo: ``.dicom`` files, breast-level and finding tables, metadata ages."""
    breast = [
        "study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,"
        "breast_density,split"
    ]
    for i, (image_id, (side, view, birads)) in enumerate(IMAGES_A.items()):
        dicom(
            root / "images" / STUDY_A / f"{image_id}.dicom",
            image(i),
            laterality=side,
            view=view,
            age_years=None if i else 47,
        )
        breast.append(f"{STUDY_A},s1,{image_id},{side},{view},{H},{W},{birads},DENSITY C,training")
    dicom(
        root / "images" / STUDY_B / f"{IMAGE_B}.dicom",
        image(9),
        laterality="L",
        view="CC",
        extra={"PresentationIntentType": "FOR PROCESSING"},
    )
    breast.append(f"{STUDY_B},s2,{IMAGE_B},L,CC,{H},{W},BI-RADS 2,DENSITY A,test")
    breast.append(f"{STUDY_B},s2,{IMAGE_MISSING},R,CC,{H},{W},BI-RADS 2,DENSITY A,test")
    (root / "breast-level_annotations.csv").write_text("\n".join(breast) + "\n")
    ids = list(IMAGES_A)
    head = (
        "study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,"
        "breast_density,finding_categories,finding_birads,xmin,ymin,xmax,ymax,split"
    )
    finding = [
        head,
        f"{STUDY_A},s1,{ids[0]},L,CC,{H},{W},BI-RADS 1,DENSITY C,\"['No Finding']\",,,,,,training",
        f"{STUDY_A},s1,{ids[2]},R,CC,{H},{W},BI-RADS 4,DENSITY C,\"['Mass']\",BI-RADS 4,"
        "10.5,12.0,30.25,40.0,training",
        f"{STUDY_A},s1,{ids[2]},R,CC,{H},{W},BI-RADS 4,DENSITY C,"
        "\"['Suspicious Calcification', 'Mass']\",BI-RADS 3,1.0,2.0,60.0,70.0,training",
        f"{STUDY_A},s1,{ids[3]},R,MLO,{H},{W},BI-RADS 3,DENSITY C,\"['Focal Asymmetry']\",,"
        "5,5,9,9,training",
    ]
    (root / "finding_annotations.csv").write_text("\n".join(finding) + "\n")
    meta = [
        "SOP Instance UID,Series Instance UID,Patient's Age,Manufacturer",
        f"{ids[1]},x,053Y,SIEMENS",
        f"{ids[2]},x,061Y,SIEMENS",
    ]
    (root / "metadata.csv").write_text("\n".join(meta) + "\n")


# ------------------------------------------------------------------------------------------ CMMD
CMMD_FILES = {  # file -> (laterality, view); file numbers deliberately NOT in L/R CC/MLO order
    "1-1.dcm": ("R", "MLO"),
    "1-2.dcm": ("L", "CC"),
    "1-3.dcm": ("R", "CC"),
    "1-4.dcm": ("L", "MLO"),
}


def build_cmmd(root: Path) -> None:
    """CMMD: clinical xlsx (one row per labelled breast), TCIA tree, tags only in DICOM."""
    for pid, series in (("D1-0001", "1.000000-NA-70244"), ("D2-0002", "1.000000-NA-11111")):
        folder = root / "CMMD" / pid / "07-18-2010-NA-NA-79377" / series
        for i, (name, (side, view)) in enumerate(CMMD_FILES.items()):
            ds = build_dicom(image(i), laterality=side, view=view)
            if name == "1-4.dcm":
                del ds.ViewPosition  # view only in ViewCodeSequence ("medio-lateral oblique")
            folder.mkdir(parents=True, exist_ok=True)
            write_dicom(folder / name, ds)
    frame = pd.DataFrame(
        {
            "ID1": ["D1-0001", "D2-0002", "D2-0002"],
            "LeftRight": ["R", "L", "R"],
            "Age": [44, 66, 66],
            "number": [2, 2, 2],
            "abnormality": ["calcification", "mass", "both"],
            "classification": ["Malignant", "Benign", "Benign"],
            "subtype": ["Luminal A", None, None],
        }
    )
    frame.to_excel(root / "CMMD_clinicaldata_revision.xlsx", index=False)


# ------------------------------------------------------------------------------------------ RSNA
RSNA_ROWS = [
    "site_id,patient_id,image_id,laterality,view,age,cancer,biopsy,invasive,BIRADS,implant,"
    "density,machine_id,difficult_negative_case",
    "2,10006,462822612,L,CC,61.0,0,0,0,,0,,29,False",
    "2,10006,1459541791,L,MLO,61.0,0,1,0,0,0,B,29,False",
    "1,10011,220375232,R,CC,,1,1,1,0,0,C,21,False",
    "1,10011,270344397,R,AT,,0,0,0,,0,C,21,False",
    "1,10042,102733848,L,CC,55.0,0,0,0,1,0,A,93,True",  # image not on disk
]


def build_rsna(root: Path) -> None:
    """RSNA: ``train.csv`` and ``train_images/<patient_id>/<image_id>.dcm``."""
    (root / "train.csv").write_text("\n".join(RSNA_ROWS) + "\n")
    for i, row in enumerate(RSNA_ROWS[1:-1]):
        _, pid, image_id, side, _view, *_ = row.split(",")
        dicom(
            root / "train_images" / pid / f"{image_id}.dcm",
            image(i),
            laterality=side,
            photometric="MONOCHROME1" if i == 0 else "MONOCHROME2",
        )


# -------------------------------------------------------------------------------------- INbreast
INBREAST_HEADER = (
    "Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads;Mass ;"
    "Micros;Distortion;Asymmetry;Findings Notes (in Portuguese);Lesion Annotation Status ;"
    "Pectoral Muscle Annotation;Other Annotations"
)
INBREAST_ROWS = [
    "removed;removed;R;CC;201001;22678622;4;1;;;;;normal;;;",
    "removed;removed;R;ML;201001;22678646;4;1;;;;;normal;;;",
    "removed;removed;L;CC;201001;20586908;2;4c;X;X;;;nódulo;;;",
    "removed;removed;L;ML;201001;20586934;2;3;;X;;;calcificações;;;",
    ";;;;;;;;15;20;3;2;;;;",
    ";;;;;;;;Total;Total;;;;;;",
]


def build_inbreast(root: Path) -> None:
    """INbreast: ``;``-csv with trailing-space columns and totals rows, DICOMs, OsiriX XML."""
    (root / "INbreast.csv").write_text("\n".join([INBREAST_HEADER, *INBREAST_ROWS]) + "\n")
    files = {
        "22678622": "22678622_61b13c59bcba149e_MG_R_CC_ANON.dcm",
        "22678646": "22678646_61b13c59bcba149e_MG_R_ML_ANON.dcm",
        "20586908": "20586908_6c613a14b80a8591_MG_L_CC_ANON.dcm",
        "20586934": "20586934_6c613a14b80a8591_MG_L_ML_ANON.dcm",
    }
    for i, name in enumerate(files.values()):
        dicom(root / "AllDICOMs" / name, image(i))
    rois = {
        "20586908": [
            {
                "Name": "Mass",
                "NumberOfPoints": 3,
                "Point_px": ["(10.5, 12.25)", "(20.0, 30.0)", "(15, 25)"],
            },
            {"Name": "Calcification", "NumberOfPoints": 1, "Point_px": ["(30.0, 40.0)"]},
        ],
        "20586934": [{"Name": "Cluster", "NumberOfPoints": 2, "Point_px": ["(1, 2)", "(5, 9)"]}],
    }
    (root / "AllXML").mkdir()
    for name, items in rois.items():
        data = {"Images": [{"ImageIndex": 0, "NumberOfROIs": len(items), "ROIs": items}]}
        (root / "AllXML" / f"{name}.xml").write_bytes(plistlib.dumps(data))
