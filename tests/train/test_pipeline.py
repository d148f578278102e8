from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hdcnn.checkpoint import load_checkpoint, load_model
from hdcnn.train.config import PARTS, TrainConfig, parse_parts
from hdcnn.train.pipeline import c1_accept, train


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic cohort (10 patients, 40 images of 256 px) and its manifest CSV."""
    from hdcnn.data.synth import write_cohort

    root = tmp_path_factory.mktemp("synth")
    write_cohort(root, patients=10, seed=1, size=256)
    return root / "manifest.csv"


def tiny_config(manifest: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(
        dataset="manifest",
        root=manifest,
        out=out,
        epochs=1,
        long_side=128,
        batch_size=16,
        crop_size=32,
        whole_size=(64, 40),
        widths=(8, 16),
        threads=1,
        cache_dir=out / "cache",
        progress=False,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_c1_accept_rule_and_floor() -> None:
    scores = np.array([0.9, 0.2, 0.7, 0.1])
    assert c1_accept(scores, 0.5, 0.25).tolist() == [0, 2]
    assert c1_accept(scores, 0.95, 0.5).tolist() == [0, 2]  # floor: top half by score
    assert c1_accept(scores, 0.95, 0.0).tolist() == [0]  # never empty
    assert c1_accept(np.array([]), 0.5, 0.5).tolist() == []


def test_parse_parts() -> None:
    assert parse_parts(None) == tuple(PARTS)
    assert parse_parts("c2,detector") == ("detector", "c2")
    with pytest.raises(ValueError, match="unknown part"):
        parse_parts("c3")


def test_one_epoch_every_part(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "weights"
    summary = train(tiny_config(cohort, out))
    assert set(summary) == set(PARTS)
    for part, (file, kind, classes) in PARTS.items():
        _model, ckpt = load_model(out / file)
        assert ckpt["kind"] == kind and ckpt["classes"] == list(classes), part
        assert (out / f"last_{part}.pt").is_file()
        assert (out / file).stat().st_size < 15e6
    config = json.loads((out / "cascade.json").read_text())
    c1 = load_checkpoint(out / "c1_lesion.pt")
    assert config["thresholds"]["c1_lesion"] == pytest.approx(c1["extra"]["threshold"])
    assert 0.0 <= c1["extra"]["threshold"] <= 1.0
    # the detector trained first, so c1 and crop-flat got its false positives as normal crops
    for ckpt in (c1, load_checkpoint(out / "crop_flat.pt")):
        assert set(ckpt["extra"]["hard_negatives"]) == {"train", "val"}
    patients = config["split"]["patients"]
    assert sum(len(v) for v in patients.values()) == 10
    assert not set(patients["train"]) & (set(patients["val"]) | set(patients["test"]))
    assert set(config["files"]) == {f for f, _, _ in PARTS.values()}
    assert config["roi"]["crop_size"] == 32 and config["preprocess"]["long_side"] == 128
    assert config["roi"]["crop_source"] == "model"  # this recipe crops the model image
    # the known answers were written: the folder loads where users load it
    from hdcnn.cascade import load_cascade

    assert len(config["known_answers"]["references"]) == 2
    assert load_cascade(out, known_answers="require").long_side == 128
    c2 = load_checkpoint(out / "c2_malignancy.pt")
    used = c2["extra"]["c1_filter"]["train"]["used"]
    assert 1 <= used <= c2["extra"]["c1_filter"]["train"]["lesion_crops"]
    whole, ckpt = load_model(out / "whole_flat.pt")
    assert tuple(ckpt["config"]["input_size"]) == (64, 40)
    with torch.no_grad():
        assert whole(torch.rand(2, 1, 64, 40)).shape == (2, 3)


def test_resume_continues_at_epoch_two(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "weights"
    train(tiny_config(cohort, out, parts=("c1",), epochs=1))
    first = load_checkpoint(out / "last_c1.pt")["training"]
    summary = train(tiny_config(cohort, out, parts=("c1", "c2"), epochs=2, resume=True))
    state = load_checkpoint(out / "last_c1.pt")["training"]
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1.0, 2.0]
    assert state["history"][0] == first["history"][0]  # epoch 1 kept, not re-run
    # Adam's step counter carried over from the first run: 2 epochs of batches in total
    steps = [v["step"] for v in state["optimizer"]["state"].values()]
    first_steps = [v["step"] for v in first["optimizer"]["state"].values()]
    assert all(float(a) == 2 * float(b) for a, b in zip(steps, first_steps, strict=True))
    assert summary["c2"]["epochs"] == 2
    assert not math.isnan(json.loads((out / "cascade.json").read_text())["thresholds"]["c1_lesion"])


def test_c2_alone_needs_c1(cohort: Path, tmp_path: Path) -> None:
    from hdcnn.errors import CheckpointError

    with pytest.raises(CheckpointError, match="c1_lesion"):
        train(tiny_config(cohort, tmp_path / "w", parts=("c2",)))


def test_box_crops_and_joined() -> None:
    from hdcnn.train.datasets import BoxCrops, Joined
    from tests.train.tiny import Blobs, BoxImages

    crops = BoxCrops(
        BoxImages(2, 0),
        [(0, [14.0, 20.0, 30.0, 36.0]), (1, [0.0, 0.0, 8.0, 8.0])],
        label=0,
        crop_size=16,
        context=1.5,
        train=True,
    )
    x, y = crops[0]
    assert x.shape == (1, 16, 16) and y == 0 and float(x.max()) > 0.5  # the bright square
    joined = Joined([Blobs(3, 0), crops])
    assert len(joined) == 5 and joined.labels == [0, 1, 0, 0, 0]
    assert joined[4][0].shape == (1, 16, 16)
    with pytest.raises(IndexError):
        joined[5]


def test_config_and_cli_reject_bad_values(tmp_path: Path) -> None:
    from hdcnn.cli import main

    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(dataset="synth", root=tmp_path, out=tmp_path, epochs=0)
    with pytest.raises(ValueError, match="fractions"):
        TrainConfig(dataset="synth", root=tmp_path, out=tmp_path, fractions=(0.5, 0.2, 0.2))
    with pytest.raises(SystemExit, match="unknown part"):
        main(
            [
                "train",
                "--dataset",
                "synth",
                "--root",
                str(tmp_path),
                "--out",
                str(tmp_path),
                "--parts",
                "detector,c9",
            ]
        )
    # a dataset folder that is not one: a DatasetError, reported as exit code 2
    assert (
        main(
            [
                "train",
                "--dataset",
                "mias",
                "--root",
                str(tmp_path / "none"),
                "--out",
                str(tmp_path / "w"),
                "--no-progress",
            ]
        )
        == 2
    )
