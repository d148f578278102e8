"""De-identified diagnosis report: JSON and PDF, plus the overlay image they share with the app.

A report holds the verdict, probabilities, findings, timings, model identity (name, sha256)
and a few technical image facts (format, size, view, laterality). It never holds patient
names, ids, dates of birth, accession numbers, file names or any other DICOM header text:
only fields listed in :data:`IMAGE_FIELDS` are copied from the image metadata, and the
study key there is already a one-way hash.

Library code: no streamlit import.
"""

from __future__ import annotations

import datetime as _dt
import enum
import io
import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from hdcnn import __version__
from hdcnn.findings import merge_overlapping
from hdcnn.overlay import (  # noqa: F401  (re-exported: the report's overlay)
    COLOURS,
    QUIET_LABELS,
    display_image,
    draw_findings,
    render_overlay,
)

log = logging.getLogger(__name__)

#: The one-line disclaimer of every CLI command's help and output.
SHORT_DISCLAIMER = "Research demo, not a medical device."
#: The disclaimer of the app and the reports.
DISCLAIMER = (
    f"{SHORT_DISCLAIMER} The output of HD-CNN Mammo is not a diagnosis and must not be used "
    "for clinical decisions."
)

#: Image metadata copied into a report (all other metadata, including the source name, is left out).
IMAGE_FIELDS: tuple[str, ...] = (
    "format",
    "original_size",
    "bit_depth",
    "laterality",
    "view",
    "photometric",
    "pixel_spacing",
    "presentation_intent",
)


