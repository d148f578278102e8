"""The three-way verdict rule and threshold choice (:class:`Thresholds` lives in
:mod:`hdcnn.thresholds`, below the cascade and evaluation packages).

Part of :mod:`hdcnn.cascade` (see its docstring for the rules).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from hdcnn.config import OPERATING_RULES, SENSITIVITY
from hdcnn.terms import Label
from hdcnn.thresholds import Thresholds, threshold_at_sensitivity, threshold_youden

log = logging.getLogger(__name__)


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


def choose_thresholds(
    p_abnormal: Sequence[float] | np.ndarray,
    p_malignant: Sequence[float] | np.ndarray,
    labels: Sequence[Label | str],
    *,
    sens_abnormal: float = SENSITIVITY,
    sens_malignant: float = SENSITIVITY,
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
