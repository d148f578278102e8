"""Whether images can be one patient's exam, from the keyed patient identity in their headers.

The identity itself (PatientID / PatientName) is never shown, logged or reported: only its
per-process keyed hash (:func:`hdcnn.dicom.patient_key`, held as
:attr:`hdcnn.reader.MammogramMeta.patient_key`) is compared. No Streamlit here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def identity_check(views: Sequence[tuple[str, Any]]) -> tuple[str | None, list[str]]:
    """Whether images can be one patient's exam, from their headers' keyed patient identity
    (:attr:`hdcnn.reader.MammogramMeta.patient_key`; the identity itself is never shown).

    Args:
        views: ``(display name, MammogramMeta)`` per image.

    Returns:
        ``(refusal, warnings)``: a refusal when two headers name different patients; a warning
        for files that hold no patient identity (a PGM, PNG, JPEG or TIFF film, or a DICOM
        without one) beside files that do.
    """
    keys = {name: getattr(meta, "patient_key", None) for name, meta in views}
    patients = {k for k in keys.values() if k is not None}
    refusal = None
    if len(patients) > 1:
        refusal = (
            f"These images come from {len(patients)} different patients according to their "
            "headers: they are not one exam, so no exam verdict is given. Analyse each on the "
            "Diagnose page, or give the views of one patient."
        )
    without = [name for name, key in keys.items() if key is None]
    warnings = []
    if without and patients:
        formats = {name: str(getattr(meta, "format", "")).upper() for name, meta in views}
        files = ", ".join(f"{name} ({formats[name]})" for name in without)
        warnings.append(
            f"{files}: no patient identity in the file, unlike the other views' headers; "
            "nothing shows that it belongs to the same patient (a film from another "
            "collection, such as mini-MIAS, mixed with DICOMs?)."
        )
    return refusal, warnings
