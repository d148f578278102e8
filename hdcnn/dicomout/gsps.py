"""The findings drawn on the source image: a Grayscale Softcopy Presentation State (GSPS).

One presentation state per source image. Each kept finding is one graphic annotation on the
graphic layer of its label (``MALIGNANT``, ``BENIGN``, each with the label's recommended
display colour): a closed POLYLINE around its box and a text ``"#<n> <label>"`` (the
finding's number in every table), all in ``PIXEL`` units of the source image (original
pixels). The window of the source image is kept (highdicom copies its VOI LUT).

:func:`render_presentation_state` draws a presentation state's marks on an image with the
project's own overlay code (:func:`hdcnn.report.draw_findings`): what a viewer shows, and
the README's screenshot.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from hdcnn.dicomout.common import (
    MANUFACTURER,
    PR_SERIES_DESCRIPTION,
    PR_SERIES_NUMBER,
    Algorithm,
    SourceImage,
    box_of,
    kept_findings,
    rectangle,
)
from hdcnn.palette import FINDING_COLOURS, rgb

#: Content label of every presentation state written (a DICOM CS: capitals, digits, _).
CONTENT_LABEL = "HDCNN_FINDINGS"
#: Graphic layers, drawn in this order (malignant last, on top).
LAYERS: tuple[str, ...] = ("benign", "malignant")


def _layer(label: str, order: int) -> hd.pr.GraphicLayer:
    r, g, b = rgb(FINDING_COLOURS[label])
    return hd.pr.GraphicLayer(
        layer_name=label.upper(),
        order=order,
        description=f"HD-CNN Mammo {label} findings",
        display_color=hd.color.CIELabColor.from_rgb(r, g, b),
    )


def _text_box(
    box: Sequence[float], text: str, size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """Where a finding's tag goes: a box just above the finding (below its top edge when
    there is no room above), inside the image."""
    rows, cols = size
    height = max(12.0, rows / 60.0)
    width = min(float(cols), 0.6 * height * len(text) + height)
    x1, y1 = float(box[0]), float(box[1])
    top = y1 - height if y1 - height >= 0 else y1
    top = min(max(0.0, top), max(0.0, rows - height))
    left = min(max(0.0, x1), max(0.0, cols - width))
    return (left, top, min(left + width, float(cols)), min(top + height, float(rows)))


def build_gsps(
    image: SourceImage,
    algorithm: Algorithm,
    *,
    series_uid: str | None = None,
    instance_number: int = 1,
) -> hd.pr.GrayscaleSoftcopyPresentationState:
    """A presentation state drawing an image's kept findings (numbered boxes and labels).

    Args:
        image: the source header and its prediction (boxes in original pixels).
        algorithm: the algorithm's identity (equipment attributes).
        series_uid: the presentation-state series (a new UID when None).
        instance_number: its number in the series.

    Returns:
        The GSPS (a :class:`pydicom.Dataset`); with no kept finding it carries no graphic
        annotation and shows the image as is.
    """
    header = image.header
    kept = kept_findings(image.prediction)
    layers = {label: _layer(label, order) for order, label in enumerate(LAYERS, 1)}
    annotations = []
    for box, f in kept:
        text = f"#{f['number']} {f['label']}"
        tracking = f"finding #{f['number']}"
        annotations.append(
            hd.pr.GraphicAnnotation(
                referenced_images=[header],
                graphic_layer=layers[f["label"]],
                graphic_objects=[
                    hd.pr.GraphicObject(
                        graphic_type=hd.pr.GraphicTypeValues.POLYLINE,
                        graphic_data=rectangle(box),
                        units=hd.pr.AnnotationUnitsValues.PIXEL,
                        tracking_id=tracking,
                        tracking_uid=hd.UID(),
                    )
                ],
                text_objects=[
                    hd.pr.TextObject(
                        text_value=text,
                        units=hd.pr.AnnotationUnitsValues.PIXEL,
                        bounding_box=_text_box(box, text, image.size),
                        tracking_id=tracking,
                        tracking_uid=hd.UID(),
                    )
                ],
            )
        )
    used = sorted({f["label"] for _, f in kept}, key=LAYERS.index)
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[header],
        series_instance_uid=series_uid or hd.UID(),
        series_number=PR_SERIES_NUMBER + (image.laterality == "R"),
        sop_instance_uid=hd.UID(),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=algorithm.name,
        software_versions=algorithm.version,
        device_serial_number=algorithm.sha256[:64],
        content_label=CONTENT_LABEL,
        content_description=f"{len(kept)} finding(s) of {algorithm.name}"[:64],
        graphic_annotations=annotations or None,
        graphic_layers=[layers[label] for label in used] or None,
        series_description=PR_SERIES_DESCRIPTION,
    )
    # General Series: Laterality is type 2C for a paired body part (the breast); each
    # breast's presentation states have their own series (DicomOutputs.series_uid)
    gsps.Laterality = image.laterality if image.laterality in ("L", "R") else ""
    return gsps


def presentation_marks(gsps: Dataset) -> list[dict[str, Any]]:
    """The marks a presentation state draws, as the overlay code takes them.

    Args:
        gsps: a presentation state (written by :func:`build_gsps` or any other): each graphic
            annotation's POLYLINE / POINT objects in ``PIXEL`` units and its text.

    Returns:
        ``[{"box": [x1, y1, x2, y2] image pixels, "label": layer name in lower case,
        "text": the annotation's text, "prominent": True}]``, one per graphic annotation
        with a graphic in pixel units, in the order of the presentation state.
    """
    marks = []
    for ann in gsps.get("GraphicAnnotationSequence", []):
        label = str(ann.get("GraphicLayer", "")).strip().lower()
        text = " ".join(
            str(t.UnformattedTextValue) for t in ann.get("TextObjectSequence", [])
        ).strip()
        for obj in ann.get("GraphicObjectSequence", []):
            if str(obj.get("GraphicAnnotationUnits", "")) != "PIXEL":
                continue
            points = np.asarray(obj.GraphicData, dtype=np.float64).reshape(-1, 2)
            marks.append({"box": list(box_of(points)), "label": label, "text": text})
            marks[-1]["prominent"] = True
    return marks


def render_presentation_state(
    gsps: Dataset, pixels: np.ndarray, *, max_side: int = 1024
) -> np.ndarray:
    """An image with a presentation state's marks drawn by the project's overlay code.

    Args:
        gsps: the presentation state.
        pixels: float32 ``(H, W)`` in ``[0, 1]``, the referenced image as read
            (:func:`hdcnn.reader.read_mammogram`).
        max_side: the output's longer side (the image is only ever shrunk).

    Returns:
        uint8 RGB ``(h, w, 3)``.
    """
    from hdcnn.report import render_overlay

    marks: list[Mapping[str, Any]] = presentation_marks(gsps)
    return render_overlay(pixels, marks, max_side=max_side)


def render_file(
    presentation_state: str | os.PathLike[str],
    image: str | os.PathLike[str],
    out_png: str | os.PathLike[str],
    *,
    max_side: int = 1024,
) -> None:
    """Render a presentation-state file's marks on its image file into a PNG (atomically).

    Raises:
        MammogramError: the image cannot be read, or the presentation state does not
            reference it.
    """
    import cv2
    import pydicom

    from hdcnn.errors import MammogramError
    from hdcnn.reader import read_mammogram
    from hdcnn.utils import atomic_write_bytes

    gsps = pydicom.dcmread(presentation_state)
    header = pydicom.dcmread(image, stop_before_pixels=True)
    refs = {
        str(ref.ReferencedSOPInstanceUID)
        for series in gsps.get("ReferencedSeriesSequence", [])
        for ref in series.get("ReferencedImageSequence", [])
    }
    if str(header.get("SOPInstanceUID", "")) not in refs:
        raise MammogramError(str(image), "the presentation state does not reference this image")
    rgb = render_presentation_state(gsps, read_mammogram(image).pixels, max_side=max_side)
    _, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    atomic_write_bytes(out_png, png.tobytes())
