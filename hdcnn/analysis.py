"""One analysed image and one analysed exam, as the app shows them (no Streamlit here).

- :func:`analyse_bytes` / :func:`analyse_mammogram`: read + cascade + explanation + domain
  check + de-identified report for one image (:class:`Analysis`); display images and the PDF
  are built lazily, once per analysis.
- :func:`redecide`: the same analysis under other thresholds (no network runs again).
- :func:`place_view`, :func:`assemble_exam`: the ONE rule that puts an image in an exam: its
  own header laterality and view win over the slot a user dropped it in; a mismatch is a
  warning, never silently used. :func:`group_exams` splits inputs into exams (also used by
  ``python -m hdcnn predict --exam``).

The Streamlit layer (``appkit.py``) only caches these objects in session state.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from hdcnn.domain import MIAS_DOMAIN, DomainCheck, TrainingDomain, check_domain
from hdcnn.findings import closeup_image
from hdcnn.reasons import Explanation, explain, explain_verdict, finding_number
from hdcnn.report import (
    build_report,
    display_image,
    draw_findings,
    report_pdf,
)

if TYPE_CHECKING:
    from hdcnn.cascade import Cascade, ExamPrediction, Prediction
    from hdcnn.reader import Mammogram

#: Longer side of the display images (overlays) of one analysed image.
DISPLAY_SIDE = 1024
#: Longer side of each view's display image on the exam grid.
EXAM_DISPLAY_SIDE = 768
#: Longer side of a finding's close-up (the lesion drawn large: :meth:`Analysis.closeup_jpeg`).
CLOSEUP_SIDE = 384
#: JPEG quality of the display images sent to the browser.
JPEG_QUALITY = 88

#: Exam view keys in reading-grid order, and their titles.
VIEW_KEYS: tuple[str, ...] = ("rcc", "lcc", "rmlo", "lmlo")
VIEW_TITLES: dict[str, str] = {
    "rcc": "Right CC",
    "lcc": "Left CC",
    "rmlo": "Right MLO",
    "lmlo": "Left MLO",
}


def model_info(cascade: Any) -> dict[str, Any]:
    """Model identity for reports: name, sha256, weight files and thresholds."""
    thresholds = getattr(cascade, "thresholds", None)
    return {
        "name": getattr(cascade, "name", "unknown"),
        "sha256": getattr(cascade, "sha256", None),
        "files": dict(getattr(cascade, "files", {}) or {}),
        "thresholds": thresholds.to_dict() if thresholds is not None else {},
    }


#: What the app says of a header field the file does not hold (a PGM holds none).
NOT_IN_FILE = "not in the file"


def header_text(meta: Any) -> str:
    """The file's format, size, bit depth, laterality and view in words, e.g. ``"DICOM,
    2624 × 4736 px, 16 bit, left breast, CC view"``; a field the file does not hold is
    said to be :data:`NOT_IN_FILE` (never ``"?"``).

    Args:
        meta: a :class:`hdcnn.reader.MammogramMeta`.
    """
    height, width = meta.original_size
    side = {"L": "left breast", "R": "right breast"}.get(str(meta.laterality or "").upper())
    view = f"{meta.view} view" if meta.view else None
    if side is None and view is None:
        where = f"laterality and view {NOT_IN_FILE}"
    else:
        where = ", ".join([side or f"laterality {NOT_IN_FILE}", view or f"view {NOT_IN_FILE}"])
    return f"{meta.format.upper()}, {width} × {height} px, {meta.bit_depth} bit, {where}."


def jpeg_bytes(rgb: np.ndarray, *, quality: int = JPEG_QUALITY) -> bytes:
    """uint8 RGB (or grey) image as JPEG bytes (what the browser is sent)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@dataclass(frozen=True)
