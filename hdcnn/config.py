"""The weights folder: its file table and ``CascadeConfig``, the one reader and writer of its
``cascade.json``.

A weights folder holds one checkpoint per :class:`~hdcnn.terms.Part` (:data:`WEIGHT_FILES`
names its file and output classes) and :data:`CONFIG_FILE`. The settings that training and
inference must agree on (preprocessing size, crop size and source, ROI context, candidate
count, whole-image size) have their single default here, travel with the weights in
``cascade.json``, and are checked against the checkpoints when a cascade is loaded
(:func:`hdcnn.cascade.load_cascade`). The JSON layout::

    {"name", "preprocess": {"long_side"}, "roi": {"crop_size", "context", "crop_source"},
     "max_candidates", "whole_size", "thresholds", "concept_thresholds", "operating_points",
     "training_domain", "split", "training", "files": {file: sha256}, "known_answers",
     "calibration",      # optional: hdcnn.calibration.Calibration (absent when not fitted)
     "calc_stream"}      # optional: hdcnn.calcstream.CalcStreamConfig (needs CALC_WEIGHT_FILE)

Every field is checked when the file is read (and when a :class:`CascadeConfig` is built): a
wrong type, a value out of range or one that makes no verdict possible is refused with a
:class:`~hdcnn.errors.CheckpointError` naming the file, the field and the value. Absent fields
take their defaults; unknown fields are refused (a typo must not silently fall back to a
default).

Adding an optional field: a dataclass field with its default (``None`` for "absent"), its
coercion in :meth:`CascadeConfig.__post_init__` (a typed record with ``from_json`` /
``to_json``, like :class:`KnownAnswers`), and its key in :meth:`CascadeConfig.to_json`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

from hdcnn import jsonfields as jf

# the records of known answers and of the calcification stream (CALC_CROP_SIZE is owned there,
# importable from here too)
from hdcnn.answers import KnownAnswers, ReferenceAnswer  # noqa: F401
from hdcnn.calcstream import CALC_CROP_SIZE, CalcStreamConfig, SpotAnswer  # noqa: F401
from hdcnn.calibration import Calibration
from hdcnn.domain import MIAS_DOMAIN, TrainingDomain
from hdcnn.errors import CheckpointError
from hdcnn.terms import Concept, Part
from hdcnn.thresholds import Thresholds
from hdcnn.utils import atomic_write_text

#: The settings file of a weights folder.
CONFIG_FILE = "cascade.json"
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
#: Train / validation / test patient shares of a hold-out split.
FRACTIONS = (0.6, 0.2, 0.2)
#: Wanted sensitivity of every sensitivity operating point (C1's crops, abnormal and malignant
#: images) unless a run says otherwise.
SENSITIVITY = 0.9
#: Where crops are cut: ``"model"`` = the downsampled model image, ``"original"`` = the
#: original pixels (full resolution, see :func:`hdcnn.roi.crop_rois_full_resolution`).
CROP_SOURCES = ("model", "original")
#: Operating-point rules of :func:`hdcnn.cascade.choose_thresholds`.
OPERATING_RULES = ("sensitivity", "youden")


@dataclass(frozen=True)
class WeightFile:
    """One checkpoint of a weights folder: its part, file name and output classes (in order)."""

    part: Part
    file: str
    classes: tuple[str, ...]


#: The one table of a weights folder's checkpoints (docs/ARCHITECTURE.md).
WEIGHT_FILES: dict[Part, WeightFile] = {
    w.part: w
    for w in (
        WeightFile(Part.DETECTOR, "detector.pt", ("lesion",)),
        WeightFile(Part.C1, "c1_lesion.pt", ("normal", "lesion")),
        WeightFile(Part.C2, "c2_malignancy.pt", ("benign", "malignant")),
        WeightFile(Part.CROP_FLAT, "crop_flat.pt", ("normal", "benign", "malignant")),
        WeightFile(Part.WHOLE_FLAT, "whole_flat.pt", ("normal", "benign", "malignant")),
        WeightFile(Part.WHOLE_ABNORMAL, "whole_abnormal.pt", ("normal", "abnormal")),
        WeightFile(Part.WHOLE_MALIGNANCY, "whole_malignancy.pt", ("benign", "malignant")),
    )
}
#: The calcification stream's classifier: OPTIONAL, only in folders whose ``cascade.json`` has
#: a ``calc_stream`` section (not in :data:`WEIGHT_FILES`, which every folder must satisfy).
CALC_WEIGHT_FILE = WeightFile(Part.C1_CALC, "c1_calc.pt", ("other", "lesion"))


def weight_spec(part: Part | str) -> WeightFile:
    """The table entry of ``part``: :data:`WEIGHT_FILES`, or :data:`CALC_WEIGHT_FILE`."""
    part = Part(part)
    return CALC_WEIGHT_FILE if part == Part.C1_CALC else WEIGHT_FILES[part]


def weight_file(part: Part | str) -> str:
    """The file name of ``part`` in a weights folder (e.g. ``"c1"`` -> ``"c1_lesion.pt"``)."""
    return weight_spec(part).file


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _thresholds(value: Any, name: str, base: Thresholds | None = None) -> Thresholds:
    if isinstance(value, Thresholds):
        return value
    try:
        return Thresholds.from_dict(jf.as_object(value, name), base)
    except jf.FieldError:
        raise
    except (TypeError, ValueError) as exc:
        raise jf.FieldError(name, str(exc)) from exc


# ----------------------------------------------------------------------------- typed records


@dataclass(frozen=True)
class OperatingPoints:
    """How the thresholds were (or are to be) chosen.

    Attributes:
        rule: ``"sensitivity"`` (reach the sensitivities below) or ``"youden"``.
        sens_abnormal / sens_malignant: wanted image sensitivities of the sensitivity rule.
        c1_lesion_sensitivity: C1's crop-level lesion sensitivity (its training threshold).
        chosen_on: where the thresholds were chosen (a note), if recorded.
    """

    rule: str = "sensitivity"
    sens_abnormal: float = SENSITIVITY
    sens_malignant: float = SENSITIVITY
    c1_lesion_sensitivity: float | None = None
    chosen_on: str | None = None

    def __post_init__(self) -> None:
        name = "operating_points"
        jf.as_text(self.rule, f"{name}.rule", OPERATING_RULES)
        for key in ("sens_abnormal", "sens_malignant", "c1_lesion_sensitivity"):
            value = getattr(self, key)
            if value is not None or key.startswith("sens_"):
                object.__setattr__(self, key, jf.as_real(value, f"{name}.{key}", 1e-6, 1.0))
        if self.chosen_on is not None:
            jf.as_text(self.chosen_on, f"{name}.chosen_on")

    @classmethod
    def from_json(cls, data: Any, name: str = "operating_points") -> OperatingPoints:
        d = jf.as_object(data, name)
        jf.check_keys(d, name, [f.name for f in fields(cls)])
        return cls(**d)

    def to_json(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }


@dataclass(frozen=True)
class SplitRecord:
    """The patients the weights were trained on.

    Attributes:
        dataset: adapter name of the training data (None when unknown).
        kind: ``"holdout"`` (train/val/test patients) or ``"k-fold"`` (cross-validation folds;
            the shipped models then saw every patient of every fold).
        seed / fractions: the split's seed and train/val/test shares.
        patients: hold-out split name -> patient ids.
        folds: fold name -> the patient ids it held out.
        shipped_models: a note on what the shipped models were trained on.
    """

    dataset: str | None = None
    kind: str = "holdout"
    seed: int = 0
    fractions: tuple[float, float, float] = FRACTIONS
    patients: dict[str, tuple[str, ...]] = field(default_factory=dict)
    folds: dict[str, tuple[str, ...]] = field(default_factory=dict)
    shipped_models: str | None = None

    @classmethod
    def from_json(cls, data: Any, name: str = "split") -> SplitRecord:
        d = jf.as_object(data, name)
        jf.check_keys(d, name, [f.name for f in fields(cls)])
        dataset, note = d.get("dataset"), d.get("shipped_models")
        fractions = jf.as_reals(d.get("fractions", list(FRACTIONS)), f"{name}.fractions", 0, 1)
        if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6:
            raise jf.FieldError(
                f"{name}.fractions", f"expected three shares summing to 1, got {fractions}"
            )
        return cls(
            dataset=None if dataset is None else jf.as_text(dataset, f"{name}.dataset"),
            kind=jf.as_text(d.get("kind", "holdout"), f"{name}.kind", ("holdout", "k-fold")),
            seed=jf.as_int(d.get("seed", 0), f"{name}.seed", 0, 2**63 - 1),
            fractions=(fractions[0], fractions[1], fractions[2]),
            patients=_groups(d.get("patients", {}), f"{name}.patients"),
            folds=_groups(d.get("folds", {}), f"{name}.folds"),
            shipped_models=None if note is None else jf.as_text(note, f"{name}.shipped_models"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dataset": self.dataset, "kind": self.kind, "seed": self.seed}
        if self.kind == "holdout":
            out["fractions"] = list(self.fractions)
        if self.patients:
            out["patients"] = {k: list(v) for k, v in self.patients.items()}
        if self.folds:
            out["folds"] = {k: list(v) for k, v in self.folds.items()}
        if self.shipped_models is not None:
            out["shipped_models"] = self.shipped_models
        return out

    def same_dataset(self, dataset: str) -> bool:
        """Whether ``dataset`` (an adapter name) is the one these weights were trained on."""
        norm = str(self.dataset or "").replace("_", "-")
        return bool(norm) and norm == dataset.replace("_", "-")

    def trained_patients(self) -> frozenset[str]:
        """Patient ids the weights were fitted on: every fold's (k-fold), else the train split."""
        if self.kind == "k-fold":
            return frozenset(p for group in self.folds.values() for p in group)
        return frozenset(self.patients.get("train", ()))


