"""Paired comparison of two runs' out-of-fold scores (hdcnn.evaluation.compare) and its
command (python -m hdcnn compare)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hdcnn.cli import main
from hdcnn.errors import DatasetError
from hdcnn.evaluation import metrics
from hdcnn.evaluation.compare import compare_runs, load_oof
from hdcnn.evaluation.experiment import OOF_FILE, ConceptOutput, ImageResult
from hdcnn.terms import Label


def _run(noise: float, seed: int, n: int = 60) -> list[ImageResult]:
    """SYNTHETIC scores of ``n`` images (two per patient): abnormal images score higher by
    an amount that shrinks as ``noise`` grows; det-hier puts one box on each lesion."""
    rng = np.random.default_rng(seed)
    truths = [Label.NORMAL, Label.BENIGN, Label.MALIGNANT]
    out = []
    for i in range(n):
        truth = truths[i % 3]
        lesion = [] if truth == Label.NORMAL else [(10.0, 10.0, 30.0, 30.0)]
        pa = float(np.clip((truth != Label.NORMAL) * 0.3 + rng.normal(0.4, noise), 0, 1))
        pm = float(np.clip((truth == Label.MALIGNANT) * 0.3 + rng.normal(0.3, noise), 0, pa))
        boxes = np.array([[12.0, 12.0, 28.0, 28.0], [50.0, 50.0, 70.0, 70.0]])
        r = ImageResult(index=i, patient_id=f"p{i // 2}", truth=truth, lesion_boxes=lesion)
        r.outputs["flat-whole"] = ConceptOutput(pa, pm, Label.NORMAL)
        r.outputs["det-hier"] = ConceptOutput(
            pa, pm, Label.NORMAL, boxes=boxes, scores=np.array([pa, rng.random()])
        )
        out.append(r)
    return out


def _write(run: list[ImageResult], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / OOF_FILE).write_text(json.dumps({"images": [r.to_dict() for r in run]}))
    return folder


def test_the_same_scores_differ_by_zero() -> None:
    run = _run(0.2, seed=0)
    got = compare_runs(run, run)["concepts"]
    assert set(got) == {"flat-whole", "det-hier"}
    for row in got.values():
        assert row["minus_abnormal"] == [0.0, 0.0, 0.0]
        assert row["auc_abnormal"][0] == row["auc_abnormal"][1]
    assert "froc" in got["det-hier"] and "froc" not in got["flat-whole"]
    assert got["det-hier"]["froc"]["a"] == got["det-hier"]["froc"]["b"]


def test_a_better_run_shows_a_positive_difference_with_its_interval() -> None:
    worse, better = _run(0.5, seed=1), _run(0.05, seed=2)
    row = compare_runs(worse, better, names=("worse", "better"))["concepts"]["det-hier"]
    d, low, high = row["minus_abnormal"]
    y = np.array([r.truth != Label.NORMAL for r in worse])
    auc_a = metrics.roc_auc(y, [r.outputs["det-hier"].p_abnormal for r in worse])
    auc_b = metrics.roc_auc(y, [r.outputs["det-hier"].p_abnormal for r in better])
    assert row["auc_abnormal"] == [pytest.approx(auc_a, abs=1e-4), pytest.approx(auc_b, abs=1e-4)]
    assert d == pytest.approx(auc_b - auc_a, abs=1e-3)
    assert 0.0 < low <= d <= high


def test_runs_of_other_images_are_refused_by_name() -> None:
    a, b = _run(0.2, seed=0), _run(0.2, seed=0, n=58)
    with pytest.raises(DatasetError, match=r"second.*58 against 60 images"):
        compare_runs(a, b, names=("first", "second"))


@pytest.mark.parametrize(
    ("text", "problem"),
    [(None, "cannot read it"), ("{oops", "not JSON"), ('{"rows": []}', "not out-of-fold scores")],
)
def test_unreadable_score_files_name_the_file(tmp_path: Path, text, problem) -> None:
    path = tmp_path / OOF_FILE
    if text is not None:
        path.write_text(text)
    with pytest.raises(DatasetError, match=problem) as exc:
        load_oof(tmp_path)
    assert OOF_FILE in str(exc.value)


def test_compare_command_prints_the_table_and_writes_json(tmp_path: Path, capsys) -> None:
    a = _write(_run(0.5, seed=1), tmp_path / "a")
    b = _write(_run(0.05, seed=2), tmp_path / "b")
    out = tmp_path / "cmp.json"
    assert main(["compare", str(a), str(b / OOF_FILE), "--json", str(out), "--n-boot", "200"]) == 0
    text = capsys.readouterr().out
    assert "| det-hier | 60 |" in text and "FROC @0.5 / 1 / 2 FP, a" in text
    doc = json.loads(out.read_text())
    assert doc["runs"] == [str(a), str(b / OOF_FILE)] and doc["bootstrap"]["n_boot"] == 200
    # a missing run is a clear error, not a traceback
    assert main(["compare", str(a), str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
