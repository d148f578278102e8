"""HD-CNN Mammo web app: ``streamlit run app.py``.

Research demo, not a medical device. The pages in ``pages/`` are thin clients of :mod:`hdcnn`;
shared helpers live in ``appkit.py``.
"""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="HD-CNN Mammo", page_icon=":material/radiology:", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/diagnose.py", title="Diagnose", icon=":material/search:"),
    st.Page("pages/cascade.py", title="Cascade", icon=":material/account_tree:"),
    st.Page("pages/exam.py", title="Exam", icon=":material/grid_view:"),
    st.Page("pages/dataset.py", title="Dataset explorer", icon=":material/bar_chart:"),
    st.Page("pages/experiments.py", title="Experiments", icon=":material/science:"),
]

# Each page draws the shared sidebar (disclaimer) itself via appkit.sidebar().
st.navigation(PAGES).run()
