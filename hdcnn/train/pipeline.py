"""``python -m hdcnn train``: split a dataset by patient and train the requested parts.

Order: detector, c1, c2, crop-flat, whole-flat, whole-abnormal, whole-malignancy.
Classifier 2 is trained on what Classifier 1 accepts (see :func:`c1_accept`), so C1 is trained
(or read from ``<out>/c1_lesion.pt``) first. At the end rank 0 writes ``cascade.json``
(merged with an existing one, so training a subset of parts keeps the others' entries) and,
when the folder holds a detector, C1 and C2, its known answers.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hdcnn.checkpoint import load_model
from hdcnn.config import CONFIG_FILE, CascadeConfig, SplitRecord, sha256_file, weight_file
from hdcnn.errors import CheckpointError
from hdcnn.nets.classifier import ClassifierConfig, build_classifier
from hdcnn.nets.detector import DetectorConfig, build_detector
from hdcnn.train import distributed
from hdcnn.train.config import PARTS, TrainConfig
from hdcnn.train.datasets import (
    CROP_LABELS,
    WHOLE_LABELS,
    BoxCrops,
    Joined,
    Memoized,
    Relabeled,
    WholeImages,
    class_weights,
    dataset_labels,
)
from hdcnn.train.engine import FitResult, Job, fit, hits, threshold_at_sensitivity

log = logging.getLogger(__name__)


def load_manifest(dataset: str, root: Path) -> Any:
    """The dataset's :class:`~hdcnn.data.manifest.Manifest` (``dataset="manifest"``: a CSV)."""
    if dataset == "manifest":
        from hdcnn.data.manifest import Manifest

        return Manifest.load_csv(root)
    from hdcnn.data.adapters import load_dataset

    return load_dataset(dataset, root)


def c1_accept(scores: np.ndarray, threshold: float, min_keep: float) -> np.ndarray:
    """Indices of the lesion crops Classifier 2 trains on.

    The rule: keep crops with C1 ``P(lesion) >= threshold`` (as the cascade does at inference);
    if fewer than ``ceil(min_keep * n)`` pass, keep the ``ceil(min_keep * n)`` highest-scoring
    crops instead (the floor; at least one crop when ``n > 0``).

    Args:
        scores: ``(n,)`` C1 lesion probabilities of the lesion crops.
        threshold: C1 operating threshold.
        min_keep: floor as a fraction of ``n`` in ``[0, 1]``.

    Returns:
        Sorted int64 indices into ``scores``.
    """
    n = len(scores)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    accepted = np.flatnonzero(scores >= threshold)
    floor = max(1, math.ceil(min_keep * n))
    if len(accepted) < floor:
        accepted = np.argsort(-scores, kind="stable")[:floor]
    return np.sort(accepted).astype(np.int64)


@torch.no_grad()
def lesion_scores(model: nn.Module, ds: Dataset, batch_size: int = 64) -> np.ndarray:
    """C1 ``P(lesion)`` (class 1) of every item of a crop dataset: ``(N,)`` float64."""
    model.eval()
    device = next(model.parameters()).device
    out = [
        torch.softmax(model(x.to(device)), dim=1)[:, 1].double().cpu().numpy()
        for x, _ in DataLoader(ds, batch_size=batch_size, shuffle=False)
    ]
    return np.concatenate(out) if out else np.zeros(0)


