"""Tests of ``python -m hdcnn evaluate`` (run through its own parser)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from hdcnn.commands import evaluate
from hdcnn.data.adapters import load_dataset
from hdcnn.data.splits import patient_split
from hdcnn.data.synth import write_cohort
from hdcnn.evaluation.experiment import CONCEPTS
from tests.cascade_weights import make_weights_dir

torch.set_num_threads(1)

METRIC_KEYS = {
    "auc_abnormal",
    "auc_abnormal_ci",
    "auc_malignant",
    "auc_malignant_ci",
    "accuracy",
    "macro_f1",
    "sensitivity_malignant",
    "specificity",
    "confusion",
    "sensitivity_at_specificity",
    "roc",
}


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    evaluate.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_cohort(root, patients=6, seed=2, size=128)
    return root


def test_evaluate_json_schema_plots_and_determinism(
    cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = make_weights_dir(tmp_path / "w")
    out1, out2, plots = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "plots"
    common = ["--dataset", "synth", "--root", str(cohort), "--weights", str(weights)]
    common += ["--split", "all", "--n-boot", "100"]
    assert run_cli([*common, "--json", str(out1), "--plots", str(plots)]) == 0
    assert run_cli([*common, "--json", str(out2)]) == 0
    assert out1.read_bytes() == out2.read_bytes()
    doc = json.loads(out1.read_text())
    assert doc["dataset"] == "synth" and doc["split"] == "all"
    assert (doc["n_images"], doc["n_patients"]) == (24, 6)
    assert doc["n_lesions"] > 0 and doc["froc_hit"] == "centre-in-box"
    assert list(doc["concepts"]) == list(CONCEPTS)
    for name, m in doc["concepts"].items():
        assert set(m) >= METRIC_KEYS
        if name.startswith("det-"):
            assert set(m["froc"]) == {"0.5", "1", "2", "mean"}
    assert sorted(p.name for p in plots.iterdir()) == [
        "froc.png",
        "roc_abnormal.png",
        "roc_malignant.png",
    ]
    assert (plots / "froc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    assert "det-hier" in text and "FROC" in text
    # per lesion type, as cv reports it (hdcnn.evaluation.lesion_types)
    types = doc["lesion_types"]
    assert "all" in types and types["all"]["n_lesions"] == doc["n_lesions"]
    assert "det-hier by lesion type" in text


def test_evaluate_reports_a_shipped_calibration(
    cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dataclasses import replace

    from hdcnn.calibration import Calibration, ProbabilityMap
    from hdcnn.config import CascadeConfig

    weights = make_weights_dir(tmp_path / "w")
    cfg = CascadeConfig.load(weights)
    maps = {"p_abnormal": ProbabilityMap("platt", a=0.5, b=-1.0)}
    replace(cfg, calibration=Calibration(maps)).save(weights, hash_files=False)
    out = tmp_path / "e.json"
    common = ["--dataset", "synth", "--root", str(cohort), "--weights", str(weights)]
    assert run_cli([*common, "--split", "all", "--n-boot", "20", "--json", str(out)]) == 0
    probs = json.loads(out.read_text())["probability_calibration"]
    assert list(probs) == ["p_abnormal"] and probs["p_abnormal"]["n"] == 24
    assert "raw -> calibrated" in capsys.readouterr().out


def test_split_from_cascade_json_and_calibrate(cohort: Path, tmp_path: Path) -> None:
    manifest = load_dataset("synth", cohort)
    parts = patient_split(manifest, seed=3)
    patients = {k: sorted(v.patients()) for k, v in parts.items()}
    split = {"dataset": "synth", "seed": 3, "fractions": [0.6, 0.2, 0.2], "patients": patients}
    weights = make_weights_dir(tmp_path / "w", config={"split": split})
    out = tmp_path / "test.json"
    args = ["--dataset", "synth", "--root", str(cohort), "--weights", str(weights)]
    assert (
        run_cli([*args, "--split", "test", "--n-boot", "20", "--calibrate", "--json", str(out)])
        == 0
    )
    doc = json.loads(out.read_text())
    assert doc["n_patients"] == len(patients["test"])
    assert doc["n_images"] == len(parts["test"])
    cal = doc["calibration"]
    assert cal["split"] == "val" and cal["n_images"] == len(parts["val"])
    config = json.loads((weights / "cascade.json").read_text())
    assert config["thresholds"] == cal["thresholds"]["det-hier"]
    assert set(config["concept_thresholds"]) == {"flat-whole", "hier-whole", "det-flat"}
    assert config["split"] == {**split, "kind": "holdout"}  # the rest of cascade.json is kept
    # the known answers were written again for the new thresholds: the folder still loads
    from hdcnn.cascade import load_cascade

    assert (
        load_cascade(weights, known_answers="require").thresholds.abnormal
        == (cal["thresholds"]["det-hier"]["abnormal"])
    )


def test_unknown_dataset_is_a_dataset_error(tmp_path: Path) -> None:
    from hdcnn.errors import DatasetError

    weights = make_weights_dir(tmp_path / "w")
    with pytest.raises(DatasetError):
        run_cli(["--dataset", "nope", "--root", str(tmp_path), "--weights", str(weights)])


def _manifest(patients: dict[str, int]):
    from hdcnn.data.manifest import ImageRecord, Manifest

    records = [
        ImageRecord(f"{p}_{i}.png", p, p, "L", "CC", None, None, "normal", [], "mias", None)
        for p, n in patients.items()
        for i in range(n)
    ]
    return Manifest(records)


@pytest.mark.parametrize(
    ("folds", "dataset", "warned"),
    [
        ({"fold0": ["a", "b"], "fold1": ["c"]}, "mias", "2 of 3 patients (3 of 4 images)"),
        ({"fold0": ["x"], "fold1": ["y"]}, "mias", None),  # withheld images: no warning
        ({"fold0": ["a", "b"]}, "cbis-ddsm", None),  # another dataset's patient ids
    ],
)
def test_split_all_warns_only_for_patients_in_training(
    caplog: pytest.LogCaptureFixture, folds: dict, dataset: str, warned: str | None
) -> None:
    """Issue 22: --split all on images withheld from training no longer says 'in-sample'."""
    import logging

    from hdcnn.config import CascadeConfig
    from hdcnn.evaluation.engine import select_split

    config = CascadeConfig(split={"dataset": "mias", "kind": "k-fold", "folds": folds})
    manifest = _manifest({"a": 2, "b": 1, "z": 1})
    caplog.set_level(logging.WARNING)
    assert select_split(manifest, config, dataset, "all") is manifest
    if warned is None:
        assert "in-sample" not in caplog.text
    else:
        assert warned in caplog.text and "in-sample" in caplog.text


def test_holdout_split_all_counts_the_training_patients(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from hdcnn.config import CascadeConfig
    from hdcnn.evaluation.engine import select_split

    split = {"dataset": "mias", "patients": {"train": ["a"], "val": ["b"], "test": ["z"]}}
    caplog.set_level(logging.WARNING)
    manifest = _manifest({"a": 2, "b": 1, "z": 1})
    select_split(manifest, CascadeConfig(split=split), "mias", "all")
    assert "1 of 3 patients (2 of 4 images)" in caplog.text
    assert [
        r.patient_id for r in select_split(manifest, CascadeConfig(split=split), "mias", "test")
    ] == ["z"]
