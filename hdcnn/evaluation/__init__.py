"""Evaluation: the one engine behind training's model selection, ``evaluate``, ``cv`` and the app.

- :mod:`~hdcnn.evaluation.metrics`: AUC (scikit-learn) with patient-bootstrap intervals,
  sensitivity at a stated specificity, threshold helpers, the one FROC hit rule, confusion
  matrices.
- :mod:`~hdcnn.evaluation.experiment`: the four concepts on the same images through the
  cascade's public stages (``detect``, ``classify``, ``decide``), and their report.
- :mod:`~hdcnn.evaluation.out_of_fold`: ``cv``'s out-of-fold scoring and threshold choice.
- :mod:`~hdcnn.evaluation.engine`: a weights folder evaluated on a dataset split (``python -m
  hdcnn evaluate``), with optional threshold calibration.
- :mod:`~hdcnn.evaluation.plots`: ROC/FROC and dataset figures (plotly for the app,
  matplotlib PNGs for the CLI).
"""
