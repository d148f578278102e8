"""Tests for hdcnn.terms: the typed domain terms are their strings."""

from __future__ import annotations

import json

import pytest

from hdcnn.terms import (
    CLASSES,
    Concept,
    FindingStatus,
    Label,
    Laterality,
    Part,
    View,
    parse_label,
    worst_label,
)


def test_members_equal_hash_and_serialise_as_their_strings() -> None:
    assert Concept.DET_HIER == "det-hier" and Part.C1 == "c1" and Laterality.LEFT == "L"
    assert {"det-hier": 1}[Concept.DET_HIER] == 1
    assert {Part.WHOLE_ABNORMAL: 1}["whole-abnormal"] == 1
    assert json.dumps([View.MLO, FindingStatus.REJECTED_BY_C1]) == '["MLO", "rejected_by_c1"]'
    assert f"{Concept.FLAT_WHOLE}" == "flat-whole"
    assert Part("crop-flat") is Part.CROP_FLAT
    with pytest.raises(ValueError):
        Concept("det-flatt")


def test_the_vocabularies() -> None:
    assert [str(c) for c in Concept] == ["flat-whole", "hier-whole", "det-flat", "det-hier"]
    assert [c for c in Concept if c.uses_detector] == [Concept.DET_FLAT, Concept.DET_HIER]
    assert {str(p) for p in Part} == {
        "detector",
        "c1",
        "c2",
        "crop-flat",
        "whole-flat",
        "whole-abnormal",
        "whole-malignancy",
        "c1-calc",
    }
    assert {str(s) for s in FindingStatus} >= {"rejected_by_c1", "benign", "malignant"}
    assert [str(v) for v in Laterality] == ["L", "R"]
    assert [str(v) for v in View] == ["CC", "MLO", "other"]
    assert CLASSES == (Label.NORMAL, Label.BENIGN, Label.MALIGNANT)


def test_the_cascade_uses_the_terms_finding_status() -> None:
    from hdcnn import cascade

    assert cascade.FindingStatus is FindingStatus


def test_worst_and_parse_label() -> None:
    assert worst_label(["normal", Label.BENIGN, "unknown"]) is Label.BENIGN
    assert worst_label([]) is Label.UNKNOWN
    assert parse_label("M") is Label.MALIGNANT and parse_label(None) is Label.UNKNOWN
