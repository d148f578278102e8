"""The detector + hierarchical classifier cascade: one mammogram in, one verdict out.

Stages (each callable on its own, see docs/CASCADE.md)::

    read -> preprocess -> detect -> classify -> decide

``detect`` and ``classify`` run networks; ``decide`` is pure arithmetic on their outputs, so an
app can move a threshold slider and call :meth:`Cascade.decide` on a stored
:class:`CascadeTrace` without running any network again.

Probability rules (candidates ``i`` with detector score ``s_i >= t_det``, at most
``max_candidates``; ``l_i`` = P(lesion) from classifier 1, ``m_i`` = P(malignant | lesion) from
classifier 2):

- finding kept when ``l_i >= t_c1``, else rejected; a kept finding is malignant when
  ``l_i * m_i >= t_malignant``, else benign; on an image whose verdict is normal every finding
  is reported as rejected;
- ``p_abnormal = max_i l_i`` (0 without candidates) -- max, not noisy-OR, because candidates
  overlap and are correlated, and their number grows with dense tissue;
- ``p_malignant = max over kept findings of l_i * m_i`` (0 without kept findings);
- verdict: normal if ``p_abnormal < max(t_abnormal, t_c1)``, else malignant if
  ``p_malignant >= t_malignant``, else benign.

Exam rule: per breast the max over its views of ``p_abnormal`` and ``p_malignant`` and the same
verdict; per exam the worse breast.

Thread safety: networks are put in eval mode once at load time and run under
:func:`torch.inference_mode`; a :class:`Cascade` keeps no per-call state, so one instance can
be shared by several threads (the Streamlit app caches one with ``st.cache_resource``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Union

import numpy as np
import torch
from torch import nn

from hdcnn.config import LONG_SIDE, MAX_CANDIDATES, CascadeConfig
from hdcnn.errors import CheckpointError, MammogramError
from hdcnn.metrics import threshold_at_sensitivity, threshold_youden
from hdcnn.roi import DEFAULT_CONTEXT, crop_rois, crop_rois_full_resolution
from hdcnn.terms import FindingStatus, Label, worst_label

if TYPE_CHECKING:
    from hdcnn.preprocess import Preprocessed
    from hdcnn.reader import Mammogram, MammogramMeta

log = logging.getLogger(__name__)

#: What :meth:`Cascade.predict` accepts: a read mammogram, a file path, file bytes, or a 2-D
#: array (float in [0, 1], or any numeric array, which is min-max scaled).
ImageInput = Union["Mammogram", str, os.PathLike, bytes, np.ndarray]

DETECTOR_FILE = "detector.pt"
C1_FILE = "c1_lesion.pt"
C2_FILE = "c2_malignancy.pt"
CROP_FLAT_FILE = "crop_flat.pt"
CONFIG_FILE = "cascade.json"

DEFAULT_LONG_SIDE = LONG_SIDE
DEFAULT_MAX_CANDIDATES = MAX_CANDIDATES


# ----------------------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class Thresholds:
    """Operating thresholds of the cascade (all probabilities in ``[0, 1]``).

    Attributes:
        detector_score: a detector box is a candidate when its score is at least this.
        c1_lesion: a candidate is a kept finding when classifier 1's P(lesion) is at least this.
        abnormal: the image is abnormal when ``p_abnormal >= max(abnormal, c1_lesion)``.
        malignant: an abnormal image is malignant when ``p_malignant >= malignant``.
    """

    detector_score: float = 0.05
    c1_lesion: float = 0.5
    abnormal: float = 0.5
    malignant: float = 0.5

    @property
    def effective_abnormal(self) -> float:
        """The image-level abnormal threshold actually applied: ``max(abnormal, c1_lesion)``."""
        return max(self.abnormal, self.c1_lesion)

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: Thresholds | None = None) -> Thresholds:
        """Thresholds from a JSON mapping; keys that are absent keep ``base`` (or defaults).

        Raises:
            ValueError: a value is not a number in ``[0, 1]``.
        """
        base = base or cls()
        values = asdict(base)
        for key in values:
            if key in data and data[key] is not None:
                value = float(data[key])
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"threshold {key} must be in [0, 1], got {value}")
                values[key] = value
        return cls(**values)


def verdict(
    p_abnormal: float, p_malignant: float, *, t_abnormal: float, t_malignant: float
) -> Label:
    """The three-way verdict: normal below ``t_abnormal``, then malignant or benign.

    Args:
        p_abnormal: image/breast/exam P(abnormal) in ``[0, 1]``.
        p_malignant: P(malignant) in ``[0, 1]``.
        t_abnormal: abnormal threshold (for the cascade: :attr:`Thresholds.effective_abnormal`).
        t_malignant: malignant threshold.

    Returns:
        ``Label.NORMAL``, ``Label.BENIGN`` or ``Label.MALIGNANT``.
    """
    if p_abnormal < t_abnormal:
        return Label.NORMAL
    return Label.MALIGNANT if p_malignant >= t_malignant else Label.BENIGN


#: Operating-point rules of :func:`choose_thresholds`.
OPERATING_RULES = ("sensitivity", "youden")


def choose_thresholds(
    p_abnormal: Sequence[float] | np.ndarray,
    p_malignant: Sequence[float] | np.ndarray,
    labels: Sequence[Label | str],
    *,
    sens_abnormal: float = 0.9,
    sens_malignant: float = 0.9,
    rule: str = "sensitivity",
    base: Thresholds | None = None,
) -> Thresholds:
    """Thresholds for a stated operating point, chosen on validation images.

    Two rules: ``"sensitivity"`` reaches the stated sensitivities (below); ``"youden"`` takes,
    for each task, the threshold that maximises Youden's J (sensitivity + specificity - 1):
    abnormal (benign or malignant) vs normal images on ``p_abnormal``, malignant vs the rest on
    ``p_malignant`` (the sensitivity rule is used where a task has no negative image).

    Args:
        p_abnormal: ``(N,)`` image P(abnormal) from :meth:`Cascade.predict` (or a concept).
        p_malignant: ``(N,)`` image P(malignant).
        labels: ``N`` image labels (normal/benign/malignant; ``unknown`` is ignored).
        sens_abnormal: wanted fraction of abnormal (benign or malignant) images called abnormal.
        sens_malignant: wanted fraction of malignant images with ``p_malignant >= malignant``.
        rule: ``"sensitivity"`` or ``"youden"``.
        base: thresholds to start from (``detector_score`` is kept from it).

    Returns:
        :class:`Thresholds` with ``abnormal`` and ``malignant`` the largest thresholds that
        reach the stated sensitivities, and ``c1_lesion = min(base.c1_lesion, abnormal)`` (C1's
        own crop-level operating point, lowered if needed so that
        ``effective_abnormal == abnormal``). A threshold with no
        positive image to calibrate on keeps its ``base`` value (a warning is logged).
    """
    pa = np.asarray(p_abnormal, dtype=np.float64)
    pm = np.asarray(p_malignant, dtype=np.float64)
    lab = np.array([str(Label(x)) for x in labels])
    if not (len(pa) == len(pm) == len(lab)):
        raise ValueError("p_abnormal, p_malignant and labels must have the same length")
    for name, value in (("sens_abnormal", sens_abnormal), ("sens_malignant", sens_malignant)):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{name} must be in (0, 1], got {value}")
    if rule not in OPERATING_RULES:
        raise ValueError(f"rule must be one of {OPERATING_RULES}, got {rule!r}")
    base = base or Thresholds()
    abnormal_mask = (lab == Label.BENIGN) | (lab == Label.MALIGNANT)
    malignant_mask = lab == Label.MALIGNANT
    t_abn, t_mal = base.abnormal, base.malignant
    normal_mask = lab == Label.NORMAL
    if abnormal_mask.any() and rule == "youden" and normal_mask.any():
        t_abn = threshold_youden(pa[abnormal_mask], pa[normal_mask])
    elif abnormal_mask.any():
        t_abn = threshold_at_sensitivity(pa[abnormal_mask], sens_abnormal)
    else:
        log.warning("no abnormal images to calibrate the abnormal threshold; keeping %.3f", t_abn)
    rest_mask = (lab != Label.MALIGNANT) & (lab != Label.UNKNOWN)
    if malignant_mask.any() and rule == "youden" and rest_mask.any():
        t_mal = threshold_youden(pm[malignant_mask], pm[rest_mask])
    elif malignant_mask.any():
        t_mal = threshold_at_sensitivity(pm[malignant_mask], sens_malignant)
    else:
        log.warning("no malignant images to calibrate the malignant threshold; keeping %.3f", t_mal)
    return replace(base, abnormal=t_abn, c1_lesion=min(base.c1_lesion, t_abn), malignant=t_mal)


# ----------------------------------------------------------------------------- results


def _verdict_json(label: Label, p_abnormal: float, p_malignant: float) -> dict[str, Any]:
    """The verdict fields shared by the image, breast and exam JSON forms."""
    return {
        "label": str(label),
        "p_abnormal": round(float(p_abnormal), 6),
        "p_malignant": round(float(p_malignant), 6),
    }


@dataclass(frozen=True)
class Finding:
    """One detector candidate after classification.

    Attributes:
        box: ``(x1, y1, x2, y2)`` float, ORIGINAL image pixels.
        detector_score: detector confidence in ``[0, 1]``.
        p_lesion: classifier 1 P(lesion) in ``[0, 1]``.
        p_malignant: ``p_lesion * P(malignant | lesion)`` for kept findings, ``None`` when
            rejected.
        label: ``"benign"``, ``"malignant"`` or ``"rejected"``.
        model_box: the same box in model-image pixels (for drawing on the preprocessed image).
        index: row of this candidate in the trace (``CascadeTrace.candidates``, ``.crops``).
        status: the stage that kept or refused it (:class:`FindingStatus`); None for findings
            built outside :meth:`Cascade.decide`.
    """

    box: tuple[float, float, float, float]
    detector_score: float
    p_lesion: float
    p_malignant: float | None
    label: str
    model_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    index: int = -1
    status: FindingStatus | None = None

    @property
    def kept(self) -> bool:
        return self.label != "rejected"

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"box", "detector_score", "p_lesion", "p_malignant", "label"}``."""
        return {
            "box": [round(float(v), 2) for v in self.box],
            "detector_score": round(float(self.detector_score), 6),
            "p_lesion": round(float(self.p_lesion), 6),
            "p_malignant": None if self.p_malignant is None else round(self.p_malignant, 6),
            "label": self.label,
        }


