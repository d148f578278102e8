"""One part's training loop: epochs, validation, best/last checkpoints and resume.

``train_one_epoch_*`` and ``evaluate_*`` hold no checkpoint logic; :func:`fit` glues them to
the files of the weights directory:

- ``<out>/<file>`` (e.g. ``c1_lesion.pt``): the best epoch by the validation metric, an
  inference checkpoint (:func:`hdcnn.checkpoint.save_checkpoint`).
- ``<out>/last_<part>.pt``: the last finished epoch plus the ``training`` state (optimizer,
  scheduler, epoch, best metric and best weights, torch/numpy/random RNG states) for
  ``--resume``.

Validation metrics: classifiers use the ROC AUC (macro one-vs-rest for three classes); the
detector uses the mean lesion sensitivity at 0.25, 0.5, 1 and 2 false positives per image
(a FROC summary), computed by :func:`hdcnn.evaluation.metrics.froc` with the one hit rule that the
reported FROC uses (a predicted box's centre inside the lesion's box). A metric that cannot
be computed (e.g. one class absent from validation) is NaN; then the latest epoch counts as
best.
"""

from __future__ import annotations

import copy
import logging
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from hdcnn.checkpoint import load_checkpoint, save_checkpoint
from hdcnn.errors import CheckpointError
from hdcnn.evaluation.metrics import froc, threshold_at_sensitivity  # noqa: F401  (see below)
from hdcnn.evaluation.metrics import lesion_hits as hits  # noqa: F401  (see below)
from hdcnn.train.distributed import DistContext, barrier, unwrap, wrap

log = logging.getLogger(__name__)

# ``hits`` and ``threshold_at_sensitivity`` are re-exported for hdcnn.train.pipeline; their one
# definition is in hdcnn.evaluation.metrics.

#: false positives per image at which the detector's sensitivity is averaged
FROC_FPI: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)


# ----------------------------------------------------------------------------- classifiers
def train_one_epoch_classifier(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    class_weights: torch.Tensor | None = None,
    progress: bool = False,
    desc: str = "train",
) -> float:
    """One pass over ``loader`` of ``(x (B, 1, h, w) float, y (B,) int64)``; returns mean loss."""
    model.train()
    total, count = 0.0, 0
    weights = class_weights.to(device) if class_weights is not None else None
    for x, y in tqdm(loader, desc=desc, leave=False, disable=not progress):
        x, y = x.to(device), torch.as_tensor(y, dtype=torch.int64).to(device)
        loss = F.cross_entropy(model(x), y, weight=weights)
        total += _optimise(optimizer, loss) * len(y)
        count += len(y)
    return total / max(count, 1)


