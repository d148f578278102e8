"""The pretrained recipe's detector: its architecture, its fit loop (DDP-capable) and its
proposals.

:func:`fit_detector` feeds :func:`hdcnn.train.engine.train_one_epoch_detector` (the one detector
loop) with batches of model images read from the :class:`~hdcnn.train.images.ImageSource`
when a batch needs them, augmented by :meth:`hdcnn.data.torchdata.Augment.flip_gamma`. Under
``torchrun`` every process draws the same shuffled order and the same augmentation draws and
trains on its slice of each global batch (DistributedDataParallel averages the gradients); one
process sees exactly the batches of the recipe before DDP, so its figures reproduce.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from hdcnn.config import LONG_SIDE
from hdcnn.data.torchdata import Augment
from hdcnn.errors import HDCNNError
from hdcnn.nets.detector import DetectorConfig, build_detector
from hdcnn.train.distributed import DistContext, all_reduce_mean
from hdcnn.train.engine import train_one_epoch_detector
from hdcnn.train.images import Image, ImageSource

if TYPE_CHECKING:
    from hdcnn.train.recipe import CVConfig

log = logging.getLogger(__name__)

#: Share of the one-cycle schedule spent warming up.
WARMUP = 0.1


def detector_config(cfg: CVConfig, overrides: dict[str, Any] | None = None) -> DetectorConfig:
    """The detector architecture of this run: Lite0 FPN; the default anchors are set for
    512-px model images and scale with the run's long side, so they keep their size in
    millimetres (a 1,024-px run sees finer detail, not other anchors). ``overrides``: fields
    an ablation row changes (e.g. ``{"backbone": "tiny"}``, the from-scratch detector of
    ``hdcnn train``)."""
    scale = cfg.cascade.long_side / LONG_SIDE
    det = DetectorConfig(
        long_side=cfg.cascade.long_side,
        anchor_sizes=tuple(max(1, round(s * scale)) for s in DetectorConfig.anchor_sizes),
        backbone="efficientnet_lite0",
        trainable_stages=cfg.trainable_stages,
        fpn_channels=64,
        representation_size=256,
        rpn_pre_nms_top_n_train=600,
        rpn_post_nms_top_n_train=300,
        box_batch_size_per_image=64,
        box_score_thresh=0.001,
        box_detections_per_img=max(50, cfg.cascade.max_candidates),
    )
    return replace(det, **(overrides or {}))


def one_cycle(
    optimizer: torch.optim.Optimizer, max_lr: float, steps: int
) -> torch.optim.lr_scheduler.OneCycleLR:
    """The one-cycle schedule over ``steps`` optimizer steps, :data:`WARMUP` of them warming up.

    torch's ``OneCycleLR`` divides by ``WARMUP * steps - 1``, which is zero when the warm-up is
    exactly one step (10 steps: a 10-patient cohort in 2 folds with 1 epoch); then the warm-up
    is 2 steps instead. Every other length keeps the recipe's schedule.
    """
    pct = WARMUP if float(WARMUP * steps) - 1 != 0 else 2.0 / steps
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=max(steps, 1), pct_start=pct
    )


def steps_per_epoch(n_images: int, batch: int, world_size: int) -> int:
    """Optimizer steps of one epoch: global batches of ``batch`` images per process."""
    return math.ceil(n_images / (batch * world_size))


def batches(
    source: ImageSource,
    order: np.ndarray,
    batch: int,
    rng: np.random.Generator,
    ctx: DistContext,
    augment: Augment,
) -> Iterator[tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]]:
    """This process's ``(images, targets)`` of each global batch of ``order``, augmented.

    Every process walks the same global batches and draws the augmentation of every image in
    them (so all stay in step); it reads and returns only its slice. Under DDP the order is
    padded by wrapping round so every process gets ``batch`` images per step.
    """
    per_step = batch * ctx.world_size
    if ctx.distributed and len(order) % per_step:
        order = np.concatenate([order, np.resize(order, per_step - len(order) % per_step)])
    for start in range(0, len(order), per_step):
        chunk = order[start : start + per_step]
        draws = [augment.draw_flip_gamma(rng) for _ in chunk]
        mine = slice(ctx.rank * batch, (ctx.rank + 1) * batch)
        images, targets = [], []
        for i, draw in zip(chunk[mine], draws[mine], strict=True):
            image = source.image(int(i))
            x = torch.from_numpy(np.ascontiguousarray(image.prep.image))[None]
            boxes = torch.from_numpy(image.item.gt.copy())
            x, boxes = augment.flip_gamma(x, boxes, draw)
            images.append(x)
            targets.append({"boxes": boxes, "labels": torch.ones(len(boxes), dtype=torch.int64)})
        yield images, targets


def fit_detector(
    source: ImageSource,
    train_idx: Sequence[int],
    cfg: CVConfig,
    ctx: DistContext,
    device: torch.device,
    *,
    overrides: dict[str, Any] | None = None,
    average_last: int = 0,
    desc: str,
    progress: bool,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Fine-tune the detector from ImageNet on ``train_idx`` (a backbone other than Lite0 in
    ``overrides``, see :func:`detector_config`: from random weights); returns it (on the CPU,
    in eval mode) and a summary. Under DDP every process calls it; all return the same
    weights.

    ``average_last``: return the mean of the weights at the end of the last this-many epochs
    (stochastic weight averaging, ``torch.optim.swa_utils.AveragedModel``; 0: the last
    weights). Same architecture, no inference cost. The buffers are averaged too: the trunk's
    BatchNorm statistics are frozen (:class:`~hdcnn.nets.detector.DetectorConfig`), so they
    are the same in every averaged epoch and no ``update_bn`` pass is needed.

    Raises:
        HDCNNError: no training image (a fold with every patient held out).
    """
    if len(train_idx) == 0:
        raise HDCNNError(cfg.out, f"{desc}: no training image; use fewer folds or more patients")
    if not 0 <= average_last <= cfg.det_epochs:
        raise ValueError(f"average_last must be in [0, {cfg.det_epochs}], got {average_last}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    det_cfg = detector_config(cfg, overrides)
    pretrained = cfg.pretrained and det_cfg.backbone == "efficientnet_lite0"
    model: torch.nn.Module = build_detector(det_cfg, pretrained=pretrained).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.det_lr, weight_decay=1e-4)
    per_epoch = steps_per_epoch(len(train_idx), cfg.det_batch, ctx.world_size)
    sched = one_cycle(opt, cfg.det_lr, cfg.det_epochs * per_epoch)
    net = model
    if ctx.distributed:
        ids = [device.index] if device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids)
    averaged = AveragedModel(model, use_buffers=True) if average_last else None
    augment = Augment()
    t0 = time.perf_counter()
    losses: list[float] = []
    for epoch in range(cfg.det_epochs):
        order = rng.permutation(np.asarray(train_idx))
        loss = train_one_epoch_detector(
            net,
            batches(source, order, cfg.det_batch, rng, ctx, augment),
            opt,
            device,
            scheduler=sched,
            progress=progress,
            desc=f"{desc} epoch {epoch + 1}",
        )
        losses.append(all_reduce_mean(loss, ctx))
        if averaged is not None and epoch >= cfg.det_epochs - average_last:
            averaged.update_parameters(model)
        log.info(
            "%s epoch %d/%d loss %.4f (%.0f s)",
            desc,
            epoch + 1,
            cfg.det_epochs,
            losses[-1],
            time.perf_counter() - t0,
        )
    if averaged is not None:
        model = averaged.module
    model.cpu().eval()
    return model, {
        "epochs": cfg.det_epochs,
        "averaged_epochs": average_last,
        "n_train": len(train_idx),
        "loss": [round(v, 5) for v in losses],
        "seconds": round(time.perf_counter() - t0, 1),
    }


@torch.inference_mode()
def propose(
    model: torch.nn.Module, image: Image, k: int, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` detector boxes (model pixels) and scores of one image (``model`` already on
    ``device``, in eval mode)."""
    x = torch.from_numpy(np.ascontiguousarray(image.prep.image))[None].to(device)
    det = {key: v.cpu() for key, v in model([x])[0].items()}
    scores = det["scores"].numpy()
    order = np.argsort(-scores, kind="stable")[:k]
    return det["boxes"].numpy()[order].astype(np.float32), scores[order].astype(np.float32)