@dataclass(frozen=True)
class Candidates:
    """Raw detector output on the model image, highest score first.

    Attributes:
        boxes: float32 ``(N, 4)`` ``[x1, y1, x2, y2]`` model-image pixels.
        scores: float32 ``(N,)`` detector scores in ``[0, 1]``, descending.
    """

    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class CascadeTrace:
    """Every intermediate result of one prediction (for the app's step-through page).

    Attributes:
        preprocessed: the model image, its breast mask and its :class:`Geometry`.
        candidates: ALL ``N`` detector boxes, before the score threshold.
        p_lesion: float32 ``(K,)`` crop-level P(lesion) of the first ``K = min(N,
            max_candidates)`` candidates (the highest scores: every threshold selects among
            them, so re-thresholding never needs the classifiers again).
        p_malignant_given_lesion: float32 ``(K,)`` crop-level P(malignant | lesion).
        crops: float32 ``(K, s, s)`` classifier crops of those candidates.
    """

    preprocessed: Preprocessed
    candidates: Candidates
    p_lesion: np.ndarray
    p_malignant_given_lesion: np.ndarray
    crops: np.ndarray


@dataclass(frozen=True)
class Prediction:
    """The verdict on one image.

    Attributes:
        source: display name of the input (file name; never a patient id).
        label: ``Label.NORMAL``, ``Label.BENIGN`` or ``Label.MALIGNANT``.
        p_abnormal: image P(abnormal) in ``[0, 1]``.
        p_malignant: image P(malignant) in ``[0, 1]``, ``<= p_abnormal``.
        findings: candidates (kept and rejected), highest detector score first.
        timing_ms: ``{"read", "preprocess", "detect", "classify", "total"}`` milliseconds.
        meta: the reader's metadata (laterality, view, de-identified study key), if read.
        trace: intermediate results when ``predict(..., detail=True)``.
        thresholds: the thresholds the verdict was made with.
    """

    source: str
    label: Label
    p_abnormal: float
    p_malignant: float
    findings: list[Finding]
    timing_ms: dict[str, float]
    meta: MammogramMeta | None = None
    trace: CascadeTrace | None = field(default=None, repr=False)
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def kept_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.kept]

    def to_dict(self) -> dict[str, Any]:
        """JSON form used by ``predict --json``."""
        return {
            "input": self.source,
            **_verdict_json(self.label, self.p_abnormal, self.p_malignant),
            "findings": [f.to_dict() for f in self.findings],
            "timing_ms": {k: round(float(v), 1) for k, v in self.timing_ms.items()},
        }


