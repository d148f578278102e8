"""Dataset statistics: a JSON-ready summary and the tables the app's dataset page plots.

:func:`dataset_stats` feeds ``python -m hdcnn dataset stats`` and the app; the ``*_frame``
helpers return tidy :class:`pandas.DataFrame` objects (one row per image, lesion or bin) that
the Streamlit page plots directly, so the CLI and the app always show the same numbers.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from hdcnn.data.manifest import Manifest
from hdcnn.terms import Label

#: Width of the age histogram bins in years; bins start at multiples of it (40-44, 45-49 ...).
AGE_BIN_YEARS: int = 5
#: Label order of every table.
LABEL_ORDER: tuple[str, ...] = tuple(str(label) for label in Label)
#: Key used for a missing value in count dictionaries.
MISSING = "unknown"


def image_frame(manifest: Manifest) -> pd.DataFrame:
    """One row per image.

    Returns:
        Columns ``image_path, patient_id, study_id, label, laterality, view, age, density,
        lesions`` (number of boxed lesions, int), ``dataset, source_split``; missing values are
        ``None`` (``age`` is float with NaN).
    """
    rows = [
        {
            "image_path": r.image_path,
            "patient_id": r.patient_id,
            "study_id": r.study_id,
            "label": str(r.label),
            "laterality": r.laterality,
            "view": r.view,
            "age": r.age,
            "density": r.density,
            "lesions": len(r.lesions),
            "dataset": r.dataset,
            "source_split": r.source_split,
        }
        for r in manifest
    ]
    frame = pd.DataFrame(rows, columns=list(_IMAGE_COLUMNS))
    frame["age"] = pd.to_numeric(frame["age"], errors="coerce").astype(float)
    return frame


_IMAGE_COLUMNS = (
    "image_path",
    "patient_id",
    "study_id",
    "label",
    "laterality",
    "view",
    "age",
    "density",
    "lesions",
    "dataset",
    "source_split",
)


def lesion_frame(manifest: Manifest) -> pd.DataFrame:
    """One row per boxed lesion.

    Returns:
        Columns ``image_path, patient_id, image_label, label, kind, source, width, height,
        side`` where ``width``/``height`` are the box size in original pixels and ``side`` is
        ``max(width, height)`` (float).
    """
    rows = []
    for r in manifest:
        for lesion in r.lesions:
            x1, y1, x2, y2 = lesion.box
            rows.append(
                {
                    "image_path": r.image_path,
                    "patient_id": r.patient_id,
                    "image_label": str(r.label),
                    "label": str(lesion.label),
                    "kind": lesion.kind,
                    "source": str(lesion.source),
                    "width": x2 - x1,
                    "height": y2 - y1,
                    "side": max(x2 - x1, y2 - y1),
                }
            )
    columns = ["image_path", "patient_id", "image_label", "label", "kind", "source"]
    return pd.DataFrame(rows, columns=[*columns, "width", "height", "side"])


def patient_age_frame(manifest: Manifest) -> pd.DataFrame:
    """One row per patient with an age: what the age charts count (patients, not images).

    Returns:
        Columns ``patient_id``, ``label`` (the patient's worst image label,
        :meth:`Manifest.patient_labels`) and ``age`` (the median of the patient's image ages,
        years); patients without any age are left out.
    """
    frame = image_frame(manifest).dropna(subset=["age"])
    columns = ["patient_id", "label", "age"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    worst = {str(p): str(label) for p, label in manifest.patient_labels().items()}
    ages = frame.groupby("patient_id", sort=False)["age"].median()
    rows = [(p, worst.get(str(p), str(MISSING)), float(age)) for p, age in ages.items()]
    return pd.DataFrame(rows, columns=columns)


def age_histogram_frame(manifest: Manifest, bin_years: int = AGE_BIN_YEARS) -> pd.DataFrame:
    """Patient counts per fixed age bin and label (every bin between the youngest and oldest
    patient; :func:`patient_age_frame`).

    Returns:
        Columns ``bin_start`` (int years), ``age_bin`` (``"40-44"``), ``label``, ``count``
        (patients); empty when no patient has an age.
    """
    frame = patient_age_frame(manifest)
    columns = ["bin_start", "age_bin", "label", "count"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    starts = (frame["age"] // bin_years * bin_years).astype(int)
    counts = Counter(zip(starts, frame["label"], strict=True))
    labels = [label for label in LABEL_ORDER if label in set(frame["label"])]
    rows = [
        (start, f"{start}-{start + bin_years - 1}", label, counts.get((start, label), 0))
        for start in range(int(starts.min()), int(starts.max()) + 1, bin_years)
        for label in labels
    ]
    return pd.DataFrame(rows, columns=columns)


def age_by_label_frame(manifest: Manifest) -> pd.DataFrame:
    """Age summary per patient label (patients with an age only; :func:`patient_age_frame`).

    Returns:
        Columns ``label, count, mean, median, min, max`` (count: patients; ages in years),
        labels in the order normal, benign, malignant, unknown; empty when no patient has an
        age.
    """
    frame = patient_age_frame(manifest)
    rows = []
    for label in LABEL_ORDER:
        ages = frame.loc[frame["label"] == label, "age"]
        if len(ages):
            rows.append((label, len(ages), ages.mean(), ages.median(), ages.min(), ages.max()))
    return pd.DataFrame(rows, columns=["label", "count", "mean", "median", "min", "max"])


def counts_by_label_frame(manifest: Manifest, column: str) -> pd.DataFrame:
    """Image counts of ``column`` (e.g. ``view``, ``laterality``, ``density``) per label.

    Returns:
        Columns ``<column>, label, count``; missing values are ``"unknown"``.
    """
    frame = image_frame(manifest)
    values = frame[column].fillna(MISSING).astype(str)
    counts = Counter(zip(values, frame["label"], strict=True))
    rows = [(value, label, n) for (value, label), n in sorted(counts.items())]
    return pd.DataFrame(rows, columns=[column, "label", "count"])


def _counts(values: list[object], order: tuple[str, ...] = ()) -> dict[str, int]:
    """Counts keyed by string value (``None`` -> ``"unknown"``), ``order`` first, then sorted."""
    counts = Counter(MISSING if v is None else str(v) for v in values)
    keys = [k for k in order if k in counts] + sorted(k for k in counts if k not in order)
    return {k: counts[k] for k in keys}


def _summary(values: pd.Series) -> dict[str, float | int]:
    """``count, mean, median, min, max`` of a numeric series (rounded to 0.1)."""
    return {
        "count": len(values),
        "mean": round(float(values.mean()), 1),
        "median": round(float(values.median()), 1),
        "min": round(float(values.min()), 1),
        "max": round(float(values.max()), 1),
    }


def dataset_stats(manifest: Manifest) -> dict:
    """JSON-ready summary of a manifest.

    Returns:
        A dict with ``images``, ``patients``, ``studies``, ``datasets``, ``labels`` (images per
        label), ``patient_labels`` (patients per worst label), ``views``, ``laterality``,
        ``density``, ``source_split`` (count dicts; ``"unknown"`` = missing), ``age`` and
        ``lesions``. ``age`` counts patients (:func:`patient_age_frame`): ``{"available": False,
        "missing": n}`` when no patient has an age, else ``{"available": True, "count",
        "missing", "mean", "median", "min", "max", "bin_years", "histogram": {label:
        {"40-44": n, ...}}, "mean_by_label": {label: mean}}`` (ages rounded to 0.1 year).
        ``lesions`` holds ``total``, ``images_with_lesions``, ``by_label``, ``by_kind``,
        ``by_source``, ``by_label_kind`` (``{label: {kind: n}}``) and ``size_px`` (summary of
        the box side ``max(w, h)`` in original pixels, absent when there is no lesion).
    """
    images = image_frame(manifest)
    lesions = lesion_frame(manifest)
    stats: dict = {
        "images": len(manifest),
        "patients": len(manifest.patients()),
        "studies": int(images[["patient_id", "study_id"]].drop_duplicates().shape[0]),
        "datasets": _counts(list(images["dataset"].replace("", None))),
        "labels": _counts([str(r.label) for r in manifest], LABEL_ORDER),
        "patient_labels": _counts(
            [str(v) for v in manifest.patient_labels().values()], LABEL_ORDER
        ),
        "views": _counts([r.view for r in manifest], ("CC", "MLO", "other")),
        "laterality": _counts([r.laterality for r in manifest], ("L", "R")),
        "density": _counts([r.density for r in manifest], ("A", "B", "C", "D")),
        "source_split": _counts([r.source_split for r in manifest]),
    }
    ages = patient_age_frame(manifest)["age"]
    if ages.empty:
        stats["age"] = {"available": False, "missing": stats["patients"]}
    else:
        histogram: dict[str, dict[str, int]] = {}
        for row in age_histogram_frame(manifest).itertuples(index=False):
            histogram.setdefault(row.label, {})[row.age_bin] = int(row.count)
        stats["age"] = {
            "available": True,
            **_summary(ages),
            "missing": int(stats["patients"] - len(ages)),
            "bin_years": AGE_BIN_YEARS,
            "histogram": histogram,
            "mean_by_label": {
                row.label: round(float(row.mean), 1)
                for row in age_by_label_frame(manifest).itertuples(index=False)
            },
        }
    lesion_stats: dict = {
        "total": len(lesions),
        "images_with_lesions": int((images["lesions"] > 0).sum()),
        "by_label": _counts(list(lesions["label"]), LABEL_ORDER),
        "by_kind": _counts(list(lesions["kind"])),
        "by_source": _counts(list(lesions["source"])),
        "by_label_kind": {
            label: _counts(list(lesions.loc[lesions["label"] == label, "kind"]))
            for label in LABEL_ORDER
            if (lesions["label"] == label).any()
        },
    }
    if len(lesions):
        lesion_stats["size_px"] = _summary(lesions["side"])
    stats["lesions"] = lesion_stats
    return stats


def format_stats(stats: dict) -> str:
    """A short human-readable text of a :func:`dataset_stats` dict (for the CLI)."""

    def line(name: str, counts: dict[str, int]) -> str:
        return f"{name:<14}" + (", ".join(f"{k} {v}" for k, v in counts.items()) or "-")

    lines = [
        f"images        {stats['images']}",
        f"patients      {stats['patients']}",
        f"studies       {stats['studies']}",
        line("labels", stats["labels"]),
        line("patients by", stats["patient_labels"]) + "  (worst label)",
        line("views", stats["views"]),
        line("laterality", stats["laterality"]),
        line("density", stats["density"]),
    ]
    age = stats["age"]
    if age["available"]:
        by_label = ", ".join(f"{k} {v:.1f}" for k, v in age["mean_by_label"].items())
        lines.append(
            f"age           {age['count']} patients with an age ({age['missing']} without): "
            f"mean {age['mean']:.1f}, median {age['median']:.1f}, "
            f"range {age['min']:.1f}-{age['max']:.1f}"
        )
        lines.append(f"mean age      {by_label}")
    else:
        lines.append("age           not available in this dataset")
    les = stats["lesions"]
    kinds = ", ".join(f"{k} {v}" for k, v in les["by_kind"].items())
    lines.append(
        f"lesions       {les['total']} boxes on {les['images_with_lesions']} images"
        + (f"; by kind: {kinds}" if kinds else "")
    )
    if "size_px" in les:
        size = les["size_px"]
        lines.append(
            f"lesion size   box side median {size['median']:g} px "
            f"(range {size['min']:g}-{size['max']:g})"
        )
    if stats["source_split"] and list(stats["source_split"]) != [MISSING]:
        lines.append(line("source split", stats["source_split"]))
    return "\n".join(lines)
