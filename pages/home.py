"""Home: what the system does, the cascade as a diagram, links to the pages."""

from __future__ import annotations

import streamlit as st

import appkit
from hdcnn.report import DISCLAIMER

appkit.sidebar()
st.title("HD-CNN Mammo")
st.markdown(
    "Hierarchical deep CNNs for finding and grading lesions in mammograms. A **Faster R-CNN** "
    "detector proposes candidate regions; **Classifier 1** separates lesions from normal "
    "tissue and **Classifier 2** grades each kept lesion as benign or malignant. The image "
    "verdict (normal / benign / malignant) follows from the most suspicious finding; an exam's "
    "verdict from its worse breast."
)
st.warning(DISCLAIMER, icon=":material/warning:")

st.subheader("The cascade")
st.graphviz_chart(
    """
digraph cascade {
  rankdir=LR;
  node [shape=box, style="rounded,filled", fillcolor="#f3f0f4", fontname="Helvetica"];
  img [label="Mammogram\\n(DICOM, PNG, JPEG, PGM, TIFF)"];
  pre [label="Preprocessing\\nbreast mask, crop,\\nchest wall left, resize"];
  det [label="Detector\\nFaster R-CNN\\ncandidate boxes"];
  c1 [label="Classifier 1\\nlesion vs normal tissue"];
  c2 [label="Classifier 2\\nbenign vs malignant"];
  rej [label="rejected\\n(normal tissue)", fillcolor="#e6e6e6"];
  ben [label="benign finding", fillcolor="#fde5c2"];
  mal [label="malignant finding", fillcolor="#f6c4c4"];
  ver [label="Verdict\\nimage -> breast -> exam", fillcolor="#dfe9f7"];
  img -> pre -> det -> c1;
  c1 -> rej [label="P(lesion) < t"];
  c1 -> c2 [label="kept"];
  c2 -> ben; c2 -> mal;
  ben -> ver; mal -> ver; rej -> ver [style=dashed];
}
""",
    width="stretch",
)

st.subheader("Pages")
st.page_link(
    "pages/diagnose.py", label="Diagnose — one image, verdict and report", icon=":material/search:"
)
st.page_link(
    "pages/cascade.py",
    label="Cascade — the same image step by step",
    icon=":material/account_tree:",
)
st.page_link(
    "pages/exam.py", label="Exam — four views, per-breast verdicts", icon=":material/grid_view:"
)
st.page_link(
    "pages/dataset.py", label="Dataset explorer — cohort statistics", icon=":material/bar_chart:"
)
st.page_link(
    "pages/experiments.py",
    label="Experiments — the four concepts compared",
    icon=":material/science:",
)
