"""Cascade: one image step by step — preprocessing, detector, Classifier 1, Classifier 2,
the verdict and its rule, Grad-CAM and the time of each stage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import appkit
from hdcnn.analysis import candidate_overlay
from hdcnn.explain import cam_overlay
from hdcnn.findings import SPOT_COLUMNS, spot_table
from hdcnn.reasons import STATUS_TEXT, THRESHOLD_NAMES, candidate_rows
from hdcnn.report import COLOURS, render_overlay
from hdcnn.terms import FindingStatus

#: Width (px) of each Grad-CAM thumbnail.
CAM_THUMB_SIDE = 128

appkit.sidebar()
st.title("The cascade, step by step")
cascade = appkit.get_cascade()
if cascade is None:
    st.stop()

left, right = st.columns([3, 2])
with left:
    upload = appkit.uploader("Mammogram file", key="cascade_upload")
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
appkit.domain_notice(analysis)

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
    value=float(pred.thresholds.detector_score),
    step=0.01,
    key="cascade_det_threshold",
)
if threshold != pred.thresholds.detector_score:
    analysis = appkit.redecide(analysis, cascade, detector_score=threshold)
    pred = analysis.prediction
t = pred.thresholds
all_scores = trace.candidates.scores
st.write(
    f"{len(all_scores)} detector boxes in total; {int((all_scores >= threshold).sum())} with "
    f"score ≥ {threshold:.2f}; at most {cascade.max_candidates} (the highest scores) are "
    "classified."
)
d1, d2 = st.columns([2, 3])
d1.image(
    candidate_overlay(pred),
    caption=f"Candidates (detector score ≥ {threshold:.2f}) on the model image, before the "
    "classifiers. The number on a box is its rank by detector score, the No. of the tables below.",
    width="stretch",
)
rows = [r for r in candidate_rows(pred, max_candidates=cascade.max_candidates) if r.finding]

# -- 3./4. classifiers -----------------------------------------------------------------------
with d2:
    st.header("3 · Classifier 1: lesion or normal tissue?")
    st.caption(
        f"Classifier 1 keeps a candidate when P(lesion) ≥ {t.c1_lesion:.3f} "
        f"({THRESHOLD_NAMES['c1_lesion']}). The image is abnormal only when its highest "
        f"P(lesion) reaches the {THRESHOLD_NAMES['abnormal']} {t.effective_abnormal:.3f}; "
        "below it every candidate is refused, kept by Classifier 1 or not."
    )
    if rows:
        # a static table: its text wraps, so "final status" is never cut off at 1024 px
        st.table(
            pd.DataFrame(
                [
                    {
                        "No.": str(r.number),
                        "detector score": f"{r.detector_score:.3f}",
                        "P(lesion)": f"{r.p_lesion:.3f}",
                        "Classifier 1": "kept" if r.p_lesion >= t.c1_lesion else "refused",
                        "final status": STATUS_TEXT[r.status],
                    }
                    for r in rows
                ]
            ),
            hide_index=True,
        )
    else:
        st.write(f"No candidate at detector score threshold {threshold:.2f}.")
if rows:
    st.image(
        [np.clip(trace.crops[r.index] * 255, 0, 255).astype(np.uint8) for r in rows],
        caption=[
            f"#{r.number} {'kept' if r.p_lesion >= t.c1_lesion else 'refused'} by C1" for r in rows
        ],
        width=96,
    )

if trace.calc is not None:
    spot_rows = spot_table(pred)
    st.header("3b · Calcification stream: speck clusters at full resolution")
    st.caption(
        "Beside the detector, the calcification stream looks for clusters of bright specks on "
        "the original pixels; its own classifier gives each spot P(lesion), and only spots at "
        "or above the calcification stream threshold go on to Classifier 2. Spots are "
        "numbered after the detector's candidates."
    )
    if spot_rows:
        st.table(pd.DataFrame(spot_rows, columns=SPOT_COLUMNS), hide_index=True)
        st.image(
            [np.clip(c * 255, 0, 255).astype(np.uint8) for c in trace.calc.crops],
            caption=[f"#{r['No.']} {r['calcification stream']}" for r in spot_rows],
            width=64,
        )
    else:
        st.write("No speck cluster found in the breast.")

st.header("4 · Classifier 2: benign or malignant?")
kept = [r for r in rows if r.p_lesion >= t.c1_lesion]
st.caption(
    f"For candidates kept by Classifier 1: P(malignant) = P(lesion) · P(malignant | lesion); "
    f"malignant when P(malignant) ≥ {t.malignant:.3f} ({THRESHOLD_NAMES['malignant']}), "
    "on an image that is abnormal."
)
if kept:
    st.table(
        pd.DataFrame(
            [
                {
                    "No.": str(r.number),
                    "P(lesion)": f"{r.p_lesion:.3f}",
                    "P(malignant | lesion)": f"{r.p_malignant_given_lesion:.3f}",
                    "P(malignant)": f"{r.p_lesion * r.p_malignant_given_lesion:.3f}",
                    "status": STATUS_TEXT[r.status],
                    "why": r.reason,
                }
                for r in kept
            ]
        ),
        hide_index=True,
    )
    if any(r.status == FindingStatus.BELOW_IMAGE_THRESHOLD for r in kept):
        st.caption(
            "Refused at image level: Classifier 1 kept it, but the image's "
            f"P(abnormal) {pred.p_abnormal:.3f} is below {t.effective_abnormal:.3f}, so the image "
            "is normal and no finding stands."
        )
else:
    st.write(
        f"No candidate was kept by Classifier 1 (every P(lesion) < {t.c1_lesion:.3f}): "
        "nothing to grade."
    )
appkit.verdict_heading("Verdict", pred.label)
appkit.explanation(analysis.explanation)
st.write(f"P(abnormal) {pred.p_abnormal:.3f}, P(malignant) {pred.p_malignant:.3f}")

# -- 5. Grad-CAM ------------------------------------------------------------------------------
st.header("5 · Grad-CAM")
if pred.kept_findings:
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
            [cam_overlay(c.crop, c.crop_cam, side=CAM_THUMB_SIDE) for c in cams],
            caption=[f"#{c.index + 1}" for c in cams],
            width=CAM_THUMB_SIDE,
        )
        st.caption(
            "Each kept finding's classifier crop with its Grad-CAM map over the tissue "
            "(red: what drove the classifier's output most; no colour: little)."
        )
else:
    st.write(
        "Grad-CAM explains the findings of an abnormal image; this image has none at these "
        "thresholds."
    )

# -- 6. timing --------------------------------------------------------------------------------
st.header("6 · Time per stage")
stages = {k: v for k, v in pred.timing_ms.items() if k != "total"}
fig = go.Figure(
    go.Bar(x=list(stages), y=list(stages.values()), marker_color=f"rgb{COLOURS['lesion']}")
)
fig.update_layout(yaxis_title="ms", height=280, margin={"t": 10})
st.plotly_chart(fig, key="cascade_timing_plot")
st.caption(f"Total {pred.timing_ms.get('total', 0):.0f} ms on this server.")
