"""Exam: four views -> per-breast and exam verdicts in the R/L x CC/MLO reading grid."""

from __future__ import annotations

import streamlit as st

import appkit

appkit.sidebar()
st.title("Exam: four views")
st.caption(
    "Upload up to four views (right/left × CC/MLO) or pick a sample exam. Each breast's "
    "probabilities are the maximum over its views; the exam takes the worse breast."
)
cascade = appkit.get_cascade()
if cascade is None:
    st.stop()

# Reading-room layout: the right breast on the viewer's left.
GRID = (("rcc", "lcc"), ("rmlo", "lmlo"))
TITLES = {"rcc": "Right CC", "lcc": "Left CC", "rmlo": "Right MLO", "lmlo": "Left MLO"}

uploads = {}
cols = st.columns(4)
for col, view_key in zip(cols, ("rcc", "lcc", "rmlo", "lmlo"), strict=True):
    uploads[view_key] = col.file_uploader(
        TITLES[view_key], type=appkit.UPLOAD_TYPES, key=f"exam_upload_{view_key}"
    )
sample_exam = appkit.sample_picker(key="exam_sample", exams_only=True)

inputs = {k: (u.getvalue(), u.name) for k, u in uploads.items() if u is not None}
if not inputs and sample_exam is not None:
    inputs = {k: (s.read_bytes(), s.title) for k, s in sample_exam.items()}
if not inputs:
    st.info("Upload at least one view or pick a sample exam.")
    st.stop()

exam = appkit.exam_analysis(inputs, cascade)
if exam is None:
    st.stop()

label = str(exam.prediction.label)
appkit.verdict_heading("Exam verdict", label)
st.write(
    f"P(abnormal) {exam.prediction.p_abnormal:.3f}, P(malignant) {exam.prediction.p_malignant:.3f}"
)
breast_cols = st.columns(2)
for col, side in zip(breast_cols, ("R", "L"), strict=True):
    breast = exam.prediction.breasts.get(side)
    name = "Right breast" if side == "R" else "Left breast"
    if breast is None:
        col.markdown(f"**{name}**: no view")
    else:
        b = str(breast.label)
        col.markdown(
            f"**{name}**: :{appkit.VERDICT_COLOURS.get(b, 'gray')}[**{b}**] "
            f"(P(abnormal) {breast.p_abnormal:.3f}, P(malignant) {breast.p_malignant:.3f})"
        )

for row in GRID:
    cols = st.columns(2)
    for col, view_key in zip(cols, row, strict=True):
        view = exam.views.get(view_key)
        with col:
            st.markdown(f"**{TITLES[view_key]}**")
            if view is None:
                st.caption("not provided")
                continue
            v = str(view.prediction.label)
            st.image(
                view.overlay,
                caption=f"{view.name}: {v} (P(abnormal) {view.prediction.p_abnormal:.2f}, "
                f"P(malignant) {view.prediction.p_malignant:.2f})",
                width="stretch",
            )
st.caption(f"Total time {exam.seconds:.1f} s.")
