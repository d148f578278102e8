"""Issue 12, item 4: a broken model is an error naming its weights, never a quiet 'normal'."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from hdcnn.cascade import load_cascade, load_model_file
from hdcnn.checkpoint import load_checkpoint
from hdcnn.config import CascadeConfig, sha256_file
from hdcnn.errors import CheckpointError
from tests.cascade_weights import breast_image, make_weights_dir

torch.set_num_threads(1)


def _poison(path: Path, *, value: float = float("nan")) -> None:
    """Overwrite every float tensor of a checkpoint with ``value`` (a valid file)."""
    ckpt = load_checkpoint(path)
    ckpt.pop("path")
    ckpt["model"] = {
        k: torch.full_like(v, value) if v.is_floating_point() else v
        for k, v in ckpt["model"].items()
    }
    torch.save(ckpt, path)


def _with_hashes(root: Path) -> Path:
    config = json.loads((root / "cascade.json").read_text())
    config["files"] = {p.name: sha256_file(p) for p in root.glob("*.pt")}
    (root / "cascade.json").write_text(json.dumps(config))
    return root


@pytest.mark.parametrize("file", ["detector.pt", "c1_lesion.pt", "c2_malignancy.pt"])
def test_nan_weights_with_matching_hash_are_refused(tmp_path: Path, file: str) -> None:
    root = make_weights_dir(tmp_path / "w")
    _poison(root / file)
    _with_hashes(root)  # the hash matches: only the values are wrong
    with pytest.raises(CheckpointError, match="NaN or infinite") as info:
        load_cascade(root)
    assert info.value.source.endswith(file)


def test_infinite_weights_are_refused(tmp_path: Path) -> None:
    root = make_weights_dir(tmp_path / "w")
    _poison(root / "c2_malignancy.pt", value=float("inf"))
    with pytest.raises(CheckpointError, match=r"c2_malignancy\.pt"):
        load_cascade(root)


def test_non_finite_network_outputs_are_an_error_naming_the_weights(tmp_path: Path) -> None:
    root = make_weights_dir(tmp_path / "w")
    cascade = load_cascade(root)
    nan = lambda crops: (  # noqa: E731
        np.full(len(crops), np.nan, np.float32),
        np.full(len(crops), np.nan, np.float32),
    )
    cascade.head.probabilities = nan  # e.g. an overflow inside a network
    with pytest.raises(CheckpointError, match="non-finite outputs") as info:
        cascade.predict(breast_image(), name="a.png")
    assert "c1_lesion.pt" in info.value.source and "tiny-test" in info.value.source


def test_cli_with_broken_weights_exits_non_zero_and_writes_no_nan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import cv2

    from hdcnn.cli import main

    root = make_weights_dir(tmp_path / "w")
    _poison(root / "c1_lesion.pt")
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), (breast_image() * 65535).astype(np.uint16))
    out = tmp_path / "out.json"
    code = main(["predict", str(image), "--weights", str(root), "--json", str(out)])
    assert code == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "c1_lesion.pt" in err and "NaN" in err


def test_missing_hash_is_warned_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_weights_dir(tmp_path / "w")
    caplog.set_level(logging.WARNING)
    load_model_file(root, "detector", CascadeConfig.load(root))
    assert "detector.pt" in caplog.text and "NOT checked" in caplog.text
    caplog.clear()
    _with_hashes(root)
    load_model_file(root, "detector", CascadeConfig.load(root))
    assert "NOT checked" not in caplog.text
