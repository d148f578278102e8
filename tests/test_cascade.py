"""Tests of hdcnn.cascade: loading, probability rules, box mapping, exam rule, thresholds."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from hdcnn.cascade import (
    Candidates,
    Cascade,
    CascadeTrace,
    FlatCropHead,
    Thresholds,
    choose_thresholds,
    combine_exam,
    load_cascade,
    verdict,
)
from hdcnn.config import sha256_file
from hdcnn.errors import CheckpointError, MammogramError
from hdcnn.terms import Label
from tests.cascade_weights import breast_image, make_weights_dir

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cascade(weights_dir: Path) -> Cascade:
    return load_cascade(weights_dir)


class FixedDetector(nn.Module):
    """Returns the same boxes (model pixels) and scores for every image."""

    def __init__(self, boxes: list[list[float]], scores: list[float]) -> None:
        super().__init__()
        self.boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        self.scores = torch.tensor(scores, dtype=torch.float32)

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [{"boxes": self.boxes.clone(), "scores": self.scores.clone()} for _ in images]


class FixedHead:
    """Crop head returning fixed (p_lesion, p_malignant | lesion) per candidate."""

    crop_size = 8
    files: ClassVar[dict[str, str]] = {}

    def __init__(self, lesion: list[float], malignant: list[float]) -> None:
        self.lesion = np.array(lesion, dtype=np.float32)
        self.malignant = np.array(malignant, dtype=np.float32)

    def probabilities(self, crops: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        n = len(crops)
        return self.lesion[:n], self.malignant[:n]

    def cam_models(self) -> dict[str, tuple[nn.Module, int]]:
        return {}


def fixed_cascade(boxes, scores, lesion, mal_given_lesion, **thresholds) -> Cascade:
    return Cascade(
        FixedDetector(boxes, scores),
        FixedHead(lesion, mal_given_lesion),
        thresholds=Thresholds(**thresholds),
        long_side=64,
        max_candidates=10,
    )


def test_predict_array_shapes_and_timing(cascade: Cascade) -> None:
    image = breast_image()
    pred = cascade.predict(image, name="scan.png", detail=True)
    assert pred.source == "scan.png"
    assert pred.label in {Label.NORMAL, Label.BENIGN, Label.MALIGNANT}
    assert 0.0 <= pred.p_malignant <= pred.p_abnormal <= 1.0
    assert set(pred.timing_ms) == {"read", "preprocess", "detect", "classify", "total"}
    assert 0 < len(pred.findings) <= cascade.max_candidates
    trace = pred.trace
    assert trace is not None
    n = len(trace.candidates)
    assert trace.candidates.boxes.shape == (n, 4)
    k = min(n, cascade.max_candidates)
    assert n > k  # the tiny detector returns more boxes than are classified
    assert trace.p_lesion.shape == (k,) and trace.p_malignant_given_lesion.shape == (k,)
    assert trace.crops.shape == (k, cascade.head.crop_size, cascade.head.crop_size)
    assert np.all(np.diff(trace.candidates.scores) <= 0)
    h, w = image.shape
    for f in pred.findings:
        x1, y1, x2, y2 = f.box
        assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
        assert (f.p_malignant is None) == (f.label == "rejected")
    data = pred.to_dict()
    assert set(data) == {"input", "label", "p_abnormal", "p_malignant", "findings", "timing_ms"}
    json.dumps(data)
    assert cascade.predict(image).trace is None


def test_boxes_map_back_through_flip_and_resize() -> None:
    # breast on the RIGHT edge: preprocess mirrors it, so model x=0 is the original right side
    image = breast_image(200, 150, left=False)
    casc = fixed_cascade([[0, 10, 10, 30]], [0.9], [0.9], [0.9])
    pred = casc.predict(image, detail=True)
    geom = pred.trace.preprocessed.geometry
    assert geom.flipped
    (finding,) = pred.findings
    x0, y0, x1, y1 = geom.crop
    sx = geom.output_size[1] / (x1 - x0)
    sy = geom.output_size[0] / (y1 - y0)
    expected = [x1 - 10 / sx, y0 + 10 / sy, x1 - 0 / sx, y0 + 30 / sy]
    np.testing.assert_allclose(finding.box, expected, atol=1e-6)
    assert finding.model_box == (0.0, 10.0, 10.0, 30.0)


def test_probability_rules_and_rethreshold() -> None:
    casc = fixed_cascade(
        [[5, 5, 15, 15], [20, 20, 30, 30], [30, 5, 40, 15], [1, 1, 2, 2]],
        [0.9, 0.8, 0.6, 0.01],
        [0.4, 0.7, 0.95, 0.99],
        [0.9, 0.5, 0.1, 0.99],
        detector_score=0.05,
        c1_lesion=0.5,
        abnormal=0.5,
        malignant=0.3,
    )
    pred = casc.predict(breast_image(), detail=True)
    # the 4th candidate (score 0.01) is below t_det and ignored
    assert [f.label for f in pred.findings] == ["rejected", "malignant", "benign"]
    assert pred.p_abnormal == pytest.approx(0.95)
    assert pred.p_malignant == pytest.approx(0.7 * 0.5)
    assert pred.label == Label.MALIGNANT
    assert pred.findings[0].p_malignant is None
    # re-threshold without networks: stricter malignant threshold -> benign
    benign = casc.decide(pred.trace, Thresholds(0.05, 0.5, 0.5, 0.5))
    assert benign.label == Label.BENIGN
    # detector threshold above every score -> no candidates -> normal with zero probabilities
    empty = casc.decide(pred.trace, Thresholds(detector_score=0.95))
    assert (empty.label, empty.p_abnormal, empty.p_malignant, empty.findings) == (
        Label.NORMAL,
        0.0,
        0.0,
        [],
    )
    # lowering t_det brings in the 4th candidate
    low = casc.decide(pred.trace, Thresholds(0.0, 0.5, 0.5, 0.3))
    assert low.p_abnormal == pytest.approx(0.99)
    assert low.p_malignant == pytest.approx(0.99 * 0.99)


def test_effective_abnormal_threshold_needs_a_kept_finding() -> None:
    # p_abnormal 0.45 >= t_abnormal 0.4 but < t_c1 0.5: no kept finding -> normal
    casc = fixed_cascade([[5, 5, 15, 15]], [0.9], [0.45], [0.9], c1_lesion=0.5, abnormal=0.4)
    assert casc.predict(breast_image()).label == Label.NORMAL


def test_no_finding_reads_as_a_lesion_on_a_normal_image() -> None:
    # C1 keeps both candidates at t_c1 0.3, but p_abnormal 0.6 < t_abnormal 0.7 -> normal
    casc = fixed_cascade(
        [[5, 5, 15, 15], [20, 20, 30, 30]],
        [0.9, 0.8],
        [0.6, 0.4],
        [0.9, 0.5],
        c1_lesion=0.3,
        abnormal=0.7,
        malignant=0.3,
    )
    pred = casc.predict(breast_image())
    assert pred.label == Label.NORMAL
    assert [(f.label, f.p_malignant) for f in pred.findings] == [("rejected", None)] * 2
    # image probabilities are those of the rules, before the findings are relabelled
    assert pred.p_abnormal == pytest.approx(0.6)
    assert pred.p_malignant == pytest.approx(0.6 * 0.9)


def test_verdict_rule() -> None:
    assert verdict(0.2, 0.1, t_abnormal=0.3, t_malignant=0.2) == Label.NORMAL
    assert verdict(0.5, 0.1, t_abnormal=0.3, t_malignant=0.2) == Label.BENIGN
    assert verdict(0.5, 0.25, t_abnormal=0.3, t_malignant=0.2) == Label.MALIGNANT


def test_choose_thresholds_reaches_sensitivity() -> None:
    rng = np.random.default_rng(0)
    labels = ["normal"] * 30 + ["benign"] * 20 + ["malignant"] * 20 + ["unknown"] * 3
    pa = rng.uniform(0, 1, len(labels))
    pm = pa * rng.uniform(0, 1, len(labels))
    t = choose_thresholds(pa, pm, labels, sens_abnormal=0.9, sens_malignant=0.8)
    lab = np.array(labels)
    abnormal = np.isin(lab, ["benign", "malignant"])
    assert np.mean(pa[abnormal] >= t.abnormal) >= 0.9
    assert np.mean(pa[abnormal] >= np.nextafter(t.abnormal, 2)) < 0.9  # the largest such t
    assert np.mean(pm[lab == "malignant"] >= t.malignant) >= 0.8
    assert t.c1_lesion == min(0.5, t.abnormal) and t.effective_abnormal == t.abnormal
    only_normal = choose_thresholds([0.1, 0.2], [0.0, 0.1], ["normal", "normal"])
    assert only_normal == Thresholds()


def test_combine_exam_max_rule_and_worst_breast(cascade: Cascade) -> None:
    def pred(pa: float, pm: float, name: str):
        casc = fixed_cascade([[5, 5, 15, 15]], [0.9], [pa], [pm / pa if pa else 0.0])
        return casc.predict(breast_image(), name=name)

    t = Thresholds(detector_score=0.05, c1_lesion=0.5, abnormal=0.5, malignant=0.4)
    items = [
        ("L", "CC", pred(0.2, 0.1, "lcc")),
        ("L", "MLO", pred(0.6, 0.45, "lmlo")),
        ("R", "CC", pred(0.7, 0.1, "rcc")),
        ("R", "MLO", pred(0.1, 0.05, "rmlo")),
    ]
    exam = combine_exam(items, t, key="abc")
    assert exam.breasts["L"].label == Label.MALIGNANT
    assert exam.breasts["L"].p_abnormal == pytest.approx(0.6)
    assert exam.breasts["R"].label == Label.BENIGN
    assert exam.label == Label.MALIGNANT
    assert exam.p_abnormal == pytest.approx(0.7)
    assert exam.to_dict()["breasts"]["L"]["inputs"] == ["lcc", "lmlo"]


def test_predict_exam_from_view_keys(cascade: Cascade) -> None:
    images = {
        "lcc": breast_image(seed=1),
        "rmlo": breast_image(left=False, seed=2),
    }
    exam = cascade.predict_exam(images)
    assert set(exam.breasts) == {"L", "R"}
    assert exam.breasts["R"].views == ["MLO"]
    assert exam.p_abnormal == max(p.p_abnormal for p in exam.images)
    with pytest.raises(ValueError):
        cascade.predict_exam({"xcc": breast_image()})


def test_thread_safe_predictions(cascade: Cascade) -> None:
    images = [breast_image(seed=s) for s in range(4)]
    serial = [cascade.predict(im).p_abnormal for im in images]
    results: dict[int, float] = {}

    def work(i: int) -> None:
        results[i] = cascade.predict(images[i]).p_abnormal

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert [results[i] for i in range(4)] == pytest.approx(serial)


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 4, 3)), np.full((20, 20), 7.0), np.array([[np.nan, 1.0], [0.0, 1.0]])]
)
def test_bad_arrays_raise_mammogram_error(cascade: Cascade, bad: np.ndarray) -> None:
    with pytest.raises(MammogramError):
        cascade.predict(bad)


def test_flat_crop_head(weights_dir: Path) -> None:
    flat = load_cascade(weights_dir, crop_head="flat")
    assert isinstance(flat.head, FlatCropHead)
    crops = torch.rand(3, 1, flat.head.crop_size, flat.head.crop_size)
    lesion, mal = flat.head.probabilities(crops)
    probs = torch.softmax(flat.head.model(crops), 1).detach().numpy()
    np.testing.assert_allclose(lesion, probs[:, 1] + probs[:, 2], rtol=1e-5)
    np.testing.assert_allclose(mal, probs[:, 2] / (probs[:, 1] + probs[:, 2]), rtol=1e-5)
    pred = flat.predict(breast_image())
    assert 0.0 <= pred.p_malignant <= pred.p_abnormal <= 1.0
    assert flat.sha256 != load_cascade(weights_dir).sha256


def test_load_errors(weights_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError):
        load_cascade(tmp_path / "missing")
    with pytest.raises(CheckpointError, match=r"cascade\.json: not found"):
        load_cascade(tmp_path)  # exists but empty: no settings are assumed
    changed = make_weights_dir(tmp_path / "w", config={"files": {"detector.pt": "0" * 64}})
    with pytest.raises(CheckpointError, match="sha256"):
        load_cascade(changed)
    ok = make_weights_dir(tmp_path / "ok")
    digest = sha256_file(ok / "detector.pt")
    cfg = json.loads((ok / "cascade.json").read_text())
    cfg["files"] = {"detector.pt": digest}
    (ok / "cascade.json").write_text(json.dumps(cfg))
    assert load_cascade(ok).name == "tiny-test"
    (ok / "cascade.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"cascade\.json"):
        load_cascade(ok)


def test_trace_dataclasses_are_plain(cascade: Cascade) -> None:
    pred = cascade.predict(breast_image(), detail=True)
    assert isinstance(pred.trace, CascadeTrace)
    assert isinstance(pred.trace.candidates, Candidates)


def test_choose_thresholds_youden_maximises_j() -> None:
    # abnormal images score 0.6-0.9, normals 0.1-0.7: J is largest at t = 0.6
    pa = [0.6, 0.7, 0.8, 0.9, 0.1, 0.2, 0.3, 0.65, 0.7]
    pm = [0.5, 0.1, 0.6, 0.7, 0.0, 0.0, 0.0, 0.2, 0.1]
    labels = ["benign", "benign", "malignant", "malignant"] + ["normal"] * 5
    t = choose_thresholds(pa, pm, labels, rule="youden")
    # t=0.6: sens 4/4, spec 3/5 -> J 0.6; t=0.8: sens 2/4, spec 5/5 -> J 0.5
    assert t.abnormal == pytest.approx(0.6)
    # malignant vs the rest: 0.6 separates {0.6, 0.7} from every other score perfectly
    assert t.malignant == pytest.approx(0.6)
    assert t.c1_lesion <= t.abnormal


def test_choose_thresholds_rejects_an_unknown_rule() -> None:
    with pytest.raises(ValueError, match="rule"):
        choose_thresholds([0.5], [0.5], ["benign"], rule="magic")


def test_preprocessing_size_disagreeing_with_the_detector_is_refused(tmp_path) -> None:
    """cascade.json and detector.pt must agree on the model-image size; the error names both."""
    from hdcnn.cascade import load_cascade
    from hdcnn.errors import CheckpointError
    from tests.cascade_weights import LONG_SIDE, make_weights_dir

    root = make_weights_dir(tmp_path / "w", config={"preprocess": {"long_side": 2 * LONG_SIDE}})
    with pytest.raises(CheckpointError) as info:
        load_cascade(root)
    message = str(info.value)
    assert "cascade.json" in message and "detector.pt" in message
    assert str(2 * LONG_SIDE) in message and str(LONG_SIDE) in message


def test_classify_in_batches_equals_one_pass(cascade: Cascade) -> None:
    """Crops go through the head CLASSIFY_BATCH at a time (faster on the CPU): same numbers."""
    from hdcnn.cascade.orchestrator import CLASSIFY_BATCH

    prep = cascade.preprocess(breast_image(seed=3))
    rng = np.random.default_rng(0)
    n = 2 * CLASSIFY_BATCH + 3
    xy = rng.uniform(0, 40, size=(n, 2))
    boxes = np.hstack([xy, xy + rng.uniform(4, 20, size=(n, 2))]).astype(np.float32)
    p_lesion, p_mal, crops = cascade.classify(prep, boxes)
    with torch.inference_mode():
        whole_lesion, whole_mal = cascade.head.probabilities(torch.from_numpy(crops)[:, None])
    assert p_lesion.shape == p_mal.shape == (n,)
    np.testing.assert_allclose(p_lesion, whole_lesion, atol=1e-5)
    np.testing.assert_allclose(p_mal, whole_mal, atol=1e-5)
