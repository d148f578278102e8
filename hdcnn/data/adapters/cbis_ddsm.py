"""CBIS-DDSM (TCIA), curated DDSM with ROI masks.

Root layout: the four description CSVs ``{mass,calc}_case_description_{train,test}_set.csv``
(at the root or one folder below) and the TCIA image tree, e.g.::

    CBIS-DDSM/Mass-Training_P_00001_LEFT_CC/<date>-DDSM-NA-<n>/
        1.000000-full mammogram images-<n>/1-1.dcm
    CBIS-DDSM/Mass-Training_P_00001_LEFT_CC_1/<date>-.../
        1.000000-ROI mask images-<n>/1-1.dcm and 1-2.dcm

(older downloads: ``.../000000.dcm``, ``000001.dcm``). The CSV path cells do not match the disk
names below the first folder (and may end in ``"\\n"``), so images are found by the first
folder name (``Mass-Training_P_00001_LEFT_CC``) anywhere under ``root``.

- One CSV row per abnormality; rows are grouped by (patient, side, view) into one image
  record (mass and calcification rows of the same view merge). Pathology ``MALIGNANT`` ->
  malignant, ``BENIGN`` / ``BENIGN_WITHOUT_CALLBACK`` -> benign; the image takes the worst.
  No normal images and no age. Density ``breast_density`` / ``breast density`` 1-4 -> A-D.
- Each lesion's box is the bounding box of its ROI mask: of the DICOM files in the ROI folder,
  the mask is the one with the full image's shape and binary content (the other is the
  cropped lesion). Masks are decoded one at a time, only to compute the box; a lesion whose
  mask cannot be found keeps its label but gives no box.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pydicom

from hdcnn.data.adapters._common import (
    clean,
    density_letter,
    dicom_header,
    parse_laterality,
    warn_missing,
)
from hdcnn.data.manifest import ImageRecord, Lesion, Manifest
from hdcnn.data.tables import read_csv, require_columns
from hdcnn.errors import DatasetError
from hdcnn.terms import Label, LesionSource, parse_label, worst_label

logger = logging.getLogger(__name__)

CSV_NAMES: tuple[str, ...] = (
    "mass_case_description_train_set.csv",
    "mass_case_description_test_set.csv",
    "calc_case_description_train_set.csv",
    "calc_case_description_test_set.csv",
)
COLUMNS = (
    "patient_id",
    "left or right breast",
    "image view",
    "abnormality type",
    "pathology",
    "image file path",
    "ROI mask file path",
)
_FOLDER = re.compile(r"^(Mass|Calc)-(Training|Test)_P_\d+_(LEFT|RIGHT)_(CC|MLO)(_\d+)?$")


def _find_csvs(root: Path) -> list[Path]:
    found = []
    for name in CSV_NAMES:
        candidates = [root / name, *sorted(root.glob(f"*/{name}"))]
        found.extend(p for p in candidates[:2] if p.is_file())
    return list(dict.fromkeys(found))


def _index_folders(root: Path) -> dict[str, Path]:
    """TCIA series folders named like ``Mass-Training_P_00001_LEFT_CC[_1]`` -> their path."""
    index: dict[str, Path] = {}
    for dirpath, dirnames, _ in os.walk(root):
        for name in list(dirnames):
            if _FOLDER.match(name):
                index.setdefault(name, Path(dirpath) / name)
                dirnames.remove(name)  # no need to look inside
    return index


def _first_folder(cell: object) -> str:
    """First path component of a CSV path cell (``"Mass-Training_P_00001_LEFT_CC/..\\n"``)."""
    return clean(cell).replace("\\", "/").split("/")[0].strip()


def _dicoms(folder: Path | None) -> list[Path]:
    return sorted(folder.rglob("*.dcm")) if folder is not None else []


def mask_box(
    candidates: list[Path], shape: tuple[int, int]
) -> tuple[float, float, float, float] | None:
    """Bounding box of the ROI mask among ``candidates``.

    The mask is the candidate whose header has the full image's ``shape`` (rows, columns) and
    whose pixels take at most two values; the cropped lesion image is smaller. Only such
    candidates are decoded.

    Returns:
        ``(x1, y1, x2, y2)`` with ``x2``/``y2`` one past the last mask pixel, or ``None``.
    """
    for path in candidates:
        header = dicom_header(path)
        if (int(header.get("Rows", 0)), int(header.get("Columns", 0))) != shape:
            continue
        try:
            pixels = pydicom.dcmread(path).pixel_array
        except Exception as exc:  # any decoder failure: try the next candidate
            logger.warning("%s: cannot decode ROI mask (%s)", path, exc)
            continue
        if pixels.ndim != 2 or np.unique(pixels).size > 2:
            continue
        rows = np.flatnonzero(pixels.any(axis=1))
        cols = np.flatnonzero(pixels.any(axis=0))
        if rows.size == 0:
            continue
        return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))
    return None


def load_cbis_ddsm(root: Path) -> Manifest:
    """Manifest of a CBIS-DDSM root (see the module docstring).

    Raises:
        DatasetError: no description CSV, a CSV without the expected columns, or none of its
            full mammograms found on disk.
    """
    csvs = _find_csvs(root)
    if not csvs:
        raise DatasetError(
            str(root / CSV_NAMES[0]), f"not found (nor the other description CSVs) under {root}"
        )
    folders = _index_folders(root)
    groups: dict[tuple[str, str, str], dict] = {}
    for source in csvs:
        frame = read_csv(source)
        density_col = "breast_density" if "breast_density" in frame.columns else "breast density"
        require_columns(frame, (*COLUMNS, density_col), source)
        split = "test" if "_test_" in source.name else "train"
        for row in frame.to_dict("records"):
            pid = clean(row["patient_id"])
            side = parse_laterality(row["left or right breast"])
            view = clean(row["image view"]).upper()
            group = groups.setdefault(
                (pid, side or "", view),
                {"folders": [], "rows": [], "density": None, "split": split},
            )
            group["folders"].append(_first_folder(row["image file path"]))
            group["density"] = group["density"] or density_letter(row[density_col])
            group["rows"].append(row)
    records, missing = [], []
    for (pid, side, view), group in groups.items():
        image = next(
            (p for name in dict.fromkeys(group["folders"]) for p in _dicoms(folders.get(name))),
            None,
        )
        if image is None:
            missing.append(group["folders"][0])
            continue
        header = dicom_header(image)
        shape = (int(header.get("Rows", 0)), int(header.get("Columns", 0)))
        labels, lesions = [], []
        for row in group["rows"]:
            label = parse_label(row["pathology"])
            labels.append(label)
            names = {_first_folder(row["ROI mask file path"])}
            names.add(_first_folder(row.get("cropped image file path", "")))
            candidates = [p for name in sorted(names) if name for p in _dicoms(folders.get(name))]
            box = mask_box(candidates, shape)
            if box is None:
                logger.warning("cbis-ddsm: no ROI mask found for %s (%s)", pid, sorted(names))
                continue
            kind = "calcification" if "calc" in clean(row["abnormality type"]).lower() else "mass"
            lesion_label = label if label != Label.NORMAL else Label.UNKNOWN
            lesions.append(Lesion(box, lesion_label, kind, LesionSource.MASK))
        records.append(
            ImageRecord(
                image_path=image.relative_to(root).as_posix(),
                patient_id=pid,
                study_id=pid,
                laterality=side or None,
                view=view if view in {"CC", "MLO"} else ("other" if view else None),
                age=None,
                density=group["density"],
                label=worst_label(labels),
                lesions=lesions,
                dataset="cbis-ddsm",
                source_split=group["split"],
            )
        )
    warn_missing("cbis-ddsm", missing)
    if not records:
        raise DatasetError(str(root), "no full mammogram folder of the description CSVs found")
    return Manifest(records, root=root)
