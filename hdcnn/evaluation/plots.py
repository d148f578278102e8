"""ROC and FROC figures and tables of an evaluation document (``python -m hdcnn evaluate
--json``), and the one palette of every chart.

PNG files via matplotlib (Agg backend, no display needed) for the CLI, and plotly figures
drawn from the same curve points for the app. Every chart, on every page and in every PNG,
uses one order and one colour per label (:data:`LABEL_ORDER`, :data:`LABEL_COLOURS`, the same
colours as the boxes on the images) and per concept (:data:`CONCEPT_ORDER`,
:data:`CONCEPT_COLOURS`); the colours come from :mod:`hdcnn.palette`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# The one palette (hdcnn.palette), re-exported for the pages' charts.
from hdcnn.palette import CONCEPT_COLOURS, LABEL_COLOURS, concept_colour  # noqa: F401 (re-export)
from hdcnn.terms import Concept, Label
from hdcnn.utils import atomic_path

TASK_TITLES = {"abnormal": "abnormal vs normal", "malignant": "malignant vs rest"}


#: Order of labels in every chart legend and axis (``tuple(Label)``).
LABEL_ORDER: tuple[str, ...] = tuple(str(label) for label in Label)
#: Order of the four concepts in every table and chart (``tuple(Concept)``).
CONCEPT_ORDER: tuple[str, ...] = tuple(str(concept) for concept in Concept)
#: What each concept is, in a few words.
CONCEPT_NOTES: dict[str, str] = {
    "flat-whole": "whole image, one 3-class CNN",
    "hier-whole": "whole image, hierarchical CNNs",
    "det-flat": "detector + 3-class crop CNN",
    "det-hier": "detector + hierarchical crop CNNs (HD-CNN)",
}

#: Each dataset's own density scale: (chart title, {code: name}, order). mini-MIAS records
#: background tissue (F/G/D), not BI-RADS density.
DENSITY_SCALES: dict[str, tuple[str, dict[str, str]]] = {
    "mias": (
        "Background tissue (mini-MIAS code, not BI-RADS)",
        {"F": "F fatty", "G": "G fatty-glandular", "D": "D dense-glandular"},
    ),
    "synth": (
        "Breast density (BI-RADS-like categories, SYNTHETIC)",
        {c: f"{c}" for c in "ABCD"},
    ),
}
BIRADS_DENSITY = (
    "Breast density (BI-RADS A–D)",
    {
        "A": "A fatty",
        "B": "B scattered",
        "C": "C heterogeneously dense",
        "D": "D extremely dense",
    },
)


def density_scale(dataset: str) -> tuple[str, dict[str, str]]:
    """``(chart title, {code: display name in scale order})`` of a dataset's density field."""
    return DENSITY_SCALES.get(str(dataset), BIRADS_DENSITY)


def ordered_concepts(doc: dict[str, Any]) -> list[str]:
    """The document's concepts in :data:`CONCEPT_ORDER`, unknown ones after."""
    names = list(doc["concepts"])
    rank = {c: i for i, c in enumerate(CONCEPT_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), names.index(n)))


def _roc_series(doc: dict[str, Any], task: str) -> list[tuple[str, list[float], list[float], str]]:
    series = []
    for concept in ordered_concepts(doc):
        m = doc["concepts"][concept]
        curve = (m.get("roc") or {}).get(task)
        if curve:
            auc = m.get(f"auc_{task}")
            label = f"{concept} (AUC {auc:.3f})" if isinstance(auc, (int, float)) else concept
            series.append((label, curve["fpr"], curve["tpr"], concept))
    return series


def _froc_series(doc: dict[str, Any]) -> list[tuple[str, list[float], list[float], str]]:
    series = []
    for concept in ordered_concepts(doc):
        curve = doc["concepts"][concept].get("froc_curve")
        if curve:
            series.append((concept, curve["fps_per_image"], curve["sensitivity"], concept))
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
        for label, x, y, concept in series:
            ax.step(x, y, where="post", label=label, color=concept_colour(concept))
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
        for label, x, y, concept in series:
            ax.step(x, y, where="post", label=label, color=concept_colour(concept))
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


