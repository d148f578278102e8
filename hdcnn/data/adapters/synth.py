"""Synthetic cohort: ``DIR/manifest.csv`` written by :mod:`hdcnn.data.synth`."""

from __future__ import annotations

from pathlib import Path

from hdcnn.data.adapters._common import require_file
from hdcnn.data.manifest import Manifest


def load_synth(root: Path) -> Manifest:
    """Load the manifest of a synthetic cohort folder.

    Args:
        root: the folder given to ``python -m hdcnn synth --out DIR`` (holds ``manifest.csv``).

    Returns:
        The manifest, image paths relative to ``root``.

    Raises:
        DatasetError: ``manifest.csv`` is missing or malformed.
    """
    return Manifest.load_csv(require_file(root, "manifest.csv", "synthetic cohort"))
