"""Training of the detector and the classifiers (single process or ``torchrun`` DDP).

- :mod:`hdcnn.train.config` -- :class:`TrainConfig`, the part table.
- :mod:`hdcnn.train.engine` -- epochs, validation metrics, best/last checkpoints, resume.
- :mod:`hdcnn.train.pipeline` -- :func:`train`: split, datasets, C2-after-C1, ``cascade.json``.
- :mod:`hdcnn.train.distributed` -- process group setup for ``torchrun``.
"""

from __future__ import annotations

from hdcnn.train.config import DEFAULT_EPOCHS, PARTS, TrainConfig, parse_parts

__all__ = ["DEFAULT_EPOCHS", "PARTS", "TrainConfig", "parse_parts", "train"]


def __getattr__(name: str):
    if name == "train":
        from hdcnn.train.pipeline import train

        return train
    raise AttributeError(f"module 'hdcnn.train' has no attribute {name!r}")
