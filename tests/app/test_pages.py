"""AppTest tests of every page of the Streamlit app (headless, tiny random-weight models).

The verdicts shown are compared with the library's own verdict on the same input, so the page
must display what the cascade decided.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from hdcnn.cascade import load_cascade
from hdcnn.report import DISCLAIMER
from hdcnn.samples import list_samples
from tests.cascade_weights import add_calc_stream

TIMEOUT = 120
APP = Path(__file__).resolve().parents[2] / "app.py"


def _app() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    return at


def _page(path: str) -> AppTest:
    at = _app()
    at.switch_page(path).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [s.value for s in at.subheader]
    parts += [e.value for e in at.error] + [i.value for i in at.info]
    parts += [w.value for w in at.warning] + [c.value for c in at.caption]
    return "\n".join(str(p) for p in parts)


def _verdict(at: AppTest) -> str:
    for header in at.subheader:
        if "Verdict:" in header.value:
            return header.value.split("Verdict:")[1].strip().lower()
    raise AssertionError(f"no verdict shown; subheaders: {[h.value for h in at.subheader]}")


def test_home_shows_diagram_disclaimer_and_links(app_env: Path) -> None:
    at = _app()
    assert not at.exception
    assert at.title[0].value == "HD-CNN Mammo"
    assert any(DISCLAIMER in w.value for w in at.sidebar.warning)
    assert len(at.get("graphviz_chart")) == 1
    assert len(at.get("page_link")) == 5


def test_every_page_runs_and_shows_the_disclaimer(app_env: Path) -> None:
    for page in ("diagnose", "cascade", "exam", "dataset", "experiments"):
        at = _page(f"pages/{page}.py")
        assert any(DISCLAIMER in w.value for w in at.sidebar.warning), page


def test_no_weights_gives_a_clear_message(app_env: Path, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HDCNN_WEIGHTS", str(tmp_path / "empty"))
    at = _page("pages/diagnose.py")
    assert "No model weights found" in _texts(at)
    assert "python -m hdcnn train" in _texts(at)


def test_diagnose_sample_pick_shows_the_cascades_verdict(app_env: Path) -> None:
    sample = next(s for s in list_samples() if s.synthetic and s.truth == "malignant")
    expected = load_cascade(app_env).predict(sample.read())
    at = _page("pages/diagnose.py")
    at.selectbox(key="diagnose_sample").set_value(sample.key).run()
    assert not at.exception, [e.message for e in at.exception]
    assert _verdict(at) == str(expected.label)
    assert "SYNTHETIC" in _texts(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["P(abnormal)"] == f"{expected.p_abnormal:.3f}"
    assert metrics["P(malignant)"] == f"{expected.p_malignant:.3f}"
    assert len(at.get("download_button")) == 3  # PDF, JSON, DICOM (the samples are DICOM)
    # the empty layout shown while the networks ran was removed: one of each element remains
    assert len(at.metric) == 4 and len(at.table) == 1 and "appear here" not in _texts(at)
    # words say what runs while the networks run; they are gone with the result
    assert "Analysing the image" not in _texts(at)
    # tables never show a raw None: a refused candidate's P(malignant) reads "—"
    cells = at.table[0].value.astype(str).to_numpy().ravel().tolist()
    assert "None" not in cells and "nan" not in cells


def test_diagnose_rerun_neither_reads_nor_analyses_the_sample_again(
    app_env: Path, monkeypatch
) -> None:
    from hdcnn.samples import Sample

    sample = next(s for s in list_samples() if s.synthetic)
    at = _page("pages/diagnose.py")
    at.selectbox(key="diagnose_sample").set_value(sample.key).run()
    verdict = _verdict(at)

    def unreadable(self: Sample) -> bytes:
        raise OSError("read again")

    monkeypatch.setattr(Sample, "read_bytes", unreadable)
    at.toggle(key="diagnose_show_refused").set_value(True).run()  # a rerun, same sample
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert _verdict(at) == verdict


def test_diagnose_upload_of_a_real_dicom(app_env: Path, cbis_cases) -> None:
    path = Path(cbis_cases[1]["lcc"])
    data = path.read_bytes()
    expected = load_cascade(app_env).predict(data, name=path.name)
    at = _page("pages/diagnose.py")
    at.file_uploader(key="diagnose_upload").upload(path.name, data, "application/dicom").run()
    assert not at.exception, [e.message for e in at.exception]
    assert _verdict(at) == str(expected.label)
    from hdcnn.report import finding_dicts

    rows = finding_dicts(expected)
    if rows:  # one row per finding, overlapping kept boxes merged into one
        table = at.table[0].value
        assert len(table) == sum(r["merged_into"] is None for r in rows)
        merged = {str(r["number"]): len(r["merged"]) + 1 for r in rows if r["merged"]}
        for number, count in merged.items():
            row = table[table["No."] == number].iloc[0]
            assert row["merged"].startswith(f"{count}: "), row["merged"]
    assert "laterality L" not in _texts(at) and "left breast, CC view" in _texts(at)
    # The CBIS-DDSM header holds the patient id as PatientName/PatientID: never shown.
    assert "P_00820" not in _texts(at)


def test_diagnose_bad_upload_shows_a_readable_error(app_env: Path) -> None:
    at = _page("pages/diagnose.py")
    at.file_uploader(key="diagnose_upload").upload(
        "notes.dcm", b"this is not a mammogram\n" * 20, "application/dicom"
    ).run()
    assert not at.exception, [e.message for e in at.exception]
    assert len(at.error) == 1
    assert "notes.dcm" in at.error[0].value
    assert not [h for h in at.subheader if "Verdict" in h.value]


def test_cascade_page_steps_and_threshold_slider(app_env: Path) -> None:
    sample = next(s for s in list_samples() if s.synthetic and s.truth == "benign")
    at = _page("pages/cascade.py")
    at.selectbox(key="cascade_sample").set_value(sample.key).run()
    assert not at.exception, [e.message for e in at.exception]
    headers = [h.value for h in at.header]
    assert headers[0].startswith("1 · Preprocessing") and headers[-1].endswith("Time per stage")
    before = _verdict(at)
    # A threshold above every detector score leaves no candidate: the verdict becomes normal.
    at.slider(key="cascade_det_threshold").set_value(1.0).run()
    assert not at.exception, [e.message for e in at.exception]
    assert _verdict(at) == "normal"
    assert before in {"normal", "benign", "malignant"}


def test_exam_page_sample_exam_matches_predict_exam(app_env: Path) -> None:
    exams = {}
    for s in list_samples():
        exams.setdefault(s.exam, {})[s.view_key] = s
    name, views = next((k, v) for k, v in exams.items() if k.startswith("synthetic"))
    expected = load_cascade(app_env).predict_exam({k: s.read() for k, s in views.items()})
    at = _page("pages/exam.py")
    at.selectbox(key="exam_sample").set_value(name).run()
    assert not at.exception, [e.message for e in at.exception]
    shown = next(h.value for h in at.subheader if "Exam verdict" in h.value)
    assert shown.split("Exam verdict:")[1].strip().lower() == str(expected.label)
    for side, breast in expected.breasts.items():
        word = "Right breast" if side == "R" else "Left breast"
        assert any(word in m.value and f"**{breast.label}**" in m.value for m in at.markdown)
    # the views keep their grid overlays, not their full-resolution pixels (issue 21)
    held = at.session_state["exam_analysis"].views
    assert len(held) == len(views) and all(v.analysis.mammogram.pixels.size == 0 for v in held)


def _experiments() -> dict:
    def concept(auc_m: float, lo: float, hi: float, det: bool) -> dict:
        m = {
            "auc_abnormal": 0.8,
            "auc_abnormal_ci": [0.7, 0.9],
            "auc_malignant": auc_m,
            "auc_malignant_ci": [lo, hi],
            "accuracy": 0.6,
            "macro_f1": 0.55,
            "sensitivity_malignant": 0.7,
            "specificity": 0.8,
            "confusion": [[5, 1, 0], [1, 3, 1], [0, 1, 4]],
            "roc": {
                "abnormal": {"fpr": [0, 0.1, 1], "tpr": [0, 0.8, 1]},
                "malignant": {"fpr": [0, 0.2, 1], "tpr": [0, 0.7, 1]},
            },
        }
        if det:
            m["froc"] = {"0.5": 0.5, "1": 0.6, "2": 0.8, "mean": 0.63}
            m["froc_curve"] = {
                "fps_per_image": [0.1, 0.5, 1, 2],
                "sensitivity": [0.2, 0.5, 0.6, 0.8],
            }
        return m

    return {
        "dataset": "synth",
        "split": "test",
        "n_images": 16,
        "n_patients": 4,
        "n_lesions": 4,
        "concepts": {
            "flat-whole": concept(0.61, 0.50, 0.70, False),
            "hier-whole": concept(0.66, 0.55, 0.75, False),
            "det-flat": concept(0.72, 0.62, 0.80, True),
            "det-hier": concept(0.91, 0.85, 0.96, True),
        },
    }


def _experiments_page(text: str, monkeypatch, tmp_path: Path) -> AppTest:
    """The experiments page run on a results file holding ``text``."""
    path = tmp_path / "experiments.json"
    path.write_text(text)
    monkeypatch.setenv("HDCNN_EXPERIMENTS", str(path))
    return _page("pages/experiments.py")


def test_experiments_page_without_results_says_so(app_env: Path, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HDCNN_EXPERIMENTS", str(tmp_path / "missing.json"))
    at = _page("pages/experiments.py")
    assert "No experiment results found" in _texts(at)


def test_experiments_page_table_curves_and_sentence(
    app_env: Path, monkeypatch, tmp_path: Path
) -> None:
    at = _experiments_page(json.dumps(_experiments()), monkeypatch, tmp_path)
    table = at.dataframe[0].value
    assert list(table["concept"]) == ["flat-whole", "hier-whole", "det-flat", "det-hier"]
    assert table["AUC malignant [95% CI]"].iloc[3] == "0.910 [0.850–0.960]"
    text = _texts(at)
    assert "**det-hier** separates malignant from other images best (AUC 0.910)" in text
    assert "do not overlap: det-hier's starts at 0.850, above flat-whole's end at 0.700" in text


def test_experiments_page_gives_the_froc_on_merged_findings(
    app_env: Path, monkeypatch, tmp_path: Path
) -> None:
    """Under the FROC plot: each detector concept's FROC on merged findings beside its
    candidate FROC; a report without them (older runs) shows no such sentence."""
    at = _experiments_page(json.dumps(_experiments()), monkeypatch, tmp_path)
    assert "Counted on the findings the app shows" not in _texts(at)
    doc = _experiments()
    doc["concepts"]["det-hier"]["froc_findings"] = {"0.5": 0.57, "1": 0.651, "2": 0.733}
    at = _experiments_page(json.dumps(doc), monkeypatch, tmp_path)
    text = _texts(at)
    assert "Counted on the findings the app shows" in text
    assert "det-hier 0.57/0.65/0.73 (candidates: 0.50/0.60/0.80)" in text
    assert "det-flat 0." not in text  # det-flat has no merged figures in this report


def test_experiments_sentence_follows_the_numbers_with_enough_decimals(
    app_env: Path, monkeypatch, tmp_path: Path
) -> None:
    """Intervals 0.645-0.844 and 0.452-0.638 do not overlap; shown with two decimals they
    looked as if they did ([0.64-0.84], [0.45-0.64]). Touching ones are said to overlap."""
    doc = _experiments()
    doc["concepts"]["det-hier"]["auc_malignant_ci"] = [0.644668, 0.844312]
    doc["concepts"]["flat-whole"]["auc_malignant_ci"] = [0.452442, 0.638234]
    at = _experiments_page(json.dumps(doc), monkeypatch, tmp_path)
    text = _texts(at)
    assert "det-hier's starts at 0.645, above flat-whole's end at 0.638 (only just)" in text
    table = at.dataframe[0].value
    assert table["AUC malignant [95% CI]"].iloc[3] == "0.910 [0.645–0.844]"
    assert table["AUC malignant [95% CI]"].iloc[0] == "0.610 [0.452–0.638]"
    doc["concepts"]["flat-whole"]["auc_malignant_ci"] = [0.452442, 0.6449]
    at = _experiments_page(json.dumps(doc), monkeypatch, tmp_path)
    text = _texts(at)
    assert "intervals overlap (det-hier's starts at 0.6447, flat-whole's ends at 0.6449)" in text
    assert "one run's figures" in text and "Training noise" in text
    assert len(at.get("plotly_chart")) == 2 + 4  # ROC, FROC, four confusion matrices
    assert len(at.dataframe) == 2  # the key figures, the details; no ablations in this file


def test_experiments_page_shows_ablations_with_their_paired_differences(
    app_env: Path, monkeypatch, tmp_path: Path
) -> None:
    doc = _experiments()
    doc["ablations"] = {
        "protocol": "same folds",
        "rows": {
            "reference": {
                "what": "frozen",
                "auc_abnormal": 0.73,
                "auc_malignant": 0.76,
                "froc_1": 0.59,
                "froc_1_by_kind": {"calcification": 0.0625, "mass": 0.66},
            },
            "random-init": {
                "what": "untrained trunk",
                "auc_abnormal": 0.655,
                "auc_malignant": 0.654,
                "froc_1": None,
                "minus_reference": {
                    "auc_abnormal": [-0.074, -0.13, -0.016],
                    "auc_malignant": None,
                },
            },
        },
    }
    at = _experiments_page(json.dumps(doc), monkeypatch, tmp_path)
    table = next(d.value for d in at.dataframe if "ablation" in d.value.columns)
    assert list(table["ablation"]) == ["reference", "random-init"]
    row = table.iloc[1]
    assert row["Δ abnormal [95% CI]"] == "-0.074 [-0.13, -0.02]"
    assert row["Δ malignant [95% CI]"] == "–" and row["FROC @1 FP"] == "–"
    # FROC per lesion type: one column per type, a dash where a row has none
    assert table["FROC @1 FP, calcification"].iloc[0] == "0.06"
    assert row["FROC @1 FP, mass"] == "–"
    assert "within the noise" in _texts(at)
    # the reference row's AUC malignant (0.760) and the main table's det-hier (0.910 here)
    # are different scores: the page says why, with both figures
    text = _texts(at)
    assert "The reference row is det-hier scored without thresholds" in text
    assert "AUC malignant 0.760 here, 0.910 in the main table" in text


def test_experiments_page_shows_what_det_hier_finds_per_lesion_type(
    app_env: Path, monkeypatch, tmp_path: Path, calcification_row: dict
) -> None:
    doc = _experiments()
    doc["lesion_types"] = {
        "calcification": calcification_row,
        "all": {  # a file from before the per-type AUC: a dash, no error
            "n_lesions": 86,
            "candidate_recall": 0.77,
            "froc": {"0.5": 0.48, "1": 0.59, "2": 0.67},
        },
    }
    at = _experiments_page(json.dumps(doc), monkeypatch, tmp_path)
    table = next(d.value for d in at.dataframe if "lesion type" in d.value.columns)
    assert list(table["lesion type"]) == ["calcification", "all"]
    calc = table.iloc[0]
    assert calc["candidate recall"] == "0.38"
    assert calc["FROC @0.5 / 1 / 2 FP"] == "0.00 / 0.06 / 0.12"
    assert calc["AUC vs normal images [95% CI]"] == "0.551 [0.410–0.690]"
    assert table.iloc[1]["AUC vs normal images [95% CI]"] == "–"


@pytest.mark.parametrize("bad", ["{not json", json.dumps({"concepts": {}})])
def test_experiments_page_bad_file_is_an_error_message(
    app_env: Path, monkeypatch, tmp_path: Path, bad: str
) -> None:
    at = _experiments_page(bad, monkeypatch, tmp_path)
    assert len(at.error) == 1 and "experiments.json" in at.error[0].value


def _values(array: object) -> np.ndarray:
    """A plotly JSON array: a list, or the typed ``{"dtype", "bdata"}`` form."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"]))
    return np.asarray(array)


