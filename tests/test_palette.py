"""Tests for hdcnn.palette: one colour for every label, finding and concept."""

from __future__ import annotations

import re

import pytest

from hdcnn.palette import (
    CONCEPT_COLOURS,
    FALLBACK,
    FINDING_COLOURS,
    LABEL_COLOURS,
    LABEL_NAMED,
    concept_colour,
    finding_colour,
    label_colour,
    rgb,
)
from hdcnn.terms import Concept, Label

HEX = re.compile(r"#[0-9a-f]{6}")


def test_every_term_has_a_colour() -> None:
    assert set(LABEL_COLOURS) == set(Label) and set(LABEL_NAMED) == set(Label)
    assert set(CONCEPT_COLOURS) == set(Concept)
    colours = [*LABEL_COLOURS.values(), *FINDING_COLOURS.values(), *CONCEPT_COLOURS.values()]
    assert all(HEX.fullmatch(c) for c in colours)
    # concepts are told apart from each other and from every verdict colour
    assert len(set(CONCEPT_COLOURS.values())) == len(Concept)
    assert not set(CONCEPT_COLOURS.values()) & set(LABEL_COLOURS.values())
    assert set(LABEL_NAMED.values()) <= {"blue", "green", "orange", "red", "violet", "gray"}


def test_lookups_take_plain_strings() -> None:
    assert label_colour("malignant") == LABEL_COLOURS[Label.MALIGNANT]
    assert finding_colour("benign") == label_colour(Label.BENIGN)
    assert finding_colour("something else") == FINDING_COLOURS["lesion"]
    assert concept_colour("det-hier") == CONCEPT_COLOURS[Concept.DET_HIER]
    assert concept_colour("nope") == label_colour("nope") == FALLBACK


def test_rgb() -> None:
    assert rgb("#dc2828") == (220, 40, 40)
    assert rgb(FINDING_COLOURS["rejected"]) == (150, 150, 150)
    with pytest.raises(ValueError, match="rrggbb"):
        rgb("red")
