"""Folds of one cross-validation run and the stages each fold caches in the run folder.

:class:`CrossValidation` holds the run's image source, its patient-grouped folds and the
on-disk cache of every stage:

    <out>/images/<key>.npz          model image, mask, geometry, lesion boxes (first pass)
    <out>/static_crops.npz          jittered lesion and normal-tissue crops with features
    <out>/whole_images.npz          whole-model-image features
    <out>/<tag>/detector.pt         the fold's detector (tag: fold<k> or final)
    <out>/<tag>/candidates.npz      its top candidates on every image, labelled, with features
    <out>/<tag>/cascade.json + *.pt the fold's complete weights folder

Each file is written atomically by rank 0 and skipped when present (rank 0 decides, so every
``torchrun`` process takes the same branch), so a killed run resumes stage by stage.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hdcnn.checkpoint import load_model, save_checkpoint
from hdcnn.config import WEIGHT_FILES, CascadeConfig, weight_file
from hdcnn.errors import DatasetError
from hdcnn.terms import Label, Part
from hdcnn.train.detector import detector_config, fit_detector, propose
from hdcnn.train.distributed import DistContext, barrier, main_says
from hdcnn.train.features import (
    FeatureExtractor,
    candidate_labels,
    crop_features,
    per_image,
    static_crops,
    whole_features,
)
from hdcnn.train.heads import fit_heads
from hdcnn.train.images import IMAGES_DIR, Image, ImageSource, Item
from hdcnn.utils import atomic_path, atomic_write_text

if TYPE_CHECKING:
    from hdcnn.train.recipe import CVConfig

log = logging.getLogger(__name__)

#: The training summary written beside a fold's detector (not part of a weights folder).
DETECTOR_SUMMARY = "detector.json"
#: Seconds between two looks for the files another process is writing.
POLL_S = 2.0
#: An ablation row's detector settings (:func:`hdcnn.train.detector.detector_config`).
Overrides = dict[str, Any] | None


@dataclass
class CropSet:
    """Crop features with labels (0 normal, 1 benign, 2 malignant, -1 unknown lesion)."""

    x: np.ndarray
    y: np.ndarray
    image: np.ndarray

    @staticmethod
    def join(*sets: CropSet) -> CropSet:
        return CropSet(
            *(np.concatenate([getattr(s, f) for s in sets]) for f in ("x", "y", "image"))
        )


def check_label_mix(items: list[Item], root: str) -> None:
    """Refuse, before any training, a dataset the six heads cannot be fitted on.

    Raises:
        DatasetError: no normal image, no abnormal one, or not both benign and malignant
            (e.g. CBIS-DDSM alone, which lists no normal view).
    """
    labels = {it.label for it in items}
    missing = [
        str(label) for label in (Label.NORMAL, Label.BENIGN, Label.MALIGNANT) if label not in labels
    ]
    if missing:
        raise DatasetError(
            root,
            f"no {' or '.join(missing)} image among its {len(items)}: the recipe's heads need "
            "normal, benign and malignant images (add images of the missing kind, e.g. normal "
            "views from another dataset through a manifest CSV)",
        )


def _variant_prefix(variant: str) -> str:
    """File-name prefix of an ablation row's own detector and candidates (none: the recipe's)."""
    return f"ablation_{variant}_" if variant else ""


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Log a stage's wall time (``stage <name>: <s> s``; benchmarks/bench_train_scale.py
    reads these lines)."""
    t0 = time.perf_counter()
    yield
    log.info("stage %s: %.1f s", name, time.perf_counter() - t0)


