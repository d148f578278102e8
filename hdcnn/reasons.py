"""Why the cascade decided what it did: the rule and the threshold values behind every verdict.

Pure functions on results of :mod:`hdcnn.cascade` (no network, no Streamlit). The app, the PDF
and JSON reports use them, so every verdict shown anywhere names the rule that decided it and
the threshold values in force, and every finding names the stage that kept or refused it.

Rules (docs/CASCADE.md), with ``t_eff = max(abnormal, c1_lesion)``:

- no candidate with detector score >= ``detector_score``: **normal**, decided by the detector
  score threshold;
- every candidate's P(lesion) < ``c1_lesion``: **normal**, decided by Classifier 1;
- else P(abnormal) < ``t_eff``: **normal**, decided by the image-level abnormal threshold;
- else P(malignant) >= ``malignant``: **malignant**, otherwise **benign**, decided by the
  malignant threshold.

Breast and exam verdicts use the same thresholds on their (max-rule) probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from hdcnn.cascade import Finding, Thresholds
from hdcnn.terms import FindingStatus, Label

if TYPE_CHECKING:
    from hdcnn.cascade import Prediction


class DecisionStage(StrEnum):
    """The rule that decided a verdict; the value is the :class:`Thresholds` field it applies."""

    DETECTOR = "detector_score"
    CLASSIFIER_1 = "c1_lesion"
    IMAGE_THRESHOLD = "abnormal"
    MALIGNANT_THRESHOLD = "malignant"
    CALC_STREAM = "calc_stream"  # the calcification stream's own threshold (cascade.json)


#: Plain name of each threshold (keys: :class:`Thresholds` fields).
THRESHOLD_NAMES: dict[str, str] = {
    "detector_score": "detector score threshold",
    "c1_lesion": "Classifier 1 threshold",
    "abnormal": "image-level abnormal threshold",
    "malignant": "malignant threshold",
}
#: Plain name of the calcification stream's own threshold (``cascade.json`` ``calc_stream``).
CALC_THRESHOLD_NAME = "calcification stream threshold"

#: Short text of each finding status, for tables and captions.
STATUS_TEXT: dict[FindingStatus, str] = {
    FindingStatus.BELOW_DETECTOR_THRESHOLD: "below detector threshold",
    FindingStatus.REJECTED_BY_C1: "refused by C1",
    FindingStatus.REJECTED_BY_CALC: "refused by the calcification stream",
    FindingStatus.BELOW_IMAGE_THRESHOLD: "refused at image level",
    FindingStatus.BENIGN: "benign",
    FindingStatus.MALIGNANT: "malignant",
}


def _f(value: float) -> str:
    return f"{float(value):.3f}"


@dataclass(frozen=True)
class Explanation:
    """Which rule decided a verdict, with the numbers it compared.

    Attributes:
        label: the verdict.
        decided_by: the deciding rule (:class:`DecisionStage`).
        threshold_name: plain name of the deciding threshold (``THRESHOLD_NAMES``).
        threshold: its value in force (for the image-level rule: ``max(abnormal, c1_lesion)``).
        value_name: what was compared with it, e.g. ``"P(abnormal)"``.
        value: that quantity, or None when there was nothing to compare (no candidate).
        reason: one sentence, e.g. ``"P(abnormal) 0.659 < image-level abnormal threshold
            0.673"``.
        thresholds: every threshold in force.
        decisive: number (1-based, as in the findings tables) of the finding the verdict
            rests on, or None.
    """

    label: Label
    decided_by: DecisionStage
    threshold_name: str
    threshold: float
    value_name: str
    value: float | None
    reason: str
    thresholds: Thresholds
    decisive: int | None = None

    @property
    def headline(self) -> str:
        """``"NORMAL — decided by the image-level abnormal threshold: P(abnormal) ..."``."""
        return f"{str(self.label).upper()} — decided by the {self.threshold_name}: {self.reason}"

    def thresholds_text(self) -> str:
        """Every threshold in force, e.g. ``"detector score ≥ 0.05, P(lesion) ≥ 0.13, ..."``."""
        return thresholds_text(self.thresholds)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (reports)."""
        return {
            "label": str(self.label),
            "decided_by": str(self.decided_by),
            "rule": self.threshold_name,
            "threshold": round(float(self.threshold), 6),
            "value_name": self.value_name,
            "value": None if self.value is None else round(float(self.value), 6),
            "reason": self.reason,
            "decisive_finding": self.decisive,
            "thresholds": self.thresholds.to_dict(),
        }