def _optimise(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    """One optimizer step on ``loss``; returns its value."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def predict_classifier(
    model: nn.Module, loader: DataLoader, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities ``(N, C)`` float64 and labels ``(N,)`` int64 over ``loader``."""
    model.eval()
    probs, labels = [], []
    for x, y in loader:
        probs.append(torch.softmax(model(x.to(device)), dim=1).double().cpu().numpy())
        labels.append(np.asarray(y, dtype=np.int64).reshape(-1))
    if not probs:
        return np.zeros((0, 0)), np.zeros((0,), dtype=np.int64)
    return np.concatenate(probs), np.concatenate(labels)


def classifier_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``{"auc", "loss", "accuracy", "n"}`` of softmax outputs; ``auc`` is NaN when undefined.

    Args:
        probs: ``(N, C)`` probabilities.
        labels: ``(N,)`` class indices.
    """
    from sklearn.metrics import roc_auc_score

    n = len(labels)
    if n == 0:
        return {"auc": math.nan, "loss": math.nan, "accuracy": math.nan, "n": 0}
    eps = 1e-7
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(n), labels], eps, 1.0))))
    accuracy = float(np.mean(probs.argmax(1) == labels))
    auc = math.nan
    present = np.unique(labels)
    if len(present) >= 2:
        if probs.shape[1] == 2:
            auc = float(roc_auc_score(labels, probs[:, 1]))
        elif len(present) == probs.shape[1]:
            auc = float(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
        else:  # some class absent: AUC of "abnormal" (any non-first class) vs the first
            auc = float(roc_auc_score(labels > 0, 1.0 - probs[:, 0]))
    return {"auc": auc, "loss": loss, "accuracy": accuracy, "n": n}


# ----------------------------------------------------------------------------- detector
def train_one_epoch_detector(
    model: nn.Module,
    loader: Iterable[tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    progress: bool = False,
    desc: str = "train",
) -> float:
    """One pass over ``loader`` of ``(images, targets)`` lists; returns the mean summed loss.

    The one detector loop of both recipes (``hdcnn train``'s DataLoader, ``hdcnn cv``'s
    batches of :func:`hdcnn.train.detector.fit_detector`); ``model`` may be DDP-wrapped.
    ``scheduler`` (if any) steps after every optimizer step.
    """
    model.train()
    total, count = 0.0, 0
    for images, targets in tqdm(loader, desc=desc, leave=False, disable=not progress):
        images = [im.to(device) for im in images]
        targets = [
            {"boxes": t["boxes"].float().to(device), "labels": t["labels"].long().to(device)}
            for t in targets
        ]
        losses = model(images, targets)
        total += _optimise(optimizer, sum(losses.values())) * len(images)
        if scheduler is not None:
            scheduler.step()
        count += len(images)
    return total / max(count, 1)


def detector_metrics(
    results: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    fpi: Sequence[float] = FROC_FPI,
) -> dict[str, float]:
    """FROC summary of detections, by :func:`hdcnn.evaluation.metrics.froc` (the report's rule).

    Args:
        results: per image ``(pred_boxes (P, 4), scores (P,), gt_boxes (G, 4))``, model pixels.
        fpi: false-positive-per-image points.

    Returns:
        ``{"froc": mean sensitivity over fpi, "recall_at_1fp", "n_lesions", "n_images"}``;
        sensitivities are NaN without lesions.
    """
    rates = tuple(dict.fromkeys((*fpi, 1.0)))
    summary = froc(
        [{"boxes": boxes, "scores": scores} for boxes, scores, _ in results],
        [gt for _, _, gt in results],
        fp_rates=rates,
    )

    def sensitivity(rate: float) -> float:
        value = summary[f"{rate:g}"]
        return math.nan if value is None else float(value)

    return {
        "n_lesions": summary["n_lesions"],
        "n_images": summary["n_images"],
        "froc": float(np.mean([sensitivity(r) for r in fpi])),
        "recall_at_1fp": sensitivity(1.0),
    }


@torch.no_grad()
def predict_detector(
    model: nn.Module, loader: DataLoader, device: torch.device
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``[(pred_boxes (P, 4), scores (P,), gt_boxes (G, 4))]`` per image, model pixels."""
    model.eval()
    results = []
    for images, targets in loader:
        outputs = model([im.to(device) for im in images])
        for out, tgt in zip(outputs, targets, strict=True):
            results.append(
                (
                    out["boxes"].cpu().numpy(),
                    out["scores"].cpu().numpy(),
                    tgt["boxes"].cpu().numpy().reshape(-1, 4),
                )
            )
    return results


# ----------------------------------------------------------------------------- fit
@dataclass
class Job:
    """One part to train.

    Attributes:
        part: part name (``"detector"``, ``"c1"`` ...).
        file: best-checkpoint file name in the weights directory.
        kind: ``"detector"`` or ``"classifier"``.
        classes: output class names.
        model_config: the model's config dataclass.
        build: ``() -> nn.Module`` (random init; seeded by :func:`fit`).
        train_set / val_set: datasets; classifier items ``(x (1, h, w), label)``, detector items
            ``(image (1, h, w), target dict)``.
        epochs, lr, batch_size: optimisation settings.
        collate: DataLoader ``collate_fn`` (``None``: default).
        class_weights: cross-entropy class weights ``(C,)`` (classifiers).
        extra: plain-type metadata written into the checkpoints.
    """

    part: str
    file: str
    kind: str
    classes: tuple[str, ...]
    model_config: Any
    build: Callable[[], nn.Module]
    train_set: Dataset
    val_set: Dataset
    epochs: int
    lr: float
    batch_size: int
    weight_decay: float = 1e-4
    collate: Callable[[list[Any]], Any] | None = None
    class_weights: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class FitResult:
    """Outcome of :func:`fit`: the best model (eval mode, unwrapped) and its record."""

    model: nn.Module
    best_epoch: int
    best_metric: float
    history: list[dict[str, float]]


def cosine_schedule(epochs: int, floor: float = 0.05) -> Callable[[int], float]:
    """Learning-rate factor of epoch ``e`` (0-based): half a cosine from 1 to ``floor``.

    A closed form of the epoch index and the total, so a run resumed with a larger
    ``--epochs`` continues on the longer schedule.
    """
    total = max(int(epochs), 1)

    def factor(epoch: int) -> float:
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(epoch, total) / total))

    return factor