class Trainer:
    """Holds the split and the datasets of one run; :meth:`run` trains the parts."""

    def __init__(self, cfg: TrainConfig, ctx: distributed.DistContext) -> None:
        from hdcnn.data.splits import patient_split

        self.cfg = cfg
        self.ctx = ctx
        self.manifest = load_manifest(cfg.dataset, Path(cfg.root))
        self.splits = patient_split(self.manifest, fractions=cfg.fractions, seed=cfg.seed)
        self.summary: dict[str, Any] = {}
        self.c1_threshold: float | None = None
        self.c2_filter: dict[str, Any] | None = None
        self._c1: nn.Module | None = None
        self._detector: nn.Module | None = None
        self._negatives: dict[str, list[tuple[int, list[float]]]] = {}
        self.cache_dir = self._build_cache()
        for name in ("train", "val", "test"):
            split = self.splits[name]
            log.info("%s split: %d patients, %d images", name, len(split.patients()), len(split))

    def _build_cache(self) -> Path | None:
        """Preprocess every image once into ``cache_dir/ls<long_side>`` (rank 0; resumable).

        Images that fail to preprocess (e.g. no breast found) are left out of training and
        validation with a warning; the split itself is unchanged.
        """
        from hdcnn.data.cache import build_cache
        from hdcnn.data.manifest import Manifest

        if self.cfg.cache_dir is None:
            return None
        folder = Path(self.cfg.cache_dir) / f"ls{self.cfg.long_side}"
        if self.ctx.is_main:
            info = build_cache(
                self.manifest,
                folder,
                long_side=self.cfg.long_side,
                workers=max(1, self.cfg.workers),
                progress=self.cfg.progress,
            )
            failed = [f["image_path"] for f in info.get("failed", [])]
        distributed.barrier(self.ctx)
        if not self.ctx.is_main:  # the others read the result from disk
            info = build_cache(
                self.manifest, folder, long_side=self.cfg.long_side, workers=1, progress=False
            )
            failed = [f["image_path"] for f in info.get("failed", [])]
        if failed:
            log.warning(
                "%d image(s) could not be preprocessed and are not trained on: %s",
                len(failed),
                ", ".join(failed[:5]),
            )
            bad = set(failed)
            for name in ("train", "val"):
                split = self.splits[name]
                kept = [r for r in split.records if r.image_path not in bad]
                self.splits[name] = Manifest(kept, root=split.root)
        return folder

    # ------------------------------------------------------------------ datasets
    def _detection(self, split: str, *, train: bool) -> Dataset:
        from hdcnn.data.torchdata import DetectionDataset

        return DetectionDataset(
            self.splits[split],
            long_side=self.cfg.long_side,
            train=train,
            cache_dir=self.cache_dir,
        )

    def _rois(self, split: str, *, train: bool) -> Dataset:
        from hdcnn.data.torchdata import RoiDataset

        return RoiDataset(
            self.splits[split],
            crop_size=self.cfg.crop_size,
            long_side=self.cfg.long_side,
            train=train,
            cache_dir=self.cache_dir,
            seed=self.cfg.seed,
        )

    def _classifier_job(
        self,
        part: str,
        train_set: Dataset,
        val_set: Dataset,
        input_size: tuple[int, int],
        extra: dict[str, Any] | None = None,
    ) -> Job:
        file, kind, classes = PARTS[part]
        mcfg = ClassifierConfig(len(classes), input_size, tuple(self.cfg.widths))
        labels = dataset_labels(train_set)
        return Job(
            part=part,
            file=file,
            kind=kind,
            classes=classes,
            model_config=mcfg,
            build=lambda: build_classifier(mcfg),
            train_set=train_set,
            val_set=val_set,
            epochs=self.cfg.epochs_for(part),
            lr=self.cfg.lr,
            batch_size=self.cfg.batch_size,
            weight_decay=self.cfg.weight_decay,
            class_weights=class_weights(labels, len(classes)),
            extra=dict(extra or {}),
        )

    def detector_job(self) -> Job:
        from hdcnn.data.torchdata import collate_detection

        file, kind, classes = PARTS["detector"]
        mcfg = DetectorConfig(long_side=self.cfg.long_side, backbone=self.cfg.detector_backbone)
        pretrained = self.cfg.pretrained_backbone
        return Job(
            part="detector",
            file=file,
            kind=kind,
            classes=classes,
            model_config=mcfg,
            build=lambda: build_detector(mcfg, pretrained_backbone=pretrained),
            train_set=self._detection("train", train=True),
            val_set=Memoized(self._detection("val", train=False)),
            epochs=self.cfg.epochs_for("detector"),
            lr=self.cfg.det_lr,
            batch_size=self.cfg.det_batch_size,
            weight_decay=self.cfg.weight_decay,
            collate=collate_detection,
        )

    def crop_job(self, part: str) -> Job:
        """c1 / crop-flat: lesion and normal-tissue crops, plus detector hard negatives."""
        size = (self.cfg.crop_size, self.cfg.crop_size)
        train_base, val_base = self._rois("train", train=True), self._rois("val", train=False)
        mapping = CROP_LABELS[part]
        train_set: Dataset = Relabeled(train_base, mapping, dataset_labels(train_base))
        val_set: Dataset = Relabeled(val_base, mapping, dataset_labels(val_base))
        extra: dict[str, Any] = {}
        if self.cfg.hard_negatives > 0 and self.detector() is not None:
            context = self.folder_config().context
            crops = {}
            for split in ("train", "val"):
                crops[split] = BoxCrops(
                    self._detection(split, train=False),
                    self.negatives(split),
                    label=0,
                    crop_size=self.cfg.crop_size,
                    context=context,
                    train=split == "train",
                )
            train_set = Joined([train_set, crops["train"]])
            val_set = Joined([val_set, crops["val"]])
            extra["hard_negatives"] = {k: len(v) for k, v in crops.items()}
        return self._classifier_job(part, train_set, Memoized(val_set), size, extra=extra)

    def detector(self) -> nn.Module | None:
        """The trained detector: from this run, else ``<out>/detector.pt``, else None."""
        if self._detector is None:
            path = Path(self.cfg.out) / PARTS["detector"][0]
            if path.is_file():
                model, _ = load_model(path)
                self._detector = model.to(self.ctx.device)
            else:
                log.info("no detector yet: c1/crop-flat train without hard negatives")
        return self._detector

    @torch.no_grad()
    def negatives(self, split: str) -> list[tuple[int, list[float]]]:
        """Hard negatives of a split: the detector's highest-scoring boxes that miss every lesion.

        Per image at most ``cfg.hard_negatives`` boxes with score >= ``hard_negative_score``,
        centre outside every lesion box and IoU < 0.1 with each. Computed once per split.
        """
        if split in self._negatives:
            return self._negatives[split]
        from torchvision.ops import box_iou

        model = self.detector()
        assert model is not None
        model.eval()
        device = next(model.parameters()).device
        ds = self._detection(split, train=False)
        found: list[tuple[int, list[float]]] = []
        for i in range(len(ds)):
            image, target = ds[i]
            out = model([image.to(device)])[0]
            keep = out["scores"] >= self.cfg.hard_negative_score
            boxes = out["boxes"][keep].cpu()
            gt = target["boxes"].reshape(-1, 4)
            if len(boxes) and len(gt):
                near = hits(boxes.numpy(), gt.numpy()).any(1)
                near |= (box_iou(boxes, gt) >= 0.1).any(1).numpy()
                boxes = boxes[torch.from_numpy(~near)]
            found.extend((i, b.tolist()) for b in boxes[: self.cfg.hard_negatives])
        log.info("%s: %d detector hard negatives from %d images", split, len(found), len(ds))
        self._negatives[split] = found
        return found

    def c2_job(self) -> Job:
        """C2 on the lesion crops that C1 accepts (train and validation alike)."""
        c1, threshold = self._classifier_1()
        size = (self.cfg.crop_size, self.cfg.crop_size)
        mapping = CROP_LABELS["c2"]
        sets: dict[str, Dataset] = {}
        stats: dict[str, Any] = {"threshold": threshold, "min_keep": self.cfg.c2_min_keep}
        for split in ("train", "val"):
            plain = self._rois(split, train=False)
            labels = dataset_labels(plain)
            lesions = Memoized(Relabeled(plain, mapping, labels))
            scores = lesion_scores(c1, lesions)
            keep = c1_accept(scores, threshold, self.cfg.c2_min_keep)
            indices = [lesions.base.indices[k] for k in keep]
            base = self._rois(split, train=True) if split == "train" else plain
            sets[split] = Relabeled(base, mapping, labels, indices=indices)
            stats[split] = {
                "lesion_crops": len(scores),
                "accepted": int((scores >= threshold).sum()),
                "used": len(keep),
            }
            log.info(
                "c2 %s: C1 accepts %d of %d lesion crops, training uses %d",
                split,
                stats[split]["accepted"],
                len(scores),
                len(keep),
            )
        self.c2_filter = stats
        return self._classifier_job(
            "c2", sets["train"], Memoized(sets["val"]), size, extra={"c1_filter": stats}
        )

    def whole_job(self, part: str) -> Job:
        mapping = WHOLE_LABELS[part]
        sets = {}
        for split in ("train", "val"):
            labels = [mapping.get(r.label) for r in self.splits[split].records]
            ds = WholeImages(
                self._detection(split, train=split == "train"), labels, self.cfg.whole_size
            )
            sets[split] = ds if split == "train" else Memoized(ds)
        return self._classifier_job(part, sets["train"], sets["val"], tuple(self.cfg.whole_size))

    def _classifier_1(self) -> tuple[nn.Module, float]:
        if self._c1 is not None and self.c1_threshold is not None:
            return self._c1, self.c1_threshold
        path = Path(self.cfg.out) / PARTS["c1"][0]
        if not path.is_file():
            raise CheckpointError(str(path), "training c2 needs Classifier 1: train part c1 first")
        model, ckpt = load_model(path)
        model = model.to(self.ctx.device)
        threshold = ckpt["extra"].get("threshold")
        if threshold is None:
            raise CheckpointError(str(path), "Classifier 1 checkpoint has no threshold")
        self._c1, self.c1_threshold = model, float(threshold)
        return model, float(threshold)

    # ------------------------------------------------------------------ run
    def job(self, part: str) -> Job:
        if part == "detector":
            return self.detector_job()
        if part == "c2":
            return self.c2_job()
        if part in CROP_LABELS:
            return self.crop_job(part)
        return self.whole_job(part)

    def train_part(self, part: str, *, stop_after: int | None = None) -> FitResult:
        cfg, out = self.cfg, Path(self.cfg.out)
        job = self.job(part)
        if part == "c1":  # threshold is chosen after fit, then stored with the best weights
            job.extra["operating_point"] = {"lesion_sensitivity": cfg.c1_sensitivity}
        done_before = _epochs_done(out / f"last_{part}.pt") if cfg.resume else 0
        start = time.perf_counter()
        result = fit(
            job,
            out,
            self.ctx,
            seed=cfg.seed,
            resume=cfg.resume,
            progress=cfg.progress,
            workers=cfg.workers,
            stop_after=stop_after,
        )
        seconds = time.perf_counter() - start
        # epochs trained by this process; earlier processes' time is added from cascade.json
        # (write_cascade_json), never reset to the ~0 s a finished part takes to resume
        epochs_here = max(0, len(result.history) - done_before)
        epochs_run = max(1, epochs_here)
        record = {
            "epochs": job.epochs,
            "best_epoch": result.best_epoch,
            "metric": "froc" if part == "detector" else "auc",
            "best_metric": result.best_metric,
            "n_train": len(job.train_set),
            "n_val": len(job.val_set),
            "seconds": round(seconds, 1),
            "seconds_per_epoch": round(seconds / epochs_run, 1),
            "resumed_epochs": done_before,
            "epochs_this_run": epochs_here,
        }
        if part == "detector":
            self._detector = result.model
        if "hard_negatives" in job.extra:
            record["hard_negatives"] = job.extra["hard_negatives"]
        if part == "c1":
            self._finish_c1(job, result)
            record["threshold"] = self.c1_threshold
        self.summary[part] = record
        return result

    def _finish_c1(self, job: Job, result: FitResult) -> None:
        """Pick C1's threshold on validation lesion crops and store it in c1_lesion.pt."""
        from hdcnn.checkpoint import load_checkpoint, save_checkpoint

        probs = lesion_scores(result.model, job.val_set)
        labels = np.asarray(dataset_labels(job.val_set))
        threshold = threshold_at_sensitivity(probs[labels == 1], self.cfg.c1_sensitivity)
        self._c1, self.c1_threshold = result.model, threshold
        log.info(
            "c1 threshold %.4f (lesion sensitivity %.2f on %d validation lesion crops)",
            threshold,
            self.cfg.c1_sensitivity,
            int((labels == 1).sum()),
        )
        if self.ctx.is_main:
            path = Path(self.cfg.out) / job.file
            extra = dict(load_checkpoint(path)["extra"]) if path.is_file() else {}
            extra.update(
                part="c1",
                threshold=threshold,
                operating_point={"lesion_sensitivity": self.cfg.c1_sensitivity},
            )
            save_checkpoint(
                path,
                kind=job.kind,
                config=job.model_config,
                model=result.model,
                classes=list(job.classes),
                extra=extra,
            )
        distributed.barrier(self.ctx)

    def folder_config(self) -> CascadeConfig:
        """The settings already in ``<out>/cascade.json`` (defaults when there is none)."""
        out = Path(self.cfg.out)
        if (out / CONFIG_FILE).is_file():
            try:
                return CascadeConfig.load(out)
            except CheckpointError as exc:
                log.warning("%s; rewriting it", exc)
        return CascadeConfig(name=f"hdcnn-{self.cfg.dataset}", crop_source="model")

    def write_cascade_json(self) -> Path:
        """Merge this run's facts into ``<out>/cascade.json`` (rank 0 only)."""
        out = Path(self.cfg.out)
        base = self.folder_config()
        thresholds = base.thresholds
        if self.c1_threshold is not None:
            thresholds = replace(thresholds, c1_lesion=self.c1_threshold)
        train_info = dict(base.training)
        earlier = dict(train_info.get("parts") or {})
        parts = {**earlier, **self.summary}
        for part, record in self.summary.items():
            if not record.get("resumed_epochs"):
                continue  # trained from scratch in this process: its own time is the time
            before = earlier.get(part) or {}
            merged = dict(record)
            known = isinstance(before.get("seconds"), (int, float))
            if known:
                merged["seconds"] = round(float(before["seconds"]) + float(record["seconds"]), 1)
            if not record.get("epochs_this_run"):
                # nothing trained here: the time belongs to an earlier process
                merged["seconds"] = merged["seconds"] if known else None
                merged["seconds_per_epoch"] = before.get("seconds_per_epoch")
            parts[part] = merged
        train_info["parts"] = parts
        train_info["seed"] = self.cfg.seed
        train_info["config"] = {
            k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.cfg).items()
        }
        if self.c2_filter is not None:
            train_info["c2_filter"] = self.c2_filter
        files = [weight_file(p) for p in PARTS if (out / weight_file(p)).is_file()]
        cfg = replace(
            base,
            long_side=self.cfg.long_side,
            crop_size=self.cfg.crop_size,
            crop_source="model",  # this recipe crops the model image
            whole_size=tuple(self.cfg.whole_size),
            thresholds=thresholds,
            operating_points=replace(
                base.operating_points, c1_lesion_sensitivity=self.cfg.c1_sensitivity
            ),
            split=SplitRecord(
                dataset=self.cfg.dataset,
                seed=self.cfg.seed,
                fractions=self.cfg.fractions,
                patients={k: tuple(sorted(v.patients())) for k, v in self.splits.items()},
            ),
            # plain JSON: CascadeConfig is the one writer, it checks the types
            training=json.loads(json.dumps(_finite(train_info), default=_plain, allow_nan=False)),
            files={f: sha256_file(out / f) for f in files},
            known_answers=None,  # new weights: stamped again by train() when it can
        )
        path = cfg.save(out, hash_files=False)
        log.info("wrote %s", path)
        return path

    def stamp(self) -> None:
        """Write the known answers when the folder holds a whole det-hier cascade."""
        from hdcnn.cascade import stamp_known_answers

        out = Path(self.cfg.out)
        if all((out / weight_file(p)).is_file() for p in ("detector", "c1", "c2")):
            stamp_known_answers(out)
            log.info("wrote the known answers of %s", out)


