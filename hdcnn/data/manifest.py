"""The manifest: one row per image, with its patient, view, label and lesion boxes.

Every dataset adapter produces a :class:`Manifest`; training, evaluation, statistics and the app
consume it. It is stored as a CSV file (see ``docs/DATASETS_USAGE.md``) with these columns:

``image_path, patient_id, study_id, laterality, view, age, density, label, lesions, dataset,
source_split``

- ``image_path`` is absolute or relative to the CSV file's folder.
- Empty cells mean "not known" (``None``).
- ``lesions`` is a JSON list of objects
  ``{"box": [x1, y1, x2, y2], "label": "benign", "kind": "mass", "source": "circle"}``
  with boxes in original pixels (x right, y down, origin top-left); ``[]`` for no lesion.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hdcnn.data.tables import read_csv
from hdcnn.errors import DatasetError
from hdcnn.terms import Label, Laterality, LesionSource, View, worst_label
from hdcnn.utils import atomic_path

#: Column order of the manifest CSV.
COLUMNS: tuple[str, ...] = (
    "image_path",
    "patient_id",
    "study_id",
    "laterality",
    "view",
    "age",
    "density",
    "label",
    "lesions",
    "dataset",
    "source_split",
)
#: Columns a manifest CSV must have; the others default to empty.
REQUIRED_COLUMNS: tuple[str, ...] = ("image_path", "patient_id", "label")

#: Allowed values of :attr:`Lesion.kind`.
LESION_KINDS: tuple[str, ...] = ("mass", "calcification", "distortion", "asymmetry", "other")


@dataclass
class Lesion:
    """One annotated finding on one image.

    Attributes:
        box: ``(x1, y1, x2, y2)`` float pixels of the original image (x right, y down, origin
            top-left), ``x1 <= x2`` and ``y1 <= y2``.
        label: ``benign``, ``malignant`` or ``unknown`` (never ``normal``).
        kind: one of :data:`LESION_KINDS`.
        source: how the box was obtained (box, circle, mask outline or point).
    """

    box: tuple[float, float, float, float]
    label: Label
    kind: str = "mass"
    source: LesionSource = LesionSource.BOX

    def __post_init__(self) -> None:
        # The messages never quote the values: they may come from an annotation file.
        try:
            box = tuple(float(v) for v in self.box)
        except (TypeError, ValueError):
            raise ValueError("lesion box must be 4 finite numbers") from None
        if len(box) != 4 or not all(math.isfinite(v) for v in box):
            raise ValueError("lesion box must be 4 finite numbers")
        if box[2] < box[0] or box[3] < box[1]:
            raise ValueError("lesion box must have x1 <= x2 and y1 <= y2")
        self.box = box  # type: ignore[assignment]
        if self.label not in set(Label) or self.label == Label.NORMAL:
            raise ValueError("lesion label must be benign, malignant or unknown")
        self.label = Label(self.label)
        if self.kind not in LESION_KINDS:
            raise ValueError(f"lesion kind must be one of {', '.join(LESION_KINDS)}")
        if self.source not in set(LesionSource):
            raise ValueError(f"lesion source must be one of {', '.join(LesionSource)}")
        self.source = LesionSource(self.source)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready form: ``{"box": [x1, y1, x2, y2], "label", "kind", "source"}``."""
        return {
            "box": [round(v, 2) for v in self.box],
            "label": str(self.label),
            "kind": self.kind,
            "source": str(self.source),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Lesion:
        """Inverse of :meth:`to_dict`. Raises ``ValueError``/``KeyError`` on a bad object."""
        box = data["box"]
        if not isinstance(box, list | tuple):
            raise ValueError("lesion box must be a list of 4 numbers")
        return cls(
            box=tuple(box),  # type: ignore[arg-type]
            label=str(data.get("label", "unknown")),  # type: ignore[arg-type]
            kind=str(data.get("kind", "mass")),
            source=str(data.get("source", "box")),  # type: ignore[arg-type]
        )


@dataclass
class ImageRecord:
    """One image of a dataset.

    Attributes:
        image_path: absolute, or relative to :attr:`Manifest.root` (the CSV's folder).
        patient_id: the dataset's patient identifier (splits are made on it).
        study_id: exam identifier (equals ``patient_id`` where the dataset has none).
        laterality: ``"L"``, ``"R"`` or ``None``.
        view: ``"CC"``, ``"MLO"``, ``"other"`` or ``None``.
        age: years, or ``None``.
        density: breast density as the dataset codes it: BI-RADS ``"A"``..``"D"`` for most;
            mini-MIAS keeps its tissue code ``"F"``/``"G"``/``"D"``; ``None`` when unknown.
        label: image label ``normal``/``benign``/``malignant``/``unknown``.
        lesions: annotated findings with boxes (may be empty even for an abnormal image).
        dataset: adapter name the record came from.
        source_split: the dataset's own split (``"train"``/``"test"``...) if it has one.
    """

    image_path: str
    patient_id: str
    study_id: str
    laterality: str | None
    view: str | None
    age: float | None
    density: str | None
    label: Label
    lesions: list[Lesion] = field(default_factory=list)
    dataset: str = ""
    source_split: str | None = None

    def __post_init__(self) -> None:
        self.label = Label(self.label)
        if self.laterality is not None:
            self.laterality = str(Laterality(self.laterality))
        if self.view is not None:
            self.view = str(View(self.view))
        if self.age is not None:
            self.age = float(self.age)
            if not math.isfinite(self.age) or self.age < 0:
                raise ValueError(f"age must be a finite number >= 0, got {self.age!r}")


class Manifest:
    """A list of :class:`ImageRecord` plus the folder their relative paths resolve against.

    Args:
        records: the images.
        root: folder for relative ``image_path`` values (the CSV's folder after
            :meth:`load_csv`, the dataset root for adapters); ``None`` if all are absolute.
    """

    def __init__(self, records: Iterable[ImageRecord], root: str | os.PathLike[str] | None = None):
        self.records: list[ImageRecord] = list(records)
        self.root: Path | None = Path(root) if root is not None else None

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.records)

    def __getitem__(self, index: int) -> ImageRecord:
        return self.records[index]

    def __repr__(self) -> str:
        return f"Manifest({len(self.records)} images, {len(self.patients())} patients)"

    def resolve(self, record: ImageRecord) -> Path:
        """Absolute path of ``record``'s image file (relative paths join :attr:`root`)."""
        path = Path(record.image_path)
        if not path.is_absolute() and self.root is not None:
            path = self.root / path
        return path.absolute()

    def patients(self) -> list[str]:
        """Distinct patient ids, in first-seen order."""
        return list(dict.fromkeys(r.patient_id for r in self.records))

    def patient_labels(self) -> dict[str, Label]:
        """Each patient's worst image label (malignant > benign > normal > unknown)."""
        labels: dict[str, list[Label]] = {}
        for record in self.records:
            labels.setdefault(record.patient_id, []).append(record.label)
        return {pid: worst_label(values) for pid, values in labels.items()}

    def subset(self, patient_ids: Iterable[str]) -> Manifest:
        """The records of the given patients (same order as here, same root)."""
        wanted = set(patient_ids)
        return Manifest([r for r in self.records if r.patient_id in wanted], root=self.root)

    def to_frame(self) -> pd.DataFrame:
        """One row per image, columns :data:`COLUMNS`; ``lesions`` is a JSON string.

        Missing values are ``None``; ``image_path`` is as stored (maybe relative).
        """
        rows = [
            {
                "image_path": r.image_path,
                "patient_id": r.patient_id,
                "study_id": r.study_id,
                "laterality": r.laterality,
                "view": r.view,
                "age": r.age,
                "density": r.density,
                "label": str(r.label),
                "lesions": json.dumps([lesion.to_dict() for lesion in r.lesions]),
                "dataset": r.dataset,
                "source_split": r.source_split,
            }
            for r in self.records
        ]
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def save_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the manifest to ``path`` atomically.

        Image paths inside the CSV's folder are written relative to it, others absolute, so
        the CSV and its images can be moved together.
        """
        target = Path(path)
        folder = target.absolute().parent
        with atomic_path(target) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(COLUMNS)
            for record in self.records:
                image = self.resolve(record)
                try:
                    stored = image.relative_to(folder).as_posix()
                except ValueError:
                    stored = str(image)
                writer.writerow(
                    [
                        stored,
                        record.patient_id,
                        record.study_id,
                        record.laterality or "",
                        record.view or "",
                        "" if record.age is None else f"{record.age:g}",
                        record.density or "",
                        str(record.label),
                        json.dumps([lesion.to_dict() for lesion in record.lesions]),
                        record.dataset,
                        record.source_split or "",
                    ]
                )

    @classmethod
    def load_csv(cls, path: str | os.PathLike[str]) -> Manifest:
        """Read a manifest CSV written by :meth:`save_csv` (or by hand, same columns).

        Returns:
            The manifest with :attr:`root` = the CSV's folder.

        Raises:
            DatasetError: the file is missing or unreadable, a required column is absent, or a
                cell is invalid (the message names the file, the row and the column; rows are
                numbered from 1 for the first data row, i.e. line 2 of the file).
        """
        source = Path(path)
        if not source.is_file():
            raise DatasetError(str(source), "manifest CSV not found")
        frame = read_csv(source, encoding="utf-8")
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise DatasetError(
                str(source),
                f"missing column(s) {', '.join(missing)}; a manifest needs "
                f"{', '.join(REQUIRED_COLUMNS)} (optional: "
                f"{', '.join(c for c in COLUMNS if c not in REQUIRED_COLUMNS)})",
            )
        records = [
            _record_from_row(row, index + 1, source)
            for index, row in enumerate(frame.to_dict("records"))
        ]
        return cls(records, root=source.absolute().parent)


def _record_from_row(row: dict[str, str], number: int, source: Path) -> ImageRecord:
    """Build one record from a CSV row of strings; DatasetError names row and column."""

    def cell(column: str) -> str | None:
        value = str(row.get(column, "") or "").strip()
        return value or None

    def fail(column: str, problem: str) -> DatasetError:
        return DatasetError(str(source), f"row {number}, column '{column}': {problem}")

    image_path = cell("image_path")
    if image_path is None:
        raise fail("image_path", "empty image path")
    patient_id = cell("patient_id")
    if patient_id is None:
        raise fail("patient_id", "empty patient id")
    label_text = (cell("label") or "unknown").lower()
    if label_text not in {str(label) for label in Label}:
        raise fail("label", "not one of normal, benign, malignant, unknown")
    laterality = cell("laterality")
    if laterality is not None:
        laterality = laterality.upper()
        if laterality not in {"L", "R"}:
            raise fail("laterality", "not L or R")
    view = cell("view")
    if view is not None:
        view = {"cc": "CC", "mlo": "MLO", "other": "other"}.get(view.lower())
        if view is None:
            raise fail("view", "not CC, MLO or other")
    age: float | None = None
    if cell("age") is not None:
        try:
            age = float(cell("age"))  # type: ignore[arg-type]
        except ValueError:
            raise fail("age", "not a number") from None
        if not math.isfinite(age) or age < 0:
            raise fail("age", "not a valid age (a finite number >= 0)")
    lesions = _lesions_from_json(cell("lesions") or "[]", fail)
    return ImageRecord(
        image_path=image_path,
        patient_id=patient_id,
        study_id=cell("study_id") or patient_id,
        laterality=laterality,
        view=view,
        age=age,
        density=cell("density"),
        label=Label(label_text),
        lesions=lesions,
        dataset=cell("dataset") or "",
        source_split=cell("source_split"),
    )


def _lesions_from_json(text: str, fail: Callable[[str, str], DatasetError]) -> list[Lesion]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail("lesions", f"not valid JSON ({exc.msg})") from None
    if not isinstance(items, list):
        raise fail("lesions", "must be a JSON list of lesion objects")
    lesions = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise fail("lesions", f"lesion {i} is not an object")
        try:
            lesions.append(Lesion.from_dict(item))
        except KeyError:
            raise fail("lesions", f"lesion {i} has no box") from None
        except (ValueError, TypeError) as exc:  # Lesion's messages never quote the values
            raise fail("lesions", f"lesion {i}: {exc}") from None
    return lesions
