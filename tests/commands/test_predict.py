"""Tests of ``python -m hdcnn predict`` (run through its own parser: no other command needed)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hdcnn.commands import predict
from hdcnn.dicom import build_dicom, write_dicom
from tests.cascade_weights import breast_image

torch.set_num_threads(1)


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    predict.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["predict", *argv])
    return args.func(args)


def write_png(path: Path, image: np.ndarray) -> Path:
    ok, buf = cv2.imencode(".png", (image * 65535).astype(np.uint16))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def write_dcm(path: Path, image: np.ndarray, lat: str, view: str, patient: str) -> Path:
    ds = build_dicom(
        (image * 4095).astype(np.uint16),
        laterality=lat,
        view=view,
        patient_id=patient,
        study_uid=f"1.2.3.{len(patient)}",
    )
    write_dicom(path, ds)
    return path


def test_predict_json_schema_and_error_entry(
    weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_png(tmp_path / "a.png", breast_image(120, 90, left=False))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    missing = tmp_path / "missing.dcm"
    out = tmp_path / "out" / "pred.json"
    code = run_cli(
        [str(good), str(bad), str(missing), "--weights", str(weights_dir), "--json", str(out)]
    )
    assert code == 1
    doc = json.loads(out.read_text())
    assert set(doc) == {"model", "results", "exams"}
    assert doc["model"]["name"] == "tiny-test" and len(doc["model"]["sha256"]) == 64
    assert [r["input"] for r in doc["results"]] == [str(good), str(bad), str(missing)]
    ok, err1, err2 = doc["results"]
    assert set(ok) == {"input", "label", "p_abnormal", "p_malignant", "findings", "timing_ms"}
    assert ok["label"] in {"normal", "benign", "malignant"}
    assert set(ok["timing_ms"]) == {"read", "preprocess", "detect", "classify", "total"}
    assert ok["findings"], "tiny random weights give candidates at t_det 0"
    for f in ok["findings"]:
        assert set(f) == {"stream", "box", "detector_score", "p_lesion", "p_malignant", "label"}
        assert f["stream"] == "mass"  # tiny weights: no calcification stream
        x1, y1, x2, y2 = f["box"]
        assert 0 <= x1 <= x2 <= 90 and 0 <= y1 <= y2 <= 120  # original pixels
        assert f["label"] in {"benign", "malignant", "rejected"}
    assert set(err1) == {"input", "error"} and set(err2) == {"input", "error"}
    assert doc["exams"] == []
    printed = capsys.readouterr()
    assert "ERROR" in printed.out and "a.png" in printed.out
    assert "could not be read" in printed.err


def test_predict_exam_groups_by_study_and_hides_ids(
    weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [
        write_dcm(tmp_path / "1.dcm", breast_image(seed=1), "L", "CC", "SECRETPATIENT1"),
        write_dcm(
            tmp_path / "2.dcm", breast_image(left=False, seed=2), "R", "MLO", "SECRETPATIENT1"
        ),
        write_dcm(tmp_path / "3.dcm", breast_image(seed=3), "L", "MLO", "OTHERPERSON22"),
    ]
    out = tmp_path / "exam.json"
    code = run_cli([*map(str, files), "--weights", str(weights_dir), "--exam", "--json", str(out)])
    assert code == 0
    text = out.read_text()
    assert "SECRETPATIENT1" not in text and "OTHERPERSON22" not in text
    assert "SECRETPATIENT1" not in capsys.readouterr().out
    doc = json.loads(text)
    assert len(doc["exams"]) == 2
    by_size = sorted(doc["exams"], key=lambda e: len(e["breasts"]))
    assert set(by_size[0]["breasts"]) == {"L"}
    assert set(by_size[1]["breasts"]) == {"L", "R"}
    two = by_size[1]
    assert two["breasts"]["R"]["views"] == ["MLO"]
    preds = {r["input"]: r for r in doc["results"]}
    assert two["breasts"]["L"]["p_abnormal"] == preds[str(files[0])]["p_abnormal"]
    assert two["p_abnormal"] == max(preds[str(f)]["p_abnormal"] for f in files[:2])
    assert len(two["exam"]) == 16  # de-identified study key


def test_predict_missing_weights_raises(tmp_path: Path) -> None:
    from hdcnn.errors import CheckpointError

    png = write_png(tmp_path / "a.png", breast_image())
    with pytest.raises(CheckpointError):
        run_cli([str(png), "--weights", str(tmp_path / "nope")])


def test_exam_groups_merges_one_image_studies_with_distinct_views() -> None:
    lcc, rcc, rmlo = ("L", "CC", "p1"), ("R", "CC", "p2"), ("R", "MLO", "p3")
    # CBIS-DDSM style: every image its own study, views distinct -> one exam
    merged = predict.exam_groups({"a": [lcc], "b": [rcc], "c": [rmlo]})
    assert merged == {None: [lcc, rcc, rmlo]}
    # a repeated view means several exams: keep the study grouping
    two = {"a": [lcc], "b": [("L", "CC", "p4")]}
    assert predict.exam_groups(two) == two
    shared = {"a": [lcc, rcc], "b": [rmlo]}
    assert predict.exam_groups(shared) == shared


def test_max_candidates_limits_the_classified_boxes(weights_dir: Path, tmp_path: Path) -> None:
    image = write_png(tmp_path / "a.png", breast_image(120, 90, left=False))
    out = tmp_path / "p.json"
    argv = [str(image), "--weights", str(weights_dir), "--json", str(out)]
    assert run_cli([*argv, "--max-candidates", "2"]) == 0
    assert 0 < len(json.loads(out.read_text())["results"][0]["findings"]) <= 2
    assert run_cli([*argv, "--max-candidates", "0"]) == 2


def test_predict_runs_its_files_in_the_apps_analysis_pool(
    weights_dir: Path, tmp_path: Path
) -> None:
    from hdcnn.cascade import load_cascade
    from hdcnn.scheduler import shared_pool, thread_plan

    paths = [
        write_png(tmp_path / f"{i}.png", breast_image(120, 90, left=i % 2 == 0)) for i in range(3)
    ]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    pool = shared_pool()
    before = pool.finished
    doc = predict.predict_files(load_cascade(weights_dir), [paths[0], bad, *paths[1:]])
    assert pool.finished - before == 4  # every file, the unreadable one too, ran in the pool
    assert [r["input"] for r in doc["results"]] == [str(p) for p in (paths[0], bad, *paths[1:])]
    assert "error" in doc["results"][1] and "label" in doc["results"][2]
    assert (pool.workers, pool.threads) == (thread_plan().workers, thread_plan().threads)
    assert torch.get_num_threads() == pool.threads


def test_a_broken_model_stops_the_run_through_the_pool(tmp_path: Path) -> None:
    from hdcnn.errors import CheckpointError
    from hdcnn.scheduler import shared_pool

    class Broken:
        name, sha256, thresholds = "broken", "0" * 64, None

        def predict(self, path: Path, name: str | None = None) -> None:
            raise CheckpointError("detector.pt", "the networks gave non-finite outputs")

    paths = [tmp_path / f"{i}.png" for i in range(5)]
    with pytest.raises(CheckpointError, match="non-finite"):
        predict.predict_files(Broken(), paths)
    assert shared_pool().submit(len, paths).result(60) == 5  # the pool goes on