def test_dataset_page_demo_cohort_is_synthetic_with_age_charts(app_env: Path) -> None:
    at = _page("pages/dataset.py")
    assert "SYNTHETIC" in _texts(at)
    keys = {getattr(c, "key", None) for c in at.get("plotly_chart")}
    assert {"dataset_age_hist", "dataset_age_mean", "dataset_labels"} <= keys
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == str(4 * 40)
    charts = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    hist = charts["dataset_age_hist"]
    # the age charts count patients (40), not images (160)
    assert hist["layout"]["yaxis"]["title"]["text"] == "patients"
    assert sum(_values(t["y"]).sum() for t in hist["data"]) == int(metrics["Patients"]) == 40
    texts = [v for t in charts["dataset_age_mean"]["data"] for v in t["text"]]
    assert texts and all(len(v.split(".")[-1]) == 1 for v in texts), texts  # "55.0", "56.4"
    assert "Each patient counts once" in _texts(at)
    table = at.dataframe[0].value
    assert len(table) == 60  # thumbnails only for the first rows
    assert str(table["thumbnail"].iloc[0]).startswith("data:image/png;base64,")
    at.multiselect(key="dataset_f_label").set_value(["malignant"]).run()
    table = at.dataframe[0].value
    assert len(table) > 0 and set(table["label"]) == {"malignant"}


