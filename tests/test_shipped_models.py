"""The shipped weights in ``models/``: loadable, intact, compact, and the model card's figures
reproducible (``models/experiments.json`` byte for byte on the real mini-MIAS test split)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from hdcnn.checkpoint import load_model
from hdcnn.cli import main
from hdcnn.train.config import PARTS
from hdcnn.utils import DEFAULT_WEIGHTS_DIR

torch.set_num_threads(1)

MODELS = DEFAULT_WEIGHTS_DIR
CLASSES = {file: list(classes) for file, _kind, classes in PARTS.values()}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def config() -> dict:
    return json.loads((MODELS / "cascade.json").read_text())


@pytest.mark.parametrize("file", sorted(CLASSES))
def test_checkpoint_is_intact_compact_and_rebuilds(file: str, config: dict) -> None:
    path = MODELS / file
    assert path.stat().st_size < 50 * 2**20
    assert config["files"][file] == _sha256(path)
    assert file in (MODELS / "MODEL_CARD.md").read_text()
    assert _sha256(path) in (MODELS / "MODEL_CARD.md").read_text()
    model, ckpt = load_model(path)  # torch.load(weights_only=True) inside
    assert not model.training
    assert ckpt["classes"] == CLASSES[file]


def test_split_is_by_patient(config: dict) -> None:
    parts = {name: set(ids) for name, ids in config["split"]["patients"].items()}
    assert sum(len(p) for p in parts.values()) == 121
    assert not (parts["train"] & parts["val"] or parts["train"] & parts["test"])
    assert not parts["val"] & parts["test"]


def test_experiments_json_is_reproduced_exactly(mias_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "e.json"
    argv = ["evaluate", "--dataset", "mias", "--root", str(mias_root), "--split", "test"]
    assert main([*argv, "--json", str(out)]) == 0
    assert out.read_bytes() == (MODELS / "experiments.json").read_bytes()


def test_predict_a_real_film_with_shipped_weights(
    mias_root: Path, tmp_path: Path, config: dict
) -> None:
    out = tmp_path / "p.json"
    assert main(["predict", str(mias_root / "mdb023.pgm"), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["model"]["name"] == config["name"]
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
