"""The pretrained recipe's heads: six L2 logistic regressions on frozen-trunk features.

:func:`fit_logistic` standardises and fits one head, its regularisation chosen by an inner
patient-grouped cross-validation on the training images only; :func:`fit_heads` fits the six
classifiers of a weights folder (every part but the detector; their files and classes:
:data:`hdcnn.config.WEIGHT_FILES`) from training crops and whole-image features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from hdcnn.config import WEIGHT_FILES
from hdcnn.nets.features import FeatureClassifier, FeatureConfig, build_feature_classifier
from hdcnn.terms import Part

if TYPE_CHECKING:
    from hdcnn.train.folds import CropSet
    from hdcnn.train.recipe import CVConfig

#: Inverse L2 strengths tried for every logistic head (inner patient-grouped CV picks one).
LOGISTIC_CS: tuple[float, ...] = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
#: Used when the inner CV cannot run (too few patients, or a class missing in a split).
FALLBACK_C = 0.01


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    groups: np.ndarray | None = None,
    c: float | None = None,
) -> tuple[tuple[np.ndarray, ...], float]:
    """Standardise, then an L2 logistic regression with balanced class weights.

    The regularisation is chosen by an inner 3-fold cross-validation grouped by patient
    (``groups``) over :data:`LOGISTIC_CS` (AUC for two classes, log-loss for more), so the
    outer folds stay untouched; ``c`` fixes it instead.

    The BLAS stays on one thread: on these small problems a second OpenBLAS thread beside
    torch's OpenMP pool made the fits more than 10 times slower on this project's 2-core
    machine (an ablation row 86-88 s instead of 7 s with ``--threads 2``, docs/TRAINING.md),
    and one thread gives the same numbers whatever ``--threads`` is.

    Returns:
        ``((mean, std, coef, intercept), C)``; the first for :meth:`LinearHead.set_logistic`.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_logistic(x, y, seed, groups, c)


def _fit_logistic(
    x: np.ndarray, y: np.ndarray, seed: int, groups: np.ndarray | None, c: float | None
) -> tuple[tuple[np.ndarray, ...], float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.model_selection import GroupKFold

    def model(c_value: float) -> LogisticRegression:
        return LogisticRegression(
            C=c_value, class_weight="balanced", max_iter=5000, random_state=seed
        )

    mean = x.mean(axis=0)
    std = x.std(axis=0) + 1e-6
    z = (x - mean) / std
    classes = np.unique(y)
    chosen = c
    if chosen is None and groups is not None and len(np.unique(groups)) >= 3:
        splits = list(GroupKFold(n_splits=3).split(z, y, groups))
        if all(len(np.unique(y[tr])) == len(classes) == len(np.unique(y[te])) for tr, te in splits):
            scores = []
            for c_value in LOGISTIC_CS:  # higher is better: AUC, or minus the log-loss
                fold_scores = []
                for tr, te in splits:
                    prob = model(c_value).fit(z[tr], y[tr]).predict_proba(z[te])
                    fold_scores.append(
                        roc_auc_score(y[te], prob[:, 1])
                        if len(classes) == 2
                        else -log_loss(y[te], prob, labels=classes)
                    )
                scores.append(float(np.mean(fold_scores)))
            chosen = LOGISTIC_CS[int(np.argmax(scores))]
    if chosen is None:
        chosen = FALLBACK_C
    clf = model(chosen).fit(z, y)
    if list(clf.classes_) != list(range(len(clf.classes_))):
        raise ValueError(f"classes must be 0..n-1, got {clf.classes_}")
    return (mean, std, clf.coef_, clf.intercept_), chosen


def make_head(
    part: Part,
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    cfg: CVConfig,
    input_size: tuple[int, int],
) -> tuple[FeatureClassifier, float]:
    """A fitted :class:`FeatureClassifier` for ``part`` and its regularisation ``C``."""
    classes = WEIGHT_FILES[part].classes
    model = build_feature_classifier(
        FeatureConfig(num_classes=len(classes), input_size=input_size, pretrained=cfg.pretrained)
    )
    params, c = fit_logistic(x, y, cfg.seed, groups, cfg.logistic_c)
    model.head.set_logistic(*params)
    return model, c


def fit_heads(
    crops: CropSet,
    whole_x: np.ndarray,
    whole_y: np.ndarray,
    cfg: CVConfig,
    patients: Sequence[str],
    whole_images: np.ndarray,
) -> dict[Part, tuple[FeatureClassifier, float]]:
    """The six classifiers (and their C) from training crops and whole-image features.

    ``patients[i]`` is image ``i``'s patient (the inner CV's groups); ``whole_images`` the
    image index of each row of ``whole_x``.
    """
    c = cfg.cascade
    crop_size = (c.crop_size, c.crop_size)
    pid = np.asarray(patients)
    g = pid[crops.image]
    lesion = crops.y != 0
    graded = crops.y > 0
    known_crop = crops.y >= 0
    heads: dict[Part, tuple[FeatureClassifier, float]] = {
        Part.C1: make_head(Part.C1, crops.x, lesion.astype(int), g, cfg, crop_size),
        Part.C2: make_head(
            Part.C2, crops.x[graded], (crops.y[graded] == 2).astype(int), g[graded], cfg, crop_size
        ),
        Part.CROP_FLAT: make_head(
            Part.CROP_FLAT, crops.x[known_crop], crops.y[known_crop], g[known_crop], cfg, crop_size
        ),
    }
    wg = pid[whole_images]
    known = whole_y >= 0
    abnormal = whole_y > 0
    heads[Part.WHOLE_FLAT] = make_head(
        Part.WHOLE_FLAT, whole_x[known], whole_y[known], wg[known], cfg, c.whole_size
    )
    heads[Part.WHOLE_ABNORMAL] = make_head(
        Part.WHOLE_ABNORMAL,
        whole_x[known],
        abnormal[known].astype(int),
        wg[known],
        cfg,
        c.whole_size,
    )
    heads[Part.WHOLE_MALIGNANCY] = make_head(
        Part.WHOLE_MALIGNANCY,
        whole_x[abnormal],
        (whole_y[abnormal] == 2).astype(int),
        wg[abnormal],
        cfg,
        c.whole_size,
    )
    return heads
