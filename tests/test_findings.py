"""Tests of hdcnn.findings: overlapping kept findings read as one, close-up windows, table text."""

from __future__ import annotations

import numpy as np

from hdcnn.cascade import Finding, Prediction, Thresholds
from hdcnn.findings import (
    FINDING_COLUMNS,
    MERGE_IOU,
    closeup_window,
    finding_table,
    overlap_groups,
)
from hdcnn.report import draw_findings, finding_dicts
from hdcnn.terms import FindingStatus, Label


def test_overlap_groups_join_overlapping_and_contained_boxes() -> None:
    boxes = [
        [0, 0, 100, 100],
        [10, 10, 110, 110],  # IoU 0.68 with the first
        [300, 300, 400, 400],
        [320, 320, 350, 350],  # inside the third (IoU 0.09): contained, so the same lesion
        [600, 600, 700, 700],
        [690, 690, 790, 790],  # touches the fifth (IoU 0.005): a finding of its own
    ]
    assert overlap_groups(boxes) == [[0, 1], [2, 3], [4], [5]]
    assert overlap_groups([]) == []
    # single linkage: a chain of overlaps is one group
    chain = [[0, 0, 100, 100], [40, 0, 140, 100], [80, 0, 180, 100]]
    assert overlap_groups(chain) == [[0, 1, 2]]
    assert overlap_groups(chain, iou=0.9, containment=0.99) == [[0], [1], [2]]
    assert 0 < MERGE_IOU < 1


def _finding(i: int, box, p_lesion: float, p_malignant: float | None, status) -> Finding:
    label = "rejected" if p_malignant is None else str(status)
    return Finding(tuple(box), 0.9 - i / 100, p_lesion, p_malignant, label, index=i, status=status)


def _prediction() -> Prediction:
    t = Thresholds(detector_score=0.05, c1_lesion=0.3, abnormal=0.3, malignant=0.5)
    mal, ben, c1 = FindingStatus.MALIGNANT, FindingStatus.BENIGN, FindingStatus.REJECTED_BY_C1
    findings = [  # eleven boxes on one mass (as on a withheld mass film), one elsewhere
        *(
            _finding(
                i, (100 + i, 100 + i, 200 + i, 200 + i), 0.9, 0.4 + i / 20, mal if i > 1 else ben
            )
            for i in range(11)
        ),
        _finding(11, (500, 500, 560, 560), 0.8, 0.2, ben),
        _finding(12, (105, 105, 205, 205), 0.1, None, c1),  # refused: never merged
    ]
    return Prediction("x", Label.MALIGNANT, 0.9, 0.9, findings, {}, thresholds=t)


def test_finding_dicts_merge_overlapping_kept_findings_into_the_most_suspicious() -> None:
    rows = finding_dicts(_prediction())
    heads = [r for r in rows if r["merged_into"] is None]
    assert [r["number"] for r in heads] == [11, 12, 13]
    head = heads[0]  # highest P(malignant) of the eleven
    assert head["merged"] == list(range(1, 11)) and head["prominent"]
    assert all(r["merged_into"] == 11 and not r["prominent"] for r in rows[:10])
    assert rows[12]["merged"] == [] and rows[12]["merged_into"] is None  # refused one
    table = finding_table(rows)
    assert [row["No."] for row in table] == ["11", "12", "13"]
    assert table[0]["merged"].startswith("11: #1, #2")
    assert table[1]["merged"] == "1"
    assert table[2]["P(malignant)"] == "—"  # never a raw None
    assert all(set(row) == set(FINDING_COLUMNS) for row in table)
    assert "None" not in str(table)


def test_merged_findings_are_drawn_once() -> None:
    rows = finding_dicts(_prediction())
    grey = np.full((800, 800), 80, np.uint8)
    once = draw_findings(grey, [r for r in rows if r["merged_into"] is None], show_rejected=False)
    drawn = draw_findings(grey, rows, show_rejected=False)
    np.testing.assert_array_equal(drawn, once)  # the ten merged boxes leave no trace


def test_closeup_window_holds_the_box_with_context_inside_the_image() -> None:
    x0, y0, x1, y1 = closeup_window([100, 200, 140, 260], (1000, 800))
    assert x0 <= 100 and y0 <= 200 and x1 >= 140 and y1 >= 260
    assert x1 - x0 == y1 - y0 >= 96
    assert closeup_window([0, 0, 790, 990], (1000, 800)) == (0, 0, 800, 1000)
    edge = closeup_window([780, 980, 800, 1000], (1000, 800))
    assert edge[2] == 800 and edge[3] == 1000 and edge[0] >= 0


def test_header_text_says_not_in_the_file_for_a_pgm() -> None:
    from hdcnn.analysis import header_text
    from hdcnn.reader import read_mammogram

    pgm = b"P5 64 48 255\n" + bytes(range(64)) * 48
    text = header_text(read_mammogram(pgm, name="mdb001.pgm").meta)
    assert text == "PGM, 64 × 48 px, 8 bit, laterality and view not in the file."
    assert "?" not in text
