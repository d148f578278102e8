"""hdcnn.evaluation.lesion_types: the per-type table of evaluate (and cv)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hdcnn.evaluation.experiment import ConceptOutput, ImageResult
from hdcnn.evaluation.lesion_types import lesion_type_figures
from hdcnn.terms import Label

REPO = Path(__file__).resolve().parents[2]


def _image(i: int, truth: Label, lesions, boxes, scores, pa: float) -> ImageResult:
    r = ImageResult(i, f"p{i}", truth, [tuple(map(float, b)) for b in lesions])
    r.outputs["det-hier"] = ConceptOutput(
        pa, 0.0, truth, np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores, float)
    )
    return r


def test_recall_froc_and_auc_by_hand() -> None:
    mass, calc = (0, 0, 10, 10), (50, 50, 60, 60)
    results = [
        # a mass found (score 0.9) and a calcification missed; a false positive at 0.2
        _image(0, Label.MALIGNANT, [mass, calc], [[2, 2, 8, 8], [80, 80, 90, 90]], [0.9, 0.2], 0.9),
        _image(1, Label.BENIGN, [calc], [[52, 52, 58, 58]], [0.4], 0.4),  # calcification found
        _image(2, Label.NORMAL, [], [[0, 0, 5, 5]], [0.5], 0.5),
        _image(3, Label.NORMAL, [], [], [], 0.1),
    ]
    kinds = [["mass", "calcification"], ["calcification"], [], []]
    out = lesion_type_figures(results, kinds, n_boot=50)
    assert list(out) == ["calcification", "mass", "all"]
    assert out["mass"]["n_lesions"] == 1 and out["mass"]["candidate_recall"] == 1.0
    assert out["calcification"]["candidate_recall"] == 0.5
    assert out["all"]["n_lesions"] == 3 and out["all"]["candidate_recall"] == pytest.approx(2 / 3)
    # images with a calcification (0.9, 0.4) against the normal ones (0.5, 0.1): 3 of 4 pairs
    assert out["calcification"]["auc_vs_normal"] == 0.75 and out["calcification"]["n_images"] == 2
    assert out["mass"]["auc_vs_normal"] == 1.0 and out["mass"]["n_images"] == 1
    # mass only: the 0.9 box hits it; the other boxes (including one on a calcification) are
    # false positives, 4 images: at 0.5 FP/image the mass is found
    assert out["mass"]["froc"]["0.5"] == 1.0
    with pytest.raises(ValueError, match="kinds"):
        lesion_type_figures(results, [["mass"], [], [], []])
    assert lesion_type_figures(results[2:], [[], []]) == {}


def test_reproduces_the_cross_validation_table(mias_root: Path) -> None:
    """On the shipped out-of-fold scores, the same figures as cv's experiments.json."""
    from hdcnn.data.adapters import load_dataset
    from hdcnn.evaluation.compare import load_oof

    records = list(load_dataset("mias", mias_root))
    results = load_oof(REPO / "models")
    kinds = [[les.kind for les in records[r.index].lesions] for r in results]
    mine = lesion_type_figures(results, kinds)
    shipped = json.loads((REPO / "models" / "experiments.json").read_text())["lesion_types"]
    assert mine == shipped
