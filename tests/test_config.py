"""CascadeConfig: the one reader and writer of cascade.json."""

from __future__ import annotations

import json

import pytest

from hdcnn.config import CROP_SIZE, LONG_SIDE, CascadeConfig
from hdcnn.errors import CheckpointError


def test_round_trip_and_file_hashes(tmp_path) -> None:
    (tmp_path / "a.pt").write_bytes(b"abc")
    cfg = CascadeConfig(name="x", thresholds={"abnormal": 0.4})
    cfg.save(tmp_path)
    back = CascadeConfig.load(tmp_path)
    assert back.thresholds == {"abnormal": 0.4}
    assert back.long_side == LONG_SIDE and back.crop_size == CROP_SIZE
    assert back.files == {
        "a.pt": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    }
    assert back.crop_source == "original"


def test_old_layout_without_crop_source_means_model_image_crops(tmp_path) -> None:
    (tmp_path / "cascade.json").write_text(json.dumps({"roi": {"crop_size": 64}}))
    cfg = CascadeConfig.load(tmp_path)
    assert (cfg.crop_size, cfg.crop_source) == (64, "model")


def test_bad_values_name_the_file(tmp_path) -> None:
    (tmp_path / "cascade.json").write_text(json.dumps({"preprocess": {"long_side": "big"}}))
    with pytest.raises(CheckpointError, match=r"cascade\.json"):
        CascadeConfig.load(tmp_path)
    (tmp_path / "cascade.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        CascadeConfig.load(tmp_path)
