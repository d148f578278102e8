"""Tests of hdcnn.evaluation.experiment: the four concepts, metrics, notes, calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hdcnn.cascade import FlatCropHead, HierarchicalCropHead
from hdcnn.data.adapters import load_dataset
from hdcnn.data.synth import write_cohort
from hdcnn.evaluation.experiment import (
    CONCEPTS,
    ConceptOutput,
    Experiment,
    ImageResult,
    calibrate,
    evaluate_concept,
    evaluate_results,
    updated_config,
)
from hdcnn.terms import Label
from tests.cascade_weights import make_weights_dir

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_cohort(root, patients=5, seed=1, size=128)
    return root


@pytest.fixture(scope="module")
def results(weights_dir: Path, cohort: Path) -> list[ImageResult]:
    return Experiment(weights_dir).run(load_dataset("synth", cohort))


def test_four_concepts_share_detector_and_code(weights_dir: Path) -> None:
    exp = Experiment(weights_dir)
    assert exp.concepts == list(CONCEPTS)
    hier, flat = exp.detectors["det-hier"], exp.detectors["det-flat"]
    assert isinstance(hier.head, HierarchicalCropHead) and isinstance(flat.head, FlatCropHead)
    assert flat.detector is hier.detector


def test_run_outputs_every_concept(results: list[ImageResult], cohort: Path) -> None:
    manifest = load_dataset("synth", cohort)
    assert len(results) == len(manifest) == 20
    for res, record in zip(results, manifest, strict=True):
        assert res.error is None and res.truth == record.label
        assert list(res.outputs) == list(CONCEPTS)
        for name, out in res.outputs.items():
            assert 0.0 <= out.p_malignant <= 1.0 and 0.0 <= out.p_abnormal <= 1.0
            assert out.label in (Label.NORMAL, Label.BENIGN, Label.MALIGNANT)
            if name.startswith("det-"):
                assert out.boxes.shape == (len(out.scores), 4)
                if len(out.boxes):  # original pixels of the 104 x 128 synthetic image
                    assert out.boxes[:, [0, 2]].max() <= 104 and out.boxes[:, [1, 3]].max() <= 128
            else:
                assert out.boxes is None
    hier = results[0].outputs["hier-whole"]
    assert hier.p_malignant <= hier.p_abnormal


def test_evaluate_results_schema(results: list[ImageResult]) -> None:
    doc = evaluate_results(results, CONCEPTS, n_boot=50, seed=0)
    assert doc["n_images"] == 20 and doc["n_patients"] == 5
    assert doc["n_lesions"] == sum(len(r.lesion_boxes) for r in results) > 0
    for name, m in doc["concepts"].items():
        for key in ("auc_abnormal", "auc_malignant", "accuracy", "macro_f1", "specificity"):
            assert key in m
        assert len(m["auc_abnormal_ci"]) == 2
        assert np.asarray(m["confusion"]).shape == (3, 3)
        assert np.asarray(m["confusion"]).sum() == 20
        assert m["roc"]["abnormal"]["fpr"][0] == 0.0 and m["roc"]["abnormal"]["tpr"][-1] == 1.0
        if name.startswith("det-"):
            assert set(m["froc"]) == {"0.5", "1", "2", "mean"}
            assert m["froc_hit"] == "centre-in-box"
        else:
            assert "froc" not in m
    assert evaluate_results(results, CONCEPTS, n_boot=50, seed=0) == doc


def _fake(truth: str, patient: str, pa: float, boxes: list | None = None) -> ImageResult:
    out = ConceptOutput(pa, pa / 2, Label.BENIGN, np.zeros((0, 4)), np.zeros(0))
    return ImageResult(0, patient, Label(truth), boxes or [], {"det-hier": out})


def test_notes_for_no_normals_and_no_boxes() -> None:
    rows = [_fake(t, f"p{i}", i / 10) for i, t in enumerate(["benign", "malignant"] * 4)]
    m = evaluate_concept(rows, "det-hier", n_boot=20)
    assert "auc_abnormal" not in m and "no normal images" in m["auc_abnormal_note"]
    assert "auc_malignant" in m
    assert "froc" not in m and "no lesion boxes" in m["froc_note"]
    normals = [_fake("normal", f"p{i}", 0.1) for i in range(3)]
    m2 = evaluate_concept(normals, "det-hier", n_boot=20)
    assert "no abnormal" in m2["auc_abnormal_note"] and "no malignant" in m2["auc_malignant_note"]


def test_calibrate_updates_config(results: list[ImageResult], weights_dir: Path) -> None:
    exp = Experiment(weights_dir)
    chosen = calibrate(results, exp)
    assert set(chosen) == set(CONCEPTS)
    abnormal = [r for r in results if r.truth != Label.NORMAL]
    for concept, t in chosen.items():
        pa = np.array([r.outputs[concept].p_abnormal for r in abnormal])
        assert np.mean(pa >= t.abnormal) >= 0.9
    assert chosen["det-hier"].detector_score == exp.detectors["det-hier"].thresholds.detector_score
    new = updated_config(exp.config, chosen)
    assert new.thresholds == chosen["det-hier"]
    assert set(new.concept_thresholds) == {"flat-whole", "hier-whole", "det-flat"}
    assert new.thresholds_for("det-flat") == chosen["det-flat"]


def test_missing_weights_skip_a_concept(tmp_path: Path) -> None:
    root = make_weights_dir(tmp_path / "w")
    (root / "whole_malignancy.pt").unlink()
    exp = Experiment(root)
    assert exp.concepts == ["flat-whole", "det-flat", "det-hier"]
    assert "whole_malignancy.pt" in exp.notes["hier-whole"]


def test_unreadable_image_is_counted(weights_dir: Path, cohort: Path) -> None:
    manifest = load_dataset("synth", cohort)
    manifest.records = manifest.records[:2]
    manifest.resolve(manifest.records[0]).parent.joinpath("broken.dcm").write_bytes(b"junk")
    manifest.records[0].image_path = str(
        Path(manifest.records[0].image_path).with_name("broken.dcm")
    )
    out = Experiment(weights_dir).run(manifest)
    assert out[0].error and not out[0].outputs and out[1].error is None
    assert evaluate_results(out, CONCEPTS, n_boot=10)["n_unreadable"] == 1


@pytest.mark.parametrize("source", ["original", "model"])
def test_det_flat_crops_where_cascade_json_says(tmp_path: Path, source: str) -> None:
    """det-flat is scored on the crops it was trained on (roi.crop_source), as load_cascade's
    flat cascade is: the same probabilities on the same image."""
    from hdcnn.cascade import load_cascade
    from tests.cascade_weights import CROP, breast_image

    roi = {"crop_size": CROP, "context": 1.5, "crop_source": source}
    root = make_weights_dir(tmp_path / "w", config={"roi": roi})
    exp = Experiment(root, concepts=["det-flat", "det-hier"])
    assert exp.detectors["det-flat"].head.crop_source == source
    assert exp.detectors["det-hier"].head.crop_source == source
    image = breast_image(height=300, width=200, seed=4)
    prep = exp.preprocess(image, source="x", laterality=None)
    got = exp.run_image(prep, image)["det-flat"]
    want = load_cascade(root, crop_head="flat").predict(image)
    assert got.p_abnormal == pytest.approx(want.p_abnormal, abs=1e-6)
    assert got.p_malignant == pytest.approx(want.p_malignant, abs=1e-6)