class Analysis:
    """One analysed image.

    Attributes:
        key: sha256 of the input bytes (identifies the analysis in a session).
        name: display name (file name as uploaded, or a sample title).
        mammogram: the :class:`hdcnn.reader.Mammogram` as read.
        prediction: the :class:`hdcnn.cascade.Prediction` (``trace`` kept).
        report: JSON-ready de-identified report (:func:`hdcnn.report.build_report`).
        domain: how the image compares with the training data (:func:`check_domain`).
        model: model identity (:func:`model_info`).
    """

    key: str
    name: str
    mammogram: Mammogram
    prediction: Prediction
    report: dict[str, Any]
    domain: DomainCheck = field(default_factory=DomainCheck)
    model: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def explanation(self) -> Explanation:
        """The rule that decided the verdict (:func:`hdcnn.reasons.explain`)."""
        return explain(self.prediction)

    @cached_property
    def findings(self) -> list[dict[str, Any]]:
        """The findings as dicts, numbered, with status and reason: the report's
        (:func:`hdcnn.report.finding_dicts`, built and merged once, in :func:`_wrap`)."""
        return self.report["findings"]

    @cached_property
    def _display(self) -> tuple[np.ndarray, float]:
        return display_image(self._pixels(), max_side=DISPLAY_SIDE)

    def _pixels(self) -> np.ndarray:
        """The full-resolution pixels; ValueError once :meth:`without_pixels` dropped them."""
        if self.mammogram.pixels.size == 0:
            raise ValueError(f"{self.name}: its full-resolution pixels were released")
        return self.mammogram.pixels

    def without_pixels(self, *, side: int = DISPLAY_SIDE) -> Analysis:
        """This analysis without its full-resolution pixels, once its overlay at ``side``
        (the findings the verdict rests on, :meth:`overlay_jpeg`) is drawn: what a page that
        shows only that overlay keeps (the Exam grid). An 80-Mpx view holds 320 MB of
        float32 pixels; its overlay is ~100 KB. Drawing anything else from it (another side,
        the refused candidates, a close-up, the PDF) then raises ValueError.
        """
        jpeg = self.overlay_jpeg(max_side=side)
        empty = np.zeros((0, 0), np.float32)
        light = replace(self, mammogram=replace(self.mammogram, pixels=empty))
        light.__dict__["_images"] = {("jpeg", False, side): jpeg}
        return light

    def overlay(self, *, refused: bool = False, max_side: int = DISPLAY_SIDE) -> np.ndarray:
        """uint8 RGB image with the findings drawn (refused candidates only if ``refused``)."""
        key = ("overlay", refused, max_side)
        cache = self.__dict__.setdefault("_images", {})
        if key not in cache:
            if max_side == DISPLAY_SIDE:
                grey, scale = self._display
            else:
                grey, scale = display_image(self._pixels(), max_side=max_side)
            cache[key] = draw_findings(grey, self.findings, scale=scale, show_rejected=refused)
        return cache[key]

    def overlay_jpeg(self, *, refused: bool = False, max_side: int = DISPLAY_SIDE) -> bytes:
        """:meth:`overlay` as JPEG bytes, encoded once."""
        key = ("jpeg", refused, max_side)
        cache = self.__dict__.setdefault("_images", {})
        if key not in cache:
            cache[key] = jpeg_bytes(self.overlay(refused=refused, max_side=max_side))
        return cache[key]

    def closeup_numbers(self, limit: int = 2) -> list[int]:
        """Numbers of the findings worth a close-up: those the verdict rests on (merged
        findings once), else the candidate with the highest P(lesion); at most ``limit``."""
        shown = [f for f in self.findings if f["merged_into"] is None]
        chosen = [f["number"] for f in shown if f["prominent"]]
        if not chosen and shown:
            chosen = [max(shown, key=lambda f: f["p_lesion"] or 0.0)["number"]]
        return chosen[:limit]

    def closeup_jpeg(self, number: int, *, side: int = CLOSEUP_SIDE) -> bytes:
        """The original pixels around finding ``number`` (:func:`hdcnn.findings.closeup_window`),
        scaled to ``side`` with its box drawn, as JPEG bytes (cached).

        Raises:
            KeyError: no finding has that number.
        """
        key = ("closeup", number, side)
        cache = self.__dict__.setdefault("_images", {})
        if key not in cache:
            finding = next((f for f in self.findings if f["number"] == number), None)
            if finding is None:
                raise KeyError(number)
            cache[key] = jpeg_bytes(closeup_image(self._pixels(), finding, side=side))
        return cache[key]

    def prepare_display(self) -> Analysis:
        """Draw and encode, once, what a page shows of this analysis first: the overlay of
        the findings (:meth:`overlay_jpeg`) and the close-ups (:meth:`closeup_jpeg` of
        :meth:`closeup_numbers`). The app calls it inside the analysis job, so that this work
        runs in the bounded pool rather than beside it in the page's thread. Returns self."""
        self.overlay_jpeg()
        for number in self.closeup_numbers():
            self.closeup_jpeg(number)
        return self

    @cached_property
    def pdf(self) -> bytes:
        """The PDF report (every candidate drawn, numbered as in its table), built once."""
        return report_pdf(self.report, self.overlay(refused=True))


