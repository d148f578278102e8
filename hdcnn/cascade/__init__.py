"""The detector + hierarchical classifier cascade: one mammogram in, one verdict out.

Stages (each callable on its own, see docs/CASCADE.md)::

    read -> preprocess -> detect -> classify -> decide

``detect`` and ``classify`` run networks; ``decide`` is pure arithmetic on their outputs, so an
app can move a threshold slider and call :meth:`Cascade.decide` on a stored
:class:`CascadeTrace` without running any network again.

Probability rules (candidates ``i`` with detector score ``s_i >= t_det``, at most
``max_candidates``; ``l_i`` = P(lesion) from classifier 1, ``m_i`` = P(malignant | lesion) from
classifier 2):

- finding kept when ``l_i >= t_c1``, else rejected; a kept finding is malignant when
  ``l_i * m_i >= t_malignant``, else benign; on an image whose verdict is normal every finding
  is reported as rejected;
- ``p_abnormal = max_i l_i`` (0 without candidates) -- max, not noisy-OR, because candidates
  overlap and are correlated, and their number grows with dense tissue;
- ``p_malignant = max over kept findings of l_i * m_i`` (0 without kept findings);
- verdict: normal if ``p_abnormal < max(t_abnormal, t_c1)``, else malignant if
  ``p_malignant >= t_malignant``, else benign.

Exam rule: per breast the max over its views of ``p_abnormal`` and ``p_malignant`` and the same
verdict; per exam the worse breast.

Calibration (optional, ``cascade.json`` ``calibration``, :mod:`hdcnn.calibration`): verdicts
stay decided on the scores above; predictions, breasts and exams also carry calibrated
probabilities and the decisions that were borderline (within a threshold's measured band).

Thread safety: networks are put in eval mode once at load time and run under
:func:`torch.inference_mode`; a :class:`Cascade` keeps no per-call state, so one instance can
be shared by several threads (the Streamlit app caches one with ``st.cache_resource``).

Package layout (the data's walk): :mod:`~hdcnn.cascade.rules` (thresholds, verdict, threshold
choice), :mod:`~hdcnn.cascade.results` (result types), :mod:`~hdcnn.cascade.exam` (exam rule),
:mod:`~hdcnn.cascade.heads` (crop classifiers), :mod:`~hdcnn.cascade.orchestrator`
(:class:`Cascade`, which only sequences the stages), :mod:`~hdcnn.cascade.loading`
(:func:`load_cascade`) and :mod:`~hdcnn.cascade.known_answers` (the load-time check of a
folder's outputs on reference inputs). A weights folder's files and settings are
:mod:`hdcnn.config`'s.
"""

from __future__ import annotations

from hdcnn.cascade.exam import combine_exam
from hdcnn.cascade.heads import (
    CROP_SOURCES,
    CropHead,
    FlatCropHead,
    HierarchicalCropHead,
    _class_index,
    _input_size,
)
from hdcnn.cascade.loading import (
    flat_head,
    load_cascade,
    load_model_file,
    load_pair,
    stamp_known_answers,
)
from hdcnn.cascade.orchestrator import Cascade, ImageInput
from hdcnn.cascade.results import (
    BreastVerdict,
    Candidates,
    CascadeTrace,
    ExamPrediction,
    Finding,
    Prediction,
)
from hdcnn.cascade.rules import OPERATING_RULES, Thresholds, choose_thresholds, verdict
from hdcnn.terms import FindingStatus

__all__ = [
    "CROP_SOURCES",
    "OPERATING_RULES",
    "BreastVerdict",
    "Candidates",
    "Cascade",
    "CascadeTrace",
    "CropHead",
    "ExamPrediction",
    "Finding",
    "FindingStatus",
    "FlatCropHead",
    "HierarchicalCropHead",
    "ImageInput",
    "Prediction",
    "Thresholds",
    "_class_index",
    "_input_size",
    "choose_thresholds",
    "combine_exam",
    "flat_head",
    "load_cascade",
    "load_model_file",
    "load_pair",
    "stamp_known_answers",
    "verdict",
]
