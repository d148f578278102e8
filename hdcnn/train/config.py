"""Training configuration and the table of trainable parts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hdcnn.config import LONG_SIDE, SCRATCH_CROP_SIZE

#: part name -> (weights file, checkpoint kind, output classes)
PARTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "detector": ("detector.pt", "detector", ("lesion",)),
    "c1": ("c1_lesion.pt", "classifier", ("normal", "lesion")),
    "c2": ("c2_malignancy.pt", "classifier", ("benign", "malignant")),
    "crop-flat": ("crop_flat.pt", "classifier", ("normal", "benign", "malignant")),
    "whole-flat": ("whole_flat.pt", "classifier", ("normal", "benign", "malignant")),
    "whole-abnormal": ("whole_abnormal.pt", "classifier", ("normal", "abnormal")),
    "whole-malignancy": ("whole_malignancy.pt", "classifier", ("benign", "malignant")),
}

#: default epochs per part, sized so all seven parts train on mini-MIAS (146 training images,
#: long side 512) on 2 CPU cores in about 50 minutes (measured 1-epoch times: detector 14 s,
#: c1 1.7 s, c2 0.2 s, crop-flat 0.9 s, whole-flat 6 s, whole-abnormal 5.3 s, whole-malignancy
#: 1.9 s, validation included). A crop epoch is only a few optimizer steps (about 110 crops at
#: batch 32), so the crop classifiers need hundreds of epochs: at 60 their training loss had
#: barely left chance level. The best epoch by validation metric is kept either way.
DEFAULT_EPOCHS: dict[str, int] = {
    "detector": 50,
    "c1": 300,
    "c2": 300,
    "crop-flat": 300,
    "whole-flat": 80,
    "whole-abnormal": 80,
    "whole-malignancy": 80,
}


def parse_parts(text: str | None) -> tuple[str, ...]:
    """``"detector,c1"`` -> ``("detector", "c1")`` in canonical order; ``None``/``"all"`` -> all.

    Raises:
        ValueError: an unknown part name.
    """
    if text is None or text.strip() in {"", "all"}:
        return tuple(PARTS)
    wanted = {p.strip() for p in text.split(",") if p.strip()}
    unknown = sorted(wanted - set(PARTS))
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}; expected some of {list(PARTS)}")
    return tuple(p for p in PARTS if p in wanted)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one ``python -m hdcnn train`` run (built once from CLI arguments).

    Attributes:
        dataset: adapter name for :func:`hdcnn.data.adapters.load_dataset` (or ``"manifest"``
            for a manifest CSV given as ``root``).
        root: dataset folder (or manifest CSV).
        out: weights directory to write (layout of ``docs/ARCHITECTURE.md``).
        parts: parts to train, canonical order.
        epochs: epochs per part; ``None`` uses :data:`DEFAULT_EPOCHS`.
        long_side: model image long side in pixels (preprocess and detector).
        batch_size: classifier batch size (per process); the detector uses ``det_batch_size``.
        det_batch_size: detector images per batch (per process).
        lr: AdamW learning rate of the classifiers; the detector uses ``det_lr``.
        det_lr: AdamW learning rate of the detector.
        weight_decay: AdamW weight decay.
        crop_size: crop classifier input side (pixels); also the ROI crop size.
        whole_size: ``(h, w)`` of the whole-image classifiers' input.
        widths: classifier stage widths.
        seed: seed of the split, the weights init, shuffling and augmentation.
        fractions: train/val/test patient fractions.
        threads: torch intra-op threads per process.
        workers: DataLoader worker processes (0 = load in the training process).
        c1_sensitivity: C1's operating point: lesion sensitivity on validation lesion crops.
        c2_min_keep: floor of the C1 filter for C2 training, as a fraction of the lesion crops.
        hard_negatives: detector false positives per image added to the normal-tissue crops of
            c1 and crop-flat (0: none); needs the detector (trained first or in ``out``).
        hard_negative_score: minimum detector score of a hard negative.
        resume: continue each part from ``last_<part>.pt`` when present.
        pretrained_backbone: optional mobilenet_v3_small state_dict for the detector.
        detector_backbone: ``"tiny"`` or ``"mobilenet_v3_small"``.
        cache_dir: preprocessed-image cache for the data loaders (``None``: no cache).
        progress: show tqdm progress bars (rank 0 only).
    """

    dataset: str
    root: Path
    out: Path
    parts: tuple[str, ...] = tuple(PARTS)
    epochs: int | None = None
    long_side: int = LONG_SIDE
    batch_size: int = 32
    det_batch_size: int = 2
    lr: float = 2e-3
    det_lr: float = 1e-3
    weight_decay: float = 1e-4
    crop_size: int = SCRATCH_CROP_SIZE
    whole_size: tuple[int, int] = (256, 160)
    widths: tuple[int, ...] = (16, 32, 64, 128)
    seed: int = 0
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    threads: int = 2
    workers: int = 0
    c1_sensitivity: float = 0.9
    c2_min_keep: float = 0.5
    hard_negatives: int = 3
    hard_negative_score: float = 0.05
    resume: bool = False
    pretrained_backbone: Path | None = None
    detector_backbone: str = "tiny"
    cache_dir: Path | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        checks = {
            "epochs must be at least 1": self.epochs is None or self.epochs >= 1,
            "long_side must be at least 64": self.long_side >= 64,
            "batch sizes must be at least 1": min(self.batch_size, self.det_batch_size) >= 1,
            "crop_size must be at least 16": self.crop_size >= 16,
            "whole_size must be at least (32, 32)": min(self.whole_size) >= 32,
            "fractions must be three shares summing to 1": len(self.fractions) == 3
            and abs(sum(self.fractions) - 1.0) < 1e-6,
            "c1_sensitivity must be in (0, 1]": 0.0 < self.c1_sensitivity <= 1.0,
            "c2_min_keep must be in [0, 1]": 0.0 <= self.c2_min_keep <= 1.0,
            "hard_negatives must be >= 0": self.hard_negatives >= 0,
            "threads must be at least 1": self.threads >= 1,
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise ValueError("; ".join(failed))
        unknown = [p for p in self.parts if p not in PARTS]
        if unknown:
            raise ValueError(f"unknown part(s) {unknown}; expected some of {list(PARTS)}")

    def epochs_for(self, part: str) -> int:
        """Epochs of ``part``: ``epochs`` when given, else :data:`DEFAULT_EPOCHS`."""
        return int(self.epochs) if self.epochs is not None else DEFAULT_EPOCHS[part]
