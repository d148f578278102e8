"""Tests of hdcnn.domain: a plain notice when an image is unlike the training data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hdcnn.config import CascadeConfig
from hdcnn.domain import (
    MIAS_DOMAIN,
    TrainingDomain,
    check_domain,
    exam_notice,
)
from hdcnn.errors import CheckpointError
from hdcnn.reader import MammogramMeta


def _meta(**kw) -> MammogramMeta:
    base = {"source": "x", "format": "pgm", "original_size": (1024, 1024), "bit_depth": 8}
    return MammogramMeta(**{**base, **kw})


def test_a_mini_mias_like_image_is_in_domain() -> None:
    check = check_domain(_meta())
    assert check.in_domain and check.notice == "" and check.differences == ()
    assert check_domain(None).in_domain  # a bare array: nothing to compare


def test_a_cbis_ddsm_dicom_is_out_of_domain_with_plain_reasons() -> None:
    check = check_domain(
        _meta(format="dicom", original_size=(4432, 2864), bit_depth=16, pixel_spacing=(0.05, 0.05))
    )
    assert not check.in_domain
    text = " ".join(check.differences)
    assert "DICOM file (trained on PGM)" in text
    assert "2864 × 4432 px (trained on 1024 × 1024 px)" in text
    assert "16-bit (trained on 8-bit)" in text
    assert "50 µm pixels (trained on 200 µm)" in text
    assert "unlike the images the models were trained on" in check.notice
    assert "mini-MIAS" in check.notice
    assert check.to_dict()["in_domain"] is False


def test_small_size_and_spacing_differences_are_tolerated() -> None:
    assert check_domain(_meta(original_size=(1100, 1000), pixel_spacing=(0.21, 0.21))).in_domain


def test_training_domain_from_cascade_json_or_mias(tmp_path: Path) -> None:
    (tmp_path / "cascade.json").write_text("{}")
    assert CascadeConfig.load(tmp_path).training_domain == MIAS_DOMAIN  # not recorded
    custom = TrainingDomain(name="CBIS", formats=("dicom",), size=None, bit_depths=(16,))
    (tmp_path / "cascade.json").write_text(json.dumps({"training_domain": custom.to_dict()}))
    got = CascadeConfig.load(tmp_path).training_domain
    assert got == custom
    assert check_domain(
        _meta(format="dicom", original_size=(4000, 3000), bit_depth=16), got
    ).in_domain


@pytest.mark.parametrize(
    "entry",
    [{"size": "big"}, {"size_tolerance": float("nan")}, {"bit_depths": [0]}, {"name": 3}, [1]],
)
def test_a_bad_training_domain_is_refused_by_name(tmp_path: Path, entry: object) -> None:
    (tmp_path / "cascade.json").write_text(json.dumps({"training_domain": entry}))
    with pytest.raises(CheckpointError, match=r"cascade\.json: field training_domain"):
        CascadeConfig.load(tmp_path)


def test_exam_notice_counts_the_views_out_of_domain() -> None:
    inside = check_domain(_meta())
    outside = check_domain(_meta(format="dicom", bit_depth=16))
    assert exam_notice([inside, inside]) == ""
    text = exam_notice([inside, outside])
    assert text.startswith("1 of 2 views are unlike the images the models were trained on")
    assert "DICOM file (trained on PGM)" in text