def _step_curves(series: Any) -> Any:
    """A plotly Figure with one step curve per ``(label, x, y, concept)``, concept colours."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, x, y, concept in series:
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                line_shape="hv",
                name=label,
                line={"color": concept_colour(concept), "width": 2},
            )
        )
    return fig


def roc_figure(doc: dict[str, Any], task: str = "abnormal") -> Any:
    """plotly Figure of the ROC curves of every concept for ``task`` (abnormal|malignant)."""
    import plotly.graph_objects as go

    fig = _step_curves(_roc_series(doc, task))
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            line={"dash": "dot", "color": "#999999"},
            showlegend=False,
            hoverinfo="skip",
        )
    )
    fig.update_layout(
        title=f"ROC {TASK_TITLES.get(task, task)}",
        xaxis_title="1 - specificity",
        yaxis_title="sensitivity",
        **_LEGEND_BELOW,
    )
    return fig


#: Legend under the plot area, so it never covers a curve at any width.
_LEGEND_BELOW: dict[str, Any] = {
    "legend": {"orientation": "h", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0},
    "margin": {"t": 40, "b": 10},
}


def froc_figure(doc: dict[str, Any]) -> Any:
    """plotly Figure of the FROC curves of the detector concepts."""

    fig = _step_curves(_froc_series(doc))
    fig.update_layout(
        title=f"FROC ({doc.get('froc_hit', '')})",
        xaxis_title="false positives per image",
        yaxis_title="lesion sensitivity",
        **_LEGEND_BELOW,
    )
    return fig


def findings_froc_caption(doc: dict[str, Any]) -> str | None:
    """One sentence under the FROC plot: each detector concept's FROC counted on merged
    findings (:mod:`hdcnn.evaluation.findings_froc`) beside the plotted candidate FROC; None
    for a report without them."""
    parts = []
    for name in ordered_concepts(doc):
        merged, froc = doc["concepts"][name].get("froc_findings"), doc["concepts"][name].get("froc")
        if merged and froc and all(merged.get(k) is not None for k in ("0.5", "1", "2")):
            parts.append(
                f"{name} {'/'.join(f'{float(merged[k]):.2f}' for k in ('0.5', '1', '2'))} "
                f"(candidates: {'/'.join(f'{float(froc[k]):.2f}' for k in ('0.5', '1', '2'))})"
            )
    if not parts:
        return None
    return (
        "The curves count every candidate box: overlapping boxes on one spot are several false "
        "positives. Counted on the findings the app shows (overlapping candidates merged, each "
        "finding judged by its best-scored box), sensitivity at 0.5/1/2 false positives per "
        "image: " + "; ".join(parts) + "."
    )


# ----------------------------------------------------------------------------- tables


def _interval(value: Any, ci: Any, note: Any = None) -> str:
    """``0.752 [0.645–0.844]``: the interval with as many decimals as the value, so that two
    intervals that do not overlap never look as if they did."""
    if value is None:
        return f"– ({note})" if note else "–"
    text = f"{float(value):.3f}"
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        text += f" [{float(ci[0]):.3f}–{float(ci[1]):.3f}]"
    return text


#: What a table cell says where a value is missing (never a raw "None" or "nan").
MISSING_CELL = "—"


def text_cells(frame: Any, columns: Any) -> Any:
    """A copy of ``frame`` with ``columns`` as text: numbers in their shortest form (``52``,
    ``52.5``), missing values (None, NaN) as :data:`MISSING_CELL`."""
    import pandas as pd

    out = frame.copy()
    for column in columns:
        out[column] = [
            MISSING_CELL
            if v is None or (isinstance(v, float) and pd.isna(v))
            else f"{v:g}"
            if isinstance(v, float)
            else str(v)
            for v in out[column]
        ]
    return out


def _apart(a: float, b: float, digits: int = 3) -> int:
    """Decimals (at least ``digits``, at most 6) at which ``a`` and ``b`` print differently."""
    while digits < 6 and f"{a:.{digits}f}" == f"{b:.{digits}f}":
        digits += 1
    return digits


def _num(value: Any) -> str:
    return "–" if value is None else f"{float(value):.3f}"


#: Columns of :func:`experiments_table`: the key figures, narrow enough for a 1024 px screen.
KEY_COLUMNS: tuple[str, ...] = (
    "concept",
    "AUC abnormal [95% CI]",
    "AUC malignant [95% CI]",
    "macro F1",
    "specificity",
    "FROC @0.5/1/2 FP",
)


def experiments_table(concepts: dict[str, dict[str, Any]]) -> Any:
    """One row per concept (in :data:`CONCEPT_ORDER`): the key figures (:data:`KEY_COLUMNS`)."""
    import pandas as pd

    rows = []
    for name in ordered_concepts({"concepts": concepts}):
        m = concepts[name]
        froc = m.get("froc") or {}
        rows.append(
            {
                "concept": name,
                "AUC abnormal [95% CI]": _interval(
                    m.get("auc_abnormal"), m.get("auc_abnormal_ci"), m.get("auc_abnormal_note")
                ),
                "AUC malignant [95% CI]": _interval(
                    m.get("auc_malignant"), m.get("auc_malignant_ci"), m.get("auc_malignant_note")
                ),
                "macro F1": _num(m.get("macro_f1")),
                "specificity": _num(m.get("specificity")),
                "FROC @0.5/1/2 FP": "/".join(f"{float(froc[k]):.2f}" for k in ("0.5", "1", "2"))
                if froc and all(froc.get(k) is not None for k in ("0.5", "1", "2"))
                else "–",
            }
        )
    return pd.DataFrame(rows, columns=list(KEY_COLUMNS))


def experiments_details(concepts: dict[str, dict[str, Any]]) -> Any:
    """The other figures: design, accuracy, sensitivity to malignant, sensitivity at 90 %
    specificity."""
    import pandas as pd

    rows = []
    for name in ordered_concepts({"concepts": concepts}):
        m = concepts[name]
        rows.append(
            {
                "concept": name,
                "design": CONCEPT_NOTES.get(name, ""),
                "accuracy": _num(m.get("accuracy")),
                "sens. malignant": _num(m.get("sensitivity_malignant")),
            }
        )
    return pd.DataFrame(rows)


def difference_text(d: Any, ci_digits: int = 2) -> str | None:
    """An ablation row's ``minus_reference`` entry ``[value, low, high]`` ->
    ``+0.027 [-0.01, +0.06]``; ``None`` when there is none (the reference row, an undefined
    AUC). The app's ablation table and ``python -m hdcnn cv``'s Markdown both use it."""
    if not isinstance(d, (list, tuple)) or len(d) != 3 or None in d:
        return None
    lo, hi = (f"{float(v):+.{ci_digits}f}" for v in d[1:])
    return f"{float(d[0]):+.3f} [{lo}, {hi}]"


def ablations_table(doc: dict[str, Any]) -> Any:
    """One row per ablation of ``doc["ablations"]`` (written by ``python -m hdcnn cv
    --ablations``): its AUCs, their difference to the reference row with the paired 95 %
    interval, FROC at 1 FP per image, and that FROC per lesion type where the file has it
    (one column per type). ``None`` when the file holds no ablations."""
    import pandas as pd

    rows = (doc.get("ablations") or {}).get("rows")
    if not isinstance(rows, dict) or not rows:
        return None
    kinds = sorted({k for r in rows.values() for k in (r.get("froc_1_by_kind") or {})})
    out = []
    for name, r in rows.items():
        diff = r.get("minus_reference") or {}
        by_kind = r.get("froc_1_by_kind") or {}
        out.append(
            {
                "ablation": name,
                "what changes": r.get("what", ""),
                "AUC abnormal": _num(r.get("auc_abnormal")),
                "Δ abnormal [95% CI]": difference_text(diff.get("auc_abnormal")) or "–",
                "AUC malignant": _num(r.get("auc_malignant")),
                "Δ malignant [95% CI]": difference_text(diff.get("auc_malignant")) or "–",
                "FROC @1 FP": _two_decimals(r.get("froc_1")),
                **{f"FROC @1 FP, {kind}": _two_decimals(by_kind.get(kind)) for kind in kinds},
            }
        )
    return pd.DataFrame(out)


#: Name of the ablations' reference row (``python -m hdcnn cv --ablations``).
REFERENCE_ROW = "reference"


def ablation_reference_note(doc: dict[str, Any]) -> str | None:
    """Why the ablations' reference row and the main table's det-hier differ, from the file's
    numbers; None when there is nothing to reconcile.

    The reference row is det-hier's recipe scored without thresholds (the ``Ablations``
    protocol): P(malignant) = max over every candidate of P(lesion) · P(malignant | lesion).
    The main table scores det-hier as the cascade does: only candidates kept by Classifier 1
    (P(lesion) ≥ its threshold) count, and an image with none gets P(malignant) 0, so those
    images tie. P(abnormal) = max P(lesion) takes no threshold in either, so its AUCs agree.
    """
    ref = ((doc.get("ablations") or {}).get("rows") or {}).get(REFERENCE_ROW)
    main = (doc.get("concepts") or {}).get("det-hier")
    if not isinstance(ref, dict) or not isinstance(main, dict):
        return None
    parts = []
    for key, name in (("auc_malignant", "AUC malignant"), ("auc_abnormal", "AUC abnormal")):
        a, b = ref.get(key), main.get(key)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            parts.append((name, float(a), float(b)))
    if not parts:
        return None
    c1 = ((doc.get("thresholds") or {}).get("det-hier") or {}).get("c1_lesion")
    c1_text = f" (P(lesion) ≥ {float(c1):.3f})" if isinstance(c1, (int, float)) else ""
    figures = "; ".join(f"{name} {a:.3f} here, {b:.3f} in the main table" for name, a, b in parts)
    return (
        f"The reference row is det-hier scored without thresholds: its P(malignant) is the "
        "highest P(lesion) · P(malignant | lesion) over every candidate. The main table scores "
        f"det-hier as the app does: only candidates Classifier 1 keeps{c1_text} count, and an "
        "image with none gets P(malignant) 0, so those images tie. P(abnormal), the highest "
        f"P(lesion), takes no threshold in either. Hence {figures}."
    )


def lesion_types_table(doc: dict[str, Any]) -> Any:
    """One row per lesion type of ``doc["lesion_types"]`` (written by ``python -m hdcnn cv``),
    then ``all``: lesions, det-hier's candidate recall at the top candidates, its FROC at 0.5 /
    1 / 2 false positives per image, and (where the file has it) the image-level AUC of the
    images with that type against the normal ones. ``None`` when the file has no such block."""
    import pandas as pd

    types = doc.get("lesion_types")
    if not isinstance(types, dict) or not types:
        return None
    out = []
    for kind, t in types.items():
        froc = t.get("froc") or {}
        out.append(
            {
                "lesion type": kind,
                "lesions": t.get("n_lesions"),
                "candidate recall": _two_decimals(t.get("candidate_recall")),
                "FROC @0.5 / 1 / 2 FP": " / ".join(
                    _two_decimals(froc.get(k)) for k in ("0.5", "1", "2")
                ),
                "images": t.get("n_images"),
                "AUC vs normal images [95% CI]": _interval(
                    t.get("auc_vs_normal"), t.get("auc_vs_normal_ci")
                ),
            }
        )
    return pd.DataFrame(out)


#: The calibrated probabilities, as the tables name them.
PROBABILITY_TITLES = {
    "p_abnormal": "P(abnormal)",
    "p_malignant": "P(malignant)",
    "p_lesion": "P(lesion) of a finding",
}


def calibration_table(report: dict[str, Any]) -> Any:
    """One row per calibrated probability of a calibration report
    (:func:`hdcnn.evaluation.calibration.fit_calibration`): its examples, the chosen map, and
    Brier score and ECE before and after (cross-fitted), with the ECE's bootstrap interval."""
    import pandas as pd

    rows = []
    for name, r in (report.get("probabilities") or {}).items():
        before, after = r["before"], r["after"]
        rows.append(
            {
                "probability": PROBABILITY_TITLES.get(name, name),
                "examples (positive)": f"{r['n']} ({r['n_positive']})",
                "map": r["method"],
                "Brier before → after": f"{before['brier']:.3f} → {after['brier']:.3f}",
                "ECE before → after [95% CI]": f"{before['ece']:.3f} → "
                + _interval(after["ece"], after.get("ece_ci")),
            }
        )
    return pd.DataFrame(rows)


