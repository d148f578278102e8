"""Streamlit glue of the app (``app.py`` + ``pages/``): sidebar, cached loaders, widgets and
session state. Nothing else.

Kept outside ``pages/`` so Streamlit never mistakes it for a page. Every computation lives in
the library: image and exam analysis, re-decision and the exam rule in :mod:`hdcnn.analysis`,
the reasons behind verdicts in :mod:`hdcnn.reasons`, the out-of-domain check in
:mod:`hdcnn.domain`, figures and tables of the experiments in
:mod:`hdcnn.evaluation.plots`. This module
caches their results (``st.cache_resource`` / ``st.session_state``) and turns errors into
messages.

The files the app reads (weights directory, sample gallery, experiment results, datasets)
are found and cached by :mod:`appfiles`; the names pages use are re-exported here, so pages
need only ``import appkit``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from appfiles import (  # noqa: F401  (re-exported: pages use them as appkit.NAME)
    DEMO_DATASET,
    EXPERIMENT_WIDTHS,
    EXPERIMENTS_ENV,
    THUMB_LIMIT,
    WEIGHTS_ENV,
    ensure_demo_cohort,
    experiment_columns,
    experiments_path,
    load_experiments,
    load_manifest,
    sample_picker,
    samples,
    thumbnail_uri,
    weights_dir,
)
from hdcnn import analysis as lib
from hdcnn.analysis import VIEW_TITLES, Analysis, ExamAnalysis, model_info  # noqa: F401
from hdcnn.config import CONFIG_FILE, CascadeConfig, weight_file
from hdcnn.domain import MIAS_DOMAIN, TrainingDomain
from hdcnn.errors import HDCNNError
from hdcnn.palette import LABEL_NAMED
from hdcnn.reasons import Explanation, thresholds_text
from hdcnn.report import DISCLAIMER
from hdcnn.runtime import IdleCleaner, freeze_long_lived, limit_malloc_arenas
from hdcnn.scheduler import Job, QueueStatus, shared_pool
from hdcnn.terms import Part

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent
#: File types that can be read (DICOM with or without extension is read by content).
UPLOAD_TYPES = ["dcm", "dicom", "dic", "png", "jpg", "jpeg", "pgm", "tif", "tiff"]
#: What the uploaders say they take (shown under each uploader).
UPLOAD_HELP = "DICOM (.dcm), PNG, JPEG, PGM or TIFF; other file types are refused."
TRAIN_HINT = (
    "python -m hdcnn synth --out data/synth --patients 40 && "
    "python -m hdcnn train --dataset synth --root data/synth --out models"
)

#: Divider colour of a verdict heading (Streamlit colour names, :mod:`hdcnn.palette`).
VERDICT_COLOURS = {str(k): v for k, v in LABEL_NAMED.items()}


def verdict_heading(prefix: str, label: object) -> None:
    """``"<prefix>: LABEL"`` as a subheader with a divider coloured by the verdict."""
    text = str(label)
    st.subheader(f"{prefix}: {text.upper()}", divider=VERDICT_COLOURS.get(text, "gray"))


def explanation(why: Explanation, *, thresholds: bool = True) -> None:
    """The rule that decided a verdict, with the threshold values in force, under its heading."""
    st.markdown(f"**Decided by the {why.threshold_name}:** {why.reason}.")
    if thresholds:
        st.caption(f"Thresholds in force: {thresholds_text(why.thresholds)}.")


def domain_notice(analysis: Analysis) -> None:
    """The plain out-of-domain notice of an analysed image (nothing when in domain)."""
    if not analysis.domain.in_domain:
        st.warning(analysis.domain.notice, icon=":material/report:")


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


def uploader(label: str, *, key: str, **kwargs: Any) -> Any:
    """``st.file_uploader`` for mammograms.

    Takes a file of any type: the reader detects the format from the content, so a file of
    the wrong type gets the same clear message as any other unusable file (naming the file
    and the problem), instead of only a small red icon in the widget. The tooltip lists the
    formats that work (:data:`UPLOAD_TYPES`).
    """
    return st.file_uploader(label, type=None, key=key, help=UPLOAD_HELP, **kwargs)


# ----------------------------------------------------------------------------- model


def weights_present(directory: Path) -> bool:
    """Whether ``directory`` holds at least the detector checkpoint."""
    return (directory / weight_file(Part.DETECTOR)).is_file()


@st.cache_resource(show_spinner="Loading the model …", max_entries=2)
def _load_cascade(path: str, stamp: float) -> Any:
    """The cascade, loaded once per weights directory (and file time) for all sessions.

    :class:`hdcnn.cascade.Cascade` keeps no per-call state, so sessions share it safely.
    """
    from hdcnn.cascade import load_cascade

    del stamp  # part of the cache key only: reload when the weights change
    shared_pool()  # the thread rule is applied before torch runs anything
    cascade = load_cascade(path, known_answers="require")
    # the server's modules and the model now exist: keep them out of the full garbage
    # collections that return freed memory (_CLEANER), ~0.2 s each otherwise
    freeze_long_lived()
    return cascade


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


@st.cache_resource(show_spinner=False, max_entries=4)
def _training_domain(path: str, stamp: float) -> TrainingDomain:
    del stamp
    try:
        return CascadeConfig.load(path).training_domain
    except HDCNNError:  # the model itself is refused with the reason (get_cascade)
        return MIAS_DOMAIN


def domain() -> TrainingDomain:
    """The training domain of the weights in use (``cascade.json``, else mini-MIAS)."""
    directory = weights_dir()
    config = directory / CONFIG_FILE
    stamp = config.stat().st_mtime if config.is_file() else 0.0
    return _training_domain(str(directory), stamp)


# ----------------------------------------------------------------------------- analysis


def analyse_bytes(
    data: bytes, name: str, cascade: Any, *, key: str | None = None, display: bool = False
) -> Analysis:
    """:func:`hdcnn.analysis.analyse_bytes` against the weights' training domain.

    Args:
        display: also draw and encode what Diagnose shows first
            (:meth:`hdcnn.analysis.Analysis.prepare_display`), in the same job of the pool.
    """
    analysis = lib.analyse_bytes(data, name, cascade, domain=domain(), key=key)
    return analysis.prepare_display() if display else analysis


def redecide(analysis: Analysis, cascade: Any, **thresholds: float) -> Analysis:
    """:func:`hdcnn.analysis.redecide`, once per session for each image and thresholds."""
    key = (analysis.key, tuple(sorted(thresholds.items())))
    held = st.session_state.get("redecided")
    if held is not None and held[0] == key:
        return held[1]
    new = lib.redecide(analysis, cascade, **thresholds)
    st.session_state["redecided"] = (key, new)
    return new


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
        job = shared_pool().submit(finding_cams, cascade, prediction, stage=stage)
        _session_release().track(job)
        cams = wait_for(job, what="Grad-CAM")
    st.session_state["cams"] = (key, cams)
    return cams


def keep_uploads_in_memory() -> None:
    """Keep uploaded files in memory: never spooled to a temporary file on disk.

    Streamlit 1.67 serves uploads with Starlette; its upload route parses the multipart body
    with ``request.form()``, whose ``MultiPartParser`` puts each file in a
    ``tempfile.SpooledTemporaryFile(max_size=1 MB)``: anything larger rolls over to a file
    in the temp directory (``/tmp``) until the request ends. ``spool_max_size = 0`` means
    "never roll over", so the bytes stay in memory (at most ``server.maxUploadSize``), then
    go to Streamlit's in-memory upload manager as before. Called when this module is
    imported, i.e. before any page shows an uploader.
    """
    try:
        from starlette.formparsers import MultiPartParser
    except ImportError:  # a Streamlit without the Starlette server: nothing to change
        return
    MultiPartParser.spool_max_size = 0


keep_uploads_in_memory()
limit_malloc_arenas()  # reuse_freed_memory(): load_cascade sets it
#: Hands freed memory back once the analysis pool has been idle 2 s (each session that ends
#: asks; sessions that follow each other closely keep the pages the next analysis reuses).
_CLEANER = IdleCleaner(lambda: shared_pool().busy)


class _SessionRelease:
    """Frees one browser session's analyses and uploads when it disconnects.

    Streamlit keeps a disconnected session for ``server.disconnectedSessionTTL`` seconds so
    that it can reconnect, and removes expired ones only on a later disconnect. Its session
    state holds the analyses (full-size image, trace, display images) and the pages'
    widget callbacks keep each page's globals, so every finished session left ~100 MB
    behind. This object is a session-scoped resource: Streamlit releases it on disconnect,
    and the release clears the session state and drops the session's uploaded files and
    media (images, deferred downloads). A browser that reconnects re-sends its widget
    values; its files must be chosen again.
    """

    def __init__(self, state: Any, session_id: str | None) -> None:
        self.state = state
        self.session_id = session_id
        self.jobs: list[Job] = []  # this session's analyses in the shared pool

    def track(self, job: Job) -> None:
        """Cancel ``job`` on disconnect if it is still queued (keeps the unfinished ones)."""
        self.jobs = [j for j in self.jobs if not j.done()]
        self.jobs.append(job)

    def release(self) -> None:
        for job in self.jobs:  # a visitor who left gives up its place in the queue
            job.cancel()
        self.jobs = []
        inner = getattr(self.state, "_state", self.state)  # SafeSessionState -> SessionState
        lock = getattr(self.state, "_lock", None)
        try:
            if lock is not None:
                with lock:
                    inner.clear()
            elif inner is not None:
                inner.clear()
        except Exception as exc:  # the session is already gone: nothing to free
            log.debug("session state not cleared (%s)", type(exc).__name__)
        self.state = None
        if self.session_id is not None:
            try:
                from streamlit.runtime import Runtime

                runtime = Runtime.instance()
                runtime.uploaded_file_mgr.remove_session_files(self.session_id)
                # download buttons with deferred data (the PDF report) keep a callable that
                # holds the page's globals, the analysis included, until dropped here
                runtime.media_file_mgr.clear_session_refs(self.session_id)
                runtime.media_file_mgr.remove_orphaned_files()
            except Exception as exc:  # no runtime (AppTest) or already removed
                log.debug("session files not removed (%s)", type(exc).__name__)
        _CLEANER.request()  # gc + malloc_trim once no analysis runs, off the event loop


@st.cache_resource(show_spinner=False, scope="session", on_release=_SessionRelease.release)
def _session_release() -> _SessionRelease:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return _SessionRelease(getattr(ctx, "session_state", None), getattr(ctx, "session_id", None))


def queue_notice(status: QueueStatus, place: Any, *, what: str = "Your analysis") -> None:
    """Where a queued analysis stands, in ``place`` (an ``st.empty``); nothing once it runs."""
    if status.queued:
        place.info(status.describe(what), icon=":material/hourglass_top:")
    else:
        place.empty()


def wait_for(job: Job, *, what: str = "Your analysis", place: Any | None = None) -> Any:
    """The value of a job of the shared analysis pool; while it waits for a free worker the
    page says so, with its place in line (:meth:`hdcnn.scheduler.Job.wait`), in ``place``
    (an ``st.empty``; a new one here by default)."""
    place = st.empty() if place is None else place
    try:
        return job.wait(lambda status: queue_notice(status, place, what=what))
    finally:
        place.empty()


def _submit_once(
    name: str, content: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> Job:
    """``fn(*args, **kwargs)`` queued once in the shared pool for ``content`` (a digest), held
    in session state ``name``: a rerun while it waits (the page was interrupted) waits for the
    same job; a queued job of other content is cancelled (the user moved on)."""
    held = st.session_state.get(name)
    if held is not None and held[0] == content:
        return held[1]
    if held is not None:
        held[1].cancel()
    job = shared_pool().submit(fn, *args, **kwargs)
    _session_release().track(job)  # also registers the release of this session on disconnect
    st.session_state[name] = (content, job)
    return job


def analysis_for_upload(
    upload: Any,
    cascade: Any,
    *,
    slot: str,
    skeleton: Callable[[], None] | None = None,
    display: bool = False,
) -> Analysis | None:
    """Analyse an ``st.file_uploader`` result once per session; errors become a message.

    The upload is analysed from memory (:func:`keep_uploads_in_memory`); the analysis is
    released when the session disconnects (:class:`_SessionRelease`). A rerun with the same
    upload (a toggle, a threshold) neither copies nor hashes the file again.

    Args:
        upload: the ``UploadedFile`` (or None).
        cascade: the loaded cascade.
        slot: session-state slot name (one per page).
        skeleton: draws the result's layout, empty, while the networks run (removed after).
            The browser meanwhile loads the code of each element type the result shows, which
            it otherwise fetched only after the analysis (Diagnose in ``benchmarks/bench_app.py``).
        display: draw and encode the page's images in the analysis job (:func:`analyse_bytes`),
            in the pool, instead of in the page's script thread.

    Returns:
        The analysis, or None (nothing uploaded, or an error already shown).
    """
    if upload is None:
        return None
    source = ("upload", getattr(upload, "file_id", None) or id(upload))
    return _cached_analysis(
        upload.getvalue, source, upload.name, cascade, slot=slot, skeleton=skeleton, display=display
    )


def _cached_analysis(
    read: Callable[[], bytes],
    source: tuple[str, Any],
    name: str,
    cascade: Any,
    *,
    slot: str,
    skeleton: Callable[[], None] | None = None,
    display: bool = False,
) -> Analysis | None:
    held = st.session_state.get(slot)
    if isinstance(held, Analysis) and st.session_state.get(f"{slot}_source") == source:
        return held  # the same file as on the last run: nothing to read or hash
    try:
        data = read()
    except OSError as exc:  # a sample file gone from disk
        st.error(f"{name} cannot be read: {exc}")
        return None
    key = hashlib.sha256(data).hexdigest()
    if isinstance(held, Analysis) and held.key == key:
        st.session_state[f"{slot}_source"] = source
        return held
    try:
        with st.spinner(f"Analysing {name} …"):
            job = _submit_once(
                f"{slot}_job", key, analyse_bytes, data, name, cascade, key=key, display=display
            )
            notice = st.empty()  # its place in line, above the result's empty layout
            holder = st.empty()
            if skeleton is not None:
                with holder.container():
                    skeleton()
            try:
                analysis = wait_for(job, place=notice)
            finally:
                holder.empty()
    except HDCNNError as exc:
        _forget(slot)
        show_error(exc)
        return None
    except Exception as exc:  # never a traceback on screen: one line in the log, one message
        log.error("%s: analysis failed (%s)", name, type(exc).__name__)
        _forget(slot)
        st.error(f"Cannot use this image. {name}: it could not be analysed ({type(exc).__name__}).")
        return None
    st.session_state.pop(f"{slot}_job", None)
    st.session_state[slot] = analysis
    st.session_state[f"{slot}_source"] = source
    st.session_state["last_analysis"] = analysis
    return analysis


def _forget(slot: str) -> None:
    for name in (slot, f"{slot}_job", f"{slot}_source"):
        st.session_state.pop(name, None)


def analysis_for_sample(
    sample: Any,
    cascade: Any,
    *,
    slot: str,
    skeleton: Callable[[], None] | None = None,
    display: bool = False,
) -> Analysis | None:
    """Analyse a :class:`hdcnn.samples.Sample` once per session (``skeleton``, ``display``: as
    :func:`analysis_for_upload`)."""
    return _cached_analysis(
        sample.read_bytes,
        ("sample", sample.key),
        sample.title,
        cascade,
        slot=slot,
        skeleton=skeleton,
        display=display,
    )


def _source_of(payload: Any) -> tuple[str, str] | None:
    """Who gives a view's bytes: an upload (its file id) or a sample file (its path), so that
    a rerun with the same view neither reads nor hashes it again; None for plain bytes."""
    owner = getattr(payload, "__self__", None)
    file_id = getattr(owner, "file_id", None)
    if file_id:
        return ("upload", str(file_id))
    return ("file", str(owner)) if isinstance(owner, Path) else None


def _exam_view(payload: Any, name: str, cascade: Any) -> Job:
    """The analysis of one exam view, queued once per session and content in the shared
    pool (:func:`hdcnn.scheduler.shared_pool`, where every analysis runs).

    Args:
        payload: the file's bytes, or a callable returning them (read only when the view's
            source is new to this session).
    """
    held: dict = st.session_state.setdefault("exam_views", {})
    digests: dict = st.session_state.setdefault("exam_digests", {})
    source = _source_of(payload)
    digest = digests.get(source) if source is not None else None
    if digest is not None and (digest, id(cascade)) in held:
        return held[(digest, id(cascade))]
    data = payload() if callable(payload) else payload
    digest = hashlib.sha256(data).hexdigest()
    if source is not None:
        digests[source] = digest
    key = (digest, id(cascade))
    if key not in held:
        held[key] = shared_pool().submit(_analyse_exam_view, data, name, cascade, domain(), digest)
        _session_release().track(held[key])
        for old in list(held)[:-8]:  # keep the last eight views of this session
            held.pop(old).cancel()
    return held[key]


def _analyse_exam_view(
    data: bytes, name: str, cascade: Any, training: TrainingDomain, digest: str
) -> Analysis:
    """One exam view analysed, keeping only the grid's overlay, not the full-resolution
    pixels (four 80-Mpx views held 1.3 GB of them; issue 21)."""
    analysis = lib.analyse_bytes(data, name, cascade, domain=training, key=digest)
    return analysis.without_pixels(side=lib.EXAM_DISPLAY_SIDE)


def exam_analysis(inputs: dict[str, tuple[Any, str]], cascade: Any) -> ExamAnalysis | None:
    """The exam of up to four views, with per-view progress.

    Every view's analysis is queued first, in the shared pool (:func:`_exam_view`), before
    anything is drawn; a view is analysed once per session (adding a fourth view analyses
    only that one). The exam is then assembled by :func:`hdcnn.analysis.assemble_exam`
    (header laterality and view win over the slot, mismatches become warnings).

    Args:
        inputs: ``{slot: (file bytes or a callable returning them, display name)}``.

    Returns:
        The exam, or None when no view could be used (the errors are shown).
    """
    order = [k for k in lib.VIEW_KEYS if k in inputs]
    start = time.perf_counter()
    futures = {}
    for slot in order:
        payload, name = inputs[slot]
        futures[slot] = _exam_view(payload, name, cascade)
    views: list[tuple[str, Analysis]] = []
    total = len(order)
    plural = "s" if total != 1 else ""
    with st.status(f"Analysing {total} view{plural} …", expanded=True) as box:
        bar = st.progress(0.0)
        for done, slot in enumerate(order):
            name = inputs[slot][1]
            text = f"View {done + 1} of {total}: {name}"

            def show(status: QueueStatus, done: int = done, text: str = text) -> None:
                queued = f" — {status.describe('this view')}" if status.queued else ""
                bar.progress(done / total, text=text + queued)

            try:
                analysis = futures[slot].wait(show)
            except HDCNNError as exc:
                show_error(exc)
                continue
            views.append((slot, analysis))
            st.write(f"{VIEW_TITLES[slot]} slot: {name} — {analysis.prediction.label!s}")
        bar.progress(1.0, text=f"{len(views)} of {total} view{plural} analysed")
        seconds = time.perf_counter() - start
        box.update(
            label=f"{len(views)} of {total} view{plural} analysed ({seconds:.1f} s)",
            state="complete" if len(views) == total else "error",
            expanded=len(views) != total,
        )
    if not views:
        return None
    key = lib.exam_key([(slot, a.key) for slot, a in views])
    held = st.session_state.get("exam_analysis")
    if isinstance(held, ExamAnalysis) and held.key == key:
        return held
    exam = lib.assemble_exam(views, cascade.thresholds, seconds=seconds)
    st.session_state["exam_analysis"] = exam
    return exam


# ----------------------------------------------------------------------------- DICOM results

DICOM_BUTTON = "Download DICOM results (.zip)"


def dicom_download(
    analyses: list[Analysis],
    sources: Callable[[], list[bytes]],
    cascade: Any,
    *,
    key: str,
    exam: Any = None,
) -> None:
    """A download of the de-identified DICOM report and presentation states
    (:func:`hdcnn.dicomout.export.analysis_zip`) for DICOM inputs; a note for the others.

    Args:
        sources: returns the inputs' bytes (called on the click, not on every rerun).
    """
    from hdcnn.dicomout.export import DEIDENTIFIED_NOTE, analysis_zip, not_dicom_message

    other = [a for a in analyses if a.mammogram.meta.format != "dicom"]
    if other:
        st.caption(f"No DICOM results: {not_dicom_message(other[0].mammogram.meta.format)}.")
        return

    def build() -> bytes:
        data = {hashlib.sha256(b).hexdigest(): b for b in sources()}
        return analysis_zip(data, analyses, cascade, exam=exam)

    st.download_button(
        DICOM_BUTTON,
        data=build,
        file_name="hdcnn-dicom.zip",
        mime="application/zip",
        key=key,
        on_click="ignore",
    )
    st.caption(
        "Structured report (TID 1500) and presentation state for a DICOM viewer. "
        + DEIDENTIFIED_NOTE
    )