@dataclass(frozen=True)
class BreastVerdict:
    """Verdict on one breast from its views (max rule)."""

    laterality: str  # "L" | "R" | "unknown"
    label: Label
    p_abnormal: float
    p_malignant: float
    views: list[str]  # view of each image ("CC", "MLO", "other" or "?")
    inputs: list[str]  # source name of each image

    def to_dict(self) -> dict[str, Any]:
        return {
            "laterality": self.laterality,
            **_verdict_json(self.label, self.p_abnormal, self.p_malignant),
            "views": list(self.views),
            "inputs": list(self.inputs),
        }


@dataclass(frozen=True)
class ExamPrediction:
    """Verdict on one exam: per breast, then the worse breast."""

    key: str | None  # de-identified study key, or None
    label: Label
    p_abnormal: float
    p_malignant: float
    breasts: dict[str, BreastVerdict]
    images: list[Prediction] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "exam": self.key,
            **_verdict_json(self.label, self.p_abnormal, self.p_malignant),
            "breasts": {k: v.to_dict() for k, v in self.breasts.items()},
        }


def combine_exam(
    items: Sequence[tuple[str | None, str | None, Prediction]],
    thresholds: Thresholds,
    *,
    key: str | None = None,
) -> ExamPrediction:
    """Exam verdict from per-image predictions (no network runs).

    Args:
        items: ``(laterality "L"/"R"/None, view or None, prediction)`` per image. Images of
            unknown laterality form their own breast group ``"unknown"``.
        thresholds: the verdict thresholds (``effective_abnormal`` and ``malignant`` are used).
        key: exam identifier to report (a de-identified study key), or None.

    Returns:
        :class:`ExamPrediction` with one :class:`BreastVerdict` per laterality present.
    """
    if not items:
        raise ValueError("an exam needs at least one image")
    groups: dict[str, list[tuple[str, Prediction]]] = {}
    for laterality, view, pred in items:
        lat = str(laterality).upper() if laterality else "unknown"
        groups.setdefault(lat, []).append((str(view) if view else "?", pred))
    breasts: dict[str, BreastVerdict] = {}
    for lat in sorted(groups):
        members = groups[lat]
        pa = max(p.p_abnormal for _, p in members)
        pm = max(p.p_malignant for _, p in members)
        label = verdict(
            pa, pm, t_abnormal=thresholds.effective_abnormal, t_malignant=thresholds.malignant
        )
        breasts[lat] = BreastVerdict(
            lat, label, pa, pm, [v for v, _ in members], [p.source for _, p in members]
        )
    return ExamPrediction(
        key=key,
        label=worst_label(b.label for b in breasts.values()),
        p_abnormal=max(b.p_abnormal for b in breasts.values()),
        p_malignant=max(b.p_malignant for b in breasts.values()),
        breasts=breasts,
        images=[p for _, _, p in items],
    )