class CrossValidation:
    """The folds of one run and their cached stages; see the module docstring.

    Args:
        cfg: the run's settings.
        ctx: this process's place in a ``torchrun`` group (default: one process).
        progress: tqdm bars (default: when stderr is a terminal).
    """

    def __init__(
        self, cfg: CVConfig, *, ctx: DistContext | None = None, progress: bool | None = None
    ) -> None:
        from hdcnn.train.pipeline import load_manifest

        self.cfg = cfg
        self.ctx = ctx or DistContext()
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.progress = self.progress and self.ctx.is_main
        self.device = self.ctx.device if self.ctx.distributed else torch.device(cfg.device)
        torch.set_num_threads(cfg.threads)
        self.manifest = load_manifest(cfg.dataset, Path(cfg.root))
        self.source = ImageSource(
            self.manifest, cfg.cascade.long_side, self.out / IMAGES_DIR, cfg.cache
        )
        with stage("index images"):
            self.items = self.source.prepare(self.ctx, progress=self.progress)
        log.info("indexed %d images", len(self.items))
        check_label_mix(self.items, cfg.root)
        self.folds = self._folds()
        self.extractor = FeatureExtractor(cfg, self.device)
        self._static: dict[str, np.ndarray] | None = None

    def alone(self) -> None:
        """From here on this process works alone (rank 0 after the shared stages)."""
        self.ctx = DistContext(device=self.ctx.device)

    def fold_folders(self) -> list[Path]:
        """Every fold's weights folder: rank 0 fits the heads and writes them (alone, no
        collective call) while the other processes wait for their ``cascade.json`` (a file
        wait, not a barrier: the heads may take longer than a process-group timeout)."""
        folders = [self.out / f"fold{k}" for k in range(len(self.folds))]
        if self.ctx.is_main:
            ctx = self.ctx
            self.alone()
            try:
                return self.run_folds()
            finally:
                self.ctx = ctx
        while not all((f / CascadeConfig.FILE).is_file() for f in folders):
            time.sleep(POLL_S)
        return folders

    def image(self, index: int) -> Image:
        return self.source.image(index)

    # -- folds and cached stages --------------------------------------------------------

    def _folds(self) -> list[np.ndarray]:
        from hdcnn.data.splits import kfold

        by_patient: dict[str, list[int]] = {}
        for item in self.items:
            by_patient.setdefault(item.patient, []).append(item.index)
        held = []
        for _, test in kfold(self.manifest, self.cfg.folds, seed=self.cfg.seed):
            held.append(np.array(sorted(i for p in test.patients() for i in by_patient[p])))
        return held

    def train_of(self, held: np.ndarray) -> np.ndarray:
        return np.setdiff1d(np.arange(len(self.items)), held)

    def cached(
        self, name: str, build: Callable[[], dict[str, np.ndarray]]
    ) -> dict[str, np.ndarray]:
        """The arrays of ``<out>/<name>`` (``.npz``), built by every process and written by
        rank 0 when absent."""
        path = self.out / name
        if not main_says(path.is_file(), self.ctx):
            arrays = build()
            if self.ctx.is_main:
                with atomic_path(path) as tmp, open(tmp, "wb") as f:
                    np.savez(f, **arrays)
            barrier(self.ctx)
            return arrays
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def static(self) -> dict[str, np.ndarray]:
        if self._static is None:

            def build() -> dict[str, np.ndarray]:
                s = static_crops(self.source, self.cfg)
                s["x"] = crop_features(
                    self.extractor,
                    self.source,
                    s["image"],
                    s["boxes"],
                    s["mirror"],
                    ctx=self.ctx,
                    desc="lesion/normal crops",
                    progress=self.progress,
                )
                return s

            self._static = self.cached("static_crops.npz", build)
        return self._static

    def whole(self) -> dict[str, np.ndarray]:
        return self.cached(
            "whole_images.npz",
            lambda: whole_features(self.extractor, self.source, self.ctx, progress=self.progress),
        )

    def detector(
        self,
        tag: str,
        train_idx: np.ndarray,
        *,
        variant: str = "",
        overrides: Overrides = None,
        average_last: int = 0,
    ) -> torch.nn.Module:
        """The detector of ``tag`` trained on ``train_idx`` (trained now, under DDP when
        several processes run, unless on disk); an ablation row's ``variant`` with its
        :func:`~hdcnn.train.detector.detector_config` ``overrides`` (and ``average_last``,
        see :func:`~hdcnn.train.detector.fit_detector`) is kept beside it."""
        folder = self.out / tag
        prefix = _variant_prefix(variant)
        det_path = folder / f"{prefix}{weight_file(Part.DETECTOR)}"
        if main_says(det_path.is_file(), self.ctx):
            return load_model(det_path)[0]
        detector, summary = fit_detector(
            self.source,
            train_idx,
            self.cfg,
            self.ctx,
            self.device,
            overrides=overrides,
            average_last=average_last,
            desc=f"{tag} {prefix}detector",
            progress=self.progress,
        )
        if self.ctx.is_main:
            save_checkpoint(
                det_path,
                kind="detector",
                config=detector_config(self.cfg, overrides),
                model=detector,
                classes=list(WEIGHT_FILES[Part.DETECTOR].classes),
                extra={"part": str(Part.DETECTOR), **summary},
            )
            atomic_write_text(folder / f"{prefix}{DETECTOR_SUMMARY}", json.dumps(summary, indent=2))
        barrier(self.ctx)
        return detector

    def candidates(
        self,
        tag: str,
        train_idx: np.ndarray,
        *,
        variant: str = "",
        overrides: Overrides = None,
        average_last: int = 0,
    ) -> dict[str, np.ndarray]:
        """The detector of ``tag`` (trained on ``train_idx``; a row's ``variant``, see
        :meth:`detector`) and its candidates on all images: ``image``, ``boxes``, ``scores``,
        ``label`` (:func:`candidate_labels`) and crop features ``x``."""
        (self.out / tag).mkdir(parents=True, exist_ok=True)
        name = f"{tag}/{_variant_prefix(variant)}candidates.npz"
        if main_says((self.out / name).is_file(), self.ctx):
            return self.cached(name, dict)
        detector = self.detector(
            tag, train_idx, variant=variant, overrides=overrides, average_last=average_last
        )
        detector = detector.to(self.device).eval()
        k = self.cfg.cascade.max_candidates
        return self.labelled_candidates(
            name,
            lambda image: propose(detector, image, k, self.device),
            desc=f"{tag} {variant} candidates",
        )

    def labelled_candidates(
        self,
        name: str,
        boxes_of: Callable[[Image], tuple[np.ndarray, np.ndarray]],
        *,
        desc: str,
    ) -> dict[str, np.ndarray]:
        """Candidates ``(boxes, scores) = boxes_of(image)`` (model pixels) of every image,
        labelled (:func:`candidate_labels`) and with crop features; proposed per image on each
        process's share, cached as ``<out>/<name>``."""

        def work(image: Image) -> tuple[np.ndarray, ...]:
            boxes, scores = boxes_of(image)
            labels = candidate_labels(image.item, boxes)
            boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
            x = self.extractor.features(self.extractor.crops(image, boxes))
            return boxes, np.asarray(scores, np.float32), labels, x

        def build() -> dict[str, np.ndarray]:
            every = range(len(self.items))
            done = per_image(self.source, every, work, self.ctx, desc=desc, progress=self.progress)
            return self.candidate_arrays([done[i] for i in every])

        return self.cached(name, build)

    def candidate_arrays(self, per: list[tuple[np.ndarray, ...]]) -> dict[str, np.ndarray]:
        """Candidate arrays from ``(boxes, scores, label, x)`` of each image, in image order."""
        n_features = self.extractor.n_features
        return {
            "image": np.concatenate(
                [np.full(len(p[0]), i, np.int64) for i, p in enumerate(per)]
            ).astype(np.int64),
            "boxes": np.concatenate([p[0].reshape(-1, 4) for p in per]).astype(np.float32),
            "scores": np.concatenate([p[1].reshape(-1) for p in per]).astype(np.float32),
            "label": np.concatenate([p[2] for p in per]).astype(np.int64),
            "x": np.concatenate([p[3].reshape(-1, n_features) for p in per]).astype(np.float32),
        }

    def training_crops(
        self,
        cand: dict[str, np.ndarray],
        train_idx: np.ndarray,
        *,
        hard_negatives: bool | None = None,
        static: dict[str, np.ndarray] | None = None,
    ) -> CropSet:
        """Lesion and normal crops of the training images (+ the detector's hits and misses)."""
        hard = self.cfg.hard_negatives if hard_negatives is None else hard_negatives
        s = static or self.static()
        train = np.isin(s["image"], train_idx)
        parts = [CropSet(s["x"][train], s["label"][train], s["image"][train])]
        cmask = np.isin(cand["image"], train_idx)
        if not hard:
            cmask &= cand["label"] != 0
        parts.append(CropSet(cand["x"][cmask], cand["label"][cmask], cand["image"][cmask]))
        return CropSet.join(*parts)

    def shared_stages(self, *, final: bool) -> None:
        """Every stage that all ``torchrun`` processes share (detectors in DDP, sharded
        proposals and features): each fold's candidates, the final detector's with
        ``final``, the static crops and the whole images."""
        for k, held in enumerate(self.folds):
            log.info(
                "fold %d/%d: %d training images, %d held out",
                k + 1,
                len(self.folds),
                len(self.items) - len(held),
                len(held),
            )
            with stage(f"fold{k} detector and candidates"):
                self.candidates(f"fold{k}", self.train_of(held))
        if final:
            with stage("final detector and candidates"):
                self.candidates("final", np.arange(len(self.items)))
        with stage("static crops"):
            self.static()
        with stage("whole images"):
            self.whole()

    # -- weights folders ---------------------------------------------------------------

    def write_folder(self, tag: str, train_idx: np.ndarray, cascade_cfg: CascadeConfig) -> Path:
        """Fit the six heads on ``train_idx`` and write a complete weights folder."""
        folder = self.out / tag
        cand = self.candidates(tag, train_idx)
        if (folder / CascadeConfig.FILE).is_file() and (
            not self.cfg.calc_stream or CascadeConfig.load(folder).calc_stream is not None
        ):
            return folder
        crops = self.training_crops(cand, train_idx)
        whole = self.whole()
        patients = [it.patient for it in self.items]
        heads = fit_heads(
            crops, whole["x"][train_idx], whole["y"][train_idx], self.cfg, patients, train_idx
        )
        for part, (model, c) in heads.items():
            save_checkpoint(
                folder / WEIGHT_FILES[part].file,
                kind="feature-classifier",
                config=model.config,
                model=model,
                classes=list(WEIGHT_FILES[part].classes),
                extra={"part": str(part), "C": c},
            )
        patients = sorted({self.items[i].patient for i in train_idx})
        cfg = replace(cascade_cfg, training={"patients": patients, "cv": self.cfg.recipe()})
        cfg.save(folder, hash_files=True)
        if self.cfg.calc_stream:
            self.add_calc_stream(folder, tag, train_idx)
        return folder

    def add_calc_stream(self, folder: Path, tag: str, train_idx: np.ndarray) -> None:
        """Give ``folder`` (weights folder ``tag``) the calcification stream fitted on
        ``train_idx``, its P(lesion) on the folder's Classifier 1 scale
        (:func:`hdcnn.train.calc.c1_odds`), at the run's out-of-fold stream threshold
        (:func:`hdcnn.train.calc.calc_threshold`, cached)."""
        from hdcnn.cascade.calc import save_calc_stream
        from hdcnn.train.calc import (
            CALC_SPOTS,
            c1_odds,
            calc_candidates,
            calc_threshold,
            fit_calc_classifier,
        )

        calc = calc_candidates(self)
        chosen = self.cached(
            "calc_stream_threshold.npz",
            lambda: {"threshold": np.array(calc_threshold(self, calc))},
        )
        params = fit_calc_classifier(
            self, calc, train_idx, reference_odds=c1_odds(self, tag, train_idx)
        )
        save_calc_stream(folder, params, float(chosen["threshold"]), spots=CALC_SPOTS)

    def run_folds(self) -> list[Path]:
        return [
            self.write_folder(f"fold{k}", self.train_of(held), self.cfg.cascade)
            for k, held in enumerate(self.folds)
        ]
