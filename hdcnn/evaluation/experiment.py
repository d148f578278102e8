"""The four-concept experiment: the same images through four model designs.

Concepts (weights files of docs/ARCHITECTURE.md):

- ``flat-whole``: ``whole_flat.pt`` (normal/benign/malignant on the whole model image);
  ``p_abnormal = 1 - P(normal)``, ``p_malignant = P(malignant)``.
- ``hier-whole``: ``whole_abnormal.pt`` then ``whole_malignancy.pt``;
  ``p_abnormal = P1(abnormal)``, ``p_malignant = p_abnormal * P2(malignant)``.
- ``det-flat``: detector + ``crop_flat.pt``: the :class:`~hdcnn.cascade.Cascade` with a
  :class:`~hdcnn.cascade.FlatCropHead` (same rules, see docs/CASCADE.md).
- ``det-hier``: the cascade (detector + C1 + C2), the product.

Each image is read and preprocessed once; the detector runs once and both detector concepts
classify its boxes. Concepts whose weights are missing are skipped (with a note).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from hdcnn.cascade import (
    Cascade,
    CascadeTrace,
    Thresholds,
    _class_index,
    _input_size,
    flat_head,
    load_cascade,
    load_model_file,
    load_pair,
    verdict,
)
from hdcnn.config import WEIGHT_FILES, CascadeConfig
from hdcnn.errors import CheckpointError, HDCNNError
from hdcnn.terms import Label, Part

if TYPE_CHECKING:
    from hdcnn.data.manifest import Manifest
    from hdcnn.preprocess import Preprocessed

log = logging.getLogger(__name__)

CONCEPTS: tuple[str, ...] = ("flat-whole", "hier-whole", "det-flat", "det-hier")
DETECTOR_CONCEPTS: tuple[str, ...] = ("det-flat", "det-hier")


@dataclass(frozen=True)
class ConceptOutput:
    """One concept's result on one image.

    Attributes:
        p_abnormal: P(abnormal) in ``[0, 1]``.
        p_malignant: P(malignant) in ``[0, 1]``.
        label: verdict with the concept's thresholds.
        boxes: detector concepts: float ``(N, 4)`` original pixels of the candidates
            (``detector_score >= t_det``); ``None`` for whole-image concepts.
        scores: float ``(N,)`` lesion score of each box (``p_lesion``); ``None`` likewise.
    """

    p_abnormal: float
    p_malignant: float
    label: Label
    boxes: np.ndarray | None = None
    scores: np.ndarray | None = None


#: File of a cross-validation run's out-of-fold scores (:meth:`ImageResult.to_dict` per
#: image), from which every figure of its report derives.
OOF_FILE = "oof_predictions.json"


@dataclass
class ImageResult:
    """All concepts on one manifest image (``outputs`` empty and ``error`` set if unreadable)."""

    index: int
    patient_id: str
    truth: Label
    lesion_boxes: list[tuple[float, float, float, float]]
    outputs: dict[str, ConceptOutput] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (rounded to 6 decimals): the scores every reported figure derives from."""

        def concept(o: ConceptOutput) -> dict[str, Any]:
            d: dict[str, Any] = {
                "p_abnormal": round(float(o.p_abnormal), 6),
                "p_malignant": round(float(o.p_malignant), 6),
                "label": str(o.label),
            }
            if o.boxes is not None and o.scores is not None:
                d["boxes"] = [[round(float(v), 2) for v in b] for b in o.boxes]
                d["scores"] = [round(float(v), 6) for v in o.scores]
            return d

        return {
            "index": self.index,
            "patient_id": self.patient_id,
            "truth": str(self.truth),
            "lesion_boxes": [[round(float(v), 2) for v in b] for b in self.lesion_boxes],
            "outputs": {k: concept(v) for k, v in self.outputs.items()},
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageResult:
        """Inverse of :meth:`to_dict`."""

        def concept(o: dict[str, Any]) -> ConceptOutput:
            boxes = o.get("boxes")
            return ConceptOutput(
                float(o["p_abnormal"]),
                float(o["p_malignant"]),
                Label(o["label"]),
                boxes=None if boxes is None else np.asarray(boxes, np.float64).reshape(-1, 4),
                scores=None if boxes is None else np.asarray(o["scores"], np.float64),
            )

        return cls(
            index=int(d["index"]),
            patient_id=str(d["patient_id"]),
            truth=Label(d["truth"]),
            lesion_boxes=[tuple(float(v) for v in b) for b in d["lesion_boxes"]],
            outputs={k: concept(v) for k, v in d["outputs"].items()},
            error=d.get("error"),
        )


@dataclass
class WholeImageConcept:
    """A whole-image concept: one flat model, or two hierarchical levels.

    Attributes:
        models: ``[flat]`` or ``[level1, level2]`` classifiers in eval mode.
        indices: flat: ``(normal, malignant)`` class indices; hierarchical:
            ``(abnormal index of level 1, malignant index of level 2)``.
        input_size: ``(h, w)`` network input (the model image is resized to it).
        hierarchical: which of the two rules applies.
        thresholds: abnormal/malignant thresholds of this concept.
    """

    models: list[nn.Module]
    indices: tuple[int, int]
    input_size: tuple[int, int]
    hierarchical: bool
    thresholds: Thresholds

    def probabilities(self, image: np.ndarray) -> tuple[float, float]:
        """``image`` float32 ``(h, w)`` model image -> ``(p_abnormal, p_malignant)``."""
        from hdcnn.nets.classifier import prepare_input

        x = prepare_input(image, self.input_size)[None]
        with torch.inference_mode():
            first = torch.softmax(self.models[0](x).float(), dim=1)[0]
            if not self.hierarchical:
                return 1.0 - float(first[self.indices[0]]), float(first[self.indices[1]])
            second = torch.softmax(self.models[1](x).float(), dim=1)[0]
        p_abnormal = float(first[self.indices[0]])
        return p_abnormal, p_abnormal * float(second[self.indices[1]])

    def __call__(self, image: np.ndarray) -> ConceptOutput:
        pa, pm = self.probabilities(image)
        t = self.thresholds
        return ConceptOutput(
            pa, pm, verdict(pa, pm, t_abnormal=t.abnormal, t_malignant=t.malignant)
        )


def _load_whole(root: Path, config: CascadeConfig, concept: str) -> WholeImageConcept:
    thresholds = config.thresholds_for(concept)
    if concept == "flat-whole":
        model, ckpt, _ = load_model_file(root, Part.WHOLE_FLAT, config)
        path = root / WEIGHT_FILES[Part.WHOLE_FLAT].file
        idx = (_class_index(ckpt, "normal", path), _class_index(ckpt, "malignant", path))
        return WholeImageConcept([model], idx, _input_size(ckpt, path), False, thresholds)
    (m1, m2), (c1, c2), _, (p1, p2), size = load_pair(
        root, (Part.WHOLE_ABNORMAL, Part.WHOLE_MALIGNANCY), config
    )
    idx = (_class_index(c1, "abnormal", p1), _class_index(c2, "malignant", p2))
    return WholeImageConcept([m1, m2], idx, size, True, thresholds)


class Experiment:
    """The four concepts loaded from one weights directory.

    Args:
        weights_dir: weights directory (layout of docs/ARCHITECTURE.md).
        concepts: which concepts to load; missing weights drop a concept (see :attr:`notes`).

    Attributes:
        cascade: the det-hier :class:`Cascade` (or the det-flat one if C1/C2 are missing);
            its detector and preprocessing are shared by every concept.
        whole: loaded whole-image concepts by name.
        detectors: loaded detector concepts by name -> :class:`Cascade`.
        notes: concept -> why it was skipped.
        config: the folder's :class:`~hdcnn.config.CascadeConfig`.

    Raises:
        CheckpointError: no concept could be loaded, or a file that exists is broken.
    """

    def __init__(
        self, weights_dir: str | os.PathLike[str], concepts: Iterable[str] = CONCEPTS
    ) -> None:
        root = Path(weights_dir)
        self.root = root
        self.config = CascadeConfig.load(root)
        wanted = [c for c in CONCEPTS if c in set(concepts)]
        self.notes: dict[str, str] = {}
        self.whole: dict[str, WholeImageConcept] = {}
        self.detectors: dict[str, Cascade] = {}
        for concept in wanted:
            try:
                if concept in ("flat-whole", "hier-whole"):
                    self.whole[concept] = _load_whole(root, self.config, concept)
                elif concept == "det-hier":
                    self.detectors[concept] = load_cascade(root)
            except CheckpointError as exc:
                if "not found" not in exc.problem:
                    raise
                self.notes[concept] = f"skipped: {exc}"
                log.warning("%s %s", concept, self.notes[concept])
        if "det-flat" in wanted:
            try:
                self.detectors["det-flat"] = self._flat_cascade()
            except CheckpointError as exc:
                if "not found" not in exc.problem:
                    raise
                self.notes["det-flat"] = f"skipped: {exc}"
        self.detectors = {c: self.detectors[c] for c in DETECTOR_CONCEPTS if c in self.detectors}
        if not self.whole and not self.detectors:
            raise CheckpointError(str(root), "no concept could be loaded: " + str(self.notes))
        self.cascade: Cascade | None = next(iter(self.detectors.values()), None)
        self.long_side = self.cascade.long_side if self.cascade else self.config.long_side

    def _flat_cascade(self) -> Cascade:
        """det-flat: the det-hier cascade's detector with the flat crop head (no copy of code),
        cropping where ``cascade.json`` says (the crops it was trained on)."""
        hier = self.detectors.get("det-hier")
        if hier is None:
            return load_cascade(self.root, crop_head="flat")
        head = flat_head(self.root, self.config)
        detector_file = WEIGHT_FILES[Part.DETECTOR].file
        det_files = {k: v for k, v in hier.files.items() if k == detector_file}
        return Cascade(
            hier.detector,
            head,
            thresholds=self.config.thresholds_for("det-flat"),
            long_side=hier.long_side,
            context=hier.context,
            max_candidates=hier.max_candidates,
            name=hier.name,
            files={**det_files, **head.files},
        )

    @property
    def concepts(self) -> list[str]:
        """Loaded concepts in the canonical order."""
        return [c for c in CONCEPTS if c in self.whole or c in self.detectors]

    def preprocess(
        self, pixels: np.ndarray, *, source: str, laterality: str | None
    ) -> Preprocessed:
        from hdcnn.preprocess import preprocess

        return preprocess(pixels, long_side=self.long_side, source=source, laterality=laterality)

    def traces(
        self, prep: Preprocessed, pixels: np.ndarray | None = None, *, pixel_mm: float | None = None
    ) -> dict[str, CascadeTrace]:
        """The network stages of every detector concept on one image (detector run once).

        ``pixels`` (the original image) is needed by heads that crop at full resolution and by
        a calcification stream (run at ``pixel_mm``, the image's pixel spacing; the default of
        :func:`~hdcnn.cascade.calc.pixel_mm_of` when None).
        """
        out: dict[str, CascadeTrace] = {}
        if self.detectors:
            candidates = next(iter(self.detectors.values())).detect(prep)
            for name, casc in self.detectors.items():
                boxes = candidates.boxes[: casc.max_candidates]
                p_lesion, p_mal, crops = casc.classify(prep, boxes, pixels)
                calc = casc.calc_trace(prep, pixels, pixel_mm=pixel_mm)
                out[name] = CascadeTrace(prep, candidates, p_lesion, p_mal, crops, calc)
        return out

    def decide(
        self, name: str, trace: CascadeTrace, thresholds: Thresholds | None = None
    ) -> ConceptOutput:
        """A detector concept's verdict on a trace (the cascade's own rules)."""
        pred = self.detectors[name].decide(trace, thresholds, keep_trace=False)
        return ConceptOutput(
            pred.p_abnormal,
            pred.p_malignant,
            pred.label,
            boxes=np.array([f.box for f in pred.findings], dtype=np.float64).reshape(-1, 4),
            scores=np.array([f.p_lesion for f in pred.findings], dtype=np.float64),
        )

    def run_image(
        self, prep: Preprocessed, pixels: np.ndarray | None = None, *, pixel_mm: float | None = None
    ) -> dict[str, ConceptOutput]:
        """Every loaded concept on one preprocessed image (detector run once)."""
        outputs = {name: concept(prep.image) for name, concept in self.whole.items()}
        for name, trace in self.traces(prep, pixels, pixel_mm=pixel_mm).items():
            outputs[name] = self.decide(name, trace)
        return {c: outputs[c] for c in CONCEPTS if c in outputs}

    def run(
        self, manifest: Manifest, *, progress: Callable[[int, int], None] | None = None
    ) -> list[ImageResult]:
        """Every loaded concept on every image of ``manifest``.

        Args:
            manifest: the images (paths resolved with ``manifest.resolve``).
            progress: optional callback ``(done, total)``.

        Returns:
            One :class:`ImageResult` per record, in manifest order; unreadable images carry
            ``error`` and no outputs (they are left out of the metrics and counted).
        """
        from hdcnn.cascade.calc import pixel_mm_of
        from hdcnn.reader import read_mammogram

        results: list[ImageResult] = []
        total = len(manifest)
        for i, record in enumerate(manifest):
            result = ImageResult(
                index=i,
                patient_id=record.patient_id,
                truth=Label(record.label),
                lesion_boxes=[tuple(float(v) for v in les.box) for les in record.lesions],
            )
            try:
                mammo = read_mammogram(manifest.resolve(record))
                laterality = mammo.meta.laterality or record.laterality
                prep = self.preprocess(
                    mammo.pixels, source=mammo.meta.source, laterality=laterality
                )
                result.outputs = self.run_image(
                    prep, mammo.pixels, pixel_mm=pixel_mm_of(mammo.meta)
                )
            except HDCNNError as exc:
                result.error = str(exc)
                log.warning("skipping image %d: %s", i, exc)
            results.append(result)
            if progress is not None:
                progress(i + 1, total)
        return results


# ----------------------------------------------------------------------------- evaluation

#: Lesion hit rule of the FROC (see :func:`hdcnn.evaluation.metrics.froc_curve`).
FROC_HIT = "centre-in-box"
#: Specificity at which the sensitivity to abnormal / malignant images is reported.
REPORT_SPECIFICITY = 0.9


def _r(value: float | None) -> float | None:
    """Rounded float for reproducible, readable JSON (None stays None)."""
    return None if value is None else round(float(value), 6)


def _curve(points: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> dict[str, list] | None:
    if points is None:
        return None
    fpr, tpr, _ = points
    return {"fpr": [_r(v) for v in fpr], "tpr": [_r(v) for v in tpr]}


def _binary_task(
    y: np.ndarray, scores: np.ndarray, groups: np.ndarray, *, n_boot: int, seed: int
) -> dict[str, Any]:
    from hdcnn.evaluation import metrics

    ci = metrics.bootstrap_auc_ci(y, scores, groups, n_boot=n_boot, seed=seed)
    return {
        "auc": _r(metrics.roc_auc(y, scores)),
        "ci": None if ci is None else [_r(ci[0]), _r(ci[1])],
        "sens_at_spec": _r(metrics.sensitivity_at_specificity(y, scores, REPORT_SPECIFICITY)),
        "roc": _curve(metrics.roc_curve(y, scores)),
    }


def evaluate_concept(
    results: list[ImageResult], concept: str, *, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Metrics of one concept over the readable images with a known label.

    Args:
        results: output of :meth:`Experiment.run`.
        concept: one of :data:`CONCEPTS` present in the results.
        n_boot: patient-level bootstrap resamples for the AUC CIs.
        seed: bootstrap seed (fixed: re-running gives the same numbers).

    Returns:
        JSON-ready dict: ``auc_abnormal``, ``auc_abnormal_ci`` (absent with a
        ``auc_abnormal_note`` when the data lack normal or abnormal images), ``auc_malignant``,
        ``auc_malignant_ci`` (likewise), ``accuracy``, ``macro_f1``,
        ``sensitivity_malignant``, ``specificity``, ``confusion`` (rows truth, columns
        prediction, order normal/benign/malignant), ``sensitivity_at_specificity``, ``roc``
        curve points, and for detector concepts ``froc`` {"0.5","1","2","mean"} with
        ``froc_curve`` points (or ``froc_note``) and ``froc_findings``, the same figures
        counted on merged findings (:mod:`hdcnn.evaluation.findings_froc`).
    """
    from hdcnn.evaluation import metrics
    from hdcnn.evaluation.findings_froc import findings_froc
    from hdcnn.terms import CLASSES

    rows = [r for r in results if concept in r.outputs and r.truth in CLASSES]
    truth = np.array([str(r.truth) for r in rows])
    pa = np.array([r.outputs[concept].p_abnormal for r in rows], dtype=np.float64)
    pm = np.array([r.outputs[concept].p_malignant for r in rows], dtype=np.float64)
    pred = [str(r.outputs[concept].label) for r in rows]
    groups = np.array([r.patient_id for r in rows])
    out: dict[str, Any] = {"n_images": len(rows)}
    sens_at_spec: dict[str, Any] = {"specificity": REPORT_SPECIFICITY}
    roc: dict[str, Any] = {}
    tasks = {
        "abnormal": (truth != Label.NORMAL, pa, "normal", "abnormal (benign or malignant)"),
        "malignant": (truth == Label.MALIGNANT, pm, "non-malignant", "malignant"),
    }
    for task, (y, scores, neg_name, pos_name) in tasks.items():
        if not y.any() or y.all():
            missing = pos_name if not y.any() else neg_name
            out[f"auc_{task}_note"] = f"no {missing} images: AUC {task} is undefined"
            continue
        res = _binary_task(y, scores, groups, n_boot=n_boot, seed=seed)
        out[f"auc_{task}"] = res["auc"]
        out[f"auc_{task}_ci"] = res["ci"]
        sens_at_spec[task] = res["sens_at_spec"]
        roc[task] = res["roc"]
    summary = metrics.verdict_summary(truth.tolist(), pred)
    for key in ("accuracy", "macro_f1", "sensitivity_malignant", "specificity"):
        out[key] = _r(summary[key])
    out["confusion"] = summary["confusion"]
    out["sensitivity_at_specificity"] = sens_at_spec
    out["roc"] = roc
    if concept in DETECTOR_CONCEPTS:
        truths = [r.lesion_boxes for r in rows]
        if not any(truths):
            out["froc_note"] = "no lesion boxes in these images: FROC needs lesion locations"
        else:
            preds = [
                {"boxes": r.outputs[concept].boxes, "scores": r.outputs[concept].scores}
                for r in rows
            ]
            fr = metrics.froc(preds, truths, hit="center")
            out["froc"] = {k: _r(fr[k]) for k in ("0.5", "1", "2", "mean")}
            merged = findings_froc(preds, truths)
            out["froc_findings"] = {k: _r(merged[k]) for k in ("0.5", "1", "2", "mean")}
            out["froc_curve"] = {
                "fps_per_image": [_r(v) for v in fr["fps_per_image"]],
                "sensitivity": [_r(v) for v in fr["sensitivity"]],
            }
            out["froc_hit"] = FROC_HIT
    return out


def evaluate_results(
    results: list[ImageResult],
    concepts: Iterable[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Counts and per-concept metrics (see :func:`evaluate_concept`), JSON-ready.

    Returns:
        ``{"n_images", "n_patients", "n_lesions", "n_unreadable", "n_unknown_label",
        "bootstrap", "froc_hit", "concepts": {name: metrics}}``.
    """
    readable = [r for r in results if r.error is None]
    return {
        "n_images": len(results),
        "n_patients": len({r.patient_id for r in results}),
        "n_lesions": sum(len(r.lesion_boxes) for r in results),
        "n_unreadable": len(results) - len(readable),
        "n_unknown_label": sum(1 for r in results if r.truth == Label.UNKNOWN),
        "bootstrap": {"n_boot": n_boot, "seed": seed, "level": 0.95, "unit": "patient"},
        "froc_hit": FROC_HIT,
        "concepts": {c: evaluate_concept(results, c, n_boot=n_boot, seed=seed) for c in concepts},
    }


def calibrate(results: list[ImageResult], experiment: Experiment) -> dict[str, Thresholds]:
    """Thresholds per concept for the operating points of ``cascade.json`` (validation data).

    Uses :func:`hdcnn.cascade.choose_thresholds` with ``operating_points.rule``
    (``"sensitivity"``, the default, or ``"youden"``) and ``sens_abnormal`` / ``sens_malignant``
    (default 0.9 each); detector concepts keep their ``detector_score``.

    Returns:
        concept -> :class:`Thresholds`.
    """
    from hdcnn.cascade import choose_thresholds

    ops = experiment.config.operating_points
    c1_train = experiment.config.c1_training_threshold()
    chosen: dict[str, Thresholds] = {}
    for concept in experiment.concepts:
        rows = [r for r in results if concept in r.outputs and r.truth != Label.UNKNOWN]
        if concept in experiment.detectors:
            # start from the crop-level operating points, not from an earlier calibration (which
            # may have lowered c1_lesion), so calibrating twice gives the same thresholds
            base = replace(
                experiment.detectors[concept].thresholds,
                c1_lesion=c1_train
                if concept == "det-hier" and c1_train is not None
                else Thresholds().c1_lesion,
            )
        else:
            base = experiment.whole[concept].thresholds
        chosen[concept] = choose_thresholds(
            [r.outputs[concept].p_abnormal for r in rows],
            [r.outputs[concept].p_malignant for r in rows],
            [r.truth for r in rows],
            sens_abnormal=ops.sens_abnormal,
            sens_malignant=ops.sens_malignant,
            rule=ops.rule,
            base=base,
        )
    return chosen


def updated_config(config: CascadeConfig, chosen: dict[str, Thresholds]) -> CascadeConfig:
    """The settings with calibrated thresholds: det-hier in ``thresholds``, the other concepts
    in ``concept_thresholds``."""
    extra = dict(config.concept_thresholds)
    thresholds = config.thresholds
    for concept, t in chosen.items():
        if concept == "det-hier":
            thresholds = t
        elif concept in DETECTOR_CONCEPTS:
            extra[concept] = t
        else:
            extra[concept] = Thresholds(abnormal=t.abnormal, malignant=t.malignant)
    return replace(config, thresholds=thresholds, concept_thresholds=extra)
