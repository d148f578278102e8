"""Tests of hdcnn.samples: the real CBIS-DDSM views and SYNTHETIC samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hdcnn.errors import DatasetError
from hdcnn.samples import (
    VIEW_KEYS,
    exam_title,
    exams,
    get_sample,
    real_samples,
    synthetic_samples,
)
from hdcnn.terms import Label


def test_real_samples_are_the_packages_exams_without_identifiers(cbis_cases) -> None:
    samples = real_samples()
    assert len(samples) == 4 * len(cbis_cases)
    grouped = exams(samples)
    assert list(grouped) == ["cbis-benign-1", "cbis-malignant-1"]
    for views in grouped.values():
        assert list(views) == list(VIEW_KEYS)
    lcc = grouped["cbis-malignant-1"]["lcc"]
    assert lcc.path == Path(cbis_cases[1]["lcc"])
    assert lcc.truth == Label.MALIGNANT and not lcc.synthetic
    assert (lcc.laterality, lcc.view) == ("L", "CC")
    # each view is named by its own breast's truth: the malignant case's right breast is benign
    rcc = grouped["cbis-malignant-1"]["rcc"]
    assert rcc.truth == Label.BENIGN
    assert rcc.title.endswith("right CC, benign breast"), rcc.title
    assert lcc.title.endswith("left CC, malignant breast"), lcc.title
    assert exam_title(grouped["cbis-malignant-1"]).endswith("(left malignant, right benign)")
    assert exam_title(grouped["cbis-benign-1"]).endswith("(both breasts benign)")
    assert all(s.truth == Label.BENIGN for s in grouped["cbis-benign-1"].values())
    for s in samples:
        # CBIS-DDSM headers name the patient (e.g. "Mass-Test_P_00173_LEFT_CC"): never in titles.
        assert "P_0" not in s.title and "Mass-Test" not in s.title
        assert not s.title.startswith("SYNTHETIC")


def test_real_sample_reads_with_matching_metadata(cbis_cases) -> None:
    sample = real_samples()[0]
    mammo = sample.read()
    assert mammo.meta.source == sample.path.name
    assert mammo.meta.laterality == sample.laterality
    assert mammo.pixels.dtype == np.float32 and mammo.pixels.ndim == 2


def test_synthetic_samples_are_marked_and_reused(tmp_path: Path) -> None:
    samples = synthetic_samples(tmp_path, n_patients=2, seed=1, size=96)
    assert len(samples) == 8
    assert all(s.synthetic and s.title.startswith("SYNTHETIC") for s in samples)
    assert all(s.path.is_file() for s in samples)
    assert {s.exam for s in samples} == {"synthetic-1", "synthetic-2"}
    mtimes = [s.path.stat().st_mtime_ns for s in samples]
    again = synthetic_samples(tmp_path, n_patients=2, seed=1, size=96)
    assert [s.key for s in again] == [s.key for s in samples]
    assert [s.path.stat().st_mtime_ns for s in again] == mtimes  # not regenerated
    mammo = samples[0].read()
    assert mammo.pixels.shape[0] == 96


def test_get_sample(tmp_path: Path) -> None:
    samples = synthetic_samples(tmp_path, n_patients=1, seed=0, size=96)
    assert get_sample(samples[2].key, samples) is samples[2]
    with pytest.raises(DatasetError, match="no sample named"):
        get_sample("nope/lcc", samples)
