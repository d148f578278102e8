"""CascadeConfig: the one reader and writer of cascade.json; every field checked on load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hdcnn.config import (
    CALC_WEIGHT_FILE,
    CONFIG_FILE,
    CROP_SIZE,
    LONG_SIDE,
    WEIGHT_FILES,
    CascadeConfig,
    SplitRecord,
    weight_file,
)
from hdcnn.errors import CheckpointError
from hdcnn.terms import Part
from hdcnn.thresholds import Thresholds


def test_round_trip_and_file_hashes(tmp_path: Path) -> None:
    (tmp_path / "a.pt").write_bytes(b"abc")
    cfg = CascadeConfig(name="x", thresholds={"abnormal": 0.4})
    cfg.save(tmp_path)
    back = CascadeConfig.load(tmp_path)
    assert back.thresholds == Thresholds(abnormal=0.4)
    assert back.long_side == LONG_SIDE and back.crop_size == CROP_SIZE
    assert back.files == {
        "a.pt": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    }
    assert back.crop_source == "original"
    assert back == CascadeConfig.from_json(back.to_json())


def test_the_shipped_file_round_trips_unchanged() -> None:
    path = Path("models") / CONFIG_FILE
    data = json.loads(path.read_text())
    assert CascadeConfig.from_json(data, str(path)).to_json() == data


def test_old_layout_without_crop_source_means_model_image_crops(tmp_path: Path) -> None:
    (tmp_path / "cascade.json").write_text(json.dumps({"roi": {"crop_size": 64}}))
    cfg = CascadeConfig.load(tmp_path)
    assert (cfg.crop_size, cfg.crop_source) == (64, "model")


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"cascade\.json: not found"):
        CascadeConfig.load(tmp_path)
    with pytest.raises(CheckpointError, match="weights directory not found"):
        CascadeConfig.load(tmp_path / "nope")


#: (cascade.json text, field named in the error, value shown in the error)
BAD = [
    ('{"max_candidates": 0}', "max_candidates", "0"),
    ('{"max_candidates": 1e400}', "max_candidates", "inf"),
    ('{"max_candidates": "20"}', "max_candidates", "'20'"),
    ('{"max_candidates": true}', "max_candidates", "True"),
    ('{"max_candidates": 2.5}', "max_candidates", "2.5"),
    ('{"thresholds": {"abnormal": 1.5}}', "thresholds", "1.5"),
    ('{"thresholds": {"abnormal": NaN}}', "thresholds", "nan"),
    ('{"thresholds": {"abnormal": -1e400}}', "thresholds", "-inf"),
    ('{"thresholds": {"typo": 0.5}}', "thresholds", "typo"),
    ('{"thresholds": [0.5]}', "thresholds", "a list"),
    ('{"concept_thresholds": {"det-flat": {"malignant": 2}}}', "concept_thresholds.det-flat", "2"),
    ('{"concept_thresholds": {"det-hier": {}}}', "concept_thresholds", "det-hier"),
    ('{"roi": {"context": -1}}', "roi.context", "-1"),
    ('{"roi": {"context": 0}}', "roi.context", "0"),
    ('{"roi": {"context": "wide"}}', "roi.context", "'wide'"),
    ('{"roi": {"context": NaN}}', "roi.context", "nan"),
    ('{"roi": {"crop_source": "elsewhere"}}', "roi.crop_source", "'elsewhere'"),
    ('{"roi": {"crop_size": 0}}', "roi.crop_size", "0"),
    ('{"roi": [1]}', "roi", "a list of 1 item"),
    ('{"preprocess": "abc"}', "preprocess", "'abc'"),
    ('{"preprocess": {"long_side": "big"}}', "preprocess.long_side", "'big'"),
    ('{"preprocess": {"long_side": 10000000}}', "preprocess.long_side", "10000000"),
    ('{"files": ["x"]}', "files", "a list of 1 item"),
    ('{"files": {"detector.pt": "abc"}}', "files.detector.pt", "'abc'"),
    ('{"files": {"../x.pt": "' + "0" * 64 + '"}}', "files", "../x.pt"),
    ('{"whole_size": [512]}', "whole_size", "a list of 1 item"),
    ('{"whole_size": [512, -3]}', "whole_size", "-3"),
    ('{"name": 7}', "name", "7"),
    ('{"max_candidate": 20}', "max_candidate", "max_candidate"),
    ('{"split": {"kind": "random"}}', "split.kind", "'random'"),
    ('{"split": {"folds": {"fold0": "001"}}}', "split.folds.fold0", "'001'"),
    ('{"split": {"fractions": [0.5, 0.5]}}', "split.fractions", "0.5"),
    ('{"operating_points": {"rule": "magic"}}', "operating_points.rule", "'magic'"),
    ('{"operating_points": {"sens_abnormal": 0}}', "operating_points.sens_abnormal", "0"),
    ('{"training": {"loss": NaN}}', "training.loss", "nan"),
    ('{"training": "long"}', "training", "'long'"),
    ('{"known_answers": {"tolerance": 1}}', "known_answers.references", "None"),
    ('{"known_answers": []}', "known_answers", "a list of 0 item"),
    ("[1, 2]", "(top level)", "a list of 2 item"),
]


@pytest.mark.parametrize(("text", "field", "value"), BAD)
def test_a_bad_field_is_refused_naming_file_field_and_value(
    tmp_path: Path, text: str, field: str, value: str
) -> None:
    (tmp_path / "cascade.json").write_text(text)
    with pytest.raises(CheckpointError) as info:
        CascadeConfig.load(tmp_path)
    message = str(info.value)
    assert info.value.source == str(tmp_path / "cascade.json")
    assert f"field {field}" in message, message
    assert value in message, message


def test_invalid_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cascade.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        CascadeConfig.load(tmp_path)
    (tmp_path / "cascade.json").write_bytes(b"\xff\xfe")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        CascadeConfig.load(tmp_path)


def test_building_a_config_in_code_runs_the_same_checks() -> None:
    with pytest.raises(ValueError, match="field max_candidates"):
        CascadeConfig(max_candidates=0)
    with pytest.raises(ValueError, match=r"field roi\.context"):
        CascadeConfig(context=float("nan"))
    # plain values of a record field are parsed into the typed record
    cfg = CascadeConfig(
        concept_thresholds={"det-flat": {"abnormal": 0.7}}, thresholds={"c1_lesion": 0.2}
    )
    assert cfg.thresholds_for("det-flat") == Thresholds(c1_lesion=0.2, abnormal=0.7)
    assert cfg.thresholds_for("flat-whole") == Thresholds()
    assert cfg.thresholds_for("det-hier").c1_lesion == 0.2


def test_split_record_says_which_patients_were_trained_on() -> None:
    kfold = SplitRecord(dataset="mias", kind="k-fold", folds={"fold0": ("a", "b"), "fold1": ("c",)})
    assert kfold.trained_patients() == {"a", "b", "c"}
    holdout = SplitRecord(dataset="mias", patients={"train": ("a",), "test": ("z",)})
    assert holdout.trained_patients() == {"a"}
    assert holdout.same_dataset("mias") and not holdout.same_dataset("cbis-ddsm")


def test_the_file_table_is_the_one_of_the_docs() -> None:
    assert [w.file for w in WEIGHT_FILES.values()] == [
        "detector.pt",
        "c1_lesion.pt",
        "c2_malignancy.pt",
        "crop_flat.pt",
        "whole_flat.pt",
        "whole_abnormal.pt",
        "whole_malignancy.pt",
    ]
    assert set(WEIGHT_FILES) | {CALC_WEIGHT_FILE.part} == set(Part)
    assert CALC_WEIGHT_FILE.part not in WEIGHT_FILES  # optional: not every folder has it
    assert weight_file("c1-calc") == "c1_calc.pt"
    assert weight_file("c1") == "c1_lesion.pt"
    assert WEIGHT_FILES[Part.C2].classes == ("benign", "malignant")
