"""VinDr-Mammo (PhysioNet).

Root layout: ``breast-level_annotations.csv``, ``finding_annotations.csv``, optional
``metadata.csv`` and ``images/<study_id>/<image_id>.dicom`` (note the ``.dicom`` extension).

- One record per row of ``breast-level_annotations.csv`` (one image each); patient id = study
  id (the tables have no patient id); ``split`` ``training``/``test`` -> ``train``/``test``.
- Labels are a **proxy** (VinDr has no pathology): ``BI-RADS 1`` -> normal, ``2``-``3`` ->
  benign, ``4``-``5`` -> malignant; the same mapping of ``finding_birads`` labels each finding
  (unknown where empty). Density ``DENSITY A``..``D`` -> ``A``..``D``.
- Lesions: rows of ``finding_annotations.csv`` whose ``finding_categories`` (a Python-list
  string such as ``['Mass']``) is not ``['No Finding']`` and that have a box
  ``xmin, ymin, xmax, ymax``.
- Age from ``metadata.csv`` (``Patient's Age`` like ``053Y`` keyed by ``SOP Instance UID``),
  else the DICOM PatientAge. Images whose header says ``FOR PROCESSING`` are skipped.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

from hdcnn.data.adapters._common import (
    birads_label,
    clean,
    clip_box,
    density_letter,
    dicom_header,
    is_for_processing,
    lesion_kind,
    parse_age,
    parse_laterality,
    parse_view,
    require_file,
    warn_missing,
)
from hdcnn.data.manifest import ImageRecord, Lesion, Manifest
from hdcnn.data.tables import read_csv, require_columns
from hdcnn.dicom import age_from_tags
from hdcnn.errors import DatasetError
from hdcnn.terms import Label, LesionSource

logger = logging.getLogger(__name__)

BREAST_COLUMNS = ("study_id", "image_id", "laterality", "view_position", "breast_birads")
FINDING_COLUMNS = ("image_id", "finding_categories", "xmin", "ymin", "xmax", "ymax")


def parse_categories(text: str) -> list[str]:
    """``"['Mass', 'Suspicious Calcification']"`` -> ``["Mass", "Suspicious Calcification"]``."""
    text = clean(text)
    if not text:
        return []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return [text.strip("[]'\" ")]
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def _number(text: object) -> float | None:
    try:
        value = float(clean(text))
    except ValueError:
        return None
    return value if value == value else None  # NaN -> None


def _findings(root: Path) -> dict[str, list[Lesion]]:
    source = require_file(root, "finding_annotations.csv", "VinDr-Mammo")
    frame = read_csv(source)
    require_columns(frame, FINDING_COLUMNS, source)
    lesions: dict[str, list[Lesion]] = {}
    for row in frame.to_dict("records"):
        categories = [c for c in parse_categories(row["finding_categories"]) if c != "No Finding"]
        coords = [_number(row[c]) for c in ("xmin", "ymin", "xmax", "ymax")]
        if not categories or any(c is None for c in coords):
            continue
        x1, y1, x2, y2 = coords  # type: ignore[misc]
        height, width = _number(row.get("height")), _number(row.get("width"))
        box = (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
        if height and width:
            box = clip_box(box, int(height), int(width))  # type: ignore[assignment]
        if box is None:
            continue
        label = birads_label(row.get("finding_birads"))
        lesions.setdefault(clean(row["image_id"]), []).append(
            Lesion(
                box,
                Label.UNKNOWN if label == Label.NORMAL else label,
                lesion_kind(categories[0]),
                LesionSource.BOX,
            )
        )
    return lesions


def _ages(root: Path) -> dict[str, float]:
    path = root / "metadata.csv"
    if not path.is_file():
        return {}
    frame = read_csv(path)
    if "SOP Instance UID" not in frame.columns or "Patient's Age" not in frame.columns:
        logger.warning("%s: no 'SOP Instance UID'/'Patient's Age' columns; ages from DICOM", path)
        return {}
    ages = {}
    for uid, age in zip(frame["SOP Instance UID"], frame["Patient's Age"], strict=True):
        value = parse_age(age)
        if value is not None:
            ages[clean(uid)] = value
    return ages


def load_vindr(root: Path) -> Manifest:
    """Manifest of a VinDr-Mammo root (see the module docstring).

    Raises:
        DatasetError: a missing annotation table or column, or no image found.
    """
    source = require_file(root, "breast-level_annotations.csv", "VinDr-Mammo")
    frame = read_csv(source)
    require_columns(frame, BREAST_COLUMNS, source)
    findings = _findings(root)
    ages = _ages(root)
    records, missing, skipped = [], [], 0
    for row in frame.to_dict("records"):
        study, image_id = clean(row["study_id"]), clean(row["image_id"])
        relative = f"images/{study}/{image_id}.dicom"
        path = root / relative
        if not path.is_file():
            missing.append(relative)
            continue
        header = dicom_header(path)
        if is_for_processing(header):
            skipped += 1
            continue
        age = ages.get(image_id)
        if age is None:
            age = age_from_tags(header)
        split = clean(row.get("split")).lower()
        records.append(
            ImageRecord(
                image_path=relative,
                patient_id=study,
                study_id=study,
                laterality=parse_laterality(row["laterality"]),
                view=parse_view(row["view_position"]),
                age=age,
                density=density_letter(row.get("breast_density")),
                label=birads_label(row["breast_birads"]),
                lesions=findings.get(image_id, []),
                dataset="vindr",
                source_split={"training": "train"}.get(split, split or None),
            )
        )
    warn_missing("vindr", missing)
    if skipped:
        logger.info("vindr: skipped %d FOR PROCESSING image(s)", skipped)
    if not records:
        raise DatasetError(str(root / "images"), "no image of breast-level_annotations.csv found")
    return Manifest(records, root=root)