def _plain(value: Any) -> Any:
    """JSON-ready copy of ``value`` (enums -> str, numpy -> Python, tuples -> lists)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    return value


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def finding_dicts(prediction: Any) -> list[dict[str, Any]]:
    """The findings of a prediction as plain dicts.

    Args:
        prediction: a :class:`hdcnn.cascade.Prediction` or a dict with a ``findings`` list;
            each finding has ``box`` ``[x1, y1, x2, y2]`` in original pixels, ``label``
            and optionally ``detector_score``, ``p_lesion``, ``p_malignant``.

    Returns:
        ``[{"number": int, "stream": str, "box": [x1, y1, x2, y2], "label": str,
        "status": str | None,
        "reason": str | None, "detector_score": float | None, "p_lesion": float | None,
        "p_malignant": float | None, "prominent": bool, "merged": [int], "merged_into":
        int | None}, ...]`` (and ``p_lesion_calibrated`` when the finding has one). ``number``
        is the finding's
        number on the boxes and in every table (its rank by detector score); ``status`` names
        the stage that kept or refused it (:class:`hdcnn.cascade.FindingStatus`) and
        ``reason`` the rule with the threshold in force (:func:`hdcnn.reasons.finding_reason`),
        when known;
        ``prominent`` whether the verdict rests on it (:func:`hdcnn.reasons.supports_verdict`;
        for plain dicts: not ``rejected``). Overlapping kept findings are one finding
        (:func:`hdcnn.findings.overlap_groups`): the group's most suspicious member lists the
        numbers of the others in ``merged`` (and stands for the group's support of the
        verdict); each other member names it in ``merged_into`` and is not prominent.
    """
    thresholds = _get(prediction, "thresholds", None)
    out = []
    for row, finding in enumerate(_get(prediction, "findings", None) or []):
        box = np.asarray(_get(finding, "box"), dtype=float).reshape(4)
        status = _get(finding, "status")
        reason = _get(finding, "reason")
        index = _get(finding, "index")
        number = _get(finding, "number")
        if number is None:
            number = int(index) + 1 if isinstance(index, int) and index >= 0 else row + 1
        label = str(_plain(_get(finding, "label", "lesion")))
        prominent = _get(finding, "prominent")
        if prominent is None:
            prominent = label not in QUIET_LABELS
        if thresholds is not None and not isinstance(finding, Mapping):
            from hdcnn.reasons import finding_reason, finding_status, supports_verdict

            status = finding_status(finding, thresholds)
            reason = finding_reason(finding, thresholds)
            prominent = supports_verdict(finding, thresholds)
        out.append(
            {
                "number": int(number),
                "stream": str(_get(finding, "stream", None) or "mass"),
                "box": [round(float(v), 1) for v in box],
                "label": label,
                "prominent": bool(prominent),
                "status": None if status is None else str(_plain(status)),
                "reason": reason,
                "detector_score": _opt_float(_get(finding, "detector_score"))
                if _get(finding, "stream", None) in (None, "mass")
                else None,
                "p_lesion": _opt_float(_get(finding, "p_lesion")),
                "p_malignant": _opt_float(_get(finding, "p_malignant")),
                "merged": [],
                "merged_into": None,
            }
        )
        calibrated = _get(finding, "p_lesion_calibrated")
        if calibrated is not None:
            out[-1]["p_lesion_calibrated"] = _opt_float(calibrated)
    merge_overlapping(out)
    return out


def _opt_float(value: Any) -> float | None:
    return None if value is None else round(float(value), 6)


def build_report(
    prediction: Any,
    meta: Any = None,
    *,
    model: Mapping[str, Any] | None = None,
    created: _dt.datetime | None = None,
    domain: Any = None,
) -> dict[str, Any]:
    """A JSON-ready, de-identified report.

    Args:
        prediction: a :class:`hdcnn.cascade.Prediction` (or a dict with the same fields:
            ``label``, ``p_abnormal``, ``p_malignant``, ``findings``, ``timing_ms``).
        meta: the image's :class:`hdcnn.reader.MammogramMeta` (or a dict); only
            :data:`IMAGE_FIELDS` are copied.
        model: model identity, e.g. ``{"name": ..., "sha256": ..., "files": {...}}``; copied as is.
        created: report time (default: now, UTC).
        domain: an :class:`hdcnn.domain.DomainCheck` of the image, reported as ``"domain"``
            (``in_domain``, ``differences``, ``training_domain``, ``notice``).

    Returns:
        ``{"report": "hdcnn-mammo", "software_version", "created", "disclaimer", "image",
        "model", "verdict": {"label", "p_abnormal", "p_malignant"}, "findings", "timing_ms"}``;
        for a :class:`hdcnn.cascade.Prediction` the verdict also holds ``decided_by``,
        ``rule``, ``threshold``, ``reason`` and ``thresholds`` (:func:`hdcnn.reasons.explain`).
        With a shipped calibration the verdict also holds ``calibrated`` (``{"p_abnormal",
        "p_malignant"}``) and ``borderline`` (the near-call decisions, :mod:`hdcnn.calibration`).
    """
    created = created or _dt.datetime.now(_dt.timezone.utc)
    image = {}
    if meta is not None:
        for name in IMAGE_FIELDS:
            image[name] = _plain(_get(meta, name))
    timing = _get(prediction, "timing_ms", None) or {}
    if not isinstance(timing, Mapping):
        timing = {"total": timing}
    verdict: dict[str, Any] = {
        "label": str(_plain(_get(prediction, "label"))),
        "p_abnormal": _opt_float(_get(prediction, "p_abnormal")),
        "p_malignant": _opt_float(_get(prediction, "p_malignant")),
    }
    if _get(prediction, "calibrated") is not None:
        verdict["calibrated"] = _plain(dict(_get(prediction, "calibrated")))
        verdict["borderline"] = [str(d) for d in _get(prediction, "borderline", ())]
    if not isinstance(prediction, Mapping) and _get(prediction, "thresholds") is not None:
        from hdcnn.reasons import explain

        why = explain(prediction).to_dict()
        verdict.update(
            {k: why[k] for k in ("decided_by", "rule", "threshold", "reason", "thresholds")}
        )
    extra: dict[str, Any] = {}
    if domain is not None:
        extra["domain"] = {**domain.to_dict(), "notice": domain.notice}
    return {
        "report": "hdcnn-mammo",
        "software_version": __version__,
        "created": created.isoformat(timespec="seconds"),
        "disclaimer": DISCLAIMER,
        "image": image,
        "model": _plain(dict(model or {})),
        "verdict": verdict,
        "findings": finding_dicts(prediction),
        "timing_ms": {str(k): round(float(v), 1) for k, v in timing.items()},
        **extra,
    }


def report_json(report: Mapping[str, Any]) -> bytes:
    """The report as indented UTF-8 JSON bytes."""
    return json.dumps(_plain(dict(report)), indent=2, ensure_ascii=False).encode("utf-8")


_LATIN1_SPELLING = {"≥": ">=", "≤": "<=", "—": "-", "–": "-", "→": "->", "…": "..."}


def _latin1(text: object) -> str:
    """Core PDF fonts are Latin-1 only (comparison signs spelled out, the rest replaced)."""
    text = str(text)
    for char, spelled in _LATIN1_SPELLING.items():
        text = text.replace(char, spelled)
    return text.encode("latin-1", "replace").decode("latin-1")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def report_pdf(
    report: Mapping[str, Any], overlay: np.ndarray | None = None, *, compress: bool = True
) -> bytes:
    """The report as a one-to-two-page A4 PDF.

    Args:
        report: from :func:`build_report`.
        overlay: uint8 RGB ``(h, w, 3)`` image with findings drawn (:func:`render_overlay`);
            left out when None.
        compress: compress page streams (False makes the text greppable, for tests).

    Returns:
        The PDF file's bytes. Its metadata carries no author or subject, only a title.
    """
    from fpdf import FPDF
    from PIL import Image

    pdf = FPDF(format="A4", unit="mm")
    pdf.set_compression(compress)
    pdf.set_title("HD-CNN Mammo report")
    pdf.set_creator(f"hdcnn-mammo {report.get('software_version', __version__)}")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    width = pdf.epw

    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(width, 9, "HD-CNN Mammo - analysis report", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "B", 9)
    pdf.set_text_color(170, 30, 30)
    pdf.multi_cell(width, 4.5, _latin1(report.get("disclaimer", DISCLAIMER)))
    pdf.set_text_color(0, 0, 0)
    pdf.ln(2)

    verdict = report.get("verdict", {})
    pdf.set_font("Helvetica", "B", 13)
    pdf.cell(
        width,
        8,
        _latin1(f"Verdict: {str(verdict.get('label', '-')).upper()}"),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    pdf.set_font("Helvetica", "", 10)
    pdf.cell(
        width,
        6,
        _latin1(
            f"P(abnormal) = {_fmt(verdict.get('p_abnormal'))}    "
            f"P(malignant) = {_fmt(verdict.get('p_malignant'))}"
        ),
        new_x="LMARGIN",
        new_y="NEXT",
    )

    def note(text: str, style: str = "", size: float = 9, height: float = 4.5) -> None:
        pdf.set_font("Helvetica", style, size)
        pdf.multi_cell(width, height, _latin1(text), new_x="LMARGIN", new_y="NEXT")

    if verdict.get("calibrated"):
        from hdcnn.calibration import borderline_text

        cal = verdict["calibrated"]
        note(
            f"Calibrated: P(abnormal) = {_fmt(cal.get('p_abnormal'))}    "
            f"P(malignant) = {_fmt(cal.get('p_malignant'))} (maps fitted on out-of-fold "
            "scores; the verdict is decided on the scores above)"
        )
        if verdict.get("borderline"):
            note(borderline_text(verdict["borderline"]), "B")
    if verdict.get("reason"):
        note(f"Decided by the {verdict.get('rule')}: {verdict['reason']}.")
    if verdict.get("thresholds"):
        from hdcnn.cascade import Thresholds
        from hdcnn.reasons import thresholds_text

        thresholds = Thresholds.from_dict(verdict["thresholds"])
        note(f"Thresholds in force: {thresholds_text(thresholds)}.", size=8, height=4)
    notice = (report.get("domain") or {}).get("notice")
    if notice:
        pdf.set_text_color(160, 90, 0)
        note(notice, "B")
        pdf.set_text_color(0, 0, 0)

    model = report.get("model", {})
    image = report.get("image", {})
    facts = [
        ("Created (UTC)", report.get("created")),
        ("Software", f"hdcnn-mammo {report.get('software_version')}"),
        ("Model", model.get("name")),
        ("Model sha256", model.get("sha256")),
        ("Image", _image_line(image)),
        ("Time", _timing_line(report.get("timing_ms", {}))),
    ]
    pdf.ln(1)
    for name, value in facts:
        pdf.set_font("Helvetica", "B", 9)
        pdf.cell(32, 5, _latin1(name))
        pdf.set_font("Helvetica", "", 9)
        pdf.multi_cell(width - 32, 5, _latin1(_fmt(value)), new_x="LMARGIN", new_y="NEXT")

    if overlay is not None:
        pil = Image.fromarray(np.asarray(overlay, dtype=np.uint8))
        buf = io.BytesIO()
        pil.save(buf, format="PNG")
        max_h = pdf.eph - (pdf.get_y() - pdf.t_margin) - 2
        h_mm = min(max_h, 150.0)
        w_mm = h_mm * pil.width / pil.height
        if w_mm > width:
            w_mm, h_mm = width, width * pil.height / pil.width
        pdf.ln(2)
        pdf.image(buf, x=pdf.l_margin + (width - w_mm) / 2, w=w_mm, h=h_mm)

    findings = report.get("findings", [])
    pdf.ln(2)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(width, 7, f"Findings ({len(findings)})", new_x="LMARGIN", new_y="NEXT")
    if findings:
        headers = (
            "#",
            "stream",
            "status",
            "box x1,y1,x2,y2 (px)",
            "det. score",
            "P(lesion)",
            "P(malig.)",
        )
        with pdf.table(
            col_widths=(8, 22, 40, 42, 18, 18, 18), text_align="CENTER", first_row_as_headings=True
        ) as table:
            pdf.set_font("Helvetica", "", 8)
            table.row(headers)
            for i, f in enumerate(findings, start=1):
                box = ",".join(f"{v:.0f}" for v in f["box"])
                table.row(
                    (
                        str(f.get("number", i)),
                        str(f.get("stream", "mass")),
                        _latin1(_status_text(f)),
                        box,
                        _fmt(f.get("detector_score")),
                        _fmt(f.get("p_lesion")),
                        _fmt(f.get("p_malignant")),
                    )
                )
    else:
        pdf.set_font("Helvetica", "", 9)
        pdf.cell(width, 5, "No candidate region passed the detector threshold.")
    return bytes(pdf.output())


def _status_text(finding: Mapping[str, Any]) -> str:
    from hdcnn.findings import status_text

    text = status_text({**finding, "prominent": False})
    if finding.get("merged_into") is not None:
        return f"{text}, merged into #{finding['merged_into']}"
    if finding.get("merged"):
        return f"{text} (+{len(finding['merged'])} merged)"
    return text


def _image_line(image: Mapping[str, Any]) -> str:
    parts = []
    if image.get("format"):
        parts.append(str(image["format"]).upper())
    size = image.get("original_size")
    if size:
        parts.append(f"{size[1]} x {size[0]} px")
    if image.get("bit_depth"):
        parts.append(f"{image['bit_depth']} bit")
    side_view = " ".join(str(image[k]) for k in ("laterality", "view") if image.get(k))
    if side_view:
        parts.append(side_view)
    return ", ".join(parts) or "-"


def _timing_line(timing: Mapping[str, Any]) -> str:
    if not timing:
        return "-"
    return ", ".join(f"{k} {float(v):.0f} ms" for k, v in timing.items())