def floor_caption(report: dict[str, Any]) -> str | None:
    """One sentence beside the calibration table: each probability's ECE after calibration
    against its sampling floor (:mod:`hdcnn.evaluation.ece_floor`: the ECE a perfectly
    calibrated probability shows on as many examples), e.g. ``"P(abnormal) 0.069 against
    0.057 [0.087]: within"``; None for a report without floors."""
    from hdcnn.evaluation.ece_floor import FLOOR_PERCENTILE, floor_side

    parts = []
    for name, r in (report.get("probabilities") or {}).items():
        after, floor = r["after"], r["after"].get("ece_floor")
        if floor:
            side = floor_side(after["ece"], floor["p95"])
            parts.append(
                f"{PROBABILITY_TITLES.get(name, name)} {after['ece']:.3f} against "
                f"{floor['mean']:.3f} [{floor['p95']:.3f}]: {side}"
            )
    if not parts:
        return None
    return (
        "ECE floor: even a perfectly calibrated probability shows an ECE on this few examples "
        "(labels drawn from the probabilities themselves). ECE after calibration against the "
        f"floor's mean [{FLOOR_PERCENTILE}th percentile]: " + "; ".join(parts) + ". 'Within' "
        "cannot be told apart from perfect calibration at this sample size; it does not show "
        "that the probability is calibrated."
    )


