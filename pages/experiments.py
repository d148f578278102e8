"""Experiments: the four-concept comparison from ``experiments.json``."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

import appkit
from hdcnn.config import CascadeConfig
from hdcnn.errors import CheckpointError
from hdcnn.evaluation import plots
from hdcnn.terms import CLASSES

appkit.sidebar()
st.title("Experiments: four concepts compared")
path = appkit.experiments_path()
if not path.is_file():
    st.info(
        f"No experiment results found at `{path}` — run `python -m hdcnn evaluate` to write "
        f"them (or point `{appkit.EXPERIMENTS_ENV}` at a results file)."
    )
    st.stop()
try:
    results = appkit.load_experiments(str(path), path.stat().st_mtime)
    concepts = results["concepts"]
    if not isinstance(concepts, dict) or not concepts:
        raise ValueError("no concepts")
except (OSError, ValueError, KeyError, TypeError) as exc:
    st.error(f"{path.name}: not a readable experiment results file ({exc}).")
    st.stop()

st.caption(
    f"Dataset **{results.get('dataset', '?')}**, split **{results.get('split', '?')}**: "
    f"{results.get('n_images', '?')} images, {results.get('n_patients', '?')} patients, "
    f"{results.get('n_lesions', '?')} lesions. Intervals are 95 % bootstrap CIs."
)
st.markdown(plots.experiments_summary(concepts))
st.dataframe(
    plots.experiments_table(concepts),
    hide_index=True,
    key="exp_table",
    column_config=appkit.experiment_columns(),
)
st.caption(
    "AUCs with their 95 % bootstrap intervals; FROC: lesion sensitivity at 0.5, 1 and 2 "
    "false positives per image. These are one run's figures: training the detectors again "
    "(other folds, or the same folds on another thread count) moves the detector-based ones "
    "by a few hundredths (models/MODEL_CARD.md, 'Training noise')."
)
with st.expander("Design of each concept, accuracy and sensitivity to malignant"):
    st.dataframe(plots.experiments_details(concepts), hide_index=True, key="exp_details")

by_type = plots.lesion_types_table(results)
if by_type is not None:
    with st.expander("By lesion type: what det-hier finds, and which images it tells from normal"):
        st.caption(
            "Candidate recall: lesions with a detector candidate among the top ones. FROC: "
            "lesion sensitivity at 0.5, 1 and 2 false positives per image. AUC: P(abnormal) of "
            "the images with a lesion of that type against the normal images (95 % patient "
            "bootstrap interval)."
        )
        st.dataframe(by_type, hide_index=True, key="exp_lesion_types")

ablations = plots.ablations_table(results)
if ablations is not None:
    with st.expander("Ablations: what each part of the det-hier recipe contributes"):
        st.caption(
            f"{results['ablations'].get('protocol', '')}. Δ: the row's AUC minus the "
            "reference row's, on the same images; a difference whose interval holds 0 "
            "is within the noise of this data set."
        )
        st.dataframe(ablations, hide_index=True, key="exp_ablations")
        note = plots.ablation_reference_note(results)
        if note:
            st.caption(note)

roc_col, froc_col = st.columns(2)
with roc_col:
    target = st.radio(
        "ROC of",
        ["abnormal", "malignant"],
        key="exp_roc_target",
        horizontal=True,
        format_func=lambda t: f"{t} vs rest",
    )
    fig = plots.roc_figure(results, target)
    if len(fig.data) > 1:  # more than the chance line
        fig.update_layout(height=460)
        st.plotly_chart(fig, key="exp_roc_plot")
    else:
        st.caption("The results file holds no ROC curve points.")
with froc_col:
    st.markdown("**FROC** (detector concepts)")
    fig = plots.froc_figure(results)
    if fig.data:
        fig.update_layout(height=460)
        st.plotly_chart(fig, key="exp_froc_plot")
        merged = plots.findings_froc_caption(results)
        if merged:
            st.caption(merged)
    else:
        st.caption("The results file holds no FROC curve points.")

st.subheader("Confusion matrices (rows: truth, columns: verdict)")
order = plots.ordered_concepts(results)
names = [str(c) for c in CLASSES]
# two per row: four in a row left each matrix ~130 px wide at 1024 px, too narrow for its
# three columns ("malignant" was cut off)
for start in range(0, len(order), 2):
    cols = st.columns(2)
    for col, name in zip(cols, order[start : start + 2], strict=False):
        matrix = concepts[name].get("confusion")
        with col:
            st.markdown(f"**{name}**")
            if not matrix:
                st.caption("no confusion matrix")
                continue
            fig = go.Figure(
                go.Heatmap(
                    z=matrix,
                    x=names,
                    y=names,
                    colorscale="Blues",
                    showscale=False,
                    text=matrix,
                    texttemplate="%{text}",
                )
            )
            fig.update_yaxes(autorange="reversed", title_text="truth", automargin=True)
            fig.update_xaxes(title_text="verdict", automargin=True, tickangle=0)
            fig.update_layout(height=280, margin={"l": 10, "r": 10, "t": 10, "b": 10})
            st.plotly_chart(fig, key=f"exp_confusion_{name}")

st.subheader("Calibration: do the probabilities mean what they say?")
try:
    calibration = CascadeConfig.load(appkit.weights_dir()).calibration
except CheckpointError:
    calibration = None
if calibration is None or not calibration.report.get("probabilities"):
    st.caption(
        "These weights ship no probability calibration (`python -m hdcnn calibrate` fits one "
        "on a cross-validation run's out-of-fold scores)."
    )
else:
    report = dict(calibration.report)
    st.caption(
        f"Each probability's map (Platt or isotonic, whichever has the lower Brier score) is "
        f"fitted on the {report.get('fitted_on', 'out-of-fold scores')}; the 'after' figures "
        f"are cross-fitted on the {report.get('cross_fitting', 'patient folds')}: each fold is "
        f"calibrated by a map fitted on the others. ECE: {report.get('n_bins')} equal-width "
        "bins, 95 % patient-bootstrap interval (the bootstrap ECE is biased upwards, so the "
        f"interval can sit above the estimate). Reproduce: `{report.get('command')}`. The "
        "verdicts are decided on the raw scores: calibration changes none."
    )
    st.dataframe(plots.calibration_table(report), hide_index=True, key="exp_calibration")
    floor = plots.floor_caption(report)
    if floor:
        st.caption(floor)
    name = st.radio(
        "Reliability diagram of",
        list(report["probabilities"]),
        key="exp_reliability_of",
        horizontal=True,
        format_func=lambda n: plots.PROBABILITY_TITLES.get(n, n),
    )
    fig = plots.reliability_figure(report, name)
    fig.update_layout(height=460)
    st.plotly_chart(fig, key="exp_reliability_plot")
    bl = report.get("borderline") or {}
    if bl.get("error_rate_borderline") is not None and bl.get("error_rate_clear") is not None:
        st.markdown(
            f"**Borderline verdicts.** A verdict is borderline when its deciding score lies "
            f"within the patient-bootstrap interval ({100 * report.get('band_level', 0):.0f} % "
            f"central) of its threshold. Out of fold, {bl['n_borderline']} of "
            f"{bl['n_images']} verdicts were borderline, and they were wrong "
            f"{bl['error_rate_borderline']:.0%} of the time, against "
            f"{bl['error_rate_clear']:.0%} for the clear ones (the bands come from the same "
            "images)."
        )
    cf = report.get("borderline_cross_fitted") or {}
    if cf.get("error_rate_borderline") is not None and cf.get("error_rate_clear") is not None:
        st.caption(
            f"Checked on held-out folds (each fold's thresholds and bands chosen on the other "
            f"folds): {cf['n_borderline']} of {cf['n_images']} verdicts borderline, wrong "
            f"{cf['error_rate_borderline']:.0%} of the time, against "
            f"{cf['error_rate_clear']:.0%} for the clear ones."
        )
