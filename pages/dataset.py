"""Dataset explorer (placeholder until hdcnn.data.stats lands)."""

from __future__ import annotations

import streamlit as st

import appkit

appkit.sidebar()
st.title("Dataset explorer")