def reliability_figure(report: dict[str, Any], name: str) -> Any:
    """plotly reliability diagram of one probability: observed frequency against the mean
    probability of each bin, raw scores and calibrated (cross-fitted), marker size = count."""
    import plotly.graph_objects as go

    from hdcnn.palette import CALIBRATION_COLOURS, FALLBACK

    r = report["probabilities"][name]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            line={"dash": "dot", "color": FALLBACK},
            name="perfectly calibrated",
            hoverinfo="skip",
        )
    )
    for stage, title in (("before", "raw score"), ("after", "calibrated (held-out folds)")):
        bins = r[stage]["reliability"]
        n = [b["n"] for b in bins]
        fig.add_trace(
            go.Scatter(
                x=[b["mean_p"] for b in bins],
                y=[b["frequency"] for b in bins],
                mode="lines+markers",
                name=f"{title}, ECE {r[stage]['ece']:.3f}",
                marker={"size": [6 + 14 * (k / max(n)) ** 0.5 for k in n]},
                line={"color": CALIBRATION_COLOURS[stage]},
                text=[f"{k} examples" for k in n],
            )
        )
    fig.update_layout(
        title=f"Reliability of {PROBABILITY_TITLES.get(name, name)}",
        xaxis={"title": "mean probability in the bin", "range": [0, 1]},
        yaxis={"title": "observed frequency", "range": [0, 1]},
        **_LEGEND_BELOW,
    )
    return fig