def _groups(value: Any, name: str) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for key, ids in jf.as_object(value, name).items():
        what = "a list of patient ids"
        if not all(isinstance(p, str) for p in jf.as_list(ids, f"{name}.{key}", what)):
            raise jf.FieldError(f"{name}.{key}", f"expected {what}, got {jf.show(ids)}")
        out[key] = tuple(ids)
    return out


def _files(value: Any, name: str = "files") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, digest in jf.as_object(value, name).items():
        if not key.endswith(".pt") or Path(key).name != key:
            raise jf.FieldError(
                name, f"expected weights file names (*.pt) as keys, got {jf.show(key)}"
            )
        out[key] = jf.as_sha(digest, f"{name}.{key}")
    return dict(sorted(out.items()))


# ----------------------------------------------------------------------------- CascadeConfig

#: JSON path of each field that is not stored at the top level (for error messages).
_NESTED = {
    "long_side": "preprocess.long_side",
    "crop_size": "roi.crop_size",
    "context": "roi.context",
    "crop_source": "roi.crop_source",
}
_DETECTOR_CONCEPTS = tuple(str(c) for c in Concept if c.uses_detector)


def c1_training_threshold(training: Any) -> float | None:
    """``training.parts.c1.threshold`` (by ``python -m hdcnn train``) of ``cascade.json``."""
    parts = training.get("parts") if isinstance(training, dict) else None
    c1 = parts.get("c1") if isinstance(parts, dict) else None
    value = c1.get("threshold") if isinstance(c1, dict) else None
    return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class CascadeConfig:
    """Everything ``cascade.json`` holds, typed and checked; one default per field.

    Built from plain values too (a dict for a record field is parsed): every construction
    runs the checks of the module docstring and raises a ``FieldError`` (a ``ValueError``);
    :meth:`load` / :meth:`from_json` turn that into a :class:`CheckpointError` naming the file.

    Attributes:
        name: model name for reports.
        long_side / crop_size / context / crop_source / max_candidates / whole_size: the
            shared preprocessing and ROI settings (module constants are the defaults).
            ``crop_source`` is one of :data:`CROP_SOURCES`.
        thresholds: the det-hier operating thresholds.
        concept_thresholds: thresholds of the other three concepts (:meth:`thresholds_for`).
        operating_points: how the thresholds were chosen.
        training_domain: what the training images looked like (the out-of-domain notice).
        split: the patients the weights were trained on, or the cross-validation folds.
        training: training summary (plain JSON; informational).
        files: weights file name -> SHA-256 (checked on load).
        known_answers: expected outputs on reference inputs (checked on load), or None.
        calibration: probability maps and threshold bands fitted on out-of-fold scores
            (:mod:`hdcnn.calibration`); None when not fitted.
        calc_stream: the calcification stream's settings (:mod:`hdcnn.calcstream`); None: the
            folder has no such stream (and needs no ``c1_calc.pt``).
    """

    FILE: ClassVar[str] = CONFIG_FILE

    name: str = "hdcnn"
    long_side: int = LONG_SIDE
    crop_size: int = CROP_SIZE
    context: float = CONTEXT
    crop_source: str = "original"
    max_candidates: int = MAX_CANDIDATES
    whole_size: tuple[int, int] = WHOLE_SIZE
    thresholds: Thresholds = field(default_factory=Thresholds)
    concept_thresholds: dict[str, Thresholds] = field(default_factory=dict)
    operating_points: OperatingPoints = field(default_factory=OperatingPoints)
    training_domain: TrainingDomain = MIAS_DOMAIN
    split: SplitRecord = field(default_factory=SplitRecord)
    training: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    known_answers: KnownAnswers | None = None
    calibration: Calibration | None = None
    calc_stream: CalcStreamConfig | None = None

    def __post_init__(self) -> None:
        def put(key: str, value: Any) -> None:
            object.__setattr__(self, key, value)

        put("name", jf.as_text(self.name, "name"))
        put("long_side", jf.as_int(self.long_side, _NESTED["long_side"], 32, 8192))
        put("crop_size", jf.as_int(self.crop_size, _NESTED["crop_size"], 8, 1024))
        put("context", jf.as_real(self.context, _NESTED["context"], 0.5, 8.0))
        put("crop_source", jf.as_text(self.crop_source, _NESTED["crop_source"], CROP_SOURCES))
        put("max_candidates", jf.as_int(self.max_candidates, "max_candidates", 1, 1000))
        whole = jf.as_list(self.whole_size, "whole_size", "[height, width]")
        if len(whole) != 2:
            raise jf.FieldError("whole_size", f"expected [height, width], got {jf.show(whole)}")
        put("whole_size", tuple(jf.as_int(v, "whole_size", 16, 8192) for v in whole))
        put("thresholds", _thresholds(self.thresholds, "thresholds"))
        concepts = {}
        for key, value in jf.as_object(self.concept_thresholds, "concept_thresholds").items():
            if key not in {str(c) for c in Concept} - {str(Concept.DET_HIER)}:
                others = [str(c) for c in Concept if c != Concept.DET_HIER]
                raise jf.FieldError(
                    "concept_thresholds", f"expected keys among {others}, got {key!r}"
                )
            base = self.thresholds if key in _DETECTOR_CONCEPTS else Thresholds()
            concepts[key] = _thresholds(value, f"concept_thresholds.{key}", base)
        put("concept_thresholds", concepts)
        if not isinstance(self.operating_points, OperatingPoints):
            put("operating_points", OperatingPoints.from_json(self.operating_points))
        if not isinstance(self.training_domain, TrainingDomain):
            entry = jf.as_object(self.training_domain, "training_domain")
            try:
                put("training_domain", TrainingDomain.from_dict(entry))
            except jf.FieldError:
                raise
            except ValueError as exc:
                raise jf.FieldError("training_domain", str(exc)) from exc
        if not isinstance(self.split, SplitRecord):
            put("split", SplitRecord.from_json(self.split))
        put("training", jf.as_json(jf.as_object(self.training, "training"), "training"))
        put("files", _files(self.files))
        if self.known_answers is not None and not isinstance(self.known_answers, KnownAnswers):
            put("known_answers", KnownAnswers.from_json(self.known_answers))
        if self.calibration is not None and not isinstance(self.calibration, Calibration):
            try:
                put("calibration", Calibration.from_json(self.calibration, "calibration"))
            except CheckpointError as exc:
                raise jf.FieldError("calibration", exc.problem) from exc
        if self.calc_stream is not None and not isinstance(self.calc_stream, CalcStreamConfig):
            put("calc_stream", CalcStreamConfig.from_json(self.calc_stream, "calc_stream"))

    # -- views -----------------------------------------------------------------------------

    def thresholds_for(self, concept: Concept | str) -> Thresholds:
        """The thresholds of one concept: det-hier's are :attr:`thresholds`; det-flat falls back
        on them, the whole-image concepts on the defaults."""
        key = str(Concept(concept))
        if key == Concept.DET_HIER:
            return self.thresholds
        fallback = self.thresholds if key in _DETECTOR_CONCEPTS else Thresholds()
        return self.concept_thresholds.get(key, fallback)

    def c1_training_threshold(self) -> float | None:
        """C1's own crop-level threshold recorded by ``python -m hdcnn train``, if any."""
        return c1_training_threshold(self.training)

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

    # -- JSON ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The ``cascade.json`` layout of the module docstring."""
        out: dict[str, Any] = {
            "name": self.name,
            "preprocess": {"long_side": self.long_side},
            "roi": {
                "crop_size": self.crop_size,
                "context": self.context,
                "crop_source": self.crop_source,
            },
            "max_candidates": self.max_candidates,
            "whole_size": list(self.whole_size),
            "thresholds": self.thresholds.to_dict(),
            "concept_thresholds": {k: t.to_dict() for k, t in self.concept_thresholds.items()},
            "operating_points": self.operating_points.to_json(),
            "training_domain": self.training_domain.to_dict(),
            "split": self.split.to_json(),
            "training": self.training,
            "files": dict(sorted(self.files.items())),
        }
        if self.known_answers is not None:
            out["known_answers"] = self.known_answers.to_json()
        if self.calibration is not None:
            out["calibration"] = self.calibration.to_json()
        if self.calc_stream is not None:
            out["calc_stream"] = self.calc_stream.to_json()
        return out

    @classmethod
    def from_json(cls, data: Any, source: str = CONFIG_FILE) -> CascadeConfig:
        """Parse the layout of :meth:`to_json` (absent keys take their defaults).

        Raises:
            CheckpointError: naming ``source``, the field and the value, for an unknown key, a
                value of the wrong type, or one out of range.
        """
        try:
            d = jf.as_object(data, "(top level)")
            jf.check_keys(d, "", _TOP_LEVEL)
            pre = jf.as_object(d.get("preprocess", {}), "preprocess")
            jf.check_keys(pre, "preprocess", ["long_side"])
            roi = jf.as_object(d.get("roi", {}), "roi")
            jf.check_keys(roi, "roi", ["crop_size", "context", "crop_source"])
            base = cls()
            # folders written before crop_source existed cropped the model image
            legacy_source = "model" if roi else base.crop_source
            kwargs: dict[str, Any] = {
                "long_side": pre.get("long_side", base.long_side),
                "crop_size": roi.get("crop_size", base.crop_size),
                "context": roi.get("context", base.context),
                "crop_source": roi.get("crop_source", legacy_source),
            }
            for key in _TOP_LEVEL:
                if key in d and key not in ("preprocess", "roi"):
                    kwargs[key] = d[key]
            return cls(**kwargs)
        except jf.FieldError as exc:
            raise CheckpointError(source, str(exc)) from exc

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> CascadeConfig:
        """Read ``<folder>/cascade.json``.

        Raises:
            CheckpointError: missing folder or file, invalid JSON or values.
        """
        root = Path(folder)
        if not root.is_dir():
            raise CheckpointError(str(root), "weights directory not found")
        path = root / CONFIG_FILE
        if not path.is_file():
            raise CheckpointError(
                str(path), "not found: a weights folder needs its settings file, none are assumed"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise CheckpointError(str(path), f"not valid JSON ({type(exc).__name__})") from exc
        return cls.from_json(data, str(path))

    def with_file_hashes(self, folder: str | os.PathLike[str]) -> CascadeConfig:
        """A copy whose ``files`` are the SHA-256 of every ``*.pt`` in ``folder``."""
        root = Path(folder)
        return replace(self, files={p.name: sha256_file(p) for p in sorted(root.glob("*.pt"))})

    def save(self, folder: str | os.PathLike[str], *, hash_files: bool = True) -> Path:
        """Write ``<folder>/cascade.json`` atomically (hashing the ``*.pt`` files first)."""
        cfg = self.with_file_hashes(folder) if hash_files else self
        path = Path(folder) / CONFIG_FILE
        atomic_write_text(path, json.dumps(cfg.to_json(), indent=2, allow_nan=False) + "\n")
        return path


_TOP_LEVEL = (
    "name",
    "preprocess",
    "roi",
    "max_candidates",
    "whole_size",
    "thresholds",
    "concept_thresholds",
    "operating_points",
    "training_domain",
    "split",
    "training",
    "files",
    "known_answers",
    "calibration",
    "calc_stream",
)