def analyse_mammogram(
    mammogram: Mammogram,
    cascade: Cascade,
    *,
    key: str,
    name: str,
    domain: TrainingDomain = MIAS_DOMAIN,
    read_ms: float | None = None,
) -> Analysis:
    """Run the cascade on a read image and wrap the result as an :class:`Analysis`.

    Args:
        read_ms: time spent reading the file, added to the prediction's ``read`` and
            ``total`` times (the file was read outside :meth:`Cascade.predict`).
    """
    prediction = cascade.predict(mammogram, detail=True)
    if read_ms is not None:
        timing = dict(prediction.timing_ms)
        timing["read"] = read_ms
        timing["total"] = timing.get("total", 0.0) + read_ms
        prediction = replace(prediction, timing_ms=timing)
    return _wrap(key, name, mammogram, prediction, check_domain(mammogram.meta, domain), cascade)


def _wrap(
    key: str,
    name: str,
    mammogram: Mammogram,
    prediction: Prediction,
    domain: DomainCheck,
    cascade: Any,
) -> Analysis:
    model = model_info(cascade)
    report = build_report(prediction, mammogram.meta, model=model, domain=domain)
    return Analysis(key, name, mammogram, prediction, report, domain, model)


def analyse_bytes(
    data: bytes,
    name: str,
    cascade: Cascade,
    *,
    domain: TrainingDomain = MIAS_DOMAIN,
    key: str | None = None,
) -> Analysis:
    """Read and analyse one uploaded file entirely in memory.

    Args:
        data: the file's bytes.
        name: its file name (used only in messages and on screen, never in the report).
        cascade: a loaded :class:`hdcnn.cascade.Cascade`.
        domain: the training domain to compare with (:func:`hdcnn.domain.training_domain`).
        key: ``sha256(data)`` hex when the caller has it already (an app's session cache);
            computed here otherwise.

    Raises:
        MammogramError: the bytes are not a usable mammogram.
    """
    from hdcnn.reader import read_mammogram

    start = time.perf_counter()
    mammogram = read_mammogram(data, name=name)
    read_ms = (time.perf_counter() - start) * 1e3
    return analyse_mammogram(
        mammogram,
        cascade,
        key=key or hashlib.sha256(data).hexdigest(),
        name=name,
        domain=domain,
        read_ms=read_ms,
    )


def redecide(analysis: Analysis, cascade: Cascade, **thresholds: float) -> Analysis:
    """The same analysis under other thresholds (no network runs again).

    Args:
        thresholds: fields of :class:`hdcnn.cascade.Thresholds` to override.
    """
    pred = analysis.prediction
    new_t = replace(pred.thresholds, **thresholds)
    if new_t == pred.thresholds:
        return analysis
    new = cascade.decide(
        pred.trace, new_t, source=pred.source, meta=pred.meta, timing_ms=pred.timing_ms
    )
    return _wrap(analysis.key, analysis.name, analysis.mammogram, new, analysis.domain, cascade)


