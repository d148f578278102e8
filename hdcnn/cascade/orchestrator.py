"""The cascade orchestrator: sequences read -> preprocess -> detect -> classify -> decide.

Part of :mod:`hdcnn.cascade` (see its docstring for the rules).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch
from torch import nn

from hdcnn.config import CONTEXT, LONG_SIDE, MAX_CANDIDATES
from hdcnn.errors import CheckpointError, MammogramError
from hdcnn.roi import crop_rois, crop_rois_full_resolution
from hdcnn.terms import FindingStatus, Label

if TYPE_CHECKING:
    from hdcnn.calibration import Calibration
    from hdcnn.preprocess import Preprocessed
    from hdcnn.reader import Mammogram, MammogramMeta

from hdcnn.cascade.calc import CalcStream, CalcTrace, calc_findings, pixel_mm_of, run_stream
from hdcnn.cascade.exam import combine_exam
from hdcnn.cascade.heads import CropHead
from hdcnn.cascade.results import Candidates, CascadeTrace, ExamPrediction, Finding, Prediction
from hdcnn.cascade.rules import Thresholds, verdict

log = logging.getLogger(__name__)

#: array (float in [0, 1], or any numeric array, which is min-max scaled).
ImageInput = Union["Mammogram", str, os.PathLike, bytes, np.ndarray]


#: Crops per classifier forward pass. Batches of 5-10 crops of 128 px run faster on the CPU than
#: one batch of 20 (the activations stay in the CPU cache).
CLASSIFY_BATCH = 8

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
        calibration: probability maps and threshold bands (:mod:`hdcnn.calibration`); the
            verdicts never depend on it, predictions carry calibrated probabilities and
            borderline flags when it is given.
        calc_stream: the calcification stream (:mod:`hdcnn.cascade.calc`), or None.
    """

    def __init__(
        self,
        detector: nn.Module,
        head: CropHead,
        *,
        thresholds: Thresholds | None = None,
        long_side: int = LONG_SIDE,
        context: float = CONTEXT,
        max_candidates: int = MAX_CANDIDATES,
        name: str = "hdcnn",
        files: Mapping[str, str] | None = None,
        calibration: Calibration | None = None,
        calc_stream: CalcStream | None = None,
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
        self.calibration = calibration
        self.calc_stream = calc_stream
        if calc_stream is not None:
            calc_stream.head.eval()
            self.files.update(calc_stream.files)

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
        if len(crops) == 0:  # no candidate: no classifier runs
            empty = np.zeros(0, dtype=np.float32)
            return empty, empty, crops
        batch = torch.from_numpy(crops)[:, None]
        with torch.inference_mode():
            parts = [
                self.head.probabilities(batch[i : i + CLASSIFY_BATCH])
                for i in range(0, len(batch), CLASSIFY_BATCH)
            ]
        p_lesion = np.concatenate([p for p, _ in parts]).astype(np.float32, copy=False)
        p_mal = np.concatenate([p for _, p in parts]).astype(np.float32, copy=False)
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
        cal = self.calibration
        lesion_cal = (
            None if cal is None else cal.probabilities("p_lesion", trace.p_lesion[selected])
        )
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
                    p_lesion_calibrated=None if lesion_cal is None else float(lesion_cal[row]),
                )
            )
        if trace.calc is not None and self.calc_stream is not None:
            spots, calc_abnormal, calc_malignant = calc_findings(
                trace.calc,
                trace.preprocessed,
                self.calc_stream.config.threshold,
                t.malignant,
                first_number=len(trace.p_lesion) + 1,
            )
            findings += spots
            p_abnormal = max(p_abnormal, calc_abnormal)
            p_malignant = max(p_malignant, calc_malignant)
        label = verdict(
            p_abnormal, p_malignant, t_abnormal=t.effective_abnormal, t_malignant=t.malignant
        )
        if label == Label.NORMAL:
            # the image-level threshold rejects every candidate: no finding may read as a lesion
            # on an image called normal (the image probabilities above are unchanged)
            findings = [
                f
                if f.status in (FindingStatus.REJECTED_BY_C1, FindingStatus.REJECTED_BY_CALC)
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
            calibration=cal,
            calibrated=None if cal is None else cal.calibrated(p_abnormal, p_malignant),
            borderline=() if cal is None else cal.borderline(label, p_abnormal, p_malignant, t),
        )

    # -- whole pipeline --------------------------------------------------------------------

    def run_networks(
        self,
        prep: Preprocessed,
        pixels: np.ndarray | None = None,
        *,
        pixel_mm: float | None = None,
    ) -> tuple[CascadeTrace, dict[str, float]]:
        """Detect and classify on a preprocessed image; returns the trace and stage times.

        ``pixels`` (the original image) is needed for full-resolution crops and for the
        calcification stream (which runs when the cascade has one and ``pixels`` is given, at
        ``pixel_mm``, the pixel spacing: :func:`~hdcnn.cascade.calc.pixel_mm_of`).
        """
        t0 = time.perf_counter()
        candidates = self.detect(prep)
        t1 = time.perf_counter()
        boxes = candidates.boxes[: self.max_candidates]
        p_lesion, p_mal, crops = self.classify(prep, boxes, pixels)
        t2 = time.perf_counter()
        for output in (candidates.boxes, candidates.scores, p_lesion, p_mal):
            if not np.all(np.isfinite(np.asarray(output, dtype=np.float64))):
                raise self._broken()
        times = {"detect": (t1 - t0) * 1e3, "classify": (t2 - t1) * 1e3}
        calc = self.calc_trace(prep, pixels, pixel_mm=pixel_mm)
        if calc is not None:
            times["calc_stream"] = (time.perf_counter() - t2) * 1e3
        trace = CascadeTrace(prep, candidates, p_lesion, p_mal, crops, calc)
        return trace, times

    def calc_trace(
        self, prep: Preprocessed, pixels: np.ndarray | None, *, pixel_mm: float | None = None
    ) -> CalcTrace | None:
        """The calcification stream on one image (None without a stream or without the
        original ``pixels``), at ``pixel_mm`` (:func:`~hdcnn.cascade.calc.pixel_mm_of`'s
        default when None).

        Raises:
            CheckpointError: the stream gave non-finite outputs (broken weights).
        """
        if self.calc_stream is None or pixels is None:
            return None
        calc = run_stream(self.calc_stream, self, prep, pixels, pixel_mm or pixel_mm_of(None))
        if not calc.finite(self.calc_stream.config.threshold):
            raise self._broken()
        return calc

    def _broken(self) -> CheckpointError:
        return CheckpointError(
            f"{self.name} ({', '.join(sorted(self.files)) or 'weights'})",
            "the networks gave non-finite outputs (NaN or infinity): the weights are "
            "broken, no verdict can be given",
        )

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
        trace, times = self.run_networks(prep, pixels, pixel_mm=pixel_mm_of(meta))
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
