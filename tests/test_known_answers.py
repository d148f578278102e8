"""Issue 21 item 3: a broken model folder is refused, naming the failing part, never answers.

The known answers (hdcnn.cascade.known_answers) on tiny random-weight folders, plus the issue's
reproducers on the shipped models."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hdcnn.cascade import known_answers, load_cascade, stamp_known_answers
from hdcnn.checkpoint import load_checkpoint
from hdcnn.cli import main
from hdcnn.config import CONFIG_FILE, CascadeConfig, sha256_file, weight_file
from hdcnn.errors import CheckpointError
from hdcnn.terms import Part
from hdcnn.utils import DEFAULT_WEIGHTS_DIR
from tests.cascade_weights import breast_image, make_weights_dir

torch.set_num_threads(1)


def _edit_weights(path: Path, change) -> None:
    """Apply ``change(name, tensor) -> tensor`` to every float tensor of a checkpoint."""
    ckpt = load_checkpoint(path)
    ckpt.pop("path")
    ckpt["model"] = {
        k: change(k, v) if v.is_floating_point() else v for k, v in ckpt["model"].items()
    }
    torch.save(ckpt, path)


def _rehash(root: Path) -> None:
    """Update cascade.json's sha256 of every file (the hash no longer tells)."""
    config = json.loads((root / CONFIG_FILE).read_text())
    config["files"] = {p.name: sha256_file(p) for p in sorted(root.glob("*.pt"))}
    (root / CONFIG_FILE).write_text(json.dumps(config))


def _edit_config(root: Path, **changes) -> None:
    config = json.loads((root / CONFIG_FILE).read_text())
    config.update(changes)
    (root / CONFIG_FILE).write_text(json.dumps(config))


@pytest.fixture
def stamped(tmp_path: Path) -> Path:
    root = make_weights_dir(tmp_path / "w")
    _rehash(root)
    assert CascadeConfig.load(root).known_answers is not None
    return root


def test_reference_inputs_are_fixed_and_synthetic() -> None:
    images = known_answers.reference_images()
    assert [name for name, _ in images] == ["synthetic-left", "synthetic-right"]
    again = known_answers.reference_images()
    for (_, a), (_, b) in zip(images, again, strict=True):
        assert a.dtype == np.float32 and 0.0 <= a.min() < a.max() <= 1.0
        assert np.array_equal(a, b)
    # the shipped answers were made on exactly these pixels (integer arithmetic: bit-identical)
    shipped = CascadeConfig.load(DEFAULT_WEIGHTS_DIR).known_answers
    assert shipped is not None
    assert [r.input_sha256 for r in shipped.references] == [
        known_answers._pixels_sha(px) for _, px in images
    ]


def test_a_stamped_folder_loads_and_agrees(stamped: Path) -> None:
    cascade = load_cascade(stamped, known_answers="require")
    answers = CascadeConfig.load(stamped).known_answers
    assert answers is not None and known_answers.check(cascade, answers) == []
    assert cascade.predict(breast_image()).label in ("normal", "benign", "malignant")


def test_detector_weights_times_1e30_with_the_hash_updated_are_refused(stamped: Path) -> None:
    _edit_weights(stamped / "detector.pt", lambda _, v: v * 1e30)
    _rehash(stamped)
    with pytest.raises(CheckpointError, match="known-answer check failed") as info:
        load_cascade(stamped)
    message = str(info.value)
    assert "detector.pt" in message and "c1_lesion.pt" not in message


def test_a_changed_classifier_is_named_alone(stamped: Path) -> None:
    # the tiny classifiers' probabilities are saturated: flip the head to move them
    _edit_weights(stamped / "c2_malignancy.pt", lambda k, v: -v if "head" in k else v)
    _rehash(stamped)
    with pytest.raises(CheckpointError) as info:
        load_cascade(stamped)
    message = str(info.value)
    assert "c2_malignancy.pt" in message
    assert "detector.pt" not in message and "c1_lesion.pt" not in message


def test_changed_thresholds_without_new_answers_are_refused(stamped: Path) -> None:
    thresholds = json.loads((stamped / CONFIG_FILE).read_text())["thresholds"]
    _edit_config(stamped, thresholds={**thresholds, "malignant": 0.0, "abnormal": 0.0})
    with pytest.raises(CheckpointError, match="verdict"):
        load_cascade(stamped)
    stamp_known_answers(stamped)  # the deliberate change, written again
    assert load_cascade(stamped).thresholds.malignant == 0.0


def test_differences_within_the_tolerance_pass(stamped: Path) -> None:
    config = json.loads((stamped / CONFIG_FILE).read_text())
    for ref in config["known_answers"]["references"]:
        ref["p_lesion"] = [min(1.0, max(0.0, p + 2e-5)) for p in ref["p_lesion"]]
        ref["scores"] = [s - 1e-5 for s in ref["scores"]]
    (stamped / CONFIG_FILE).write_text(json.dumps(config))
    load_cascade(stamped)