def _epochs_done(last_path: Path) -> int:
    """Epochs recorded in a ``last_<part>.pt`` training state (0 without a readable one)."""
    if not last_path.is_file():
        return 0
    try:
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        return int((state.get("training") or {}).get("epoch", 0))
    except Exception:  # unreadable: fit() itself reports it
        return 0


def _finite(value: Any) -> Any:
    """``value`` with every NaN/inf float replaced by None (strict JSON)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | set):
        return list(value)
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def train(cfg: TrainConfig, *, stop_after: int | None = None) -> dict[str, Any]:
    """Train ``cfg.parts`` into ``cfg.out`` (single process or under ``torchrun``).

    Args:
        cfg: the run's settings.
        stop_after: stop every part after this many epochs (simulates an interruption; tests).

    Returns:
        Per-part summary ``{part: {"best_metric", "best_epoch", "seconds_per_epoch", ...}}``.

    Raises:
        DatasetError: the dataset cannot be loaded or split.
        CheckpointError: a resume file or Classifier 1 (for c2 alone) does not fit.
    """
    torch.set_num_threads(max(1, cfg.threads))
    ctx = distributed.setup()
    if not ctx.is_main:  # rank 0 logs for everyone; the others only warn
        logging.getLogger("hdcnn").setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    ok = False
    try:
        trainer = Trainer(cfg, ctx)
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        for part in cfg.parts:
            trainer.train_part(part, stop_after=stop_after)
        if ctx.is_main:
            trainer.write_cascade_json()
            trainer.stamp()
        ok = True
        return trainer.summary
    finally:
        distributed.cleanup(ctx, ok=ok)
