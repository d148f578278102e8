"""Shared helpers of the Streamlit app (``app.py`` + ``pages/``): sidebar, cached loaders,
and the upload/sample handlers the pages call.

Kept outside ``pages/`` so Streamlit never mistakes it for a page. Thin: every computation is a
call into :mod:`hdcnn`; this module only caches results and turns errors into messages.

Environment:
    HDCNN_WEIGHTS: weights directory of the cascade (default ``models/`` next to this file).
    HDCNN_EXPERIMENTS: experiment results JSON (default ``<weights dir>/experiments.json``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from hdcnn.errors import HDCNNError
from hdcnn.report import DISCLAIMER, build_report, finding_dicts, render_overlay, report_pdf
from hdcnn.utils import DEFAULT_WEIGHTS_DIR

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent
WEIGHTS_ENV = "HDCNN_WEIGHTS"
EXPERIMENTS_ENV = "HDCNN_EXPERIMENTS"
#: File types the uploaders accept (DICOM with or without extension is read by content).
UPLOAD_TYPES = ["dcm", "dicom", "dic", "png", "jpg", "jpeg", "pgm", "tif", "tiff"]
TRAIN_HINT = (
    "python -m hdcnn synth --out data/synth --patients 40 && "
    "python -m hdcnn train --dataset synth --root data/synth --out models"
)

#: Divider colour of a verdict heading.
VERDICT_COLOURS = {"normal": "green", "benign": "orange", "malignant": "red"}


def verdict_heading(prefix: str, label: object) -> None:
    """``"<prefix>: LABEL"`` as a subheader with a divider coloured by the verdict."""
    text = str(label)
    st.subheader(f"{prefix}: {text.upper()}", divider=VERDICT_COLOURS.get(text, "gray"))


# ----------------------------------------------------------------------------- layout


def sidebar() -> None:
    """The research-demo disclaimer and model status, shown on every page."""
    with st.sidebar:
        st.warning(f"**{DISCLAIMER}**", icon=":material/warning:")
        directory = weights_dir()
        if weights_present(directory):
            st.caption(f"Model weights: `{_display_path(directory)}`")
        else:
            st.caption(f"No model weights in `{_display_path(directory)}`.")


def _display_path(path: Path) -> str:
    try:
        return str(path.relative_to(REPO)) + "/"
    except ValueError:
        return str(path)


def show_error(exc: Exception) -> None:
    """A readable message for a user-caused error (never a traceback)."""
    st.error(f"Cannot use this image. {exc}", icon=":material/block:")


# ----------------------------------------------------------------------------- model


def weights_dir() -> Path:
    """The weights directory: ``$HDCNN_WEIGHTS`` or ``models/``."""
    return Path(os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS_DIR)


def weights_present(directory: Path) -> bool:
    """Whether ``directory`` holds at least the detector checkpoint."""
    return (directory / "detector.pt").is_file()


@st.cache_resource(show_spinner="Loading the model …", max_entries=2)
def _load_cascade(path: str, stamp: float) -> Any:
    """The cascade, loaded once per weights directory (and file time) for all sessions.

    :class:`hdcnn.cascade.Cascade` keeps no per-call state, so sessions share it safely.
    """
    from hdcnn.cascade import load_cascade

    del stamp  # part of the cache key only: reload when the weights change
    return load_cascade(path)


def get_cascade(*, quiet: bool = False) -> Any | None:
    """The shared cascade, or None after showing why it is unavailable.

    Args:
        quiet: do not write a message when there are no weights.
    """
    directory = weights_dir()
    if not weights_present(directory):
        if not quiet:
            st.info(
                f"No model weights found in `{_display_path(directory)}` — train with "
                f"`{TRAIN_HINT}` (or point `{WEIGHTS_ENV}` at a weights directory).",
                icon=":material/info:",
            )
        return None
    try:
        stamp = max(p.stat().st_mtime for p in directory.iterdir() if p.is_file())
        return _load_cascade(str(directory.resolve()), stamp)
    except HDCNNError as exc:
        st.error(f"The model could not be loaded. {exc}", icon=":material/block:")
        return None


def model_info(cascade: Any) -> dict[str, Any]:
    """Model identity for reports: name, sha256, weight files and thresholds."""
    thresholds = getattr(cascade, "thresholds", None)
    return {
        "name": getattr(cascade, "name", "unknown"),
        "sha256": getattr(cascade, "sha256", None),
        "files": dict(getattr(cascade, "files", {}) or {}),
        "thresholds": thresholds.to_dict() if thresholds is not None else {},
    }


# ----------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class Analysis:
    """One analysed image, as the Diagnose and Cascade pages show it.

    Attributes:
        key: sha256 of the input bytes (identifies the analysis in session state).
        name: display name (file name as uploaded, or the sample title).
        mammogram: the :class:`hdcnn.reader.Mammogram` as read.
        prediction: the :class:`hdcnn.cascade.Prediction` (``trace`` kept).
        overlay: uint8 RGB ``(h, w, 3)`` image with findings drawn (long side <= 1024).
        report: JSON-ready de-identified report (:func:`hdcnn.report.build_report`).
    """

    key: str
    name: str
    mammogram: Any
    prediction: Any
    overlay: np.ndarray
    report: dict[str, Any]

    @cached_property
    def pdf(self) -> bytes:
        """The PDF report, built once per analysis (not on every rerun of the page)."""
        return report_pdf(self.report, self.overlay)


def analyse_bytes(data: bytes, name: str, cascade: Any) -> Analysis:
    """Read and analyse one uploaded file entirely in memory.

    Args:
        data: the file's bytes.
        name: its file name (used only in messages and on screen, never in the report).
        cascade: a loaded :class:`hdcnn.cascade.Cascade`.

    Returns:
        :class:`Analysis`.

    Raises:
        MammogramError: the bytes are not a usable mammogram.
    """
    from hdcnn.reader import read_mammogram

    start = time.perf_counter()
    mammogram = read_mammogram(data, name=name)
    read_ms = (time.perf_counter() - start) * 1e3
    prediction = cascade.predict(mammogram, detail=True)
    # the file was read here, not inside predict: count it in the times shown
    timing = dict(prediction.timing_ms)
    timing["read"] = read_ms
    timing["total"] = timing.get("total", 0.0) + read_ms
    prediction = replace(prediction, timing_ms=timing)
    return _analysis(hashlib.sha256(data).hexdigest(), name, mammogram, prediction, cascade)


def _analysis(key: str, name: str, mammogram: Any, prediction: Any, cascade: Any) -> Analysis:
    findings = finding_dicts(prediction)
    overlay = render_overlay(mammogram.pixels, findings)
    report = build_report(prediction, mammogram.meta, model=model_info(cascade))
    return Analysis(key, name, mammogram, prediction, overlay, report)


def redecide(analysis: Analysis, cascade: Any, **thresholds: float) -> Analysis:
    """The same analysis under other thresholds (no network runs again).

    Args:
        thresholds: fields of :class:`hdcnn.cascade.Thresholds` to override.
    """
    import dataclasses

    pred = analysis.prediction
    new_t = dataclasses.replace(pred.thresholds, **thresholds)
    new = cascade.decide(
        pred.trace, new_t, source=pred.source, meta=pred.meta, timing_ms=pred.timing_ms
    )
    return _analysis(analysis.key, analysis.name, analysis.mammogram, new, cascade)


def finding_cams_cached(cascade: Any, analysis: Analysis, prediction: Any, stage: str) -> list:
    """Grad-CAM of the kept findings (:func:`hdcnn.explain.finding_cams`), once per session
    for each image, thresholds and stage. Grad-CAM runs on private model copies: thread-safe.
    """
    from hdcnn.explain import finding_cams

    key = (analysis.key, repr(prediction.thresholds), stage)
    held = st.session_state.get("cams")
    if held is not None and held[0] == key:
        return held[1]
    with st.spinner("Computing Grad-CAM …"):
        cams = finding_cams(cascade, prediction, stage=stage)
    st.session_state["cams"] = (key, cams)
    return cams


def analysis_for_upload(upload: Any, cascade: Any, *, slot: str) -> Analysis | None:
    """Analyse an ``st.file_uploader`` result once per session; errors become a message.

    Args:
        upload: the ``UploadedFile`` (or None).
        cascade: the loaded cascade.
        slot: session-state slot name (one per page).

    Returns:
        The analysis, or None (nothing uploaded, or an error already shown).
    """
    if upload is None:
        return None
    data = upload.getvalue()
    return _cached_analysis(data, upload.name, cascade, slot=slot)


def _cached_analysis(data: bytes, name: str, cascade: Any, *, slot: str) -> Analysis | None:
    key = hashlib.sha256(data).hexdigest()
    held = st.session_state.get(slot)
    if isinstance(held, Analysis) and held.key == key:
        return held
    try:
        with st.spinner(f"Analysing {name} …"):
            analysis = analyse_bytes(data, name, cascade)
    except HDCNNError as exc:
        st.session_state.pop(slot, None)
        show_error(exc)
        return None
    st.session_state[slot] = analysis
    st.session_state["last_analysis"] = analysis
    return analysis


def analysis_for_sample(sample: Any, cascade: Any, *, slot: str) -> Analysis | None:
    """Analyse a :class:`hdcnn.samples.Sample` once per session."""
    try:
        data = sample.read_bytes()
    except OSError as exc:
        st.error(f"Sample {sample.title} cannot be read: {exc}")
        return None
    return _cached_analysis(data, sample.title, cascade, slot=slot)


@dataclass(frozen=True)
class ViewResult:
    """One view of an exam: display name, prediction and overlay (uint8 RGB)."""

    name: str
    prediction: Any
    overlay: np.ndarray


@dataclass(frozen=True)
class ExamAnalysis:
    """An analysed exam.

    Attributes:
        key: sha256 over the views' bytes.
        prediction: :class:`hdcnn.cascade.ExamPrediction`.
        views: ``{view_key: ViewResult}`` for the provided views.
        seconds: wall time of the whole exam.
    """

    key: str
    prediction: Any
    views: dict[str, ViewResult]
    seconds: float


def analyse_exam(inputs: dict[str, tuple[bytes, str]], cascade: Any) -> ExamAnalysis:
    """Analyse up to four views held in memory.

    Args:
        inputs: ``{"rcc" | "lcc" | "rmlo" | "lmlo": (file bytes, display name)}``.
        cascade: a loaded cascade.

    Returns:
        :class:`ExamAnalysis`.

    Raises:
        MammogramError: a view is not a usable mammogram (the message names its file).
    """
    import time

    from hdcnn.reader import read_mammogram

    start = time.perf_counter()
    digest = hashlib.sha256()
    images = {}
    for view_key in sorted(inputs):
        data, name = inputs[view_key]
        digest.update(view_key.encode() + hashlib.sha256(data).digest())
        images[view_key] = read_mammogram(data, name=name)
    exam = cascade.predict_exam(images)
    views = {}
    for (view_key, mammogram), pred in zip(images.items(), exam.images, strict=True):
        overlay = render_overlay(mammogram.pixels, finding_dicts(pred), max_side=768)
        views[view_key] = ViewResult(inputs[view_key][1], pred, overlay)
    return ExamAnalysis(digest.hexdigest(), exam, views, time.perf_counter() - start)


def exam_analysis(inputs: dict[str, tuple[bytes, str]], cascade: Any) -> ExamAnalysis | None:
    """:func:`analyse_exam` once per session and input set; errors become a message."""
    digest = hashlib.sha256()
    for view_key in sorted(inputs):
        digest.update(view_key.encode() + hashlib.sha256(inputs[view_key][0]).digest())
    held = st.session_state.get("exam_analysis")
    if isinstance(held, ExamAnalysis) and held.key == digest.hexdigest():
        return held
    try:
        with st.spinner(f"Analysing {len(inputs)} views …"):
            exam = analyse_exam(inputs, cascade)
    except HDCNNError as exc:
        st.session_state.pop("exam_analysis", None)
        show_error(exc)
        return None
    st.session_state["exam_analysis"] = exam
    return exam


# ----------------------------------------------------------------------------- samples


@st.cache_resource(show_spinner="Preparing sample images …")
def samples() -> list[Any]:
    """The sample gallery (real CBIS-DDSM views, then SYNTHETIC ones), built once."""
    from hdcnn.samples import list_samples

    return list_samples()


def sample_picker(*, key: str, exams_only: bool = False) -> Any | None:
    """A selectbox of samples (or of sample exams); returns the choice or None.

    Args:
        key: widget key.
        exams_only: offer whole exams (returns ``{view_key: Sample}``) instead of single views.
    """
    from hdcnn.samples import exams

    gallery = samples()
    if not gallery:
        st.caption("No sample images available.")
        return None
    if exams_only:
        grouped = exams(gallery)
        options = ["—", *grouped]
        labels = {k: _exam_title(k, next(iter(v.values()))) for k, v in grouped.items()}
        choice = st.selectbox(
            "…or pick a sample exam",
            options,
            key=key,
            format_func=lambda k: labels.get(k, "— none —"),
        )
        return None if choice == "—" else grouped[choice]
    by_key = {s.key: s for s in gallery}
    choice = st.selectbox(
        "…or pick a sample",
        ["—", *by_key],
        key=key,
        format_func=lambda k: by_key[k].title if k in by_key else "— none —",
    )
    return by_key.get(choice)


def _exam_title(exam: str, sample: Any) -> str:
    title = sample.title.split(":")[0]
    return title


# ----------------------------------------------------------------------------- experiments


def experiments_path() -> Path:
    """``$HDCNN_EXPERIMENTS`` or ``experiments.json`` in the weights directory."""
    env = os.environ.get(EXPERIMENTS_ENV)
    return Path(env) if env else weights_dir() / "experiments.json"


@st.cache_data(show_spinner=False, max_entries=4)
def load_experiments(path: str, stamp: float) -> dict[str, Any]:
    """The experiment results JSON (cached per file time)."""
    del stamp
    return json.loads(Path(path).read_text(encoding="utf-8"))


CONCEPT_NOTES = {
    "flat-whole": "whole image, one 3-class CNN",
    "hier-whole": "whole image, hierarchical CNNs",
    "det-flat": "detector + 3-class crop CNN",
    "det-hier": "detector + hierarchical crop CNNs (HD-CNN)",
}


def _interval(value: Any, ci: Any, note: Any = None) -> str:
    if value is None:
        return f"– ({note})" if note else "–"
    text = f"{float(value):.3f}"
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        text += f" [{float(ci[0]):.3f}, {float(ci[1]):.3f}]"
    return text


def experiments_table(concepts: dict[str, dict[str, Any]]) -> Any:
    """One row per concept: AUCs with intervals, accuracy, macro F1, sensitivity, FROC."""
    import pandas as pd

    rows = []
    for name, m in concepts.items():
        froc = m.get("froc") or {}
        rows.append(
            {
                "concept": name,
                "design": CONCEPT_NOTES.get(name, ""),
                "AUC abnormal [95% CI]": _interval(
                    m.get("auc_abnormal"), m.get("auc_abnormal_ci"), m.get("auc_abnormal_note")
                ),
                "AUC malignant [95% CI]": _interval(
                    m.get("auc_malignant"), m.get("auc_malignant_ci"), m.get("auc_malignant_note")
                ),
                "accuracy": _num(m.get("accuracy")),
                "macro F1": _num(m.get("macro_f1")),
                "sens. malignant": _num(m.get("sensitivity_malignant")),
                "specificity": _num(m.get("specificity")),
                "FROC @0.5/1/2 FP": " / ".join(_num(froc.get(k)) for k in ("0.5", "1", "2"))
                if froc
                else "–",
            }
        )
    return pd.DataFrame(rows)


def _num(value: Any) -> str:
    return "–" if value is None else f"{float(value):.3f}"


def experiments_summary(concepts: dict[str, dict[str, Any]]) -> str:
    """A sentence or two on what the numbers show (generated, not hard-coded)."""
    scored = {n: m for n, m in concepts.items() if isinstance(m.get("auc_malignant"), (int, float))}
    if not scored:
        return "The results file holds no malignancy AUCs to compare."
    ranked = sorted(scored, key=lambda n: scored[n]["auc_malignant"], reverse=True)
    best, worst = ranked[0], ranked[-1]
    text = (
        f"**{best}** separates malignant from other images best (AUC "
        f"{scored[best]['auc_malignant']:.3f}); **{worst}** is lowest "
        f"({scored[worst]['auc_malignant']:.3f})."
    )
    lo_best = (scored[best].get("auc_malignant_ci") or [None, None])[0]
    hi_worst = (scored[worst].get("auc_malignant_ci") or [None, None])[1]
    if best != worst and lo_best is not None and hi_worst is not None:
        if lo_best > hi_worst:
            text += " Their 95 % intervals do not overlap."
        else:
            text += (
                " Their 95 % intervals overlap, so this test set cannot tell them apart with "
                "confidence."
            )
    if "det-hier" in scored and "flat-whole" in scored and best != "det-hier":
        diff = scored["det-hier"]["auc_malignant"] - scored["flat-whole"]["auc_malignant"]
        text += (
            f" The full HD-CNN cascade (det-hier) is {abs(diff):.3f} "
            f"{'above' if diff >= 0 else 'below'} the flat whole-image baseline."
        )
    return text


# ----------------------------------------------------------------------------- datasets

DEMO_DATASET = "demo (SYNTHETIC)"
DEMO_PATIENTS = 40
DEMO_SIZE = 256
THUMB_LIMIT = 60


def demo_root() -> Path:
    """Folder of the built-in demo cohort (generated on first use)."""
    from hdcnn.samples import default_synthetic_dir

    return default_synthetic_dir() / f"demo-n{DEMO_PATIENTS}-s{DEMO_SIZE}"


def ensure_demo_cohort() -> Path:
    """Generate the SYNTHETIC demo cohort once (with a progress bar); returns its folder."""
    root = demo_root()
    if not (root / "manifest.csv").is_file():
        from hdcnn.data.synth import write_cohort

        bar = st.progress(0.0, text="Generating the SYNTHETIC demo cohort …")
        write_cohort(
            root,
            patients=DEMO_PATIENTS,
            seed=0,
            size=DEMO_SIZE,
            progress=lambda done, total: bar.progress(done / total, text=f"patient {done}/{total}"),
        )
        bar.empty()
    return root


@st.cache_resource(show_spinner=False, max_entries=4)
def _manifest(name: str, root: str, stamp: float) -> Any:
    from hdcnn.data.adapters import load_dataset

    del stamp
    return load_dataset(name, root)


def load_manifest(name: str, root: str) -> Any | None:
    """The dataset's manifest via :func:`hdcnn.data.adapters.load_dataset` (cached per root and
    modification time), scanned under a status box; errors become a message."""
    try:
        stamp = Path(root).expanduser().stat().st_mtime
    except OSError:
        stamp = 0.0
    try:
        with st.status(f"Scanning {name} at {root} …", expanded=False) as status:
            manifest = _manifest(name, root, stamp)
            status.update(label=f"{name}: {len(manifest)} images", state="complete")
    except HDCNNError as exc:
        st.error(f"Cannot load this dataset. {exc}", icon=":material/block:")
        return None
    return manifest


@st.cache_data(show_spinner=False, max_entries=2000)
def thumbnail_uri(path: str, side: int = 72) -> str | None:
    """A small PNG data URI of an image file (None when it cannot be read)."""
    import base64

    import cv2

    from hdcnn.reader import read_mammogram

    try:
        pixels = read_mammogram(path).pixels
    except (HDCNNError, OSError):
        return None
    h, w = pixels.shape
    scale = side / max(h, w)
    small = cv2.resize(
        (pixels * 255).astype(np.uint8),
        (max(1, round(w * scale)), max(1, round(h * scale))),
        interpolation=cv2.INTER_AREA,
    )
    ok, buf = cv2.imencode(".png", small)
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode() if ok else None
