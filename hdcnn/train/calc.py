"""The calcification stream's training side: its candidates on every image, their features,
and its classifier fitted on a fold's training images.

The stream's candidates are the speck-density maxima of :mod:`hdcnn.spots` on the original
pixels (nothing learnt, so one set serves every fold). Each candidate carries three feature
blocks: the frozen trunk's features of a :data:`~hdcnn.config.CALC_CROP_SIZE`-px crop and the
speck features (:data:`~hdcnn.spots.SPECK_FEATURES`), which the stream's classifier sees, and
the mass stream's :data:`~hdcnn.config.CROP_SIZE`-px crop features, which Classifier 2 sees
when the candidate is a lesion. The classifier is an L2 logistic regression with balanced
class weights, like Classifier 1: positives are candidates that hit a lesion (the FROC rule),
negatives every other candidate of a training image, so the normal films' vessel
calcifications, film specks and noise are its hard negatives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from hdcnn.calcstream import CALC_SPOTS
from hdcnn.config import CALC_CROP_SIZE
from hdcnn.spots import SPECK_FEATURES, SpotConfig, find_spots
from hdcnn.terms import Label
from hdcnn.train.features import FeatureExtractor, candidate_labels, per_image
from hdcnn.train.heads import fit_logistic
from hdcnn.train.images import Image

if TYPE_CHECKING:
    from hdcnn.train.folds import CrossValidation


#: Each fold's cache of its SIMULATED-cluster candidates (:func:`simulated_candidates`), in
#: ``<out>/fold<k>/``: shared by every row that teaches the stream with them.
SIMULATED_CACHE = "simulated_clusters.npz"

#: ``(mean, std, coef, intercept)`` of a fitted logistic regression (:func:`fit_logistic`).
Logistic = tuple[np.ndarray, ...]


def pixel_mm_of(image: Image) -> float:
    """The image's pixel spacing in millimetres (mini-MIAS's when it states none)."""
    from hdcnn.cascade.calc import pixel_mm_of as of_meta

    return of_meta(image.item.meta)


def calc_candidates(
    cv: CrossValidation, spot_cfg: SpotConfig = CALC_SPOTS, *, name: str = "calc_candidates.npz"
) -> dict[str, np.ndarray]:
    """Every image's calcification candidates, cached as ``<out>/<name>``: ``image``,
    ``boxes`` (model pixels), ``scores`` (cluster density), ``label`` (as the detector's
    candidates), ``x`` (the mass stream's crop features, for Classifier 2) and ``x_calc``
    (the stream's crop features, then the speck features)."""
    small = FeatureExtractor(
        replace(cv.cfg, cascade=replace(cv.cfg.cascade, crop_size=CALC_CROP_SIZE)), cv.device
    )

    def work(image: Image) -> tuple[np.ndarray, ...]:
        spots = find_spots(image.pixels, image.prep, pixel_mm=pixel_mm_of(image), cfg=spot_cfg)
        x = cv.extractor.features(cv.extractor.crops(image, spots.boxes))
        x_small = small.features(small.crops(image, spots.boxes))
        x_calc = np.concatenate([x_small, spots.specks], axis=1).astype(np.float32)
        return spots.boxes, spots.scores, candidate_labels(image.item, spots.boxes), x, x_calc

    def build() -> dict[str, np.ndarray]:
        every = range(len(cv.items))
        done = per_image(
            cv.source, every, work, cv.ctx, desc="calcification candidates", progress=cv.progress
        )
        per = [done[i] for i in every]
        out = cv.candidate_arrays([p[:4] for p in per])
        out["x_calc"] = np.concatenate([p[4] for p in per]).astype(np.float32)
        return out

    return cv.cached(name, build)


def lesion_odds(label: np.ndarray) -> float:
    """Negatives per positive of a training set's labels (0: negative, above 0: a lesion;
    below 0, unknown, is not counted): the factor by which a logistic regression with balanced
    class weights multiplies a candidate's odds of being a lesion."""
    positives, negatives = int((label > 0).sum()), int((label == 0).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"{positives} positives and {negatives} negatives: no odds")
    return negatives / positives


def fit_calc_classifier(
    cv: CrossValidation,
    calc: dict[str, np.ndarray],
    train_idx: np.ndarray,
    extra: dict[str, np.ndarray] | None = None,
    *,
    reference_odds: float | None = None,
) -> Logistic:
    """The stream's classifier on the training images' candidates: P(the candidate is a
    lesion) from ``x_calc`` (candidates of lesions of unknown place or grade left out), plus
    ``extra`` candidates (``image``, ``x_calc``, ``label``: simulated clusters of training
    images).

    With ``reference_odds`` (Classifier 1's :func:`lesion_odds`), the stream's P(lesion) is
    moved onto Classifier 1's scale: both are fitted with balanced class weights, which
    inflate a candidate's odds by their own training set's negatives per positive, so the
    intercept is moved by ``log(reference_odds) - log(the stream's odds)``. Nothing is fitted
    for it; the ranking of the stream's own spots does not change.
    """
    rows = np.flatnonzero(np.isin(calc["image"], train_idx) & (calc["label"] >= 0))
    x, y, image = calc["x_calc"][rows], calc["label"][rows] > 0, calc["image"][rows]
    if extra is not None and len(extra["image"]):
        if not np.isin(extra["image"], train_idx).all():
            raise ValueError("simulated candidates of a held-out image")
        x = np.concatenate([x, extra["x_calc"]])
        y = np.concatenate([y, extra["label"] > 0])
        image = np.concatenate([image, extra["image"]])
    groups = np.array([cv.items[int(i)].patient for i in image])
    params, _ = fit_logistic(x, y.astype(int), cv.cfg.seed, groups, cv.cfg.logistic_c)
    if reference_odds is None:
        return params
    return moved_to_odds(params, y.astype(np.int64), reference_odds)


def moved_to_odds(params: Logistic, label: np.ndarray, reference_odds: float) -> Logistic:
    """A balanced logistic regression fitted on ``label`` with its P(class 1) moved onto the
    scale of one fitted on a training set of ``reference_odds`` negatives per positive: its
    intercept plus ``log(reference_odds) - log(lesion_odds(label))``."""
    shift = np.log(reference_odds) - np.log(lesion_odds(label))
    return (*params[:3], params[3] + shift)


def simulated_candidates(
    cv: CrossValidation,
    train_idx: np.ndarray,
    *,
    name: str,
    spot_cfg: SpotConfig = CALC_SPOTS,
) -> dict[str, np.ndarray]:
    """Stream candidates of SIMULATED-cluster copies of the training normals of one fold,
    cached as ``<out>/<name>``: ``image`` (the normal film copied), ``x_calc``, ``label``
    (1: the candidate hits the inserted cluster, FROC rule; 0: any other spot).

    Cluster counts and contrasts come from the real calcification lesions of ``train_idx``
    only (:func:`hdcnn.simclusters.measure_clusters`); the copies of a held-out image are never
    made, so nothing inserted is ever scored.
    """
    from hdcnn.evaluation.metrics import lesion_hits
    from hdcnn.roi import crop_rois_full_resolution
    from hdcnn.simclusters import insert_cluster, measure_clusters, pooled_stats

    small = replace(cv.cfg.cascade, crop_size=CALC_CROP_SIZE)

    def build() -> dict[str, np.ndarray]:
        measured = []
        for i in train_idx:
            item = cv.items[int(i)]
            gt = item.gt_of_kind("calcification")
            if len(gt):
                image = cv.image(int(i))
                boxes = image.prep.geometry.to_original(gt.astype(np.float64))
                measured += measure_clusters(
                    image.pixels, image.prep, boxes, pixel_mm=pixel_mm_of(image), cfg=spot_cfg
                )
        stats = pooled_stats(measured)
        images, xs, labels = [], [], []
        for i in train_idx:
            if cv.items[int(i)].label != Label.NORMAL:
                continue
            image = cv.image(int(i))
            rng = np.random.default_rng([cv.cfg.seed, int(i)])
            made = insert_cluster(image.pixels, image.prep, stats, rng, pixel_mm=pixel_mm_of(image))
            if made is None:
                continue
            pixels, box = made
            spots = find_spots(pixels, image.prep, pixel_mm=pixel_mm_of(image), cfg=spot_cfg)
            geometry = image.prep.geometry
            crops = crop_rois_full_resolution(
                pixels, geometry, spots.boxes, size=small.crop_size, context=small.context
            )
            x = np.concatenate([cv.extractor.features(crops), spots.specks], axis=1)
            target = geometry.to_model(box[None], clip=True)
            images.append(np.full(len(x), int(i), np.int64))
            xs.append(x.astype(np.float32))
            labels.append(lesion_hits(spots.boxes, target)[:, 0].astype(np.int64))
        n_features = cv.extractor.n_features + len(SPECK_FEATURES)
        return {
            "image": np.concatenate(images) if images else np.zeros(0, np.int64),
            "x_calc": np.concatenate(xs) if xs else np.zeros((0, n_features), np.float32),
            "label": np.concatenate(labels) if labels else np.zeros(0, np.int64),
        }

    return cv.cached(name, build)


def logistic_probability(params: Logistic, x: np.ndarray) -> np.ndarray:
    """P(class 1) of a fitted binary logistic regression on features ``x``."""
    z = ((x - params[0]) / params[1]) @ params[2][0] + params[3][0]
    return 1.0 / (1.0 + np.exp(-z))


def calc_scorer(
    cv: CrossValidation,
    calc: dict[str, np.ndarray],
    train_idx: np.ndarray,
    extra: dict[str, np.ndarray] | None = None,
    *,
    reference_odds: float | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """Calcification candidate rows -> the fold's P(lesion) of each (``extra`` and
    ``reference_odds``: see :func:`fit_calc_classifier`)."""
    params = fit_calc_classifier(cv, calc, train_idx, extra, reference_odds=reference_odds)
    return lambda rows: logistic_probability(params, calc["x_calc"][rows])


def c1_odds(cv: CrossValidation, tag: str, train_idx: np.ndarray) -> float:
    """Negatives per positive of the crops Classifier 1 of weights folder ``tag`` learns from
    (:func:`lesion_odds`): the scale the stream's P(lesion) is moved onto."""
    crops = cv.training_crops(cv.candidates(tag, train_idx), train_idx)
    return lesion_odds(crops.y)


def calc_threshold(cv: CrossValidation, calc: dict[str, np.ndarray]) -> float:
    """The stream's own P(lesion) threshold, chosen as Classifier 1's is
    (:func:`~hdcnn.evaluation.out_of_fold.lesion_level_threshold`): on the pooled out-of-fold
    spot scores (each image scored by the fold classifier that never saw its patient, on its
    fold's Classifier 1 scale, :func:`c1_odds`), the threshold that keeps
    :data:`~hdcnn.config.SENSITIVITY` of the calcification lesions some spot hits (the
    best-scored hitting spot of each)."""
    from hdcnn.config import SENSITIVITY
    from hdcnn.evaluation.out_of_fold import best_hitting_scores
    from hdcnn.thresholds import threshold_at_sensitivity

    every = np.arange(len(cv.items))
    best: list[float] = []
    for k, held in enumerate(cv.folds):
        train = np.setdiff1d(every, held)
        score = calc_scorer(cv, calc, train, reference_odds=c1_odds(cv, f"fold{k}", train))
        for i in held:
            gt = cv.items[int(i)].gt_of_kind("calcification")
            rows = np.flatnonzero(calc["image"] == i)
            if len(gt) and len(rows):
                best += best_hitting_scores(calc["boxes"][rows], score(rows), gt)
    return threshold_at_sensitivity(np.array(best), SENSITIVITY)
