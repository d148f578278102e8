"""Streamlit glue for the files the app reads: the weights directory, the sample gallery,
the experiment results and the datasets of the explorer (found, cached, turned into widgets).

Part of :mod:`appkit` (which re-exports the names pages use); never imports it. Kept outside
``pages/`` so Streamlit never mistakes it for a page.

Environment:
    HDCNN_WEIGHTS: weights directory of the cascade (default ``models/`` next to this file).
    HDCNN_EXPERIMENTS: experiment results JSON (default ``<weights dir>/experiments.json``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from hdcnn.errors import HDCNNError
from hdcnn.utils import DEFAULT_WEIGHTS_DIR

WEIGHTS_ENV = "HDCNN_WEIGHTS"
EXPERIMENTS_ENV = "HDCNN_EXPERIMENTS"


def weights_dir() -> Path:
    """The weights directory: ``$HDCNN_WEIGHTS`` or ``models/``."""
    return Path(os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS_DIR)


# ----------------------------------------------------------------------------- samples


@st.cache_resource(show_spinner="Preparing sample images …")
def samples() -> list[Any]:
    """The sample gallery (real CBIS-DDSM views, then SYNTHETIC ones), built once."""
    from hdcnn.samples import list_samples

    return list_samples()


def sample_picker(*, key: str, exams_only: bool = False) -> Any | None:
    """A selectbox of samples (or of sample exams); returns the choice or None.

    Args:
        key: widget key.
        exams_only: offer whole exams (returns ``{view_key: Sample}``) instead of single views.
    """
    from hdcnn.samples import exam_title, exams

    gallery = samples()
    if not gallery:
        st.caption("No sample images available.")
        return None
    if exams_only:
        grouped = exams(gallery)
        options = ["—", *grouped]
        labels = {k: exam_title(v) for k, v in grouped.items()}
        choice = st.selectbox(
            "…or pick a sample exam",
            options,
            key=key,
            format_func=lambda k: labels.get(k, "— none —"),
        )
        return None if choice == "—" else grouped[choice]
    by_key = {s.key: s for s in gallery}
    choice = st.selectbox(
        "…or pick a sample",
        ["—", *by_key],
        key=key,
        format_func=lambda k: by_key[k].title if k in by_key else "— none —",
    )
    return by_key.get(choice)


# ----------------------------------------------------------------------------- experiments

#: Widths (px) of the Experiments table's columns (all key figures; they fit at 1024 px).
EXPERIMENT_WIDTHS: dict[str, int] = {
    "concept": 80,
    "AUC abnormal [95% CI]": 120,
    "AUC malignant [95% CI]": 120,
    "macro F1": 60,
    "specificity": 74,
    "FROC @0.5/1/2 FP": 96,
}


def experiment_columns() -> dict[str, Any]:
    """``column_config`` of the Experiments table (short labels, fixed widths)."""
    labels = {
        "AUC abnormal [95% CI]": "AUC abnormal",
        "AUC malignant [95% CI]": "AUC malignant",
        "FROC @0.5/1/2 FP": "FROC 0.5/1/2",
    }
    return {
        name: st.column_config.TextColumn(labels.get(name, name), width=width)
        for name, width in EXPERIMENT_WIDTHS.items()
    }


def experiments_path() -> Path:
    """``$HDCNN_EXPERIMENTS`` or ``experiments.json`` in the weights directory."""
    env = os.environ.get(EXPERIMENTS_ENV)
    return Path(env) if env else weights_dir() / "experiments.json"


@st.cache_data(show_spinner=False, max_entries=4)
def load_experiments(path: str, stamp: float) -> dict[str, Any]:
    """The experiment results JSON (cached per file time)."""
    del stamp
    return json.loads(Path(path).read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- datasets

DEMO_DATASET = "demo (SYNTHETIC)"
DEMO_PATIENTS = 40
DEMO_SIZE = 256
THUMB_LIMIT = 60


def demo_root() -> Path:
    """Folder of the built-in demo cohort (generated on first use)."""
    from hdcnn.samples import default_synthetic_dir

    return default_synthetic_dir() / f"demo-n{DEMO_PATIENTS}-s{DEMO_SIZE}"


def ensure_demo_cohort() -> Path:
    """Generate the SYNTHETIC demo cohort once (with a progress bar); returns its folder."""
    root = demo_root()
    if not (root / "manifest.csv").is_file():
        from hdcnn.data.synth import write_cohort

        bar = st.progress(0.0, text="Generating the SYNTHETIC demo cohort …")
        write_cohort(
            root,
            patients=DEMO_PATIENTS,
            seed=0,
            size=DEMO_SIZE,
            progress=lambda done, total: bar.progress(done / total, text=f"patient {done}/{total}"),
        )
        bar.empty()
    return root


@st.cache_resource(show_spinner=False, max_entries=4)
def _manifest(name: str, root: str, stamp: float) -> Any:
    from hdcnn.data.adapters import load_dataset

    del stamp
    return load_dataset(name, root)


def load_manifest(name: str, root: str) -> Any | None:
    """The dataset's manifest via :func:`hdcnn.data.adapters.load_dataset` (cached per root and
    modification time), scanned under a status box; errors become a message."""
    try:
        stamp = Path(root).expanduser().stat().st_mtime
    except OSError:
        stamp = 0.0
    with st.status(f"Scanning {name} at {root} …", expanded=False) as status:
        try:
            manifest = _manifest(name, root, stamp)
        except HDCNNError as exc:
            # the box must not go on saying "Scanning …" once the scan has failed
            status.update(label=f"{name}: not loaded", state="error")
            st.error(f"Cannot load this dataset. {exc}", icon=":material/block:")
            return None
        status.update(label=f"{name}: {len(manifest)} images", state="complete")
    return manifest


@st.cache_data(show_spinner=False, max_entries=2000)
def thumbnail_uri(path: str, side: int = 72) -> str | None:
    """A small PNG data URI of an image file (None when it cannot be read)."""
    import base64

    import cv2

    from hdcnn.reader import read_mammogram

    try:
        pixels = read_mammogram(path).pixels
    except (HDCNNError, OSError):
        return None
    h, w = pixels.shape
    scale = side / max(h, w)
    small = cv2.resize(
        (pixels * 255).astype(np.uint8),
        (max(1, round(w * scale)), max(1, round(h * scale))),
        interpolation=cv2.INTER_AREA,
    )
    ok, buf = cv2.imencode(".png", small)
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode() if ok else None