def _two_decimals(value: Any) -> str:
    """A fraction (a FROC sensitivity, a recall) with two decimals, ``–`` when there is none."""
    return "–" if value is None else f"{float(value):.2f}"


def experiments_summary(concepts: dict[str, dict[str, Any]]) -> str:
    """A sentence or two on what the numbers show (generated, not hard-coded)."""
    scored = {n: m for n, m in concepts.items() if isinstance(m.get("auc_malignant"), (int, float))}
    if not scored:
        return "The results file holds no malignancy AUCs to compare."
    ranked = sorted(scored, key=lambda n: scored[n]["auc_malignant"], reverse=True)
    best, worst = ranked[0], ranked[-1]
    text = (
        f"**{best}** separates malignant from other images best (AUC "
        f"{scored[best]['auc_malignant']:.3f}); **{worst}** is lowest "
        f"({scored[worst]['auc_malignant']:.3f})."
    )
    lo_best = (scored[best].get("auc_malignant_ci") or [None, None])[0]
    hi_worst = (scored[worst].get("auc_malignant_ci") or [None, None])[1]
    if best != worst and lo_best is not None and hi_worst is not None:
        d = _apart(float(lo_best), float(hi_worst))
        low, high = f"{float(lo_best):.{d}f}", f"{float(hi_worst):.{d}f}"
        if lo_best > hi_worst:
            text += (
                f" Their 95 % intervals do not overlap: {best}'s starts at {low}, above "
                f"{worst}'s end at {high}"
                + (" (only just)." if float(lo_best) - float(hi_worst) < 0.01 else ".")
            )
        else:
            text += (
                f" Their 95 % intervals overlap ({best}'s starts at {low}, {worst}'s ends at "
                f"{high}), so this test set cannot tell them apart with confidence."
            )
    if "det-hier" in scored and "flat-whole" in scored and best != "det-hier":
        diff = scored["det-hier"]["auc_malignant"] - scored["flat-whole"]["auc_malignant"]
        text += (
            f" The full HD-CNN cascade (det-hier) is {abs(diff):.3f} "
            f"{'above' if diff >= 0 else 'below'} the flat whole-image baseline."
        )
    return text
