"""Overlapping kept findings read as one finding: the one merge rule, its thresholds, and the
close-up of a finding for display.

The detector often proposes several boxes on one lesion (a withheld mass film gave 11); each
can pass both classifiers, so the same mass was listed and drawn 11 times, its tags hiding the
smaller boxes. :func:`overlap_groups` is the rule that joins them: two boxes belong together
when their IoU reaches :data:`MERGE_IOU` or when the smaller lies mostly inside the larger
(intersection / smaller area >= :data:`MERGE_CONTAINMENT`), and groups are closed under that
link (single linkage). :func:`hdcnn.report.finding_dicts` applies it to the kept findings of a
prediction: each group is shown as its most suspicious member, which says how many candidates
it merged. Verdicts and probabilities are not changed: the image's P(abnormal) and
P(malignant) are maxima over the candidates, which merging keeps.

No Streamlit here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: IoU at or above which two kept findings are one finding.
MERGE_IOU = 0.3
#: Share of the smaller box inside the larger at or above which two kept findings are one.
MERGE_CONTAINMENT = 0.6
#: Labels of kept findings: the findings that overlapping boxes are merged among.
KEPT_LABELS = ("benign", "malignant")
#: A close-up shows the finding's box with this much context on each side (times its side).
CLOSEUP_CONTEXT = 0.75
#: A close-up window is at least this many original pixels wide.
CLOSEUP_MIN_SIDE = 96


def overlap_groups(
    boxes: Sequence[Sequence[float]] | np.ndarray,
    *,
    iou: float = MERGE_IOU,
    containment: float = MERGE_CONTAINMENT,
) -> list[list[int]]:
    """Groups of overlapping boxes (the merge rule).

    Args:
        boxes: ``(N, 4)`` ``[x1, y1, x2, y2]`` in one image's pixels.
        iou: link two boxes when their IoU is at least this.
        containment: link two boxes when intersection / the smaller box's area is at least this.

    Returns:
        Lists of row indices, each sorted; groups ordered by their first index. Every row is in
        exactly one group (a box that overlaps nothing is a group of one).
    """
    from hdcnn.boxes import box_iou

    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(arr)
    if n == 0:
        return []
    ious = box_iou(arr, arr)
    area = np.clip(arr[:, 2] - arr[:, 0], 0, None) * np.clip(arr[:, 3] - arr[:, 1], 0, None)
    pair = area[:, None] + area[None, :]
    inter = ious * pair / (1.0 + ious)  # IoU = I / (A + B - I)  =>  I = IoU (A + B) / (1 + IoU)
    smaller = np.minimum(area[:, None], area[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = np.where(smaller > 0, inter / smaller, 0.0)
    linked = (ious >= iou) | (inside >= containment)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(linked, k=1)), strict=True):
        ri, rj = root(int(i)), root(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def closeup_window(
    box: Sequence[float], image_size: tuple[int, int], *, context: float = CLOSEUP_CONTEXT
) -> tuple[int, int, int, int]:
    """The square window ``(x0, y0, x1, y1)`` (x1/y1 exclusive) around a box for a close-up.

    Args:
        box: ``[x1, y1, x2, y2]`` original pixels.
        image_size: ``(H, W)`` of the image.
        context: margin on each side, as a fraction of the box's longer side.

    Returns:
        Integer window inside the image, at least :data:`CLOSEUP_MIN_SIDE` wide where the
        image allows.
    """
    height, width = image_size
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1)
    side = min(max(side * (1 + 2 * context), CLOSEUP_MIN_SIDE), max(height, width))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    wx, wy = min(side, width), min(side, height)
    x0 = round(min(max(cx - wx / 2, 0), width - wx))
    y0 = round(min(max(cy - wy / 2, 0), height - wy))
    return x0, y0, min(width, x0 + round(wx)), min(height, y0 + round(wy))


def closeup_image(pixels: np.ndarray, finding: dict[str, Any], *, side: int = 384) -> np.ndarray:
    """The original pixels around a finding (:func:`closeup_window`) scaled to ``side``, with
    its box and tag drawn prominently.

    Args:
        pixels: float32 ``(H, W)`` in ``[0, 1]`` (the image as read).
        finding: a :func:`hdcnn.report.finding_dicts` row (``box`` in original pixels).
        side: the close-up's longer side in pixels.

    Returns:
        uint8 RGB ``(h, w, 3)``.
    """
    import cv2

    from hdcnn.overlay import draw_findings

    x0, y0, x1, y1 = closeup_window(finding["box"], pixels.shape)
    window = pixels[y0:y1, x0:x1]
    scale = side / max(window.shape)
    size = (max(1, round(window.shape[1] * scale)), max(1, round(window.shape[0] * scale)))
    grey = cv2.resize(
        np.clip(window * 255.0 + 0.5, 0, 255).astype(np.uint8),
        size,
        interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA,
    )
    box = [v - o for v, o in zip(finding["box"], (x0, y0, x0, y0), strict=True)]
    drawn = {**finding, "box": box, "merged_into": None, "prominent": True}
    return draw_findings(grey, [drawn], scale=scale)


def merge_overlapping(rows: list[dict[str, Any]]) -> None:
    """Merge overlapping kept findings of :func:`hdcnn.report.finding_dicts` rows, in place.

    Each group of two or more kept rows (:func:`overlap_groups` on their ``box``) is led by its
    most suspicious member (highest ``p_malignant``, then ``p_lesion``, then lowest number):
    its ``merged`` lists the other members' numbers and its ``prominent`` is true when any
    member's was. Every other member gets ``merged_into`` = the leader's number and
    ``prominent`` false. Refused candidates are never merged.

    Args:
        rows: dicts with ``number``, ``box``, ``label``, ``p_malignant``, ``p_lesion``,
            ``prominent``; ``merged`` / ``merged_into`` are set here.
    """
    for r in rows:
        r.setdefault("merged", [])
        r.setdefault("merged_into", None)
    kept = [r for r in rows if r["label"] in KEPT_LABELS]
    for group in overlap_groups([r["box"] for r in kept]):
        if len(group) < 2:
            continue
        members = [kept[i] for i in group]
        head = max(
            members, key=lambda r: (r["p_malignant"] or 0.0, r["p_lesion"] or 0.0, -r["number"])
        )
        head["prominent"] = any(r["prominent"] for r in members)
        head["merged"] = sorted(r["number"] for r in members if r is not head)
        for r in members:
            if r is not head:
                r["merged_into"] = head["number"]
                r["prominent"] = False


#: Columns of the findings table (:func:`finding_table`), in order.
FINDING_COLUMNS = (
    "No.",
    "stream",
    "status",
    "P(lesion)",
    "P(malignant)",
    "why",
    "merged",
    "det. score",
)
#: What a table cell says where a value does not apply (never a raw "None").
NOT_APPLICABLE = "—"


def _num(value: float | None) -> str:
    return NOT_APPLICABLE if value is None else f"{float(value):.3f}"


def status_text(row: dict[str, Any]) -> str:
    """A finding's status in words (:data:`hdcnn.reasons.STATUS_TEXT`), ✓ when the verdict rests
    on it."""
    from hdcnn.reasons import STATUS_TEXT
    from hdcnn.terms import FindingStatus

    status = row.get("status")
    try:
        text = STATUS_TEXT[FindingStatus(status)]
    except ValueError:
        text = str(status or row.get("label", NOT_APPLICABLE))
    return text + (" ✓" if row.get("prominent") else "")


def finding_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """The findings table as text cells: one row per finding (merged ones inside the finding
    they merged into), every cell a string, ``"—"`` where a value does not apply. Boxes are
    drawn, not listed (the JSON and PDF reports give their coordinates).

    Args:
        rows: :func:`hdcnn.report.finding_dicts`.

    Returns:
        ``[{column: text}]`` with the keys of :data:`FINDING_COLUMNS`; ``merged`` says how many
        candidate boxes the finding stands for and which (``"3: #1, #4, #6"``).
    """
    out = []
    for r in rows:
        if r.get("merged_into") is not None:
            continue
        merged = list(r.get("merged") or ())
        numbers = ", ".join(f"#{n}" for n in sorted([r["number"], *merged]))
        out.append(
            {
                "No.": str(r["number"]),
                "stream": str(r.get("stream") or "mass"),
                "status": status_text(r),
                "P(lesion)": _num(r.get("p_lesion")),
                "P(malignant)": _num(r.get("p_malignant")),
                "why": str(r.get("reason") or NOT_APPLICABLE),
                "merged": f"{len(merged) + 1}: {numbers}" if merged else "1",
                "det. score": _num(r.get("detector_score")),
            }
        )
    return out


#: Columns of the calcification stream's table (:func:`spot_table`), in order.
SPOT_COLUMNS = (
    "No.",
    "spot density",
    "P(lesion)",
    "calcification stream",
    "P(malignant | lesion)",
    "P(malignant)",
    "status",
    "why",
)


def spot_table(prediction: Any) -> list[dict[str, str]]:
    """The calcification stream's spots of a prediction (``predict(..., detail=True)``) as text
    cells with the keys of :data:`SPOT_COLUMNS`, strongest density first; empty when the
    cascade has no such stream. ``P(malignant | lesion)`` is ``"—"`` where Classifier 2 did
    not run (a spot below the stream's threshold)."""
    from hdcnn.reasons import STATUS_TEXT, finding_reason

    trace = prediction.trace
    spots = [f for f in prediction.findings if f.stream == "calcification"]
    if trace is None or trace.calc is None:
        return []
    out = []
    for f in spots:
        given = float(trace.calc.p_malignant_given_lesion[f.index])
        kept = f.stream_threshold is not None and f.p_lesion >= f.stream_threshold
        out.append(
            {
                "No.": str(f.number),
                "spot density": _num(f.spot_density),
                "P(lesion)": _num(f.p_lesion),
                "calcification stream": "lesion" if kept else "refused",
                "P(malignant | lesion)": _num(None if np.isnan(given) else given),
                "P(malignant)": _num(f.p_malignant),
                "status": STATUS_TEXT[f.status] if f.status is not None else NOT_APPLICABLE,
                "why": finding_reason(f, prediction.thresholds),
            }
        )
    return out