def thresholds_text(t: Thresholds) -> str:
    """The four thresholds in force as one line."""
    effective = t.effective_abnormal
    abnormal = f"image P(abnormal) ≥ {_f(effective)}"
    if t.c1_lesion > t.abnormal:
        abnormal += " (= the Classifier 1 threshold, the larger)"
    return (
        f"detector score ≥ {_f(t.detector_score)}, Classifier 1 P(lesion) ≥ {_f(t.c1_lesion)}, "
        f"{abnormal}, P(malignant) ≥ {_f(t.malignant)} for malignant"
    )


def finding_number(finding: Finding, row: int) -> int:
    """The number shown for a finding (1-based): its rank by detector score in the trace,
    so the boxes, the Diagnose table and the Cascade tables agree (calcification spots:
    ``Finding.number``, after the detector's); ``row + 1`` without one."""
    if finding.number is not None:
        return finding.number
    return finding.index + 1 if finding.index >= 0 else row + 1


def _is_calc(finding: Finding) -> bool:
    return finding.stream == "calcification" and finding.stream_threshold is not None


def stream_text(finding: Finding, number: int) -> str:
    """A calcification finding's stream, its P(lesion) and its threshold, e.g. ``"#23 is a
    calcification-stream finding: P(lesion) 0.910 ≥ calcification stream threshold 0.500"``;
    empty for the mass stream's."""
    if not _is_calc(finding):
        return ""
    t = float(finding.stream_threshold or 0.0)
    op = "≥" if finding.p_lesion >= t else "<"
    return (
        f"#{number} is a calcification-stream finding: P(lesion) {_f(finding.p_lesion)} {op} "
        f"{CALC_THRESHOLD_NAME} {_f(t)}"
    )


def explain_verdict(
    label: Label | str,
    p_abnormal: float,
    p_malignant: float,
    thresholds: Thresholds,
    *,
    subject: str = "image",
) -> Explanation:
    """The rule behind a breast, exam (or image) verdict from its probabilities alone.

    Args:
        label: the verdict given.
        p_abnormal, p_malignant: its probabilities.
        thresholds: the thresholds it was made with.
        subject: what the probabilities describe (``"breast"``, ``"exam"``), for the sentence.
    """
    label = Label(label)
    t_abn = thresholds.effective_abnormal
    if label == Label.NORMAL:
        return Explanation(
            label,
            DecisionStage.IMAGE_THRESHOLD,
            THRESHOLD_NAMES["abnormal"],
            t_abn,
            "P(abnormal)",
            p_abnormal,
            f"{subject} P(abnormal) {_f(p_abnormal)} < {THRESHOLD_NAMES['abnormal']} {_f(t_abn)}",
            thresholds,
        )
    op = "≥" if label == Label.MALIGNANT else "<"
    return Explanation(
        label,
        DecisionStage.MALIGNANT_THRESHOLD,
        THRESHOLD_NAMES["malignant"],
        thresholds.malignant,
        "P(malignant)",
        p_malignant,
        f"{subject} P(abnormal) {_f(p_abnormal)} ≥ {_f(t_abn)} and P(malignant) "
        f"{_f(p_malignant)} {op} {THRESHOLD_NAMES['malignant']} {_f(thresholds.malignant)}",
        thresholds,
    )


