"""RSNA Screening Mammography Breast Cancer Detection (Kaggle 2022).

Root layout: ``train.csv`` and ``train_images/<patient_id>/<image_id>.dcm``. Columns
``site_id, patient_id, image_id, laterality, view, age, cancer, biopsy, invasive, BIRADS,
implant, density, machine_id, difficult_negative_case``.

Label convention (not pathology for every image): ``cancer == 1`` -> malignant;
``cancer == 0`` and ``biopsy == 1`` -> benign; otherwise normal. No boxes. Views other than
CC/MLO (``ML``, ``LM``, ``AT`` ...) become ``other``. Study id = patient id.
"""

from __future__ import annotations

from pathlib import Path

from hdcnn.data.adapters._common import (
    clean,
    density_letter,
    parse_age,
    parse_laterality,
    parse_view,
    require_file,
    warn_missing,
)
from hdcnn.data.manifest import ImageRecord, Manifest
from hdcnn.data.tables import read_csv, require_columns
from hdcnn.errors import DatasetError
from hdcnn.terms import Label

COLUMNS = ("patient_id", "image_id", "laterality", "view", "age", "cancer", "biopsy")


def rsna_label(cancer: str, biopsy: str) -> Label:
    """The project's convention: cancer -> malignant, biopsied non-cancer -> benign, else normal."""
    if _flag(cancer):
        return Label.MALIGNANT
    if _flag(biopsy):
        return Label.BENIGN
    return Label.NORMAL


def _flag(value: str) -> bool:
    try:
        return float(value) == 1.0
    except ValueError:
        return False


def load_rsna(root: Path) -> Manifest:
    """Manifest of the RSNA training set at ``root`` (see the module docstring).

    Raises:
        DatasetError: ``train.csv`` missing or without the expected columns, or no image found.
    """
    source = require_file(root, "train.csv", "RSNA screening mammography")
    frame = read_csv(source)
    require_columns(frame, COLUMNS, source)
    records, missing = [], []
    for row in frame.to_dict("records"):
        pid, image_id = clean(row["patient_id"]), clean(row["image_id"])
        relative = f"train_images/{pid}/{image_id}.dcm"
        if not (root / relative).is_file():
            missing.append(relative)
            continue
        records.append(
            ImageRecord(
                image_path=relative,
                patient_id=pid,
                study_id=pid,
                laterality=parse_laterality(row["laterality"]),
                view=parse_view(row["view"]),
                age=parse_age(row["age"]),
                density=density_letter(row.get("density")),
                label=rsna_label(clean(row["cancer"]), clean(row["biopsy"])),
                dataset="rsna",
                source_split="train",
            )
        )
    warn_missing("rsna", missing)
    if not records:
        raise DatasetError(str(root / "train_images"), "no image of train.csv found")
    return Manifest(records, root=root)
