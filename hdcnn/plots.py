"""ROC and FROC figures of an evaluation document (``python -m hdcnn evaluate --json``).

PNG files via matplotlib (Agg backend, no display needed) for the CLI, and plotly figures
drawn from the same curve points for the app.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hdcnn.utils import atomic_path

TASK_TITLES = {"abnormal": "abnormal vs normal", "malignant": "malignant vs rest"}


def _roc_series(doc: dict[str, Any], task: str) -> list[tuple[str, list[float], list[float]]]:
    series = []
    for concept, m in doc["concepts"].items():
        curve = (m.get("roc") or {}).get(task)
        if curve:
            label = f"{concept} (AUC {m[f'auc_{task}']:.3f})"
            series.append((label, curve["fpr"], curve["tpr"]))
    return series


def _froc_series(doc: dict[str, Any]) -> list[tuple[str, list[float], list[float]]]:
    series = []
    for concept, m in doc["concepts"].items():
        curve = m.get("froc_curve")
        if curve:
            series.append((concept, curve["fps_per_image"], curve["sensitivity"]))
    return series


def save_plots(doc: dict[str, Any], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``roc_abnormal.png``, ``roc_malignant.png`` and ``froc.png`` (where defined).

    Args:
        doc: evaluation document with per-concept ``roc`` / ``froc_curve`` points.
        out_dir: folder to write into (created).

    Returns:
        The files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    written: list[Path] = []
    title_suffix = f"{doc.get('dataset', '')} {doc.get('split', '')}".strip()
    for task, title in TASK_TITLES.items():
        series = _roc_series(doc, task)
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
        for label, x, y in series:
            ax.step(x, y, where="post", label=label)
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
        ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.02))
        ax.set_title(f"ROC {title} ({title_suffix})", fontsize=9)
        ax.legend(loc="lower right", fontsize=8)
        path = out / f"roc_{task}.png"
        written.append(_save(fig, path))
        plt.close(fig)
    series = _froc_series(doc)
    if series:
        fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
        for label, x, y in series:
            ax.step(x, y, where="post", label=label)
        for rate in (0.5, 1, 2):
            ax.axvline(rate, ls=":", color="grey", lw=1)
        ax.set(xlabel="false positives per image", ylabel="lesion sensitivity", ylim=(0, 1.02))
        ax.set_title(f"FROC ({doc.get('froc_hit', '')}, {title_suffix})", fontsize=9)
        ax.legend(loc="lower right", fontsize=8)
        written.append(_save(fig, out / "froc.png"))
        plt.close(fig)
    return written


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return path


def roc_figure(doc: dict[str, Any], task: str = "abnormal") -> Any:
    """plotly Figure of the ROC curves of every concept for ``task`` (abnormal|malignant)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, x, y in _roc_series(doc, task):
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line_shape="hv", name=label))
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot"}, showlegend=False)
    )
    fig.update_layout(
        title=f"ROC {TASK_TITLES.get(task, task)}",
        xaxis_title="1 - specificity",
        yaxis_title="sensitivity",
    )
    return fig


def froc_figure(doc: dict[str, Any]) -> Any:
    """plotly Figure of the FROC curves of the detector concepts."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, x, y in _froc_series(doc):
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line_shape="hv", name=label))
    fig.update_layout(
        title=f"FROC ({doc.get('froc_hit', '')})",
        xaxis_title="false positives per image",
        yaxis_title="lesion sensitivity",
    )
    return fig
