"""Patient-level stratified splits: train/val/test and k-fold.

All images of a patient always go to the same part. Patients are stratified on their worst
image label (malignant > benign > normal > unknown), so every part keeps the label mix of the
whole dataset. The result depends only on the manifest's patients, their labels and ``seed``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from hdcnn.config import FRACTIONS
from hdcnn.data.manifest import Manifest
from hdcnn.terms import Label

#: Names of the parts returned by :func:`patient_split`, in order.
PARTS: tuple[str, ...] = ("train", "val", "test")


def _strata(manifest: Manifest, seed: int) -> list[list[str]]:
    """Patient ids grouped by worst label (fixed label order), each group shuffled by ``seed``."""
    labels = manifest.patient_labels()
    rng = random.Random(seed)
    groups = []
    for label in (Label.MALIGNANT, Label.BENIGN, Label.NORMAL, Label.UNKNOWN):
        patients = sorted(pid for pid, worst in labels.items() if worst == label)
        rng.shuffle(patients)
        groups.append(patients)
    return groups


def _allocate(n: int, fractions: Sequence[float]) -> list[int]:
    """Split ``n`` into integer counts proportional to ``fractions`` (largest remainder)."""
    raw = [n * f for f in fractions]
    counts = [math.floor(v) for v in raw]
    order = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def split_patients(
    manifest: Manifest, *, fractions: Sequence[float] = FRACTIONS, seed: int = 0
) -> dict[str, list[str]]:
    """Assign every patient to train/val/test.

    Args:
        manifest: the images; patients are ``record.patient_id``.
        fractions: shares of patients for train, val and test (>= 0, summing to 1).
        seed: the shuffle seed; the same seed gives the same split.

    Returns:
        ``{"train": [patient ids], "val": [...], "test": [...]}``, disjoint, covering all.

    Raises:
        ValueError: ``fractions`` is not three non-negative numbers summing to 1.
    """
    if len(fractions) != len(PARTS) or any(f < 0 for f in fractions):
        raise ValueError(f"fractions must be 3 numbers >= 0 (train, val, test), got {fractions}")
    if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions must sum to 1, got {sum(fractions):g}")
    parts: dict[str, list[str]] = {name: [] for name in PARTS}
    # carry the rounding of each stratum into the next so the part sizes stay on target
    taken = [0] * len(PARTS)
    total = 0
    for patients in _strata(manifest, seed):
        total += len(patients)
        target = _allocate(total, fractions)
        counts = [t - k for t, k in zip(target, taken, strict=True)]
        if any(c < 0 for c in counts):
            counts = _allocate(len(patients), fractions)
        start = 0
        for name, count in zip(PARTS, counts, strict=True):
            parts[name].extend(patients[start : start + count])
            start += count
        taken = [k + c for k, c in zip(taken, counts, strict=True)]
    return parts


def patient_split(
    manifest: Manifest, *, fractions: Sequence[float] = FRACTIONS, seed: int = 0
) -> dict[str, Manifest]:
    """Patient-level stratified train/val/test split of ``manifest``.

    Args:
        manifest: the images.
        fractions: shares of patients for train, val and test (sum 1).
        seed: shuffle seed (deterministic).

    Returns:
        ``{"train": Manifest, "val": Manifest, "test": Manifest}``; no patient is in two parts.
    """
    ids = split_patients(manifest, fractions=fractions, seed=seed)
    return {name: manifest.subset(ids[name]) for name in PARTS}


def kfold(manifest: Manifest, k: int, *, seed: int = 0) -> list[tuple[Manifest, Manifest]]:
    """Patient-level stratified k-fold cross-validation.

    Patients of each stratum are dealt round-robin to the folds (continuing from stratum to
    stratum), so fold sizes differ by at most one patient and each fold keeps the label mix.

    Args:
        manifest: the images.
        k: number of folds, 2 <= k <= number of patients.
        seed: shuffle seed (deterministic).

    Returns:
        ``k`` pairs ``(train, held_out)``; every patient is held out exactly once.

    Raises:
        ValueError: ``k`` is out of range.
    """
    n_patients = len(manifest.patients())
    if k < 2 or k > n_patients:
        raise ValueError(f"k must be between 2 and the number of patients ({n_patients}), got {k}")
    folds: list[list[str]] = [[] for _ in range(k)]
    position = 0
    for patients in _strata(manifest, seed):
        for pid in patients:
            folds[position % k].append(pid)
            position += 1
    result = []
    for i in range(k):
        held = set(folds[i])
        train = [pid for pid in manifest.patients() if pid not in held]
        result.append((manifest.subset(train), manifest.subset(held)))
    return result
