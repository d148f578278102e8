"""The calcification stream of a cascade: speck-density spots on the original pixels, their own
classifier and their own threshold, and Classifier 2 for the spots it calls lesions.

A weights folder has the stream when its ``cascade.json`` has a ``calc_stream`` section
(:class:`~hdcnn.calcstream.CalcStreamConfig`) and a ``c1_calc.pt``
(:data:`~hdcnn.config.CALC_WEIGHT_FILE`). For each image:

1. :func:`hdcnn.spots.find_spots` on the original pixels at the image's pixel spacing;
2. the stream classifier (:func:`calc_head_from_logistic`: the frozen trunk's pooled features of
   a ``crop_size`` crop of each spot, cut from the original pixels with the cascade's context,
   then the spot's speck features) gives P(lesion);
3. only spots with P(lesion) >= the stream's threshold go on to Classifier 2 (the mass
   stream's crop head, on the same crops as for detector boxes).

Part of :mod:`hdcnn.cascade` (see its docstring and docs/CASCADE.md, "Two streams").
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hdcnn.calcstream import CalcStreamConfig
from hdcnn.cascade.results import Finding
from hdcnn.config import CALC_WEIGHT_FILE, CascadeConfig
from hdcnn.nets.features import FeatureClassifier, FeatureConfig, build_feature_classifier
from hdcnn.roi import crop_rois_full_resolution
from hdcnn.spots import DEFAULT_PIXEL_MM, SPECK_FEATURES, SpotConfig, find_spots
from hdcnn.terms import FindingStatus

if TYPE_CHECKING:
    from hdcnn.preprocess import Preprocessed
    from hdcnn.reader import MammogramMeta

#: The value of P(malignant | lesion) for a spot Classifier 2 did not see (below the stream's
#: threshold).
NOT_GRADED = float("nan")


#: Length (mm) that an image stating no pixel spacing is taken to span along its longer side:
#: mini-MIAS's 1,024 pixels at 0.2 mm. Many digitised-film files state none (mini-MIAS, and the
#: CBIS-DDSM DICOMs, scanned at 42 to 50 µm): a 4,600-px CBIS-DDSM scan is then taken as
#: 0.045-mm pixels, not mini-MIAS's 0.2, so the spot finder looks for specks of the right size.
ASSUMED_LONG_SIDE_MM = 1024 * DEFAULT_PIXEL_MM


def pixel_mm_of(meta: MammogramMeta | Any | None) -> float:
    """An image's pixel spacing in millimetres: the one it states; else
    :data:`ASSUMED_LONG_SIDE_MM` over its longer side (``meta.original_size``); else (no
    header at all) :data:`DEFAULT_PIXEL_MM`."""
    spacing = getattr(meta, "pixel_spacing", None)
    if spacing:
        return float(spacing[0])
    size = getattr(meta, "original_size", None)
    if size and max(size) > 0:
        return ASSUMED_LONG_SIDE_MM / float(max(size))
    return DEFAULT_PIXEL_MM


def calc_head_from_logistic(
    params: tuple[np.ndarray, ...], *, crop_size: int = CalcStreamConfig.crop_size
) -> FeatureClassifier:
    """The stream classifier of a fitted binary logistic regression.

    Args:
        params: ``(mean, std, coef, intercept)`` of :func:`hdcnn.train.heads.fit_logistic`
            over ``[pooled trunk features of the crop, then the speck features]``.
        crop_size: the crops' side (the classifier's input size).

    Returns:
        A :class:`FeatureClassifier` with ``extra_features = len(SPECK_FEATURES)`` and the
        classes of :data:`~hdcnn.config.CALC_WEIGHT_FILE` (class 1 = lesion).

    Raises:
        ValueError: the parameters do not have the trunk's features plus the speck features.
    """
    cfg = FeatureConfig(
        num_classes=len(CALC_WEIGHT_FILE.classes),
        input_size=(crop_size, crop_size),
        extra_features=len(SPECK_FEATURES),
    )
    mean = np.asarray(params[0]).reshape(-1)
    if len(mean) != cfg.n_features:
        raise ValueError(
            f"expected {cfg.n_features} features (trunk + {len(SPECK_FEATURES)} speck), "
            f"got {len(mean)}"
        )
    model = build_feature_classifier(cfg)
    model.head.set_logistic(*params)
    return model.eval()


def save_calc_stream(
    folder: str | os.PathLike[str],
    params: tuple[np.ndarray, ...],
    threshold: float,
    *,
    spots: SpotConfig,
    extra: dict[str, Any] | None = None,
) -> CascadeConfig:
    """Add the calcification stream to a weights folder: write ``c1_calc.pt`` and the
    ``calc_stream`` section of its ``cascade.json`` (file hashes updated).

    Known answers already in the folder are dropped (they no longer cover every output):
    stamp new ones with ``python -m hdcnn models stamp DIR``.

    Returns:
        The settings written.
    """
    from hdcnn.checkpoint import save_checkpoint

    root = Path(folder)
    config = CascadeConfig.load(root)
    stream = CalcStreamConfig(threshold=threshold, spots=spots)
    model = calc_head_from_logistic(params, crop_size=stream.crop_size)
    save_checkpoint(
        root / CALC_WEIGHT_FILE.file,
        kind="feature-classifier",
        config=model.config,
        model=model,
        classes=list(CALC_WEIGHT_FILE.classes),
        extra={**(extra or {}), "part": str(CALC_WEIGHT_FILE.part)},
    )
    new = replace(config, calc_stream=stream, known_answers=None)
    new.save(root, hash_files=True)
    return new


@dataclass(frozen=True)
class CalcTrace:
    """The calcification stream's intermediate results on one image.

    Attributes:
        boxes: float32 ``(K, 4)`` spot boxes, model pixels, strongest density first.
        density: float32 ``(K,)`` cluster density of each spot.
        p_lesion: float32 ``(K,)`` the stream classifier's P(lesion).
        p_malignant_given_lesion: float32 ``(K,)`` Classifier 2's P(malignant | lesion);
            NaN (:data:`NOT_GRADED`) where P(lesion) is below the stream's threshold.
        crops: float32 ``(K, s, s)`` the stream classifier's crops.
    """

    boxes: np.ndarray
    density: np.ndarray
    p_lesion: np.ndarray
    p_malignant_given_lesion: np.ndarray
    crops: np.ndarray

    def finite(self, threshold: float) -> bool:
        """Whether every computed output is finite (P(malignant | lesion) of the spots at or
        above ``threshold``, the stream's; the others were not graded)."""
        graded = self.p_malignant_given_lesion[self.p_lesion >= threshold]
        return all(
            bool(np.isfinite(np.asarray(a, np.float64)).all())
            for a in (self.boxes, self.density, self.p_lesion, graded)
        )


@dataclass
class CalcStream:
    """The stream's classifier and settings (built by :func:`hdcnn.cascade.load_cascade`).

    Attributes:
        head: the stream classifier (:func:`calc_head_from_logistic`).
        lesion_index: its ``"lesion"`` output.
        config: the folder's ``calc_stream`` settings.
        files: ``{"c1_calc.pt": sha256}``.
    """

    head: FeatureClassifier
    lesion_index: int
    config: CalcStreamConfig
    files: dict[str, str]

    def crops(self, pixels: np.ndarray, prep: Preprocessed, boxes: np.ndarray, context: float):
        """The stream classifier's crops of spot ``boxes`` (model pixels): ``(N, s, s)``."""
        size = self.config.crop_size
        return crop_rois_full_resolution(pixels, prep.geometry, boxes, size=size, context=context)

    def p_lesion(self, crops: np.ndarray, specks: np.ndarray) -> np.ndarray:
        """P(lesion) of each spot from its crop and speck features: float32 ``(N,)``."""
        if len(crops) == 0:
            return np.zeros(0, np.float32)
        x = torch.from_numpy(np.ascontiguousarray(crops, np.float32))[:, None]
        extra = torch.from_numpy(np.ascontiguousarray(specks, np.float32))
        return self.head.probabilities(x, extra, self.lesion_index)


def run_stream(
    stream: CalcStream,
    cascade: Any,
    prep: Preprocessed,
    pixels: np.ndarray,
    pixel_mm: float = DEFAULT_PIXEL_MM,
) -> CalcTrace:
    """The stream on one image: spots, P(lesion), and Classifier 2 for the lesions only.

    Args:
        stream: the folder's stream.
        cascade: the :class:`~hdcnn.cascade.Cascade` (its context and Classifier 2).
        prep / pixels: the preprocessed image and its original pixels.
        pixel_mm: the original pixels' spacing (:func:`pixel_mm_of`).
    """
    spots = find_spots(pixels, prep, pixel_mm=pixel_mm, cfg=stream.config.spots)
    crops = stream.crops(pixels, prep, spots.boxes, cascade.context)
    p_lesion = stream.p_lesion(crops, spots.specks)
    p_mal = np.full(len(p_lesion), NOT_GRADED, np.float32)
    lesions = np.flatnonzero(p_lesion >= stream.config.threshold)
    if len(lesions):
        _, graded, _ = cascade.classify(prep, spots.boxes[lesions], pixels)
        p_mal[lesions] = graded
    return CalcTrace(spots.boxes, spots.scores, p_lesion, p_mal, crops)


def calc_findings(
    calc: CalcTrace, prep: Preprocessed, threshold: float, malignant: float, first_number: int
) -> tuple[list[Finding], float, float]:
    """The stream's findings on one image and its share of the image probabilities.

    The findings are numbered from ``first_number`` (after the mass stream's candidates).

    A spot is a lesion when its P(lesion) is at least ``threshold`` (the stream's own); its
    P(malignant) is then P(lesion) x P(malignant | lesion), graded against ``malignant``.
    Below the threshold it is rejected (:attr:`FindingStatus.REJECTED_BY_CALC`).

    Returns:
        ``(findings, max P(lesion) over every spot, max P(malignant) over the lesions)``.
    """
    n = len(calc.p_lesion)
    model_boxes = np.asarray(calc.boxes, np.float64).reshape(-1, 4)[:n]
    orig = prep.geometry.to_original(model_boxes) if n else np.zeros((0, 4))
    findings: list[Finding] = []
    p_abnormal = p_malignant = 0.0
    for i in range(n):
        lesion = float(calc.p_lesion[i])
        p_abnormal = max(p_abnormal, lesion)
        pm: float | None
        if lesion >= threshold:
            pm = lesion * float(calc.p_malignant_given_lesion[i])
            p_malignant = max(p_malignant, pm)
            label = "malignant" if pm >= malignant else "benign"
            status = FindingStatus(label)
        else:
            pm, label, status = None, "rejected", FindingStatus.REJECTED_BY_CALC
        findings.append(
            Finding(
                box=tuple(float(v) for v in orig[i]),  # type: ignore[arg-type]
                detector_score=0.0,
                p_lesion=lesion,
                p_malignant=pm,
                label=label,
                model_box=tuple(float(v) for v in model_boxes[i]),  # type: ignore[arg-type]
                index=i,
                status=status,
                stream="calcification",
                spot_density=float(calc.density[i]),
                stream_threshold=threshold,
                number=first_number + i,
            )
        )
    return findings, p_abnormal, p_malignant
