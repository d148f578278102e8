"""INbreast.

Root layout: ``INbreast.xls`` (or ``INbreast.csv``, ``;``-separated), ``AllDICOMs/`` with
``<File Name>_<patient hash>_MG_<R|L>_<CC|ML>_ANON.dcm`` and ``AllXML/<File Name>.xml``
(OsiriX plist ROIs, optional per image).

- Table columns ``Patient ID, Patient age, Laterality, View, Acquisition date, File Name, ACR,
  Bi-Rads, Mass , Micros, Distortion, Asymmetry ...``: header names are stripped (several
  end in a space); rows without a numeric ``File Name`` (the two totals rows at the end) are
  dropped. View ``ML`` means MLO.
- Label from ``Bi-Rads`` (1 -> normal, 2-3 -> benign, 4a/4b/4c/5/6 -> malignant); ``ACR`` 1-4
  -> density A-D. Patient id = ``Patient ID`` unless it is empty or ``removed`` (as in the
  distributed table), then the hash in the DICOM file name; study id = patient id.
- Lesions from ``Images[0].ROIs[]`` of the XML: ``Name`` gives the kind; the box is the
  bounding box of ``Point_px`` (``"(x, y)"`` strings); a one-point ROI (a single
  calcification) becomes a ``point`` lesion of side ``2 * POINT_HALF_SIDE``. Lesions take the
  image label (BI-RADS) when it is benign/malignant, else unknown.
"""

from __future__ import annotations

import logging
import math
import plistlib
import re
from pathlib import Path

import pandas as pd

from hdcnn.data.adapters._common import (
    birads_label,
    clean,
    density_letter,
    lesion_kind,
    parse_age,
    parse_laterality,
)
from hdcnn.data.manifest import ImageRecord, Lesion, Manifest
from hdcnn.data.tables import read_csv, read_excel, require_columns, unreadable_reason
from hdcnn.errors import DatasetError
from hdcnn.terms import Label, LesionSource

logger = logging.getLogger(__name__)

COLUMNS = ("Laterality", "View", "File Name", "Bi-Rads")
#: Half side in pixels of the box given to a one-point ROI (INbreast pixels are 70 micron).
POINT_HALF_SIDE: float = 8.0
_POINT = re.compile(r"\(\s*([-+\d.eE]+)\s*,\s*([-+\d.eE]+)")


def _read_table(root: Path) -> tuple[pd.DataFrame, Path]:
    xls, csv_path = root / "INbreast.xls", root / "INbreast.csv"
    if xls.is_file():
        frame = read_excel(xls, "xlrd")
        return frame.fillna(""), xls
    if csv_path.is_file():
        return read_csv(csv_path, sep=";"), csv_path
    raise DatasetError(str(xls), f"not found (nor INbreast.csv): {root} is not an INbreast root")


def _file_name(value: object) -> str:
    """``"22678622"`` from ``22678622``, ``"22678622.0"``; ``""`` for totals/blank rows."""
    text = clean(value)
    if re.fullmatch(r"\d+(\.0+)?", text):
        return text.split(".")[0]
    return ""


def _point(text: object) -> tuple[float, float] | None:
    """``(x, y)`` from an OsiriX ``"(x, y)"`` string; ``None`` unless two finite numbers."""
    match = _POINT.match(str(text))
    try:
        point = (float(match.group(1)), float(match.group(2))) if match else None
    except ValueError:  # "(e, .)": the pattern's characters but no number
        return None
    return point if point and all(math.isfinite(v) for v in point) else None


def read_rois(path: Path, label: Label) -> list[Lesion]:
    """Lesions of an OsiriX plist XML (``Images[0].ROIs[]``).

    Args:
        path: the ``AllXML/<File Name>.xml`` file.
        label: the label given to every lesion (unknown if ``normal``).

    Returns:
        One lesion per ROI with at least one point; boxes in original pixels.

    Raises:
        DatasetError: the file is not a readable plist of the expected structure.
    """
    try:
        with open(path, "rb") as fh:
            data = plistlib.load(fh)
    except Exception as exc:  # plistlib and expat raise many types on a damaged file
        raise DatasetError(
            str(path), f"not a readable OsiriX plist ({unreadable_reason(exc)})"
        ) from exc
    try:
        rois = data["Images"][0]["ROIs"]
    except (KeyError, IndexError, TypeError):
        rois = None
    if not isinstance(rois, list) or not all(isinstance(roi, dict) for roi in rois):
        raise DatasetError(str(path), "no Images[0].ROIs list of ROI objects in the plist")
    lesion_label = Label.UNKNOWN if label == Label.NORMAL else label
    lesions = []
    for roi in rois:
        texts = roi.get("Point_px")
        points = [p for text in texts if (p := _point(text))] if isinstance(texts, list) else []
        if not points:
            continue
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        if len(points) == 1:
            x, y, h = xs[0], ys[0], POINT_HALF_SIDE
            box, source = (max(0.0, x - h), max(0.0, y - h), x + h, y + h), LesionSource.POINT
        else:
            box, source = (min(xs), min(ys), max(xs), max(ys)), LesionSource.MASK
        kind = lesion_kind(str(roi.get("Name", "")))
        lesions.append(Lesion(box, lesion_label, kind, source))
    return lesions


def load_inbreast(root: Path) -> Manifest:
    """Manifest of an INbreast root (see the module docstring).

    Raises:
        DatasetError: the table is missing or malformed, an XML is unreadable, or no DICOM
            file of the table is found.
    """
    frame, source = _read_table(root)
    require_columns(frame, COLUMNS, source)
    dicoms: dict[str, Path] = {}
    for path in sorted((root / "AllDICOMs").glob("*.dcm")):
        dicoms.setdefault(path.name.split("_")[0], path)
    records, missing, dropped = [], [], 0
    for row in frame.to_dict("records"):
        name = _file_name(row["File Name"])
        if not name:
            dropped += 1
            continue
        path = dicoms.get(name)
        if path is None:
            missing.append(f"AllDICOMs/{name}_*.dcm")
            continue
        parts = path.stem.split("_")
        pid = clean(row.get("Patient ID"))
        if not pid or pid.lower() == "removed":
            pid = parts[1] if len(parts) > 1 else name
        label = birads_label(row["Bi-Rads"])
        xml = root / "AllXML" / f"{name}.xml"
        view = clean(row["View"]).upper()
        records.append(
            ImageRecord(
                image_path=path.relative_to(root).as_posix(),
                patient_id=pid,
                study_id=pid,
                laterality=parse_laterality(row["Laterality"]),
                view={"CC": "CC", "MLO": "MLO", "ML": "MLO"}.get(view, "other" if view else None),
                age=parse_age(row.get("Patient age")),
                density=density_letter(row.get("ACR")),
                label=label,
                lesions=read_rois(xml, label) if xml.is_file() else [],
                dataset="inbreast",
            )
        )
    if dropped:
        logger.debug("inbreast: dropped %d row(s) without a File Name (totals)", dropped)
    if missing:
        logger.warning(
            "inbreast: %d listed image(s) not found (first: %s)", len(missing), missing[0]
        )
    if not records:
        raise DatasetError(str(root / "AllDICOMs"), f"no DICOM file of {source.name} found")
    return Manifest(records, root=root)
