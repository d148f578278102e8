"""A generic folder of images with a CSV of labels (and optional boxes).

The CSV is ``root`` itself when ``root`` is a ``.csv`` file; otherwise ``root/labels.csv``, or
the only ``.csv`` file in ``root``. Columns (header names are case-insensitive):

- required: ``image_path`` (relative to the CSV's folder, or absolute) and ``label``
  (``normal``/``benign``/``malignant``/``unknown``; also ``N``/``B``/``M``, ``cancer``);
- optional: ``patient_id`` (default: the image file name without extension), ``study_id``
  (default: ``patient_id``), ``laterality`` (L/R/left/right), ``view`` (CC/MLO/other), ``age``
  (years), ``density`` (A-D or 1-4), ``split``;
- optional lesion box: ``x1, y1, x2, y2`` (original pixels, origin top-left) with
  ``lesion_label`` (default: the row's label) and ``lesion_kind`` (default ``mass``). Several
  rows with the same ``image_path`` give one image with several lesions (its label is the
  worst row label).

Images listed but absent on disk are skipped with a warning.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from hdcnn.data.adapters._common import (
    clean,
    density_letter,
    parse_laterality,
    warn_missing,
)
from hdcnn.data.manifest import LESION_KINDS, ImageRecord, Lesion, Manifest
from hdcnn.data.tables import read_csv, require_columns
from hdcnn.errors import DatasetError
from hdcnn.terms import Label, LesionSource, parse_label, worst_label


def _find_csv(root: Path) -> Path:
    if root.is_file():
        return root
    if (root / "labels.csv").is_file():
        return root / "labels.csv"
    found = sorted(p for p in root.glob("*.csv") if p.is_file())  # not a folder named x.csv
    if len(found) == 1:
        return found[0]
    if not found:
        raise DatasetError(str(root / "labels.csv"), "not found: a folder dataset needs a CSV")
    names = ", ".join(p.name for p in found)
    raise DatasetError(str(root), f"several CSV files ({names}): name one, or call it labels.csv")


def load_folder(root: Path) -> Manifest:
    """Manifest of a folder + CSV dataset (see the module docstring for the columns).

    Raises:
        DatasetError: no CSV, a missing required column, or a bad cell (row and column named).
    """
    source = _find_csv(root)
    frame = read_csv(source)
    frame.columns = [c.lower() for c in frame.columns]
    require_columns(frame, ("image_path", "label"), source)
    folder = source.absolute().parent
    records: dict[str, ImageRecord] = {}
    labels: dict[str, list[Label]] = {}
    for number, row in enumerate(frame.to_dict("records"), start=1):

        def fail(column: str, problem: str, number: int = number) -> DatasetError:
            return DatasetError(str(source), f"row {number}, column '{column}': {problem}")

        image = clean(row["image_path"])
        if not image:
            raise fail("image_path", "empty image path")
        label = _label(clean(row["label"]), lambda p: fail("label", p))
        if image not in records:
            pid = clean(row.get("patient_id")) or Path(image).stem
            age_text = clean(row.get("age"))
            try:
                age = float(age_text) if age_text else None
            except ValueError:
                raise fail("age", "not a number") from None
            if age is not None and (not math.isfinite(age) or age < 0):
                raise fail("age", "not a valid age (a finite number >= 0)")
            view = clean(row.get("view")).upper() or None
            if view not in {None, "CC", "MLO", "OTHER"}:
                raise fail("view", "not CC, MLO or other")
            records[image] = ImageRecord(
                image_path=image,
                patient_id=pid,
                study_id=clean(row.get("study_id")) or pid,
                laterality=parse_laterality(row.get("laterality")),
                view="other" if view == "OTHER" else view,
                age=age,
                density=density_letter(row.get("density")) or (clean(row.get("density")) or None),
                label=Label.UNKNOWN,
                lesions=[],
                dataset="folder",
                source_split=clean(row.get("split")) or None,
            )
            labels[image] = []
        labels[image].append(label)
        lesion = _lesion(row, label, fail)
        if lesion is not None:
            records[image].lesions.append(lesion)
    for image, record in records.items():
        record.label = worst_label(labels[image])
    present = {image: (folder / image).is_file() for image in records}
    found = [record for image, record in records.items() if present[image]]
    warn_missing("folder", [image for image, ok in present.items() if not ok])
    if not found:
        raise DatasetError(str(source), "lists no image present on disk")
    return Manifest(found, root=folder)


def _label(text: str, fail: Callable[[str], DatasetError]) -> Label:
    label = parse_label(text)
    if label == Label.UNKNOWN and text.lower() not in {"", "unknown"}:
        raise fail("not normal, benign, malignant or unknown")
    return label


def _lesion(
    row: dict[str, str], label: Label, fail: Callable[[str, str], DatasetError]
) -> Lesion | None:
    cells = [clean(row.get(c)) for c in ("x1", "y1", "x2", "y2")]
    if not any(cells):
        return None
    try:
        box = tuple(float(c) for c in cells)
    except ValueError:
        raise fail("x1", "the box x1, y1, x2, y2 is not 4 numbers") from None
    lesion_label = (
        parse_label(clean(row.get("lesion_label"))) if clean(row.get("lesion_label")) else label
    )
    if lesion_label == Label.NORMAL:
        raise fail("lesion_label", "a box on a normal row needs lesion_label benign/malignant")
    kind = clean(row.get("lesion_kind")).lower() or "mass"
    if kind not in LESION_KINDS:
        raise fail("lesion_kind", f"not one of {', '.join(LESION_KINDS)}")
    try:
        return Lesion(box, lesion_label, kind, LesionSource.BOX)  # type: ignore[arg-type]
    except ValueError as exc:
        raise fail("x1", str(exc)) from None
