"""Training of the detector and the classifiers (single process or ``torchrun`` DDP).

The shipped recipe (``python -m hdcnn cv``), by stage:

- :mod:`hdcnn.train.recipe` -- :class:`CVConfig`, :func:`run`: sequences the stages below.
- :mod:`hdcnn.train.images` -- the one image source (model images spilled, originals read
  when needed).
- :mod:`hdcnn.train.detector` -- the detector's architecture, DDP fit loop and proposals.
- :mod:`hdcnn.train.features` / :mod:`hdcnn.train.heads` -- crop features; logistic heads.
- :mod:`hdcnn.train.folds` -- folds and the per-stage resume cache.
- :mod:`hdcnn.train.scoring` -- out-of-fold scores, thresholds, report, shipping.
- :mod:`hdcnn.train.ablations` -- the ablation rows.

The from-scratch recipe (``python -m hdcnn train``):

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
