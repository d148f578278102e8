"""HD-CNN Mammo web app: ``streamlit run app.py``.

Research demo, not a medical device. The pages in ``pages/`` are thin clients of :mod:`hdcnn`;
shared helpers live in ``appkit.py``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

#: The page icon, served by the app itself: a ":material/...:" icon would make the browser
#: fetch it from a font host on the internet (nothing is downloaded; it works offline).
FAVICON = Path(__file__).resolve().parent / "assets" / "favicon.png"

st.set_page_config(page_title="HD-CNN Mammo", page_icon=str(FAVICON), layout="wide")

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