# ----------------------------------------------------------------------------- crop heads


#: Where crops are cut: ``"model"`` = the downsampled model image, ``"original"`` = the
#: original pixels (full resolution, see :func:`hdcnn.roi.crop_rois_full_resolution`).
CROP_SOURCES = ("model", "original")


def _shares_trunk(a: nn.Module, b: nn.Module) -> bool:
    """Both are feature classifiers over the same trunk and pooled stages."""
    from hdcnn.nets.features import FeatureClassifier

    return (
        isinstance(a, FeatureClassifier)
        and isinstance(b, FeatureClassifier)
        and a.trunk is b.trunk
        and a.config.stages == b.config.stages
    )


class CropHead(Protocol):
    """Turns ROI crops into ``(P(lesion), P(malignant | lesion))``."""

    crop_size: int
    files: dict[str, str]  # weights file name -> sha256
    crop_source: str  # one of CROP_SOURCES

    def probabilities(self, crops: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``crops`` float32 ``(N, 1, s, s)`` -> two float32 ``(N,)`` arrays."""
        ...

    def cam_models(self) -> dict[str, tuple[nn.Module, int]]:
        """Grad-CAM targets: stage name -> (classifier, class index to explain)."""
        ...


def _class_index(ckpt: Mapping[str, Any], name: str, path: Path) -> int:
    classes = [str(c) for c in ckpt.get("classes", [])]
    if name not in classes:
        raise CheckpointError(str(path), f"expected a class {name!r}, found classes {classes}")
    return classes.index(name)


def _input_size(ckpt: Mapping[str, Any], path: Path) -> tuple[int, int]:
    size = (ckpt.get("config") or {}).get("input_size")
    if not size or len(size) != 2:
        raise CheckpointError(str(path), "classifier config has no input_size (h, w)")
    return int(size[0]), int(size[1])


@dataclass
class HierarchicalCropHead:
    """Classifier 1 (normal vs lesion) then classifier 2 (benign vs malignant)."""

    c1: nn.Module
    c2: nn.Module
    lesion_index: int
    malignant_index: int
    crop_size: int
    files: dict[str, str]
    crop_source: str = "model"

    def probabilities(self, crops: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        if len(crops) == 0:
            empty = np.zeros(0, dtype=np.float32)
            return empty, empty
        if _shares_trunk(self.c1, self.c2):  # one trunk pass, two linear heads
            feats = self.c1.features(crops)
            logits1, logits2 = self.c1.head(feats), self.c2.head(feats)
        else:
            logits1, logits2 = self.c1(crops), self.c2(crops)
        p1 = torch.softmax(logits1.detach().float(), dim=1)[:, self.lesion_index]
        p2 = torch.softmax(logits2.detach().float(), dim=1)[:, self.malignant_index]
        return p1.numpy().astype(np.float32), p2.numpy().astype(np.float32)

    def cam_models(self) -> dict[str, tuple[nn.Module, int]]:
        """``{"c1": (C1, lesion class), "c2": (C2, malignant class)}``."""
        return {"c1": (self.c1, self.lesion_index), "c2": (self.c2, self.malignant_index)}


@dataclass
class FlatCropHead:
    """One 3-class crop classifier (normal, benign, malignant): the det-flat concept."""

    model: nn.Module
    indices: tuple[int, int, int]  # normal, benign, malignant
    crop_size: int
    files: dict[str, str]
    crop_source: str = "model"

    def probabilities(self, crops: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        if len(crops) == 0:
            empty = np.zeros(0, dtype=np.float32)
            return empty, empty
        p = torch.softmax(self.model(crops).detach().float(), dim=1).numpy()
        _, ib, im = self.indices
        lesion = p[:, ib] + p[:, im]
        mal = np.where(lesion > 0, p[:, im] / np.maximum(lesion, 1e-12), 0.0)
        return lesion.astype(np.float32), mal.astype(np.float32)

    def cam_models(self) -> dict[str, tuple[nn.Module, int]]:
        """``{"flat": (classifier, malignant class)}``."""
        return {"flat": (self.model, self.indices[2])}


# ----------------------------------------------------------------------------- cascade


def _to_mammogram_array(image: np.ndarray, source: str) -> np.ndarray:
    """A caller's 2-D array as float32 in [0, 1] (min-max scaled unless already in range)."""
    arr = np.asarray(image)
    if arr.ndim != 2 or arr.size == 0:
        raise MammogramError(source, f"expected a 2-D grey image array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise MammogramError(source, f"expected a numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise MammogramError(source, "image array contains NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0.0 and hi <= 1.0 and np.issubdtype(np.asarray(image).dtype, np.floating):
        return arr
    if hi <= lo:
        raise MammogramError(source, "image array is constant: no breast to analyse")
    return (arr - lo) / (hi - lo)


class Cascade:
    """Faster R-CNN lesion detector + crop classifiers, with the rules of docs/CASCADE.md.

    Build it with :func:`load_cascade`, or directly from modules (tests, experiments).

    Args:
        detector: torchvision Faster R-CNN in eval mode; input a list of float ``(1, h, w)``
            model images, output ``[{"boxes" (N, 4) model pixels, "scores" (N,)}]``.
        head: the crop classifier(s) (:class:`HierarchicalCropHead` or :class:`FlatCropHead`).
        thresholds: operating thresholds.
        long_side: preprocessing long side (model image size).
        context: ROI context factor passed to :func:`hdcnn.roi.crop_rois`.
        max_candidates: at most this many candidates (highest detector score) are used.
        name: model name for reports.
        files: weights file name -> sha256 of everything loaded (for the model hash).
    """

    def __init__(
        self,
        detector: nn.Module,
        head: CropHead,
        *,
        thresholds: Thresholds | None = None,
        long_side: int = DEFAULT_LONG_SIDE,
        context: float = DEFAULT_CONTEXT,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
        name: str = "hdcnn",
        files: Mapping[str, str] | None = None,
    ) -> None:
        self.detector = detector.eval()
        self.head = head
        for module in (getattr(head, "c1", None), getattr(head, "c2", None)):
            if module is not None:
                module.eval()
        if getattr(head, "model", None) is not None:
            head.model.eval()
        self.thresholds = thresholds or Thresholds()
        self.long_side = int(long_side)
        self.context = float(context)
        self.max_candidates = int(max_candidates)
        self.name = name
        self.files = dict(files or {})

    # -- identity -------------------------------------------------------------------------

    @property
    def sha256(self) -> str:
        """sha256 of the sorted ``"<file> <sha256>\\n"`` lines of the loaded weight files."""
        text = "".join(f"{k} {v}\n" for k, v in sorted(self.files.items()))
        return hashlib.sha256(text.encode()).hexdigest()

    # -- stages ---------------------------------------------------------------------------

    def read(self, image: ImageInput, *, name: str | None = None) -> tuple[np.ndarray, Any, str]:
        """Stage 1: the input as an original-pixel image.

        Args:
            image: a :class:`~hdcnn.reader.Mammogram`, a path, file bytes, or a 2-D array.
            name: display name for bytes/arrays.

        Returns:
            ``(pixels float32 (H, W) in [0, 1], MammogramMeta or None, source name)``.

        Raises:
            MammogramError: the input cannot be read as a mammogram.
        """
        if isinstance(image, np.ndarray):
            source = name or "array"
            return _to_mammogram_array(image, source), None, source
        from hdcnn.reader import Mammogram, read_mammogram

        if isinstance(image, Mammogram):
            return image.pixels, image.meta, image.meta.source
        if isinstance(image, (str, os.PathLike, bytes, bytearray)):
            mammo = read_mammogram(
                bytes(image) if isinstance(image, bytearray) else image, name=name
            )
            return mammo.pixels, mammo.meta, mammo.meta.source
        raise MammogramError(name or type(image).__name__, "expected a file, bytes or 2-D array")

    def preprocess(
        self, pixels: np.ndarray, *, source: str = "image", laterality: str | None = None
    ) -> Preprocessed:
        """Stage 2: breast crop, chest wall to the left, long side :attr:`long_side`."""
        from hdcnn.preprocess import preprocess

        return preprocess(pixels, long_side=self.long_side, source=source, laterality=laterality)

    def detect(self, prep: Preprocessed) -> Candidates:
        """Stage 3: all detector boxes on the model image (no score threshold applied here).

        Returns:
            :class:`Candidates`, model-image pixels, highest score first.
        """
        tensor = torch.from_numpy(np.ascontiguousarray(prep.image, dtype=np.float32))[None]
        with torch.inference_mode():
            out = self.detector([tensor])[0]
        boxes = out["boxes"].detach().float().numpy().reshape(-1, 4)
        scores = out["scores"].detach().float().numpy().reshape(-1)
        order = np.argsort(-scores, kind="stable")
        return Candidates(boxes[order].astype(np.float32), scores[order].astype(np.float32))

    def crops(
        self, prep: Preprocessed, boxes: np.ndarray, pixels: np.ndarray | None = None
    ) -> np.ndarray:
        """The classifier crops of ``boxes`` (model pixels): ``(N, s, s)`` float32.

        Heads with ``crop_source == "original"`` crop the original ``pixels`` at full
        resolution (the model image is used when ``pixels`` is None).
        """
        size = self.head.crop_size
        if getattr(self.head, "crop_source", "model") == "original" and pixels is not None:
            return crop_rois_full_resolution(
                pixels, prep.geometry, boxes, size=size, context=self.context
            )
        return crop_rois(prep.image, boxes, size=size, context=self.context)

    def classify(
        self, prep: Preprocessed, boxes: np.ndarray, pixels: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stage 4: crop every box and run the crop classifier(s).

        Args:
            prep: the preprocessed image.
            boxes: float ``(N, 4)`` model-image pixels.
            pixels: the original image (float32 ``(H, W)``), for full-resolution crops.

        Returns:
            ``(p_lesion (N,), p_malignant_given_lesion (N,), crops (N, s, s))``, float32.
        """
        crops = self.crops(prep, boxes, pixels)
        with torch.inference_mode():
            p_lesion, p_mal = self.head.probabilities(torch.from_numpy(crops)[:, None])
        return p_lesion, p_mal, crops

    def decide(
        self,
        trace: CascadeTrace,
        thresholds: Thresholds | None = None,
        *,
        source: str = "image",
        meta: MammogramMeta | None = None,
        timing_ms: Mapping[str, float] | None = None,
        keep_trace: bool = True,
    ) -> Prediction:
        """Stage 5: apply the probability rules (pure, no network) to a trace.

        Args:
            trace: the output of the network stages.
            thresholds: override of :attr:`thresholds` (e.g. an app slider).

        Returns:
            :class:`Prediction`; finding boxes mapped to original pixels via
            ``Geometry.to_original``.
        """
        t = thresholds or self.thresholds
        scores = trace.candidates.scores
        classified = min(len(scores), len(trace.p_lesion), self.max_candidates)
        selected = np.flatnonzero(scores[:classified] >= t.detector_score)
        model_boxes = trace.candidates.boxes[selected].reshape(-1, 4)
        if len(selected):
            orig = trace.preprocessed.geometry.to_original(model_boxes.astype(np.float64))
        else:
            orig = np.zeros((0, 4))
        findings: list[Finding] = []
        p_abnormal = 0.0
        p_malignant = 0.0
        for row, i in enumerate(selected):
            lesion = float(trace.p_lesion[i])
            p_abnormal = max(p_abnormal, lesion)
            if lesion >= t.c1_lesion:
                pm = lesion * float(trace.p_malignant_given_lesion[i])
                p_malignant = max(p_malignant, pm)
                label = "malignant" if pm >= t.malignant else "benign"
                status = FindingStatus(label)
            else:
                pm, label, status = None, "rejected", FindingStatus.REJECTED_BY_C1
            findings.append(
                Finding(
                    box=tuple(float(v) for v in orig[row]),
                    detector_score=float(scores[i]),
                    p_lesion=lesion,
                    p_malignant=pm,
                    label=label,
                    model_box=tuple(float(v) for v in model_boxes[row]),
                    index=int(i),
                    status=status,
                )
            )
        label = verdict(
            p_abnormal, p_malignant, t_abnormal=t.effective_abnormal, t_malignant=t.malignant
        )
        if label == Label.NORMAL:
            # the image-level threshold rejects every candidate: no finding may read as a lesion
            # on an image called normal (the image probabilities above are unchanged)
            findings = [
                f
                if f.status == FindingStatus.REJECTED_BY_C1
                else replace(
                    f,
                    p_malignant=None,
                    label="rejected",
                    status=FindingStatus.BELOW_IMAGE_THRESHOLD,
                )
                for f in findings
            ]
        return Prediction(
            source=source,
            label=label,
            p_abnormal=p_abnormal,
            p_malignant=p_malignant,
            findings=findings,
            timing_ms=dict(timing_ms or {}),
            meta=meta,
            trace=trace if keep_trace else None,
            thresholds=t,
        )

    # -- whole pipeline --------------------------------------------------------------------

    def run_networks(
        self, prep: Preprocessed, pixels: np.ndarray | None = None
    ) -> tuple[CascadeTrace, dict[str, float]]:
        """Detect and classify on a preprocessed image; returns the trace and stage times.

        ``pixels`` (the original image) is needed for full-resolution crops.
        """
        t0 = time.perf_counter()
        candidates = self.detect(prep)
        t1 = time.perf_counter()
        boxes = candidates.boxes[: self.max_candidates]
        p_lesion, p_mal, crops = self.classify(prep, boxes, pixels)
        t2 = time.perf_counter()
        for output in (candidates.boxes, candidates.scores, p_lesion, p_mal):
            if not np.all(np.isfinite(np.asarray(output, dtype=np.float64))):
                raise CheckpointError(
                    f"{self.name} ({', '.join(sorted(self.files)) or 'weights'})",
                    "the networks gave non-finite outputs (NaN or infinity): the weights are "
                    "broken, no verdict can be given",
                )
        trace = CascadeTrace(prep, candidates, p_lesion, p_mal, crops)
        return trace, {"detect": (t1 - t0) * 1e3, "classify": (t2 - t1) * 1e3}

    def predict(
        self,
        image: ImageInput,
        *,
        name: str | None = None,
        detail: bool = False,
        thresholds: Thresholds | None = None,
    ) -> Prediction:
        """Verdict on one image.

        Args:
            image: a :class:`~hdcnn.reader.Mammogram`, a path, file bytes, or a 2-D array
                (float in [0, 1], or numeric -> min-max scaled), original pixels.
            name: display name for bytes/arrays.
            detail: keep the :class:`CascadeTrace` in ``Prediction.trace``.
            thresholds: override of :attr:`thresholds`.

        Returns:
            :class:`Prediction` with boxes in ORIGINAL pixels.

        Raises:
            MammogramError: the input cannot be read, or no breast is found.
        """
        t0 = time.perf_counter()
        pixels, meta, source = self.read(image, name=name)
        t1 = time.perf_counter()
        laterality = getattr(meta, "laterality", None)
        prep = self.preprocess(pixels, source=source, laterality=laterality)
        t2 = time.perf_counter()
        trace, times = self.run_networks(prep, pixels)
        timing = {"read": (t1 - t0) * 1e3, "preprocess": (t2 - t1) * 1e3, **times}
        timing["total"] = (time.perf_counter() - t0) * 1e3
        return self.decide(
            trace, thresholds, source=source, meta=meta, timing_ms=timing, keep_trace=detail
        )

    def predict_exam(
        self,
        images: Mapping[str, ImageInput] | Sequence[ImageInput],
        *,
        detail: bool = False,
    ) -> ExamPrediction:
        """Exam verdict from up to four views.

        Args:
            images: either a mapping with keys ``"lcc"``, ``"lmlo"``, ``"rcc"``, ``"rmlo"`` (any
                subset; first letter = laterality, rest = view), or a sequence of images whose
                metadata give laterality and view (DICOM); images without laterality are
                grouped as breast ``"unknown"``.
            detail: keep each image's trace.

        Returns:
            :class:`ExamPrediction` (max rule per breast, worse breast per exam).
        """
        items: list[tuple[str | None, str | None, Prediction]] = []
        study_keys: set[str] = set()
        if isinstance(images, Mapping):
            for key, image in images.items():
                k = str(key).strip().lower()
                if len(k) < 2 or k[0] not in "lr":
                    raise ValueError(f"exam key must look like 'lcc' or 'rmlo', got {key!r}")
                view = {"cc": "CC", "mlo": "MLO"}.get(k[1:], "other")
                pred = self.predict(image, name=None, detail=detail)
                items.append((k[0].upper(), view, pred))
        else:
            for image in images:
                pred = self.predict(image, detail=detail)
                meta = pred.meta
                items.append((getattr(meta, "laterality", None), getattr(meta, "view", None), pred))
                if getattr(meta, "study_key", None):
                    study_keys.add(meta.study_key)
        key = next(iter(study_keys)) if len(study_keys) == 1 else None
        return combine_exam(items, self.thresholds, key=key)


# ----------------------------------------------------------------------------- loading


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_cascade_config(weights_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``cascade.json`` of a weights directory as a dict (``{}`` when absent).

    Raises:
        CheckpointError: the folder does not exist or the file is not a JSON object.
    """
    root = Path(weights_dir)
    if not root.is_dir():
        raise CheckpointError(str(root), "weights directory not found")
    path = root / CONFIG_FILE
    if not path.is_file():
        log.warning("%s: no %s, using default thresholds", root, CONFIG_FILE)
        return {}
    # CascadeConfig is the one reader: it checks the types and fills the documented defaults
    return CascadeConfig.load(root).to_json()


def load_model_file(
    weights_dir: str | os.PathLike[str], file_name: str, config: Mapping[str, Any] | None = None
) -> tuple[nn.Module, dict[str, Any], str]:
    """Load one weights file of a weights directory, checking its sha256 against cascade.json.

    Returns:
        ``(model in eval mode, checkpoint dict, sha256 hex)``.

    A file that ``cascade.json`` lists no sha256 for is loaded with a warning naming it (its
    integrity is not checked); weights holding NaN or infinite values are refused.

    Raises:
        CheckpointError: the file is missing, corrupt, holds non-finite weights, or its
            sha256 differs from ``cascade.json["files"]``.
    """
    from hdcnn.checkpoint import build_from_checkpoint, load_checkpoint

    path = Path(weights_dir) / file_name
    if not path.is_file():
        raise CheckpointError(str(path), "weights file not found")
    digest = sha256_file(path)
    expected = ((config or {}).get("files") or {}).get(file_name)
    if expected and str(expected).lower() != digest:
        raise CheckpointError(str(path), "sha256 differs from cascade.json: file changed?")
    if not expected:
        log.warning(
            "%s: cascade.json lists no sha256 for this file: its integrity is NOT checked",
            path,
        )
    ckpt = load_checkpoint(path)
    for key, value in (ckpt.get("model") or {}).items():
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(str(path), f"weights hold NaN or infinite values ({key})")
    model = build_from_checkpoint(ckpt).eval()
    return model, ckpt, digest


def _crop_source(config: Mapping[str, Any], root: Path) -> str:
    source = str((config.get("roi") or {}).get("crop_source", "model"))
    if source not in CROP_SOURCES:
        raise CheckpointError(
            str(root / CONFIG_FILE),
            f"roi.crop_source must be one of {CROP_SOURCES}, got {source!r}",
        )
    return source


def load_cascade(
    weights_dir: str | os.PathLike[str] = "models", *, crop_head: str = "hier"
) -> Cascade:
    """Load a cascade from a weights directory (layout of docs/ARCHITECTURE.md).

    Args:
        weights_dir: folder with ``detector.pt``, ``c1_lesion.pt``, ``c2_malignancy.pt``
            (``crop_flat.pt`` for ``crop_head="flat"``) and ``cascade.json``.
        crop_head: ``"hier"`` (C1 + C2: det-hier, the product) or ``"flat"`` (det-flat concept).

    Returns:
        A ready :class:`Cascade` (eval mode, thresholds from ``cascade.json``).

    Raises:
        CheckpointError: a file is missing, corrupt, or does not fit.
    """
    root = Path(weights_dir)
    config = read_cascade_config(root)
    detector, det_ckpt, det_sha = load_model_file(root, DETECTOR_FILE, config)
    files = {DETECTOR_FILE: det_sha}
    if crop_head == "hier":
        c1, c1_ckpt, c1_sha = load_model_file(root, C1_FILE, config)
        c2, c2_ckpt, c2_sha = load_model_file(root, C2_FILE, config)
        size = _input_size(c1_ckpt, root / C1_FILE)
        if _input_size(c2_ckpt, root / C2_FILE) != size:
            raise CheckpointError(str(root / C2_FILE), "input_size differs from c1_lesion.pt")
        head: CropHead = HierarchicalCropHead(
            c1,
            c2,
            _class_index(c1_ckpt, "lesion", root / C1_FILE),
            _class_index(c2_ckpt, "malignant", root / C2_FILE),
            size[0],
            {C1_FILE: c1_sha, C2_FILE: c2_sha},
            crop_source=_crop_source(config, root),
        )
        thresholds_json = config.get("thresholds") or {}
    elif crop_head == "flat":
        model, ckpt, sha = load_model_file(root, CROP_FLAT_FILE, config)
        path = root / CROP_FLAT_FILE
        indices = tuple(_class_index(ckpt, c, path) for c in ("normal", "benign", "malignant"))
        head = FlatCropHead(
            model,
            indices,
            _input_size(ckpt, path)[0],
            {CROP_FLAT_FILE: sha},
            crop_source=_crop_source(config, root),
        )
        thresholds_json = (
            (config.get("concept_thresholds") or {}).get("det-flat")
            or config.get("thresholds")
            or {}
        )
    else:
        raise ValueError(f"crop_head must be 'hier' or 'flat', got {crop_head!r}")
    files.update(head.files)
    try:
        thresholds = Thresholds.from_dict(thresholds_json)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(str(root / CONFIG_FILE), f"bad thresholds ({exc})") from exc
    roi = config.get("roi") or {}
    crop_size = int(roi.get("crop_size", head.crop_size))
    if crop_size != head.crop_size:
        raise CheckpointError(
            str(root / CONFIG_FILE),
            f"roi.crop_size {crop_size} differs from the classifier input {head.crop_size}",
        )
    det_cfg = det_ckpt.get("config") or {}
    det_long_side = det_cfg.get("long_side", DEFAULT_LONG_SIDE)
    long_side = int((config.get("preprocess") or {}).get("long_side", det_long_side))
    if "long_side" in det_cfg and int(det_cfg["long_side"]) != long_side:
        raise CheckpointError(
            str(root / CONFIG_FILE),
            f"preprocess.long_side {long_side} differs from the detector's long_side "
            f"{int(det_cfg['long_side'])} in {DETECTOR_FILE}",
        )
    return Cascade(
        detector,
        head,
        thresholds=thresholds,
        long_side=long_side,
        context=float(roi.get("context", DEFAULT_CONTEXT)),
        max_candidates=int(config.get("max_candidates", DEFAULT_MAX_CANDIDATES)),
        name=str(config.get("name") or root.resolve().name),
        files=files,
    )
