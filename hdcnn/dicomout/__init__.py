"""Results a radiology workstation opens: a DICOM Structured Report and a presentation state.

- :mod:`hdcnn.dicomout.sr`: a TID 1500 measurement report (Comprehensive SR) of one image's
  or one exam's analysis: each kept finding's box as a SCOORD on its source image, its
  probabilities, label and deciding stage; the image, breast and exam verdicts with their
  rule and thresholds; the algorithm's name, version and weights hash.
- :mod:`hdcnn.dicomout.gsps`: a Grayscale Softcopy Presentation State that draws the
  numbered boxes and their labels on the source image, and a renderer that draws a
  presentation state's marks with the project's own overlay code.
- :mod:`hdcnn.dicomout.export`: source headers, identity (kept, or de-identified with
  :func:`hdcnn.dicom.deidentify`), writing a folder or a zip.
- :mod:`hdcnn.dicomout.pacs`: a study fetched from a DICOMweb server, analysed, and its
  report and presentation states stored back.

Both objects reference their source image by SOP Instance UID and are filed in the source's
study as new series with their own UIDs. Library code: no streamlit import.
"""

from __future__ import annotations

from hdcnn.dicomout.export import (
    Algorithm,
    DicomOutputs,
    SourceImage,
    build_outputs,
    not_dicom_message,
    source_header,
)

__all__ = [
    "Algorithm",
    "DicomOutputs",
    "SourceImage",
    "build_outputs",
    "not_dicom_message",
    "source_header",
]
