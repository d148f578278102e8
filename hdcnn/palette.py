"""One palette: the colour of every label, finding and concept, for every chart and overlay.

Colours are ``"#rrggbb"`` strings, which plotly, matplotlib, graphviz and CSS all take;
:func:`rgb` gives the ``(r, g, b)`` tuple that OpenCV and fpdf want. Streamlit's coloured
markdown and dividers accept only a few colour names: :data:`LABEL_NAMED` holds those.

Choices: verdict labels use the traffic-light convention (normal green, benign amber,
malignant red, unknown grey; benign and malignant are also the colours of the boxes drawn on
the images); the four concepts use Paul Tol's colour-blind-safe muted scheme, none of them a
verdict colour. Legend and axis order: ``tuple(Label)`` and ``tuple(Concept)``.
"""

from __future__ import annotations

from hdcnn.terms import Concept, Label

#: Verdict / lesion label -> colour.
LABEL_COLOURS: dict[Label, str] = {
    Label.NORMAL: "#3a8f3a",
    Label.BENIGN: "#f5a014",
    Label.MALIGNANT: "#dc2828",
    Label.UNKNOWN: "#9a9a9a",
}

#: Finding label on an image (``Finding.label``) -> box colour; ``"lesion"`` is a detector
#: candidate not graded (yet), e.g. in the cascade's step-by-step view.
FINDING_COLOURS: dict[str, str] = {
    "benign": LABEL_COLOURS[Label.BENIGN],
    "malignant": LABEL_COLOURS[Label.MALIGNANT],
    "rejected": "#969696",
    "lesion": "#2878dc",
}

#: Concept of the thesis experiment -> colour of its curves and bars.
CONCEPT_COLOURS: dict[Concept, str] = {
    Concept.FLAT_WHOLE: "#88ccee",
    Concept.HIER_WHOLE: "#332288",
    Concept.DET_FLAT: "#44aa99",
    Concept.DET_HIER: "#aa4499",
}

#: Verdict label -> Streamlit colour name (``:red[...]`` markdown, ``st.subheader(divider=)``).
LABEL_NAMED: dict[Label, str] = {
    Label.NORMAL: "green",
    Label.BENIGN: "orange",
    Label.MALIGNANT: "red",
    Label.UNKNOWN: "gray",
}

#: Colour of anything the maps above do not name.
FALLBACK = "#777777"

#: Reliability diagram: raw scores (grey) and calibrated probabilities (det-hier's colour).
CALIBRATION_COLOURS: dict[str, str] = {
    "before": FALLBACK,
    "after": CONCEPT_COLOURS[Concept.DET_HIER],
}


def rgb(colour: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` -> ``(r, g, b)`` ints in ``[0, 255]``."""
    text = colour.lstrip("#")
    if len(text) != 6:
        raise ValueError(f"expected a colour '#rrggbb', got {colour!r}")
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


def label_colour(label: str) -> str:
    """Colour of a verdict/lesion label (``"normal"`` ... or a :class:`Label`)."""
    return LABEL_COLOURS.get(label, FALLBACK)


def finding_colour(label: str) -> str:
    """Box colour of a finding label (``benign``, ``malignant``, ``rejected``, ``lesion``)."""
    return FINDING_COLOURS.get(label, FINDING_COLOURS["lesion"])


def concept_colour(concept: str) -> str:
    """Colour of a concept (``"det-hier"`` ... or a :class:`Concept`)."""
    return CONCEPT_COLOURS.get(concept, FALLBACK)
