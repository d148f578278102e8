from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hdcnn.checkpoint import build_from_checkpoint, load_checkpoint, load_model, save_checkpoint
from hdcnn.errors import CheckpointError
from hdcnn.nets.classifier import ClassifierConfig, build_classifier
from hdcnn.nets.detector import DetectorConfig, build_detector


def test_classifier_round_trip_weights_only(tmp_path: Path) -> None:
    cfg = ClassifierConfig(2, (32, 32), widths=(8, 16))
    model = build_classifier(cfg).eval()
    path = tmp_path / "c1_lesion.pt"
    save_checkpoint(
        path,
        kind="classifier",
        config=cfg,
        model=model,
        classes=["normal", "lesion"],
        extra={"part": "c1", "threshold": 0.4},
    )
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "hdcnn-checkpoint/1" and raw["config"]["num_classes"] == 2
    rebuilt, ckpt = load_model(path)
    assert ckpt["classes"] == ["normal", "lesion"] and ckpt["extra"]["threshold"] == 0.4
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), rebuilt(x))


def test_detector_round_trip(tmp_path: Path) -> None:
    cfg = DetectorConfig(
        long_side=96, widths=(8, 8, 16, 16), fpn_channels=16, representation_size=32
    )
    model = build_detector(cfg).eval()
    path = tmp_path / "detector.pt"
    save_checkpoint(path, kind="detector", config=cfg, model=model, classes=["lesion"])
    rebuilt = build_from_checkpoint(load_checkpoint(path))
    x = [torch.rand(1, 96, 64)]
    with torch.no_grad():
        a, b = model(x)[0], rebuilt(x)[0]
    assert torch.allclose(a["boxes"], b["boxes"]) and torch.allclose(a["scores"], b["scores"])


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_missing_corrupt_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match=r"corrupt\.pt"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not an hdcnn checkpoint"):
        load_checkpoint(foreign)


def test_truncated_file_and_mismatched_weights(tmp_path: Path) -> None:
    cfg = ClassifierConfig(2, widths=(8,))
    path = tmp_path / "c.pt"
    save_checkpoint(
        path,
        kind="classifier",
        config=cfg,
        model=build_classifier(cfg),
        classes=["normal", "lesion"],
    )
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"trunc\.pt"):
        load_checkpoint(tmp_path / "trunc.pt")
    ckpt = load_checkpoint(path)
    ckpt["config"]["widths"] = [16]
    with pytest.raises(CheckpointError, match="weights do not fit"):
        build_from_checkpoint(ckpt)
