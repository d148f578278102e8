"""mini-MIAS: ``mdbNNN.pgm`` files and the ``Info.txt`` table.

Root layout: ``Info.txt`` and ``mdb001.pgm`` ... side by side. ``Info.txt`` rows are
``REF TISSUE CLASS [SEVERITY [X Y RADIUS]]`` after a free-text header; an image may have several
rows. Conventions (see ``docs/DATASETS_USAGE.md``):

- patient k = images ``mdb(2k-1)`` (right) and ``mdb(2k)`` (left); study id = patient id;
- view MLO for every film, no age; ``density`` keeps the raw tissue code F/G/D;
- image label = worst row (NORM -> normal, B -> benign, M -> malignant);
- a row with ``X Y RADIUS`` gives a lesion with box ``(x-r, H-y-r, x+r, H-y+r)`` clipped to the
  image (the table's origin is bottom-left); rows without coordinates count only for the label.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from hdcnn.data.adapters._common import clip_box, require_file, warn_missing
from hdcnn.data.manifest import ImageRecord, Lesion, Manifest
from hdcnn.data.tables import unreadable_reason
from hdcnn.errors import DatasetError
from hdcnn.terms import Label, LesionSource, worst_label

logger = logging.getLogger(__name__)

#: Abnormality class -> lesion kind.
CLASS_KIND: dict[str, str] = {
    "CIRC": "mass",
    "SPIC": "mass",
    "MISC": "mass",
    "CALC": "calcification",
    "ARCH": "distortion",
    "ASYM": "asymmetry",
}
_ROW = re.compile(r"^(mdb\d{3})\s+([FGD])\s+([A-Z]{4})\b\s*(.*)$")


def pgm_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from a binary PGM header, without reading the pixels."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError as exc:
        raise DatasetError(str(path), f"unreadable ({unreadable_reason(exc)})") from exc
    tokens = re.sub(rb"#[^\n]*\n", b" ", head).split()
    if len(tokens) < 3 or tokens[0] not in {b"P5", b"P2"}:
        raise DatasetError(str(path), "not a PGM file (expected a P5 header)")
    try:
        return int(tokens[2]), int(tokens[1])
    except ValueError:
        raise DatasetError(str(path), "unreadable PGM header") from None


def load_mias(root: Path) -> Manifest:
    """Manifest of a mini-MIAS folder (one record per ``.pgm`` listed in ``Info.txt``).

    Args:
        root: folder holding ``Info.txt`` and the ``mdbNNN.pgm`` files.

    Returns:
        Manifest with relative image paths and ``root`` = the folder.

    Raises:
        DatasetError: ``Info.txt`` is missing or lists no image present in the folder.
    """
    info = require_file(root, "Info.txt", "mini-MIAS")
    rows: dict[str, list[tuple[str, str, str, list[str]]]] = {}
    try:
        lines = info.read_text(encoding="latin-1").splitlines()
    except OSError as exc:
        raise DatasetError(str(info), f"unreadable ({unreadable_reason(exc)})") from exc
    for line in lines:
        match = _ROW.match(line.strip())
        if match:
            ref, tissue, klass, rest = match.groups()
            rows.setdefault(ref, []).append((tissue, klass, rest.split()[:1], rest.split()[1:]))

    records: list[ImageRecord] = []
    missing: list[str] = []
    for ref, entries in rows.items():
        path = root / f"{ref}.pgm"
        if not path.is_file():
            missing.append(path.name)
            continue
        height, width = pgm_size(path)
        number = int(ref[3:])
        patient = f"{(number + 1) // 2:03d}"
        labels: list[Label] = []
        lesions: list[Lesion] = []
        for _tissue, klass, severity, coords in entries:
            if klass == "NORM":
                labels.append(Label.NORMAL)
                continue
            label = {"B": Label.BENIGN, "M": Label.MALIGNANT}.get(
                severity[0] if severity else "", Label.UNKNOWN
            )
            labels.append(label)
            box = _circle_box(coords, height, width)
            if box is not None:
                kind = CLASS_KIND.get(klass, "other")
                lesions.append(Lesion(box, label, kind, LesionSource.CIRCLE))
        records.append(
            ImageRecord(
                image_path=path.name,
                patient_id=patient,
                study_id=patient,
                laterality="R" if number % 2 == 1 else "L",
                view="MLO",
                age=None,
                density=entries[0][0],
                label=worst_label(labels),
                lesions=lesions,
                dataset="mias",
            )
        )
    warn_missing("mias", missing)
    if not records:
        raise DatasetError(str(info), "lists no image present in the folder (mdbNNN.pgm)")
    return Manifest(records, root=root)


def _circle_box(
    coords: list[str], height: int, width: int
) -> tuple[float, float, float, float] | None:
    """Box of the circle ``X Y RADIUS`` (origin bottom-left) in top-left pixels, or ``None``."""
    if len(coords) < 3:
        return None
    try:
        x, y, r = (float(v) for v in coords[:3])
    except ValueError:  # e.g. mdb216 "*NOTE 3*": calcifications spread over the breast
        return None
    row = height - y
    return clip_box((x - r, row - r, x + r, row + r), height, width)
