"""Cascade: one image step by step — preprocessing, detector, Classifier 1, Classifier 2,
Grad-CAM and the time of each stage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import appkit
from hdcnn.report import COLOURS, finding_dicts, render_overlay

appkit.sidebar()
st.title("The cascade, step by step")
cascade = appkit.get_cascade()
if cascade is None:
    st.stop()

left, right = st.columns([3, 2])
with left:
    upload = st.file_uploader("Mammogram file", type=appkit.UPLOAD_TYPES, key="cascade_upload")
with right:
    sample = appkit.sample_picker(key="cascade_sample")

analysis = None
if upload is not None:
    analysis = appkit.analysis_for_upload(upload, cascade, slot="cascade_analysis")
elif sample is not None:
    analysis = appkit.analysis_for_sample(sample, cascade, slot="cascade_analysis")
else:
    analysis = st.session_state.get("last_analysis")
    if analysis is not None:
        st.caption(f"Showing the last analysed image: {analysis.name}")
if analysis is None:
    st.info("Upload an image or pick a sample (or analyse one on the Diagnose page).")
    st.stop()

pred = analysis.prediction
trace = pred.trace
prep = trace.preprocessed
geo = prep.geometry
t = pred.thresholds

# -- 1. preprocessing ------------------------------------------------------------------------
st.header("1 · Preprocessing")
x0, y0, x1, y1 = geo.crop
crop_box = {"box": [x0, y0, x1, y1], "label": "lesion", "text": "breast crop"}
c1, c2, c3 = st.columns(3)
c1.image(
    render_overlay(analysis.mammogram.pixels, [crop_box], max_side=512),
    caption=f"Original {geo.original_size[1]}×{geo.original_size[0]} px, blue: breast crop",
    width="stretch",
)
c2.image(
    prep.mask.astype(np.uint8) * 255,
    caption="Breast mask (segmentation, model image)",
    width="stretch",
)
c3.image(
    np.clip(prep.image * 255, 0, 255).astype(np.uint8),
    caption=f"Model image {geo.output_size[1]}×{geo.output_size[0]} px, chest wall left"
    + (" (mirrored)" if geo.flipped else ""),
    width="stretch",
)

# -- 2. detector -----------------------------------------------------------------------------
st.header("2 · Detector candidates")
threshold = st.slider(
    "Detector score threshold",
    min_value=0.0,
    max_value=1.0,
    value=float(t.detector_score),
    step=0.01,
    key="cascade_det_threshold",
)
if threshold != t.detector_score:
    analysis = appkit.redecide(analysis, cascade, detector_score=threshold)
    pred = analysis.prediction
all_scores = trace.candidates.scores
st.write(
    f"{len(all_scores)} detector boxes in total; {int((all_scores >= threshold).sum())} with "
    f"score ≥ {threshold:.2f}; at most {cascade.max_candidates} are classified."
)
model_findings = [
    {**f, "box": list(mf.model_box)}
    for f, mf in zip(finding_dicts(pred), pred.findings, strict=True)
]
st.image(
    render_overlay(prep.image, [{**f, "label": "lesion"} for f in model_findings], max_side=640),
    caption="Candidates on the model image (before the classifiers)",
    width=420,
)

# -- 3./4. classifiers -----------------------------------------------------------------------
st.header("3 · Classifier 1: lesion or normal tissue?")
st.caption(f"Kept when P(lesion) ≥ {pred.thresholds.c1_lesion:.2f}.")
rows = []
for i, f in enumerate(pred.findings, start=1):
    rows.append(
        {
            "#": i,
            "detector score": round(f.detector_score, 3),
            "P(lesion)": round(f.p_lesion, 3),
            "Classifier 1": "accept" if f.kept else "reject",
        }
    )
if rows:
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="cascade_c1_table")
    crops = [trace.crops[f.index] for f in pred.findings]
    st.image(
        [np.clip(c * 255, 0, 255).astype(np.uint8) for c in crops],
        caption=[
            f"#{i} {'accept' if f.kept else 'reject'}" for i, f in enumerate(pred.findings, start=1)
        ],
        width=96,
    )
else:
    st.write("No candidates at this threshold.")

st.header("4 · Classifier 2: benign or malignant?")
kept = [(i, f) for i, f in enumerate(pred.findings, start=1) if f.kept]
st.caption(
    f"For kept findings; malignant when P(lesion)·P(malignant | lesion) ≥ "
    f"{pred.thresholds.malignant:.2f}."
)
if kept:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "#": i,
                    "P(malignant | lesion)": round(
                        float(trace.p_malignant_given_lesion[f.index]), 3
                    ),
                    "P(malignant)": round(float(f.p_malignant or 0.0), 3),
                    "Classifier 2": f.label,
                }
                for i, f in kept
            ]
        ),
        hide_index=True,
        key="cascade_c2_table",
    )
else:
    st.write("No finding was kept by Classifier 1.")
appkit.verdict_heading("Verdict", pred.label)
st.write(f"P(abnormal) {pred.p_abnormal:.3f}, P(malignant) {pred.p_malignant:.3f}")

# -- 5. Grad-CAM ------------------------------------------------------------------------------
st.header("5 · Grad-CAM")
if kept:
    stage = st.radio(
        "Explain",
        ["c2", "c1"],
        key="cascade_cam_stage",
        horizontal=True,
        format_func=lambda s: {"c1": "Classifier 1 (lesion)", "c2": "Classifier 2 (malignant)"}[s],
    )
    cams = appkit.finding_cams_cached(cascade, analysis, pred, stage)
    if cams:
        heat = np.max(np.stack([c.image_cam for c in cams]), axis=0)
        fig = go.Figure(go.Heatmap(z=prep.image, colorscale="gray", showscale=False))
        fig.add_trace(
            go.Heatmap(
                z=np.where(heat > 0.05, heat, np.nan),
                colorscale="Jet",
                opacity=0.45,
                zmin=0,
                zmax=1,
                colorbar={"title": "CAM"},
            )
        )
        fig.update_yaxes(autorange="reversed", scaleanchor="x", visible=False)
        fig.update_xaxes(visible=False)
        fig.update_layout(height=480, margin={"l": 0, "r": 0, "t": 10, "b": 0})
        st.plotly_chart(fig, key="cascade_cam_plot")
        st.image(
            [np.clip(c.crop_cam * 255, 0, 255).astype(np.uint8) for c in cams],
            caption=[f"finding index {c.index}" for c in cams],
            width=96,
        )
else:
    st.write("Grad-CAM explains kept findings; there are none at these thresholds.")

# -- 6. timing --------------------------------------------------------------------------------
st.header("6 · Time per stage")
stages = {k: v for k, v in pred.timing_ms.items() if k != "total"}
fig = go.Figure(
    go.Bar(x=list(stages), y=list(stages.values()), marker_color=f"rgb{COLOURS['lesion']}")
)
fig.update_layout(yaxis_title="ms", height=280, margin={"t": 10})
st.plotly_chart(fig, key="cascade_timing_plot")
st.caption(f"Total {pred.timing_ms.get('total', 0):.0f} ms on this server.")
