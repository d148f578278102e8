"""Patient-level stratified splits on the real mini-MIAS manifest."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from hdcnn.data.adapters import load_dataset
from hdcnn.data.manifest import ImageRecord, Manifest
from hdcnn.data.splits import PARTS, kfold, patient_split, split_patients
from hdcnn.terms import Label


@pytest.fixture(scope="module")
def mias(mias_root: Path) -> Manifest:
    return load_dataset("mias", mias_root)


def _strata(manifest: Manifest) -> Counter[Label]:
    return Counter(manifest.patient_labels().values())


def test_no_patient_in_two_parts_and_all_covered(mias: Manifest) -> None:
    parts = patient_split(mias, seed=3)
    seen: dict[str, str] = {}
    for name, part in parts.items():
        for pid in part.patients():
            assert pid not in seen, f"patient {pid} in {seen.get(pid)} and {name}"
            seen[pid] = name
        # every image of a patient follows the patient
        assert all(r.patient_id in part.patients() for r in part)
    assert set(seen) == set(mias.patients())
    assert sum(len(p) for p in parts.values()) == len(mias)


def test_strata_balanced(mias: Manifest) -> None:
    fractions = (0.6, 0.2, 0.2)
    parts = patient_split(mias, fractions=fractions, seed=0)
    whole = _strata(mias)
    assert whole[Label.MALIGNANT] > 10 and whole[Label.NORMAL] > 10
    for (name, part), share in zip(parts.items(), fractions, strict=True):
        for label, count in _strata(part).items():
            assert abs(count - share * whole[label]) <= 1.0, (name, label, count)
        assert abs(len(part.patients()) - share * len(mias.patients())) <= 1.0


def test_deterministic_per_seed(mias: Manifest) -> None:
    a = split_patients(mias, seed=7)
    assert a == split_patients(mias, seed=7)
    assert a != split_patients(mias, seed=8)
    assert list(a) == list(PARTS)


def test_kfold_holds_out_each_patient_once(mias: Manifest) -> None:
    folds = kfold(mias, 5, seed=1)
    held = Counter(pid for _, test in folds for pid in test.patients())
    assert set(held) == set(mias.patients()) and set(held.values()) == {1}
    whole = _strata(mias)
    for train, test in folds:
        assert not set(train.patients()) & set(test.patients())
        assert len(train) + len(test) == len(mias)
        for label, count in _strata(test).items():
            assert abs(count - whole[label] / 5) <= 1.0
    assert [t.patients() for _, t in folds] == [t.patients() for _, t in kfold(mias, 5, seed=1)]


def test_bad_arguments() -> None:
    record = ImageRecord("a.png", "p1", "p1", None, None, None, None, Label.NORMAL)
    manifest = Manifest([record])
    with pytest.raises(ValueError):
        patient_split(manifest, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError):
        kfold(manifest, 2)
