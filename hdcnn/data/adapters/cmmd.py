"""CMMD, the Chinese Mammography Database (TCIA).

Root layout: ``CMMD_clinicaldata_revision.xlsx`` (columns ``ID1, LeftRight, Age, number,
abnormality, classification, subtype``; one row per labelled breast) and
``CMMD/<ID1>/<date>-NA-NA-<n>/1.000000-NA-<n>/1-1.dcm`` ... (the ``CMMD/`` level may be absent).

- Laterality and view come from each file's DICOM tags (ImageLaterality, ViewPosition or
  ViewCodeSequence, read with the same helpers as :func:`hdcnn.read_mammogram`), never from
  the file number.
- Label of a breast with a row: ``classification`` Benign/Malignant. The other breast of the
  patient has no row: its images are **unknown**, not normal. No boxes.
- Age from the table (years); patient id = study id = ``ID1``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from hdcnn.data.adapters._common import (
    clean,
    dicom_header,
    parse_age,
    parse_laterality,
    require_file,
)
from hdcnn.data.manifest import ImageRecord, Manifest
from hdcnn.data.tables import read_excel, require_columns
from hdcnn.dicom import age_from_tags, laterality_from_tags, view_from_tags
from hdcnn.errors import DatasetError
from hdcnn.terms import Label, parse_label, worst_label

logger = logging.getLogger(__name__)

TABLE = "CMMD_clinicaldata_revision.xlsx"
COLUMNS = ("ID1", "LeftRight", "Age", "classification")


def _read_table(path: Path) -> pd.DataFrame:
    frame = read_excel(path, "openpyxl")
    require_columns(frame, COLUMNS, path)
    return frame


def load_cmmd(root: Path) -> Manifest:
    """Manifest of a CMMD root (see the module docstring).

    Raises:
        DatasetError: the clinical table is missing or malformed, or no DICOM file is found.
    """
    table = require_file(root, TABLE, "CMMD")
    frame = _read_table(table)
    image_root = root / "CMMD" if (root / "CMMD").is_dir() else root
    breasts: dict[tuple[str, str], list[Label]] = {}
    ages: dict[str, float] = {}
    for row in frame.to_dict("records"):
        pid = clean(row["ID1"])
        if not pid:
            continue
        side = parse_laterality(row["LeftRight"])
        if side is not None:
            breasts.setdefault((pid, side), []).append(parse_label(row["classification"]))
        age = parse_age(row["Age"])
        if age is not None:
            ages[pid] = age
    records = []
    for pid in dict.fromkeys(clean(p) for p in frame["ID1"] if clean(p)):
        folder = image_root / pid
        files = sorted(folder.rglob("*.dcm")) if folder.is_dir() else []
        if not files:
            logger.warning("cmmd: no DICOM file under %s", folder)
            continue
        for path in files:
            header = dicom_header(path)
            side = laterality_from_tags(header)
            label = worst_label(breasts.get((pid, side), [])) if side else Label.UNKNOWN
            age = ages.get(pid, age_from_tags(header))
            records.append(
                ImageRecord(
                    image_path=path.relative_to(root).as_posix(),
                    patient_id=pid,
                    study_id=pid,
                    laterality=side,
                    view=view_from_tags(header),
                    age=age,
                    density=None,
                    label=label,
                    dataset="cmmd",
                )
            )
    if not records:
        raise DatasetError(str(image_root), f"no DICOM file of the patients in {TABLE} found")
    return Manifest(records, root=root)
