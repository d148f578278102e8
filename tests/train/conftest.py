"""Fixtures shared by the ``hdcnn cv`` tests (one process and ``torchrun``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 SYNTHETIC patients, 32 images of 192 px, with a manifest CSV."""
    from hdcnn.data.synth import write_cohort

    root = tmp_path_factory.mktemp("synth")
    write_cohort(root, patients=8, seed=3, size=192)
    return root / "manifest.csv"
