"""Datasets: the manifest, dataset adapters, patient-level splits and statistics.

- :mod:`hdcnn.data.manifest` -- :class:`Manifest`, :class:`ImageRecord`, :class:`Lesion`.
- :mod:`hdcnn.data.adapters` -- :func:`load_dataset` for every supported dataset.
- :mod:`hdcnn.data.splits` -- :func:`patient_split`, :func:`kfold`.
- :mod:`hdcnn.data.stats` -- :func:`dataset_stats` and plotting frames.
"""

from __future__ import annotations

from hdcnn.data.manifest import ImageRecord, Lesion, Manifest

__all__ = ["ImageRecord", "Lesion", "Manifest"]