def test_dataset_page_mias_has_no_ages(app_env: Path, mias_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("HDCNN_DATA_ROOTS", str(mias_root))
    at = _page("pages/dataset.py")
    at.selectbox(key="dataset_name").set_value("mias").run()
    at.text_input(key="dataset_root").input(str(mias_root)).run()
    assert not at.exception, [e.message for e in at.exception]
    assert "records no patient ages" in _texts(at)
    keys = {getattr(c, "key", None) for c in at.get("plotly_chart")}
    assert "dataset_age_hist" not in keys and "dataset_labels" in keys
    table = at.dataframe[0].value  # mini-MIAS has no ages: a dash, never a raw None
    assert set(table["age"]) == {"—"}
    assert not table.isna().any().any() and "None" not in table.astype(str).to_numpy()


def test_dataset_page_bad_root_is_an_error_message(
    app_env: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("HDCNN_DATA_ROOTS", str(tmp_path))
    (tmp_path / "empty").mkdir()
    at = _page("pages/dataset.py")
    at.selectbox(key="dataset_name").set_value("cbis-ddsm").run()
    at.text_input(key="dataset_root").input("empty").run()
    assert not at.exception, [e.message for e in at.exception]
    assert len(at.error) == 1 and "mass_case_description_train_set.csv" in at.error[0].value
    # the status box no longer says "Scanning …" once the scan has failed
    boxes = at.get("status")
    assert boxes and all("Scanning" not in b.label for b in boxes), [b.label for b in boxes]
    assert boxes[0].state == "error"


def test_exam_page_refuses_views_of_two_patients_and_flags_a_film(
    app_env: Path, cbis_cases, mias_root: Path
) -> None:
    """Views of two patients get no exam verdict; a mini-MIAS film beside DICOMs is flagged."""
    at = _page("pages/exam.py")
    for slot, case in (("lcc", 0), ("rcc", 1)):
        path = Path(cbis_cases[case][slot])
        at.file_uploader(key=f"exam_upload_{slot}").upload(path.name, path.read_bytes(), "")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("2 different patients" in e.value for e in at.error)
    assert not [h for h in at.subheader if "Exam verdict" in h.value]
    assert "P_00" not in _texts(at)
    at = _page("pages/exam.py")
    path = Path(cbis_cases[1]["lcc"])
    at.file_uploader(key="exam_upload_lcc").upload(path.name, path.read_bytes(), "").run()
    film = mias_root / "mdb003.pgm"
    at.file_uploader(key="exam_upload_rcc").upload(film.name, film.read_bytes(), "").run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("mdb003.pgm (PGM): no patient identity" in w.value for w in at.warning)


def test_diagnose_pgm_says_what_the_file_does_not_hold(app_env: Path, mias_root: Path) -> None:
    """A PGM holds no laterality or view: "not in the file", never "laterality ?, view ?"."""
    film = mias_root / "mdb003.pgm"
    at = _page("pages/diagnose.py")
    at.file_uploader(key="diagnose_upload").upload(film.name, film.read_bytes(), "").run()
    assert not at.exception, [e.message for e in at.exception]
    text = _texts(at)
    assert "PGM, 1024 × 1024 px, 8 bit, laterality and view not in the file." in text
    assert "?" not in text.split("PGM, ", 1)[1].split("Model", 1)[0]


def test_cascade_page_shows_the_calcification_stream(
    app_env: Path, monkeypatch, tmp_path: Path
) -> None:
    """Weights with a calcification stream (SYNTHETIC: models/ plus a fixed-parameter stream
    classifier): the page shows its spots beside the detector's candidates."""
    folder = tmp_path / "weights"
    shutil.copytree(Path(__file__).resolve().parents[2] / "models", folder)
    monkeypatch.setenv("HDCNN_WEIGHTS", str(add_calc_stream(folder)))
    sample = next(s for s in list_samples() if s.synthetic and s.truth == "benign")
    at = _page("pages/cascade.py")
    at.selectbox(key="cascade_sample").set_value(sample.key).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(h.value.startswith("3b · Calcification stream") for h in at.header)
    spot_tables = [t for t in at.table if "calcification stream" in t.value.columns]
    assert spot_tables and len(spot_tables[0].value) > 0
