"""Dataset explorer: statistics and a filterable table of one dataset (hdcnn.data.stats)."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

import appkit
from hdcnn.data import stats as ds
from hdcnn.data.adapters import ADAPTERS
from hdcnn.data.roots import DATA_ROOTS_ENV, data_roots, images_inside, resolve_dataset_folder
from hdcnn.errors import DatasetError
from hdcnn.evaluation import plots

appkit.sidebar()
st.title("Dataset explorer")

c1, c2 = st.columns([1, 2])
roots = data_roots()  # the only server folders a visitor may open (HDCNN_DATA_ROOTS)
name = c1.selectbox("Dataset", [appkit.DEMO_DATASET, *ADAPTERS], key="dataset_name")
if name == appkit.DEMO_DATASET:
    c2.caption(
        "Built-in demo data: a small **SYNTHETIC** cohort generated on the fly with "
        "`hdcnn.data.synth` (not real patients)."
    )
    root = str(appkit.ensure_demo_cohort())
    adapter = "synth"
else:
    # Only folders inside the operator's data roots are opened (hdcnn.data.roots); every other
    # input gets the same refusal, which quotes nothing from the server.
    adapter = name
    if not roots:
        c2.info(
            "This server offers no dataset folder, so only the built-in demo data can be "
            f"explored. The operator lists the folders to offer in `{DATA_ROOTS_ENV}` "
            "(docs/APP.md)."
        )
        st.stop()
    entered = c2.text_input("Dataset root folder (on this server)", key="dataset_root")
    c2.caption(
        "A folder inside " + ", ".join(f"`{r}`" for r in roots) + ", in full or relative to it."
    )
    if not entered.strip():
        st.info(
            f"Enter the folder of a {name} dataset as distributed (see docs/DATASETS_USAGE.md)."
        )
        st.stop()
    try:
        root = str(resolve_dataset_folder(entered, roots))
    except DatasetError as exc:
        st.error(str(exc), icon=":material/block:")
        st.stop()

manifest = appkit.load_manifest(adapter, root)
if manifest is None:
    st.stop()
if name != appkit.DEMO_DATASET:
    manifest, outside = images_inside(manifest, roots)
    if outside:
        st.warning(f"{outside} listed image(s) lie outside the data roots and are left out.")
if len(manifest) == 0:
    st.warning("The dataset has no images.")
    st.stop()

summary = ds.dataset_stats(manifest)
if name == appkit.DEMO_DATASET:
    st.warning(
        "SYNTHETIC data: every figure below describes generated images.", icon=":material/science:"
    )
m = st.columns(4)
m[0].metric("Images", summary["images"])
m[1].metric("Patients", summary["patients"])
m[2].metric("Studies", summary["studies"])
m[3].metric("Lesions", summary["lesions"]["total"])

# One order and one colour per label on every chart of every page (hdcnn.evaluation.plots).
COLOURS = plots.LABEL_COLOURS
ORDER = {"label": list(plots.LABEL_ORDER)}
#: Legend below the plot, in one row: half-width charts at 1024 px keep their plot area.
LEGEND = {
    "legend_title_text": "label",
    "legend_traceorder": "normal",
    "legend": {"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0},
}

st.subheader("Age")
if not summary["age"]["available"]:
    st.info("This dataset records no patient ages, so there is no age distribution to draw.")
else:
    a1, a2 = st.columns(2)
    hist = ds.age_histogram_frame(manifest)  # patients, each under their worst label
    fig = px.bar(
        hist,
        x="age_bin",
        y="count",
        color="label",
        barmode="group",
        color_discrete_map=COLOURS,
        category_orders=ORDER,
        labels={"age_bin": "age (years)", "count": "patients"},
        title="Patients by age and label",
    )
    fig.update_layout(**LEGEND)
    a1.plotly_chart(fig, key="dataset_age_hist")
    by_label = ds.age_by_label_frame(manifest)
    fig = px.bar(
        by_label,
        x="label",
        y="mean",
        color="label",
        color_discrete_map=COLOURS,
        category_orders=ORDER,
        text=[f"{v:.1f}" for v in by_label["mean"]],  # one decimal on every bar: "55.0", "56.4"
        labels={"mean": "mean age (years)"},
        title="Mean age of the patients by label",
    )
    fig.update_layout(showlegend=False)
    a2.plotly_chart(fig, key="dataset_age_mean")
    st.caption(
        f"Ages of {summary['age']['count']} patients: mean {summary['age']['mean']:.1f}, "
        f"median {summary['age']['median']:.1f} years. Each patient counts once, at the median "
        "age of their images, under the worst label of their images"
        + (
            f"; {summary['age']['missing']} patients have no age."
            if summary["age"]["missing"]
            else "."
        )
    )

st.subheader("Labels, density, views and laterality")
b1, b2 = st.columns(2)
labels = summary["labels"]
fig = px.bar(
    x=list(labels),
    y=list(labels.values()),
    color=list(labels),
    color_discrete_map=COLOURS,
    category_orders={"x": list(plots.LABEL_ORDER), "color": list(plots.LABEL_ORDER)},
    labels={"x": "label", "y": "images"},
    title="Label balance (images)",
)
fig.update_layout(showlegend=False)  # the x axis already names each bar
b1.plotly_chart(fig, key="dataset_labels")
density = ds.counts_by_label_frame(manifest, "density")
density_title, density_names = plots.density_scale(adapter)
density = density.assign(
    density=density["density"].map(lambda c: density_names.get(str(c), str(c)))
)
# horizontal bars: the category names ("G fatty-glandular" ...) never overlap; the long title
# breaks before its parenthesis, so it fits a half-width chart at 1024 px
fig = px.bar(
    density,
    y="density",
    x="count",
    color="label",
    orientation="h",
    color_discrete_map=COLOURS,
    category_orders={**ORDER, "density": list(density_names.values())},
    labels={"density": "", "count": "images"},
    title=density_title.replace(" (", "<br>("),
)
fig.update_layout(**LEGEND)
b2.plotly_chart(fig, key="dataset_density")
b3, b4 = st.columns(2)
for col, column, key in ((b3, "view", "dataset_views"), (b4, "laterality", "dataset_lat")):
    frame = ds.counts_by_label_frame(manifest, column)
    fig = px.bar(
        frame,
        x=column,
        y="count",
        color="label",
        color_discrete_map=COLOURS,
        category_orders=ORDER,
        labels={"count": "images"},
        title=f"Images by {column}",
    )
    fig.update_layout(**LEGEND)
    col.plotly_chart(fig, key=key)

st.subheader("Lesion size")
lesions = ds.lesion_frame(manifest)
if lesions.empty:
    st.info("This dataset has no boxed lesions.")
else:
    fig = px.histogram(
        lesions,
        x="side",
        color="label",
        color_discrete_map=COLOURS,
        nbins=30,
        category_orders=ORDER,
        labels={"side": "box side max(w, h), original pixels"},
        title="Lesion size by label",
    )
    fig.update_layout(**LEGEND)
    st.plotly_chart(fig, key="dataset_lesion_size")

st.subheader("Images")
images = ds.image_frame(manifest)
f1, f2, f3 = st.columns(3)
want_labels = f1.multiselect("Label", sorted(images["label"].unique()), key="dataset_f_label")
want_views = f2.multiselect(
    "View", sorted(images["view"].fillna("unknown").unique()), key="dataset_f_view"
)
want_side = f3.multiselect(
    "Laterality", sorted(images["laterality"].fillna("unknown").unique()), key="dataset_f_side"
)
shown = images
if want_labels:
    shown = shown[shown["label"].isin(want_labels)]
if want_views:
    shown = shown[shown["view"].fillna("unknown").isin(want_views)]
if want_side:
    shown = shown[shown["laterality"].fillna("unknown").isin(want_side)]
st.caption(
    f"{len(shown)} of {len(images)} images match"
    + (
        f"; thumbnails for the first {appkit.THUMB_LIMIT}"
        if len(shown) > appkit.THUMB_LIMIT
        else ""
    )
    + "."
)
shown = shown.head(appkit.THUMB_LIMIT).copy()
patient_numbers = {p: i for i, p in enumerate(images["patient_id"].unique(), start=1)}
shown.insert(0, "patient #", shown["patient_id"].map(patient_numbers))
with st.spinner("Making thumbnails …"):
    shown.insert(
        0,
        "thumbnail",
        [appkit.thumbnail_uri(str(manifest.resolve(manifest[i]))) for i in shown.index],
    )
shown["file"] = shown["image_path"].map(lambda p: str(p).replace("\\", "/").rsplit("/", 1)[-1])
shown = plots.text_cells(shown, ["view", "laterality", "age", "density"])  # no raw "None"
st.dataframe(
    shown[
        [
            "thumbnail",
            "file",
            "patient #",
            "label",
            "view",
            "laterality",
            "age",
            "density",
            "lesions",
        ]
    ],
    hide_index=True,
    column_config={
        "thumbnail": st.column_config.ImageColumn("image", width="small"),
        "density": st.column_config.TextColumn(density_title.split(" (")[0]),
    },
    key="dataset_table",
)