def test_no_answers_warns_or_is_refused_when_required(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_weights_dir(tmp_path / "w", stamp=False)
    caplog.set_level(logging.WARNING)
    load_cascade(root)  # a cv fold or an unstamped training run
    assert "no known answers" in caplog.text
    with pytest.raises(CheckpointError, match="models stamp"):
        load_cascade(root, known_answers="require")


def test_a_verified_folder_is_not_checked_again(
    stamped: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_cascade(stamped)
    calls = []
    monkeypatch.setattr(known_answers, "check", lambda *a, **k: calls.append(1) or [])
    load_cascade(stamped)
    assert calls == []
    _edit_config(stamped, max_candidates=4)  # other settings: checked again
    load_cascade(stamped)
    assert calls == [1]


def test_the_flat_cascade_checks_the_detector(stamped: Path) -> None:
    load_cascade(stamped, crop_head="flat")
    _edit_weights(stamped / "detector.pt", lambda _, v: v * 1e30)
    _rehash(stamped)
    with pytest.raises(CheckpointError, match=r"detector\.pt"):
        load_cascade(stamped, crop_head="flat")


def test_missing_cascade_json_refuses_the_folder(stamped: Path) -> None:
    (stamped / CONFIG_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"cascade\.json: not found"):
        load_cascade(stamped)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"max_candidates": 0}, "field max_candidates"),
        ({"roi": {"crop_size": 16, "context": -2}}, "field roi.context"),
        ({"files": ["x"]}, "field files"),
        ({"preprocess": "abc"}, "field preprocess"),
        ({"roi": [1]}, "field roi"),
    ],
)
def test_cli_exits_2_naming_the_field(
    stamped: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], change, needle
) -> None:
    import cv2

    _edit_config(stamped, **change)
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), (breast_image() * 65535).astype(np.uint16))
    assert main(["predict", str(image), "--weights", str(stamped)]) == 2
    err = capsys.readouterr().err
    assert "cascade.json" in err and needle in err and "Traceback" not in err


def test_cli_exits_2_without_cascade_json_or_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import cv2

    image = tmp_path / "a.png"
    cv2.imwrite(str(image), (breast_image() * 65535).astype(np.uint16))
    root = make_weights_dir(tmp_path / "w", stamp=False)
    assert main(["predict", str(image), "--weights", str(root)]) == 2
    assert "no known answers" in capsys.readouterr().err
    (root / CONFIG_FILE).unlink()
    assert main(["predict", str(image), "--weights", str(root)]) == 2
    assert "not found" in capsys.readouterr().err


def test_models_command_stamps_and_checks(stamped: Path, capsys) -> None:
    assert main(["models", "check", str(stamped)]) == 0
    _edit_weights(stamped / "c1_lesion.pt", lambda k, v: -v if "head" in k else v)
    _rehash(stamped)
    assert main(["models", "check", str(stamped)]) == 2
    assert "c1_lesion.pt" in capsys.readouterr().err
    assert main(["models", "stamp", str(stamped)]) == 0
    assert main(["models", "check", str(stamped)]) == 0


def test_a_checkpoint_with_ten_million_classes_is_refused_before_it_is_built(
    stamped: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = stamped / weight_file(Part.C1)
    ckpt = load_checkpoint(path)
    ckpt.pop("path")
    ckpt["config"]["num_classes"] = 10**7
    torch.save(ckpt, path)
    _rehash(stamped)
    import hdcnn.checkpoint

    build = hdcnn.checkpoint.build_from_checkpoint

    def no_build(ckpt: dict) -> object:
        assert ckpt["config"].get("num_classes") != 10**7, "the network must not be built"
        return build(ckpt)

    monkeypatch.setattr(hdcnn.checkpoint, "build_from_checkpoint", no_build)
    with pytest.raises(CheckpointError, match="config num_classes") as info:
        load_cascade(stamped)
    assert info.value.source.endswith("c1_lesion.pt")


def test_a_detector_config_with_a_huge_size_is_refused_before_it_is_built(stamped: Path) -> None:
    path = stamped / weight_file(Part.DETECTOR)
    ckpt = load_checkpoint(path)
    ckpt.pop("path")
    ckpt["config"]["fpn_channels"] = 10**7
    torch.save(ckpt, path)
    _rehash(stamped)
    with pytest.raises(CheckpointError, match="config fpn_channels holds a number beyond") as info:
        load_cascade(stamped)
    assert info.value.source.endswith("detector.pt")


def test_swapped_weights_files_are_refused_by_their_classes(stamped: Path) -> None:
    shutil.copy(stamped / weight_file(Part.CROP_FLAT), stamped / weight_file(Part.C1))
    _rehash(stamped)
    with pytest.raises(CheckpointError, match="expected the classes") as info:
        load_cascade(stamped)
    assert info.value.source.endswith("c1_lesion.pt")


def test_shipped_detector_times_1e30_is_refused(tmp_path: Path) -> None:
    """The issue's reproducer on the shipped models (40 of 40 films 'normal' before)."""
    root = tmp_path / "models"
    root.mkdir()
    for name in ("detector.pt", "c1_lesion.pt", "c2_malignancy.pt", CONFIG_FILE):
        shutil.copy(DEFAULT_WEIGHTS_DIR / name, root / name)
    load_cascade(root, known_answers="require")  # the shipped answers agree here
    _edit_weights(root / "detector.pt", lambda _, v: v * 1e30)
    _rehash(root)
    with pytest.raises(CheckpointError, match=r"check failed.*: detector\.pt: synthetic-left"):
        load_cascade(root)
