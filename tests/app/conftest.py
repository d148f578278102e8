"""Fixtures of the app tests: a tiny random-weight weights directory and a sample cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cascade_weights import make_weights_dir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete weights directory of tiny random-weight models (no training needed)."""
    return make_weights_dir(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="session")
def samples_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the synthetic sample images are generated for the whole session."""
    return tmp_path_factory.mktemp("samples")


@pytest.fixture()
def app_env(monkeypatch: pytest.MonkeyPatch, tiny_weights: Path, samples_dir: Path) -> Path:
    """Point the app at the tiny weights and the session's sample folder."""
    monkeypatch.setenv("HDCNN_WEIGHTS", str(tiny_weights))
    monkeypatch.setenv("HDCNN_SAMPLES_DIR", str(samples_dir))
    monkeypatch.delenv("HDCNN_EXPERIMENTS", raising=False)
    monkeypatch.delenv("HDCNN_DATA_ROOTS", raising=False)  # no dataset folder unless set
    monkeypatch.chdir(REPO)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return tiny_weights