def candidate_overlay(prediction: Prediction, *, side: int = 768) -> np.ndarray:
    """The model image (preprocessed, chest wall left) with every candidate of the prediction
    drawn as a neutral box tagged only with its number (rank by detector score): what the
    detector proposes, before any classifier output.

    Args:
        prediction: with a trace (``predict(..., detail=True)``).
        side: long side of the returned image (the model image is scaled up or down to it).

    Returns:
        uint8 RGB ``(h, w, 3)``.
    """
    import cv2

    image = prediction.trace.preprocessed.image
    h, w = image.shape
    scale = side / max(h, w)
    grey = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    grey = cv2.resize(grey, size, interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
    boxes = [
        {
            "box": list(f.model_box),
            "label": "lesion",
            "text": f"#{finding_number(f, row)}",
            "prominent": True,
        }
        for row, f in enumerate(prediction.findings)
    ]
    return draw_findings(grey, boxes, scale=scale)


# ----------------------------------------------------------------------------- exams

T = TypeVar("T")


def view_key(laterality: str | None, view: str | None) -> str | None:
    """``"lcc"``-style key of a laterality and view, None unless both are known (CC/MLO)."""
    if not laterality or str(laterality).upper() not in ("L", "R"):
        return None
    if not view or str(view).upper() not in ("CC", "MLO"):
        return None
    return f"{str(laterality).lower()}{str(view).lower()}"


@dataclass(frozen=True)
class Placement:
    """Where one image goes in an exam (:func:`place_view`).

    Attributes:
        slot: the slot the user chose (``"rcc"`` ...), or None.
        laterality: ``"L"`` | ``"R"`` | None, the one used.
        view: ``"CC"`` | ``"MLO"`` | ``"other"`` | None, the one used.
        warning: why the image is not where the user put it, or None.
    """

    slot: str | None
    laterality: str | None
    view: str | None
    warning: str | None = None

    @property
    def key(self) -> str | None:
        return view_key(self.laterality, self.view)


def _title(key: str | None, laterality: str | None = None, view: str | None = None) -> str:
    if key in VIEW_TITLES:
        return VIEW_TITLES[key]
    side = {"L": "left", "R": "right"}.get(str(laterality).upper(), "unknown side")
    return f"{side} {view or 'unknown view'}"


def place_view(slot: str | None, laterality: str | None, view: str | None) -> Placement:
    """The exam rule for one image: its own header laterality and view win; the slot only
    fills in what the header does not say.

    Args:
        slot: where the user dropped it (``"rcc"``, ``"lmlo"`` ...), or None.
        laterality, view: from the image's header (:class:`hdcnn.reader.MammogramMeta`).

    Returns:
        :class:`Placement`; ``warning`` set when the header disagrees with the slot.
    """
    slot = slot.lower() if slot else None
    slot_lat = slot[0].upper() if slot else None
    slot_view = slot[1:].upper() if slot else None
    lat = str(laterality).upper() if laterality else None
    vw = str(view).upper() if view and str(view).upper() in ("CC", "MLO") else view
    used_lat = lat or slot_lat
    used_view = vw or slot_view
    warning = None
    if slot and ((lat and lat != slot_lat) or (vw and vw != slot_view)):
        warning = (
            f"The file in the {VIEW_TITLES.get(slot, slot)} slot is a "
            f"{_title(view_key(lat or slot_lat, vw or slot_view), lat, vw)} view according to "
            "its header; it is used as that view."
        )
    return Placement(slot, used_lat, used_view, warning)


def group_exams(
    groups: Mapping[Any, Sequence[tuple[str | None, str | None, T]]],
) -> dict[Any, list[tuple[str | None, str | None, T]]]:
    """Exams from images grouped by de-identified study key (the one grouping rule).

    Images sharing a study key form one exam; images without a key (``None``) form one exam
    together. When no two images share a key but their laterality+view pairs are all known
    and distinct (CBIS-DDSM gives every image its own StudyInstanceUID), all images form a
    single exam (key None).

    Args:
        groups: study key (or None) -> ``[(laterality, view, item)]``.

    Returns:
        exam key (None for a merged or keyless exam) -> its items.
    """
    items = [item for members in groups.values() for item in members]
    keyed = [k for k in groups if k is not None]
    singletons = all(len(groups[k]) == 1 for k in keyed)
    views = [(lat, view) for lat, view, _ in items]
    if len(keyed) > 1 and singletons and None not in views and len(set(views)) == len(views):
        return {None: items}
    return {k: list(v) for k, v in groups.items()}


@dataclass(frozen=True)
class ExamView:
    """One image of an assembled exam: its placement and its analysis."""

    placement: Placement
    analysis: Analysis

    @property
    def key(self) -> str | None:
        return self.placement.key

    @property
    def title(self) -> str:
        p = self.placement
        return _title(p.key, p.laterality, p.view)


@dataclass(frozen=True)
class ExamAnalysis:
    """An analysed exam.

    Attributes:
        key: sha256 over the slots and the views' input keys.
        prediction: :class:`hdcnn.cascade.ExamPrediction` (max rule per breast, worse breast).
        views: every image, in the order given.
        warnings: views placed by their header instead of their slot, two images of the same
            view, views from different exams, a file without a patient identity beside files
            with one.
        refusal: why these images are not combined into one exam (their headers name
            different patients), or None. With a refusal, ``prediction`` still combines them
            but must not be shown as an exam verdict.
        seconds: wall time of the analyses (cached views count 0).
    """

    key: str
    prediction: ExamPrediction
    views: list[ExamView]
    warnings: list[str]
    seconds: float = 0.0
    refusal: str | None = None

    @property
    def grid(self) -> dict[str, ExamView]:
        """``{view key: view}`` for the reading grid (the first image of each view)."""
        out: dict[str, ExamView] = {}
        for v in self.views:
            if v.key is not None and v.key not in out:
                out[v.key] = v
        return out

    @property
    def extra_views(self) -> list[ExamView]:
        """Images that have no place of their own on the grid (duplicate or unknown view)."""
        shown = {id(v) for v in self.grid.values()}
        return [v for v in self.views if id(v) not in shown]

    @property
    def explanation(self) -> Explanation:
        """The rule behind the exam verdict."""
        p = self.prediction
        return explain_verdict(
            p.label, p.p_abnormal, p.p_malignant, self.thresholds, subject="exam"
        )

    def breast_explanation(self, laterality: str) -> Explanation:
        """The rule behind one breast's verdict."""
        b = self.prediction.breasts[laterality]
        return explain_verdict(
            b.label, b.p_abnormal, b.p_malignant, self.thresholds, subject="breast"
        )

    @property
    def thresholds(self) -> Any:
        return self.views[0].analysis.prediction.thresholds


def exam_key(slotted: Sequence[tuple[str | None, str]]) -> str:
    """Key of an exam input set: ``[(slot, input sha256)]`` in any order."""
    digest = hashlib.sha256()
    for slot, key in sorted(slotted, key=lambda sk: (sk[0] or "", sk[1])):
        digest.update(f"{slot}:{key};".encode())
    return digest.hexdigest()


def assemble_exam(
    views: Sequence[tuple[str | None, Analysis]],
    thresholds: Any,
    *,
    seconds: float = 0.0,
) -> ExamAnalysis:
    """Put analysed images into one exam by :func:`place_view` and combine their verdicts.

    Args:
        views: ``(slot or None, analysis)`` per image.
        thresholds: the verdict thresholds (the cascade's).
        seconds: time the analyses took (for display).

    Returns:
        :class:`ExamAnalysis` with the warnings a reader must see.

    Raises:
        ValueError: no views.
    """
    from hdcnn.cascade import combine_exam

    if not views:
        raise ValueError("an exam needs at least one image")
    placed: list[ExamView] = []
    warnings: list[str] = []
    for slot, analysis in views:
        meta = analysis.mammogram.meta
        p = place_view(slot, getattr(meta, "laterality", None), getattr(meta, "view", None))
        if p.warning:
            warnings.append(f"{analysis.name}: {p.warning}")
        if p.laterality is None:
            warnings.append(
                f"{analysis.name}: neither its header nor a slot says which breast it shows; "
                "it is counted as a breast of unknown side."
            )
        placed.append(ExamView(p, analysis))
    seen: dict[str, list[str]] = {}
    for v in placed:
        if v.key:
            seen.setdefault(v.key, []).append(v.analysis.name)
    for key, names in seen.items():
        if len(names) > 1:
            warnings.append(
                f"{len(names)} images are {VIEW_TITLES[key]} views ({', '.join(names)}): all "
                "count towards that breast's verdict; the grid shows the first."
            )
    by_study: dict[Any, list[tuple[str | None, str | None, ExamView]]] = {}
    for v in placed:
        study = getattr(v.analysis.mammogram.meta, "study_key", None)
        by_study.setdefault(study, []).append((v.placement.laterality, v.placement.view, v))
    exams = group_exams(by_study)
    from hdcnn.identity import identity_check

    refusal, identity_warnings = identity_check(
        [(v.analysis.name, v.analysis.mammogram.meta) for v in placed]
    )
    warnings += identity_warnings
    if len(exams) > 1 and refusal is None:
        warnings.append(
            f"These images come from {len(exams)} different studies: they may not be one exam."
        )
    items = [(v.placement.laterality, v.placement.view, v.analysis.prediction) for v in placed]
    study_keys = {k for k in exams if k is not None}
    prediction = combine_exam(
        items, thresholds, key=next(iter(study_keys)) if len(study_keys) == 1 else None
    )
    key = exam_key([(slot, a.key) for slot, a in views])
    return ExamAnalysis(key, prediction, placed, warnings, seconds, refusal)


def analyse_exam(
    inputs: Mapping[str, tuple[bytes, str]],
    cascade: Cascade,
    *,
    domain: TrainingDomain = MIAS_DOMAIN,
    progress: Callable[[int, int, str], None] | None = None,
) -> ExamAnalysis:
    """Analyse up to four views held in memory, one after the other.

    Args:
        inputs: ``{slot ("rcc" | "lcc" | "rmlo" | "lmlo"): (file bytes, display name)}``.
        cascade: a loaded cascade.
        domain: training domain for the out-of-domain check.
        progress: called as ``progress(done, total, name)`` before each view and at the end.

    Raises:
        MammogramError: a view is not a usable mammogram (the message names its file).
    """
    start = time.perf_counter()
    views = []
    ordered = sorted(inputs, key=lambda k: VIEW_KEYS.index(k) if k in VIEW_KEYS else 99)
    for done, slot in enumerate(ordered):
        data, name = inputs[slot]
        if progress is not None:
            progress(done, len(ordered), name)
        views.append((slot, analyse_bytes(data, name, cascade, domain=domain)))
    if progress is not None:
        progress(len(ordered), len(ordered), "")
    return assemble_exam(views, cascade.thresholds, seconds=time.perf_counter() - start)