def explain(prediction: Prediction) -> Explanation:
    """The rule that decided an image's verdict (:class:`~hdcnn.cascade.Prediction`).

    Uses the prediction's own thresholds and findings; with a trace it also reports the best
    detector score below the threshold when no candidate was left.
    """
    t = prediction.thresholds
    label = Label(prediction.label)
    findings = list(prediction.findings)
    numbered = [(finding_number(f, row), f) for row, f in enumerate(findings)]
    if label == Label.NORMAL:
        if not findings:
            best = _best_detector_score(prediction)
            reason = f"no detector box scored ≥ {_f(t.detector_score)}"
            if best is not None:
                reason += f" (highest {_f(best)})"
            return Explanation(
                label,
                DecisionStage.DETECTOR,
                THRESHOLD_NAMES["detector_score"],
                t.detector_score,
                "detector score",
                best,
                reason,
                t,
            )
        number, top = max(numbered, key=lambda nf: nf[1].p_lesion)
        refused = (FindingStatus.REJECTED_BY_C1, FindingStatus.REJECTED_BY_CALC)
        if all(finding_status(f, t) in refused for f in findings):
            calc = _is_calc(top)
            name = CALC_THRESHOLD_NAME if calc else THRESHOLD_NAMES["c1_lesion"]
            threshold = float(top.stream_threshold or 0.0) if calc else t.c1_lesion
            return Explanation(
                label,
                DecisionStage.CALC_STREAM if calc else DecisionStage.CLASSIFIER_1,
                name,
                threshold,
                "P(lesion)",
                top.p_lesion,
                f"every candidate refused: highest P(lesion) {_f(top.p_lesion)} (#{number}"
                f"{', calcification stream' if calc else ''}) < {name} "
                f"{_f(threshold)}",
                t,
                number,
            )
        base = explain_verdict(label, prediction.p_abnormal, prediction.p_malignant, t)
        return replace(
            base,
            reason=_with_stream(
                f"P(abnormal) {_f(prediction.p_abnormal)} (#{number}) < "
                f"{THRESHOLD_NAMES['abnormal']} {_f(t.effective_abnormal)}",
                top,
                number,
            ),
            decisive=number,
        )
    base = explain_verdict(label, prediction.p_abnormal, prediction.p_malignant, t)
    kept = [(n, f) for n, f in numbered if f.kept and f.p_malignant is not None]
    best = max(kept, key=lambda nf: nf[1].p_malignant or 0.0) if kept else None
    number = None if best is None else best[0]
    suffix = f" (#{number})" if number is not None else ""
    reason = (
        f"P(abnormal) {_f(prediction.p_abnormal)} ≥ {_f(t.effective_abnormal)} "
        f"and P(malignant) {_f(prediction.p_malignant)}{suffix} "
        f"{'≥' if label == Label.MALIGNANT else '<'} {THRESHOLD_NAMES['malignant']} "
        f"{_f(t.malignant)}"
    )
    if best is not None:
        reason = _with_stream(reason, best[1], best[0])
    return replace(base, reason=reason, decisive=number)


def _with_stream(reason: str, finding: Finding, number: int) -> str:
    """``reason``, then the deciding finding's stream when it is the calcification stream."""
    text = stream_text(finding, number)
    return f"{reason}; {text}" if text else reason


def _best_detector_score(prediction: Prediction) -> float | None:
    trace = prediction.trace
    if trace is None or len(trace.candidates) == 0:
        return None
    return float(trace.candidates.scores[0])


def finding_status(finding: Finding, thresholds: Thresholds) -> FindingStatus:
    """A finding's status: the one :meth:`Cascade.decide` set, else derived from its label."""
    if finding.status is not None:
        return FindingStatus(finding.status)
    if finding.label in (FindingStatus.BENIGN, FindingStatus.MALIGNANT):
        return FindingStatus(finding.label)
    if finding.p_lesion < thresholds.c1_lesion:
        return FindingStatus.REJECTED_BY_C1
    return FindingStatus.BELOW_IMAGE_THRESHOLD


def supports_verdict(finding: Finding, thresholds: Thresholds) -> bool:
    """Whether the verdict rests on this finding: a malignant finding, or a benign one whose
    own P(lesion) reaches the image-level abnormal threshold (it alone makes the image
    abnormal). Weaker kept findings and refused candidates do not; the app draws them quietly.
    """
    status = finding_status(finding, thresholds)
    if status == FindingStatus.MALIGNANT:
        return True
    return status == FindingStatus.BENIGN and finding.p_lesion >= thresholds.effective_abnormal


