"""``CascadeConfig``: the one typed reader and writer of a weights folder's ``cascade.json``.

The settings that training and inference must agree on (preprocessing size, crop size and
source, ROI context, candidate count, whole-image size) have their single default here, travel
with the weights in ``cascade.json``, and are checked against the checkpoints when a cascade is
loaded (:func:`hdcnn.cascade.load_cascade`). The JSON layout::

    {"name", "preprocess": {"long_side"}, "roi": {"crop_size", "context", "crop_source"},
     "max_candidates", "whole_size", "thresholds", "concept_thresholds", "operating_points",
     "training_domain", "split", "training", "files": {file: sha256},
     "calibration"}      # optional: hdcnn.calibration.Calibration (absent when not fitted)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from hdcnn.calibration import Calibration
from hdcnn.domain import MIAS_DOMAIN
from hdcnn.errors import CheckpointError
from hdcnn.utils import atomic_write_text

#: Model-image long side in pixels (detector input, whole-image models' source).
LONG_SIDE = 512
#: Side of the square classifier crops.
CROP_SIZE = 128
#: Crop window side as a multiple of the box's longer side.
CONTEXT = 1.5
#: Crop side of the from-scratch classifiers of ``python -m hdcnn train``.
SCRATCH_CROP_SIZE = 64
#: Detector candidates classified per image.
MAX_CANDIDATES = 20
#: Input ``(h, w)`` of the whole-image models.
WHOLE_SIZE = (512, 320)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class CascadeConfig:
    """Everything ``cascade.json`` holds; one default per field.

    Attributes:
        name: model name for reports.
        long_side / crop_size / context / crop_source / max_candidates / whole_size: the
            shared preprocessing and ROI settings (module constants are the defaults).
            ``crop_source`` is ``"original"`` (crops cut from the full-resolution original
            image) or ``"model"`` (from the downsampled model image).
        thresholds: the det-hier operating thresholds (``hdcnn.cascade.Thresholds`` fields).
        concept_thresholds: per concept, thresholds of the other three concepts.
        operating_points: how the thresholds were chosen.
        training_domain: :class:`hdcnn.domain.TrainingDomain` as a dict (the out-of-domain
            notice compares every image with it).
        split: the patients each part was trained on, or the cross-validation folds.
        training: training summary (plain JSON).
        files: weights file name -> SHA-256 (checked on load).
        calibration: probability maps and threshold bands fitted on out-of-fold scores
            (:mod:`hdcnn.calibration`); None when not fitted.
    """

    FILE: ClassVar[str] = "cascade.json"

    name: str = "hdcnn"
    long_side: int = LONG_SIDE
    crop_size: int = CROP_SIZE
    context: float = CONTEXT
    crop_source: str = "original"
    max_candidates: int = MAX_CANDIDATES
    whole_size: tuple[int, int] = WHOLE_SIZE
    thresholds: dict[str, float] = field(default_factory=dict)
    concept_thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    operating_points: dict[str, Any] = field(default_factory=dict)
    training_domain: dict[str, Any] = field(default_factory=lambda: MIAS_DOMAIN.to_dict())
    split: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    calibration: Calibration | None = None

    def settings_dict(self) -> dict[str, Any]:
        """The shared preprocessing/ROI settings only (for reports and run configs)."""
        return {
            "long_side": self.long_side,
            "crop_size": self.crop_size,
            "context": self.context,
            "crop_source": self.crop_source,
            "max_candidates": self.max_candidates,
            "whole_size": list(self.whole_size),
        }

    def to_json(self) -> dict[str, Any]:
        """The ``cascade.json`` layout of the module docstring."""
        data: dict[str, Any] = {
            "name": self.name,
            "preprocess": {"long_side": self.long_side},
            "roi": {
                "crop_size": self.crop_size,
                "context": self.context,
                "crop_source": self.crop_source,
            },
            "max_candidates": self.max_candidates,
            "whole_size": list(self.whole_size),
            "thresholds": dict(self.thresholds),
            "concept_thresholds": dict(self.concept_thresholds),
            "operating_points": dict(self.operating_points),
            "training_domain": dict(self.training_domain),
            "split": dict(self.split),
            "training": dict(self.training),
            "files": dict(sorted(self.files.items())),
        }
        if self.calibration is not None:
            data["calibration"] = self.calibration.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = FILE) -> CascadeConfig:
        """Parse the layout of :meth:`to_json` (absent keys take their defaults).

        Raises:
            CheckpointError: a value of the wrong type.
        """
        if not isinstance(data, dict):
            raise CheckpointError(source, "expected a JSON object")
        pre = data.get("preprocess") or {}
        roi = data.get("roi") or {}
        base = cls()
        calibration = (
            None
            if data.get("calibration") is None
            else Calibration.from_json(data["calibration"], f"{source} (calibration)")
        )
        try:
            cfg = cls(
                name=str(data.get("name", base.name)),
                long_side=int(pre.get("long_side", base.long_side)),
                crop_size=int(roi.get("crop_size", base.crop_size)),
                context=float(roi.get("context", base.context)),
                crop_source=str(roi.get("crop_source", "model" if roi else base.crop_source)),
                max_candidates=int(data.get("max_candidates", base.max_candidates)),
                whole_size=tuple(int(v) for v in data.get("whole_size", base.whole_size)),
                thresholds=dict(data.get("thresholds") or {}),
                concept_thresholds=dict(data.get("concept_thresholds") or {}),
                operating_points=dict(data.get("operating_points") or {}),
                training_domain=dict(data.get("training_domain") or base.training_domain),
                split=dict(data.get("split") or {}),
                training=dict(data.get("training") or {}),
                files={str(k): str(v) for k, v in (data.get("files") or {}).items()},
                calibration=calibration,
            )
        except (TypeError, ValueError) as exc:
            raise CheckpointError(source, f"bad value in cascade.json ({exc})") from exc
        if len(cfg.whole_size) != 2:
            raise CheckpointError(source, f"whole_size must be (h, w), got {cfg.whole_size}")
        return cfg

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> CascadeConfig:
        """Read ``<folder>/cascade.json``.

        Raises:
            CheckpointError: missing folder or file, invalid JSON or values.
        """
        path = Path(folder) / cls.FILE
        if not path.is_file():
            raise CheckpointError(str(path), "not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(str(path), f"not valid JSON ({exc})") from exc
        return cls.from_json(data, str(path))

    def with_file_hashes(self, folder: str | os.PathLike[str]) -> CascadeConfig:
        """A copy whose ``files`` are the SHA-256 of every ``*.pt`` in ``folder``."""
        root = Path(folder)
        return replace(self, files={p.name: _sha256(p) for p in sorted(root.glob("*.pt"))})

    def save(self, folder: str | os.PathLike[str], *, hash_files: bool = True) -> Path:
        """Write ``<folder>/cascade.json`` atomically (hashing the ``*.pt`` files first)."""
        cfg = self.with_file_hashes(folder) if hash_files else self
        path = Path(folder) / self.FILE
        atomic_write_text(path, json.dumps(cfg.to_json(), indent=2, allow_nan=False) + "\n")
        return path
