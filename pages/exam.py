"""Exam: four views -> per-breast and exam verdicts in the R/L x CC/MLO reading grid."""

from __future__ import annotations

import streamlit as st

import appkit
from hdcnn.analysis import EXAM_DISPLAY_SIDE, VIEW_KEYS, VIEW_TITLES
from hdcnn.calibration import borderline_text, calibrated_text
from hdcnn.domain import exam_notice

appkit.sidebar()
st.title("Exam: four views")
st.caption(
    "Upload up to four views (right/left × CC/MLO) or pick a sample exam. Each image is placed "
    "by the laterality and view in its own header; the slot is used only when the header does "
    "not say. Each breast's probabilities are the maximum over its views; the exam takes the "
    "worse breast."
)
cascade = appkit.get_cascade()
if cascade is None:
    st.stop()

# Reading-room layout: the right breast on the viewer's left.
GRID = (("rcc", "lcc"), ("rmlo", "lmlo"))

uploads = {}
cols = st.columns(4)
for col, view_key in zip(cols, VIEW_KEYS, strict=True):
    with col:
        uploads[view_key] = appkit.uploader(VIEW_TITLES[view_key], key=f"exam_upload_{view_key}")
sample_exam = appkit.sample_picker(key="exam_sample", exams_only=True)

inputs = {k: (u.getvalue, u.name) for k, u in uploads.items() if u is not None}
if not inputs and sample_exam is not None:
    inputs = {k: (s.read_bytes, s.title) for k, s in sample_exam.items()}
if not inputs:
    st.info("Upload at least one view or pick a sample exam.")
    st.stop()

exam = appkit.exam_analysis(inputs, cascade)
if exam is None:
    st.stop()

for warning in exam.warnings:
    st.warning(warning, icon=":material/swap_horiz:")
if exam.refusal:
    st.error(exam.refusal, icon=":material/block:")
    st.stop()
appkit.verdict_heading("Exam verdict", exam.prediction.label)
if exam.prediction.borderline:
    st.warning(
        borderline_text(exam.prediction.borderline, "exam verdict"), icon=":material/balance:"
    )
appkit.explanation(exam.explanation)
notice = exam_notice([v.analysis.domain for v in exam.views])
if notice:
    st.warning(notice, icon=":material/report:")
breast_cols = st.columns(2)
for col, side in zip(breast_cols, ("R", "L"), strict=True):
    breast = exam.prediction.breasts.get(side)
    name = "Right breast" if side == "R" else "Left breast"
    if breast is None:
        col.markdown(f"**{name}**: no view")
    else:
        b = str(breast.label)
        why = exam.breast_explanation(side)
        col.markdown(
            f"**{name}**: :{appkit.VERDICT_COLOURS.get(b, 'gray')}[**{b}**] "
            f"(P(abnormal) {breast.p_abnormal:.3f}, P(malignant) {breast.p_malignant:.3f})"
        )
        col.caption(f"Decided by the {why.threshold_name}: {why.reason}.")
        if breast.borderline:
            col.warning(borderline_text(breast.borderline, "breast verdict"))
        if breast.calibrated:
            col.caption(calibrated_text(breast.calibrated))
if "unknown" in exam.prediction.breasts:
    st.markdown(f"**Breast of unknown side**: {exam.prediction.breasts['unknown'].label}")

grid = exam.grid
for row in GRID:
    cols = st.columns(2)
    for col, view_key in zip(cols, row, strict=True):
        view = grid.get(view_key)
        with col:
            st.markdown(f"**{VIEW_TITLES[view_key]}**")
            if view is None:
                st.caption("not provided")
                continue
            a = view.analysis
            p = a.prediction
            st.image(
                a.overlay_jpeg(max_side=EXAM_DISPLAY_SIDE),
                caption=f"{a.name}: {p.label} — {a.explanation.reason}",
                width="stretch",
            )
for view in exam.extra_views:
    a = view.analysis
    st.markdown(f"**Also given: {view.title}** ({a.name})")
    st.image(
        a.overlay_jpeg(max_side=EXAM_DISPLAY_SIDE),
        caption=f"{a.name}: {a.prediction.label} — {a.explanation.reason}",
        width=360,
    )
st.caption(
    "Box tag = finding number and label (the Diagnose page lists every candidate). "
    f"Analysis time {exam.seconds:.1f} s."
)
appkit.dicom_download(
    [v.analysis for v in exam.views],
    lambda: [p() if callable(p) else p for p, _ in inputs.values()],
    cascade,
    key="exam_dicom",
    exam=exam.prediction,
)