def finding_reason(finding: Finding, thresholds: Thresholds) -> str:
    """Why a finding has its status, with the threshold in force, e.g.
    ``"P(lesion) 0.100 < Classifier 1 threshold 0.132"``."""
    t = thresholds
    status = finding_status(finding, t)
    if status == FindingStatus.BELOW_DETECTOR_THRESHOLD:
        return (
            f"detector score {_f(finding.detector_score)} < "
            f"{THRESHOLD_NAMES['detector_score']} {_f(t.detector_score)}"
        )
    if status == FindingStatus.REJECTED_BY_C1:
        return (
            f"P(lesion) {_f(finding.p_lesion)} < {THRESHOLD_NAMES['c1_lesion']} {_f(t.c1_lesion)}"
        )
    calc = _is_calc(finding)
    own = (
        f"{CALC_THRESHOLD_NAME} {_f(finding.stream_threshold or 0.0)}"
        if calc
        else f"Classifier 1 threshold {_f(t.c1_lesion)}"
    )
    if status == FindingStatus.REJECTED_BY_CALC:
        return f"P(lesion) {_f(finding.p_lesion)} < {own}"
    if status == FindingStatus.BELOW_IMAGE_THRESHOLD:
        return (
            f"P(lesion) {_f(finding.p_lesion)} ≥ {own} but < "
            f"{THRESHOLD_NAMES['abnormal']} {_f(t.effective_abnormal)}"
        )
    pm = float(finding.p_malignant or 0.0)
    op = "≥" if status == FindingStatus.MALIGNANT else "<"
    return f"P(malignant) {_f(pm)} {op} {THRESHOLD_NAMES['malignant']} {_f(t.malignant)}"


@dataclass(frozen=True)
class CandidateRow:
    """One classified detector box of a trace, as the Cascade page tabulates it.

    Attributes:
        number: 1-based rank by detector score (the number on its box).
        index: row in the trace.
        detector_score, p_lesion: stage outputs.
        p_malignant_given_lesion: Classifier 2's crop-level probability.
        p_malignant: ``p_lesion * p_malignant_given_lesion`` (the graded value) when kept.
        status: the stage that kept or refused it.
        reason: :func:`finding_reason`.
        finding: the :class:`Finding` when it is a candidate (above the detector threshold).
    """

    number: int
    index: int
    detector_score: float
    p_lesion: float
    p_malignant_given_lesion: float
    p_malignant: float | None
    status: FindingStatus
    reason: str
    finding: Finding | None


def candidate_rows(
    prediction: Prediction, *, max_candidates: int | None = None
) -> list[CandidateRow]:
    """Every classified detector box of a prediction's trace, candidates and those below the
    detector threshold alike, highest detector score first.

    Args:
        prediction: with ``trace`` (``predict(..., detail=True)``); without one, only its
            findings are listed.
        max_candidates: how many boxes the cascade classifies (default: all in the trace).
    """
    t = prediction.thresholds
    by_index = {f.index: f for f in prediction.findings if f.stream == "mass"}
    rows: list[CandidateRow] = []
    trace = prediction.trace
    if trace is None:
        for row, f in enumerate(prediction.findings):
            rows.append(_row(finding_number(f, row), f.index, f, t, None))
        return rows
    n = min(len(trace.candidates), len(trace.p_lesion))
    if max_candidates is not None:
        n = min(n, max_candidates)
    for i in range(n):
        finding = by_index.get(i)
        if finding is None:
            finding = Finding(
                box=(0.0, 0.0, 0.0, 0.0),
                detector_score=float(trace.candidates.scores[i]),
                p_lesion=float(trace.p_lesion[i]),
                p_malignant=None,
                label="rejected",
                model_box=tuple(float(v) for v in trace.candidates.boxes[i]),
                index=i,
                status=FindingStatus.BELOW_DETECTOR_THRESHOLD,
            )
            rows.append(_row(i + 1, i, finding, t, float(trace.p_malignant_given_lesion[i]), False))
        else:
            rows.append(_row(i + 1, i, finding, t, float(trace.p_malignant_given_lesion[i])))
    return rows


def _row(
    number: int,
    index: int,
    f: Finding,
    t: Thresholds,
    p_mal_given: float | None,
    candidate: bool = True,
) -> CandidateRow:
    return CandidateRow(
        number=number,
        index=index,
        detector_score=float(f.detector_score),
        p_lesion=float(f.p_lesion),
        p_malignant_given_lesion=float("nan") if p_mal_given is None else p_mal_given,
        p_malignant=f.p_malignant,
        status=finding_status(f, t),
        reason=finding_reason(f, t),
        finding=f if candidate else None,
    )


def status_counts(statuses: Sequence[FindingStatus]) -> dict[FindingStatus, int]:
    """How many findings ended in each status (statuses with none left out)."""
    counts: dict[FindingStatus, int] = {}
    for s in statuses:
        counts[FindingStatus(s)] = counts.get(FindingStatus(s), 0) + 1
    return counts