def seed_everything(seed: int) -> None:
    """Seed ``random``, ``numpy`` and ``torch``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, gauss],
        "random": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["random"]
    random.setstate((version, tuple(internal), gauss_next))


def _key(metric: float, epoch: int) -> tuple[int, float]:
    """Ordering of epochs for "best": finite metrics beat NaN; NaN -> the latest epoch."""
    return (1, metric) if math.isfinite(metric) else (0, float(epoch))


def _loader(ds: Dataset, job: Job, ctx: DistContext, *, shuffle: bool, seed: int, workers: int):
    sampler = DistributedSampler(
        ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed
    )
    loader = DataLoader(
        ds,
        batch_size=job.batch_size,
        sampler=sampler,
        collate_fn=job.collate,
        num_workers=workers,
        persistent_workers=False,
    )
    return loader, sampler


def evaluate(model: nn.Module, job: Job, ctx: DistContext, workers: int = 0) -> dict[str, float]:
    """Validation metrics of ``model`` on ``job.val_set`` (computed on the whole set by every
    process, so all ranks agree on the best epoch)."""
    loader = DataLoader(
        job.val_set,
        batch_size=job.batch_size,
        shuffle=False,
        collate_fn=job.collate,
        num_workers=workers,
    )
    net = unwrap(model)
    if job.kind == "detector":
        m = detector_metrics(predict_detector(net, loader, ctx.device))
        m["metric"] = m["froc"]
    else:
        m = classifier_metrics(*predict_classifier(net, loader, ctx.device))
        m["metric"] = m["auc"]
    return m


def fit(
    job: Job,
    out: Path,
    ctx: DistContext,
    *,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    workers: int = 0,
    stop_after: int | None = None,
) -> FitResult:
    """Train ``job`` for ``job.epochs`` epochs, validating after each.

    Args:
        job: what to train.
        out: weights directory; rank 0 writes ``out/job.file`` (best) and
            ``out/last_<part>.pt`` (after every epoch).
        ctx: distributed context (single process: the default).
        seed: seeds weights init, shuffling (per epoch) and augmentation.
        resume: continue from ``out/last_<part>.pt`` if it exists.
        progress: tqdm bars on rank 0.
        workers: DataLoader worker processes.
        stop_after: stop (as if killed) once this many epochs are done; for tests.

    Returns:
        :class:`FitResult` with the best epoch's weights loaded.

    Raises:
        CheckpointError: ``last_<part>.pt`` exists but does not belong to this part/config.
    """
    seed_everything(seed)
    model = job.build()
    wrapped = wrap(model, ctx)
    optimizer = torch.optim.AdamW(wrapped.parameters(), lr=job.lr, weight_decay=job.weight_decay)
    schedule = cosine_schedule(job.epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    last_path = out / f"last_{job.part}.pt"
    best_path = out / job.file
    start, history = 0, []
    best_epoch, best_metric = -1, math.nan
    best_state: dict[str, torch.Tensor] | None = None
    if resume and last_path.is_file():
        ckpt = load_checkpoint(last_path)
        state = ckpt.get("training")
        if state is None or ckpt["extra"].get("part") != job.part:
            raise CheckpointError(str(last_path), f"not a training state of part {job.part!r}")
        try:
            unwrap(wrapped).load_state_dict(ckpt["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(
                str(last_path), f"does not fit this configuration: {exc}"
            ) from exc
        start = int(state["epoch"])
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
            group["lr"] = base * schedule(start)  # --epochs may differ from the first run
        history = list(state["history"])
        best_epoch, best_metric = int(state["best_epoch"]), float(state["best_metric"])
        best_state = state["best_model"]
        _set_rng_state(state["rng"])
        if ctx.is_main:
            log.info("%s: resuming after epoch %d of %d", job.part, start, job.epochs)
    train_loader, sampler = _loader(
        job.train_set, job, ctx, shuffle=True, seed=seed, workers=workers
    )
    show = progress and ctx.is_main
    for epoch in range(start, job.epochs):
        sampler.set_epoch(epoch)
        desc = f"{job.part} {epoch + 1}/{job.epochs}"
        if job.kind == "detector":
            loss = train_one_epoch_detector(
                wrapped, train_loader, optimizer, ctx.device, progress=show, desc=desc
            )
        else:
            loss = train_one_epoch_classifier(
                wrapped,
                train_loader,
                optimizer,
                ctx.device,
                class_weights=job.class_weights,
                progress=show,
                desc=desc,
            )
        scheduler.step()
        metrics = evaluate(wrapped, job, ctx, workers)
        metrics.update(epoch=epoch + 1, train_loss=loss)
        history.append({k: float(v) for k, v in metrics.items()})
        metric = float(metrics["metric"])
        if best_epoch < 0 or _key(metric, epoch + 1) > _key(best_metric, best_epoch):
            best_epoch, best_metric = epoch + 1, metric
            best_state = copy.deepcopy(unwrap(wrapped).state_dict())
            if ctx.is_main:
                save_checkpoint(
                    best_path,
                    kind=job.kind,
                    config=job.model_config,
                    model=unwrap(wrapped),
                    classes=list(job.classes),
                    extra={
                        **job.extra,
                        "part": job.part,
                        "epoch": best_epoch,
                        "metric": best_metric,
                        "history": history,
                    },
                )
        if ctx.is_main:
            log.info(
                "%s epoch %d/%d: train loss %.4f, val metric %.4f (best %.4f @ %d)",
                job.part,
                epoch + 1,
                job.epochs,
                loss,
                metric,
                best_metric,
                best_epoch,
            )
            save_checkpoint(
                last_path,
                kind=job.kind,
                config=job.model_config,
                model=unwrap(wrapped),
                classes=list(job.classes),
                extra={**job.extra, "part": job.part},
                training={
                    "epoch": epoch + 1,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "history": history,
                    "best_epoch": best_epoch,
                    "best_metric": best_metric,
                    "best_model": best_state,
                    "rng": _rng_state(),
                },
            )
        barrier(ctx)
        if stop_after is not None and epoch + 1 >= stop_after:
            break
    final = unwrap(wrapped)
    if best_state is not None:
        final.load_state_dict(best_state)
    final.eval()
    return FitResult(final, best_epoch, best_metric, history)
