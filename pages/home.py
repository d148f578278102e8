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
diagram, legend = st.columns([3, 2])
# Top to bottom at its natural size (not squeezed to the page width), so the text stays legible.
diagram.graphviz_chart(
    """
digraph cascade {
  rankdir=TB; nodesep=0.35; ranksep=0.35;
  node [shape=box, style="rounded,filled", fillcolor="#f3f0f4", fontname="Helvetica",
        fontsize=15, margin="0.18,0.08"];
  edge [fontname="Helvetica", fontsize=13];
  img [label="Mammogram\\n(DICOM, PNG, JPEG, PGM, TIFF)"];
  pre [label="Preprocessing: breast mask, crop,\\nchest wall left, resize"];
  det [label="Detector (Faster R-CNN):\\ncandidate boxes"];
  c1 [label="Classifier 1:\\nlesion vs normal tissue"];
  c2 [label="Classifier 2:\\nbenign vs malignant"];
  rej [label="refused\\n(normal tissue)", fillcolor="#e6e6e6"];
  ver [label="Verdict: normal / benign / malignant\\nimage -> breast -> exam", fillcolor="#dfe9f7"];
  img -> pre -> det;
  det -> c1 [label=" score >= detector threshold"];
  c1 -> rej [label=" P(lesion) < C1 threshold"];
  c1 -> c2 [label=" kept"];
  c2 -> ver [label=" P(abnormal) vs abnormal threshold,\\n P(malignant) vs malignant threshold"];
  rej -> ver [style=dashed];
}
""",
    width="content",
)
with legend:
    st.markdown(
        "**How a verdict is made** (every page names the rule and the threshold values):\n\n"
        "1. The detector proposes boxes; those scoring at least the **detector score "
        "threshold** are candidates.\n"
        "2. **Classifier 1** keeps a candidate when its P(lesion) reaches the **Classifier 1 "
        "threshold**.\n"
        "3. The image is **abnormal** when its highest P(lesion) reaches the **image-level "
        "abnormal threshold**; otherwise it is normal and every candidate is refused.\n"
        "4. An abnormal image is **malignant** when P(lesion) · P(malignant | lesion) of a "
        "kept finding reaches the **malignant threshold**, else benign.\n\n"
        "The models were trained on digitised film of one database (mini-MIAS); results on "
        "images unlike it carry a notice."
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
