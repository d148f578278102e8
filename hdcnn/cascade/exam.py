"""The exam rule: per breast the max over its views, per exam the worse breast.

Part of :mod:`hdcnn.cascade` (see its docstring for the rules).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hdcnn.terms import Label, worst_label

if TYPE_CHECKING:
    pass

from hdcnn.cascade.results import BreastVerdict, ExamPrediction, Prediction
from hdcnn.cascade.rules import Thresholds, verdict

log = logging.getLogger(__name__)


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
        :class:`ExamPrediction` with one :class:`BreastVerdict` per laterality present. When the
        predictions carry a calibration, breast and exam verdicts get calibrated probabilities
        (the image maps applied to the max-rule probabilities) and their borderline flags.
    """
    if not items:
        raise ValueError("an exam needs at least one image")
    groups: dict[str, list[tuple[str, Prediction]]] = {}
    for laterality, view, pred in items:
        lat = str(laterality).upper() if laterality else "unknown"
        groups.setdefault(lat, []).append((str(view) if view else "?", pred))
    calibration = next((p.calibration for *_, p in items if p.calibration is not None), None)

    def calibrated(label: Label, pa: float, pm: float) -> dict[str, Any]:
        if calibration is None:
            return {}
        return {
            "calibrated": calibration.calibrated(pa, pm),
            "borderline": calibration.borderline(label, pa, pm, thresholds),
        }

    breasts: dict[str, BreastVerdict] = {}
    for lat in sorted(groups):
        members = groups[lat]
        pa = max(p.p_abnormal for _, p in members)
        pm = max(p.p_malignant for _, p in members)
        label = verdict(
            pa, pm, t_abnormal=thresholds.effective_abnormal, t_malignant=thresholds.malignant
        )
        breasts[lat] = BreastVerdict(
            lat,
            label,
            pa,
            pm,
            [v for v, _ in members],
            [p.source for _, p in members],
            **calibrated(label, pa, pm),
        )
    label = worst_label(b.label for b in breasts.values())
    pa = max(b.p_abnormal for b in breasts.values())
    pm = max(b.p_malignant for b in breasts.values())
    return ExamPrediction(
        key=key,
        label=label,
        p_abnormal=pa,
        p_malignant=pm,
        breasts=breasts,
        images=[p for _, _, p in items],
        **calibrated(label, pa, pm),
    )
