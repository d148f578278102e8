"""Patient-grouped k-fold cross-validation of the pretrained cascade and the four concepts.

``python -m hdcnn cv`` runs this module. One run:

1. reads and preprocesses every image of the dataset once (kept in memory);
2. for each fold ``k`` of :func:`hdcnn.data.splits.kfold` (patients, stratified): trains the
   Faster R-CNN detector (EfficientNet-Lite0 FPN backbone, ImageNet start) on the other folds,
   proposes candidates on every image, fits the six pretrained-feature classifiers (logistic
   regressions on frozen Lite0 features, see :mod:`hdcnn.nets.features`) on the other folds'
   crops, and writes a complete weights folder ``<out>/fold<k>/``;
3. scores each held-out image with the REAL inference code (:class:`hdcnn.cascade.Cascade`
   and :class:`hdcnn.evaluation.experiment.Experiment` loaded from that folder), so every image is
   scored by models that never saw its patient;
4. chooses the thresholds on the pooled out-of-fold scores, trains the shipped models on all
   patients with the same settings (``<out>/final/``), and writes the report (four concepts,
   patient-bootstrap intervals, FROC per lesion type, candidate recall) and the ablations.

Every stage writes its result atomically and is skipped when it exists, so a killed run
resumes where it stopped (granularity: one fold's detector, candidates, classifiers).
Progress goes to the log (``<out>/cv.log``) and, on a terminal, to tqdm bars.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from hdcnn.checkpoint import load_model, save_checkpoint
from hdcnn.config import LONG_SIDE, CascadeConfig
from hdcnn.evaluation.experiment import OOF_FILE
from hdcnn.evaluation.metrics import lesion_hits
from hdcnn.nets.classifier import prepare_input
from hdcnn.nets.detector import DetectorConfig, build_detector
from hdcnn.nets.efficientnet import LiteTrunk, pooled_features
from hdcnn.nets.features import FeatureClassifier, FeatureConfig, build_feature_classifier
from hdcnn.roi import crop_rois, crop_rois_full_resolution
from hdcnn.spots import DEFAULT_PIXEL_MM, SpotConfig, spot_candidates
from hdcnn.terms import Label
from hdcnn.utils import atomic_write_text

log = logging.getLogger(__name__)

#: Classifier parts of the shipped folder: file, classes.
FEATURE_PARTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "c1": ("c1_lesion.pt", ("normal", "lesion")),
    "c2": ("c2_malignancy.pt", ("benign", "malignant")),
    "crop-flat": ("crop_flat.pt", ("normal", "benign", "malignant")),
    "whole-flat": ("whole_flat.pt", ("normal", "benign", "malignant")),
    "whole-abnormal": ("whole_abnormal.pt", ("normal", "abnormal")),
    "whole-malignancy": ("whole_malignancy.pt", ("benign", "malignant")),
}
LABEL_INDEX = {Label.NORMAL: 0, Label.BENIGN: 1, Label.MALIGNANT: 2}
#: Patient-bootstrap resamples of the report's intervals.
N_BOOT = 1000


@dataclass(frozen=True)
class CVConfig:
    """Settings of one cross-validation run (stored in the report and in ``cascade.json``).

    Attributes:
        dataset / root: the developer data (``hdcnn.data.adapters.load_dataset``).
        out: run folder (folds, final models, report, log).
        folds / seed: patient-grouped stratified k-fold.
        det_epochs / det_lr / det_batch / trainable_stages: detector fine-tuning (ImageNet
            start; ``trainable_stages`` of Lite0's four, counted from the deepest).
        logistic_c: inverse L2 strength of every logistic-regression head (standardised
            features); None = chosen per head by an inner patient-grouped CV on the training
            folds only (:func:`fit_logistic`).
        normal_crops: random normal-tissue crops per training image (negatives of C1).
        lesion_jitter: shifted/rescaled copies of each training lesion crop (plus mirrors).
        hard_negatives: use the detector's false positives on training images as negatives.
        pretrained: ImageNet weights for the trunks (False = the random-init ablation).
        threads: torch CPU threads.
        device: torch device of detector training, proposals, crop features and the
            fine-tuned ablation (``"cpu"``, ``"cuda"``, ``"cuda:1"``); a speed-up only, the
            held-out images are always scored by the CPU inference code.
    """

    dataset: str = "mias"
    root: str = "../shared/data/mini-mias"
    out: str = "runs/cv"
    folds: int = 5
    seed: int = 0
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    det_epochs: int = 6
    det_lr: float = 3e-4
    det_batch: int = 2
    trainable_stages: int = 2
    logistic_c: float | None = None
    normal_crops: int = 3
    lesion_jitter: int = 3
    hard_negatives: bool = True
    pretrained: bool = True
    threads: int = 2
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cascade"] = self.cascade.settings_dict()
        return d

    def recipe(self) -> dict[str, Any]:
        """:meth:`to_dict` without machine-specific paths, threads and device (for shipped
        files, and what a resumed run must share)."""
        machine = ("root", "out", "threads", "device")
        return {k: v for k, v in self.to_dict().items() if k not in machine}


# ----------------------------------------------------------------------------- data


@dataclass
class Item:
    """One developer image, read and preprocessed once.

    Attributes:
        pixels: float32 ``(H, W)`` original image in ``[0, 1]``.
        prep: the model image and its geometry.
        gt: float32 ``(G, 4)`` lesion boxes, model pixels (clipped; tiny leftovers dropped).
        gt_labels / gt_kinds: per lesion.
    """

    index: int
    record: Any
    pixels: np.ndarray
    prep: Any
    gt: np.ndarray
    gt_labels: list[Label]
    gt_kinds: list[str]
    meta: Any = None

    @property
    def patient(self) -> str:
        return str(self.record.patient_id)

    @property
    def label(self) -> Label:
        return Label(self.record.label)

    def gt_of_kind(self, kind: str) -> np.ndarray:
        """The lesion boxes (model pixels) of one lesion kind; ``"all"``: every box."""
        keep = [kind in ("all", k) for k in self.gt_kinds]
        return self.gt[np.array(keep, dtype=bool).reshape(-1)]


def load_items(manifest: Any, long_side: int, *, progress: bool) -> list[Item]:
    """Read and preprocess every image of ``manifest`` (unreadable ones raise)."""
    from hdcnn.preprocess import preprocess
    from hdcnn.reader import read_mammogram

    items: list[Item] = []
    for i, record in enumerate(tqdm(manifest, desc="read", disable=not progress, leave=False)):
        mammo = read_mammogram(manifest.resolve(record))
        prep = preprocess(
            mammo.pixels,
            long_side=long_side,
            source=mammo.meta.source,
            laterality=mammo.meta.laterality or record.laterality,
        )
        boxes, labels, kinds = [], [], []
        if record.lesions:
            mapped = prep.geometry.to_model(
                np.array([les.box for les in record.lesions]), clip=True
            )
            for les, box in zip(record.lesions, mapped, strict=True):
                if box[2] - box[0] >= 1 and box[3] - box[1] >= 1:
                    boxes.append(box)
                    labels.append(Label(les.label))
                    kinds.append(str(les.kind))
        gt = np.array(boxes, dtype=np.float32).reshape(-1, 4)
        items.append(Item(i, record, mammo.pixels, prep, gt, labels, kinds, mammo.meta))
    return items


# ----------------------------------------------------------------------------- detector


def _augment(image: torch.Tensor, boxes: torch.Tensor, rng: np.random.Generator):
    """Vertical mirror (p=0.5) and a random gamma in [0.8, 1.25] (chest wall stays left)."""
    if rng.random() < 0.5:
        h = image.shape[-2]
        image = image.flip(-2)
        if len(boxes):
            boxes = boxes[:, [0, 3, 2, 1]] * torch.tensor([1.0, -1.0, 1.0, -1.0]) + torch.tensor(
                [0.0, h, 0.0, h]
            )
    gamma = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
    return image.clamp(0, 1) ** gamma, boxes


def detector_config(cfg: CVConfig) -> DetectorConfig:
    """The detector architecture of this run: Lite0 FPN; the default anchors are set for
    512-px model images and scale with the run's long side, so they keep their size in
    millimetres (a 1,024-px run sees finer detail, not other anchors)."""
    scale = cfg.cascade.long_side / LONG_SIDE
    return DetectorConfig(
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


def train_detector(
    items: Sequence[Item], train_idx: Sequence[int], cfg: CVConfig, *, desc: str, progress: bool
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Fine-tune the detector from ImageNet on ``train_idx``; returns it and a summary."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = torch.device(cfg.device)
    det_cfg = detector_config(cfg)
    model = build_detector(det_cfg, pretrained=cfg.pretrained).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.det_lr, weight_decay=1e-4)
    steps = cfg.det_epochs * math.ceil(len(train_idx) / cfg.det_batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.det_lr, total_steps=max(steps, 1), pct_start=0.1
    )
    t0 = time.perf_counter()
    losses: list[float] = []
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False)
    for epoch in range(cfg.det_epochs):
        model.train()
        order = rng.permutation(np.asarray(train_idx))
        total, count = 0.0, 0
        for start in range(0, len(order), cfg.det_batch):
            images, targets = [], []
            for i in order[start : start + cfg.det_batch]:
                item = items[int(i)]
                image = torch.from_numpy(np.ascontiguousarray(item.prep.image))[None]
                boxes = torch.from_numpy(item.gt.copy())
                image, boxes = _augment(image, boxes, rng)
                images.append(image.to(device))
                labels = torch.ones(len(boxes), dtype=torch.int64)
                targets.append({"boxes": boxes.to(device), "labels": labels.to(device)})
            loss = sum(model(images, targets).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(images)
            count += len(images)
            bar.update(1)
        losses.append(total / max(count, 1))
        log.info(
            "%s epoch %d/%d loss %.4f (%.0f s)",
            desc,
            epoch + 1,
            cfg.det_epochs,
            losses[-1],
            time.perf_counter() - t0,
        )
    bar.close()
    model.cpu().eval()
    return model, {
        "epochs": cfg.det_epochs,
        "n_train": len(train_idx),
        "loss": [round(v, 5) for v in losses],
        "seconds": round(time.perf_counter() - t0, 1),
    }


@torch.inference_mode()
def propose(
    model: torch.nn.Module,
    items: Sequence[Item],
    k: int,
    *,
    progress: bool,
    device: str = "cpu",
):
    """Top-``k`` detector boxes (model pixels) and scores of every image (the model is run on
    ``device`` and left on the CPU)."""
    model.to(device).eval()
    out = []
    for item in tqdm(items, desc="propose", disable=not progress, leave=False):
        image = torch.from_numpy(np.ascontiguousarray(item.prep.image))[None].to(device)
        det = {key: v.cpu() for key, v in model([image])[0].items()}
        scores = det["scores"].numpy()
        order = np.argsort(-scores, kind="stable")[:k]
        out.append(
            (det["boxes"].numpy()[order].astype(np.float32), scores[order].astype(np.float32))
        )
    model.cpu()
    return out


# ----------------------------------------------------------------------------- features


class FeatureExtractor:
    """Crops of model boxes (as the cascade cuts them) -> pooled frozen-trunk features."""

    def __init__(
        self,
        cfg: CVConfig,
        *,
        pretrained: bool = True,
        crop_source: str | None = None,
        stages: tuple[int, ...] | None = None,
        backbone: str | None = None,
    ):
        from hdcnn.nets.features import shared_trunk

        self.cfg = cfg
        self.crop_source = crop_source or cfg.cascade.crop_source
        self.device = torch.device(cfg.device)
        # the shipped heads' feature layout unless a row asks for other trunk stages or trunk
        features = FeatureConfig(num_classes=2)
        if stages is not None:
            features = replace(features, stages=stages)
        if backbone is not None:
            features = replace(features, backbone=backbone)
        self.stages, self.n_features = features.stages, features.n_features
        if pretrained:
            self.trunk: torch.nn.Module = shared_trunk(True, features.backbone)
            if self.device.type != "cpu":  # the process-wide trunk stays on the CPU
                self.trunk = copy.deepcopy(self.trunk).to(self.device)
        else:
            torch.manual_seed(cfg.seed)
            self.trunk = LiteTrunk(pretrained=False, name=features.backbone)
            self.trunk = self.trunk.eval().to(self.device)

    def crops(self, item: Item, boxes: np.ndarray) -> np.ndarray:
        c = self.cfg.cascade
        if self.crop_source == "original":
            return crop_rois_full_resolution(
                item.pixels, item.prep.geometry, boxes, size=c.crop_size, context=c.context
            )
        return crop_rois(item.prep.image, boxes, size=c.crop_size, context=c.context)

    @torch.inference_mode()
    def features(self, crops: np.ndarray, batch: int = 64) -> np.ndarray:
        out = []
        for s in range(0, len(crops), batch):
            x = torch.from_numpy(np.ascontiguousarray(crops[s : s + batch]))[:, None]
            out.append(pooled_features(self.trunk(x.to(self.device)), self.stages).cpu().numpy())
        if not out:
            return np.zeros((0, self.n_features), np.float32)
        return np.concatenate(out).astype(np.float32)

    @torch.inference_mode()
    def whole(self, item: Item) -> np.ndarray:
        x = prepare_input(item.prep.image, self.cfg.cascade.whole_size)[None].to(self.device)
        features = pooled_features(self.trunk(x), self.stages).cpu().numpy()
        return features[0].astype(np.float32)


def _jittered(box: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = max(x2 - x1, 2.0), max(y2 - y1, 2.0)
    out = [box]
    for _ in range(n):
        s = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
        cx = (x1 + x2) / 2 + rng.uniform(-0.15, 0.15) * w
        cy = (y1 + y2) / 2 + rng.uniform(-0.15, 0.15) * h
        out.append(np.array([cx - s * w / 2, cy - s * h / 2, cx + s * w / 2, cy + s * h / 2]))
    return np.array(out, dtype=np.float32)


def _normal_boxes(item: Item, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random square boxes centred inside the breast, away from every lesion."""
    ys, xs = np.nonzero(item.prep.mask)
    boxes: list[np.ndarray] = []
    for _ in range(50 * max(n, 1)):
        if len(boxes) >= n or len(ys) == 0:
            break
        j = int(rng.integers(len(ys)))
        side = float(np.exp(rng.uniform(np.log(12), np.log(80))))
        cx, cy = float(xs[j]), float(ys[j])
        box = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)
        if len(item.gt) and lesion_hits(box[None], item.gt).any():
            continue
        boxes.append(box)
    return np.array(boxes, dtype=np.float32).reshape(-1, 4)


def static_crops(items: Sequence[Item], cfg: CVConfig) -> dict[str, np.ndarray]:
    """Fold-independent crop boxes: jittered lesion boxes and random normal-tissue boxes.

    Returns arrays ``image (N,)``, ``boxes (N, 4)``, ``label (N,)`` (0 normal, 1 benign,
    2 malignant, -1 unknown), ``mirror (N,)`` (use the vertically mirrored crop).
    """
    rng = np.random.default_rng(cfg.seed + 1)
    image, boxes, label, mirror = [], [], [], []
    for item in items:
        for box, lab in zip(item.gt, item.gt_labels, strict=True):
            jit = _jittered(box, rng, cfg.lesion_jitter)
            for m in (False, True):
                image += [item.index] * len(jit)
                boxes.append(jit)
                label += [LABEL_INDEX.get(lab, -1)] * len(jit)
                mirror += [m] * len(jit)
        nb = _normal_boxes(item, rng, cfg.normal_crops)
        image += [item.index] * len(nb)
        boxes.append(nb)
        label += [0] * len(nb)
        mirror += [False] * len(nb)
    return {
        "image": np.array(image, np.int64),
        "boxes": np.concatenate(boxes).astype(np.float32),
        "label": np.array(label, np.int64),
        "mirror": np.array(mirror, bool),
    }


def crop_features(
    ext: FeatureExtractor,
    items: Sequence[Item],
    image: np.ndarray,
    boxes: np.ndarray,
    mirror: np.ndarray | None = None,
    *,
    desc: str,
    progress: bool,
) -> np.ndarray:
    """Features of the crops ``boxes[i]`` on ``items[image[i]]``, grouped per image."""
    feats = np.zeros((len(image), ext.n_features), np.float32)
    groups = crops_by_image(ext, items, image, boxes, mirror)
    total = len(np.unique(image))
    for rows, crops in tqdm(groups, total=total, desc=desc, disable=not progress, leave=False):
        feats[rows] = ext.features(crops)
    return feats


def crops_by_image(
    ext: FeatureExtractor,
    items: Sequence[Item],
    image: np.ndarray,
    boxes: np.ndarray,
    mirror: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(rows, crops)`` per image: the crops of ``boxes[rows]`` on that image, cut as the
    cascade cuts them; rows with ``mirror`` set are mirrored vertically."""
    for idx in np.unique(image):
        rows = np.flatnonzero(image == idx)
        crops = ext.crops(items[int(idx)], boxes[rows])
        if mirror is not None:
            crops[mirror[rows]] = crops[mirror[rows]][:, ::-1, :]
        yield rows, crops


# ----------------------------------------------------------------------------- heads


#: Inverse L2 strengths tried for every logistic head (inner patient-grouped CV picks one).
LOGISTIC_CS: tuple[float, ...] = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
#: Used when the inner CV cannot run (too few patients, or a class missing in a split).
FALLBACK_C = 0.01


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    groups: np.ndarray | None = None,
    c: float | None = None,
) -> tuple[tuple[np.ndarray, ...], float]:
    """Standardise, then an L2 logistic regression with balanced class weights.

    The regularisation is chosen by an inner 3-fold cross-validation grouped by patient
    (``groups``) over :data:`LOGISTIC_CS` (AUC for two classes, log-loss for more), so the
    outer folds stay untouched; ``c`` fixes it instead.

    The BLAS stays on one thread: on these small problems a second OpenBLAS thread beside
    torch's OpenMP pool made the fits more than 10 times slower on this project's 2-core
    machine (an ablation row 86-88 s instead of 7 s with ``--threads 2``, docs/TRAINING.md),
    and one thread gives the same numbers whatever ``--threads`` is.

    Returns:
        ``((mean, std, coef, intercept), C)``; the first for :meth:`LinearHead.set_logistic`.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_logistic(x, y, seed, groups, c)


def _fit_logistic(
    x: np.ndarray, y: np.ndarray, seed: int, groups: np.ndarray | None, c: float | None
) -> tuple[tuple[np.ndarray, ...], float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.model_selection import GroupKFold

    def model(c_value: float) -> LogisticRegression:
        return LogisticRegression(
            C=c_value, class_weight="balanced", max_iter=5000, random_state=seed
        )

    mean = x.mean(axis=0)
    std = x.std(axis=0) + 1e-6
    z = (x - mean) / std
    classes = np.unique(y)
    chosen = c
    if chosen is None and groups is not None and len(np.unique(groups)) >= 3:
        splits = list(GroupKFold(n_splits=3).split(z, y, groups))
        if all(len(np.unique(y[tr])) == len(classes) == len(np.unique(y[te])) for tr, te in splits):
            scores = []
            for c_value in LOGISTIC_CS:  # higher is better: AUC, or minus the log-loss
                fold_scores = []
                for tr, te in splits:
                    prob = model(c_value).fit(z[tr], y[tr]).predict_proba(z[te])
                    fold_scores.append(
                        roc_auc_score(y[te], prob[:, 1])
                        if len(classes) == 2
                        else -log_loss(y[te], prob, labels=classes)
                    )
                scores.append(float(np.mean(fold_scores)))
            chosen = LOGISTIC_CS[int(np.argmax(scores))]
    if chosen is None:
        chosen = FALLBACK_C
    clf = model(chosen).fit(z, y)
    if list(clf.classes_) != list(range(len(clf.classes_))):
        raise ValueError(f"classes must be 0..n-1, got {clf.classes_}")
    return (mean, std, clf.coef_, clf.intercept_), chosen


def make_head(
    part: str,
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    cfg: CVConfig,
    input_size: tuple[int, int],
) -> tuple[FeatureClassifier, float]:
    """A fitted :class:`FeatureClassifier` for ``part`` and its regularisation ``C``."""
    classes = FEATURE_PARTS[part][1]
    model = build_feature_classifier(
        FeatureConfig(num_classes=len(classes), input_size=input_size, pretrained=cfg.pretrained)
    )
    params, c = fit_logistic(x, y, cfg.seed, groups, cfg.logistic_c)
    model.head.set_logistic(*params)
    return model, c


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


def fit_heads(
    crops: CropSet,
    whole_x: np.ndarray,
    whole_y: np.ndarray,
    cfg: CVConfig,
    patients: Sequence[str],
    whole_images: np.ndarray,
) -> dict[str, tuple[FeatureClassifier, float]]:
    """The six classifiers (and their C) from training crops and whole-image features.

    ``patients[i]`` is image ``i``'s patient (the inner CV's groups); ``whole_images`` the
    image index of each row of ``whole_x``.
    """
    c = cfg.cascade
    crop_size = (c.crop_size, c.crop_size)
    pid = np.asarray(patients)
    g = pid[crops.image]
    lesion = crops.y != 0
    graded = crops.y > 0
    known_crop = crops.y >= 0
    heads = {
        "c1": make_head("c1", crops.x, lesion.astype(int), g, cfg, crop_size),
        "c2": make_head(
            "c2", crops.x[graded], (crops.y[graded] == 2).astype(int), g[graded], cfg, crop_size
        ),
        "crop-flat": make_head(
            "crop-flat", crops.x[known_crop], crops.y[known_crop], g[known_crop], cfg, crop_size
        ),
    }
    wg = pid[whole_images]
    known = whole_y >= 0
    abnormal = whole_y > 0
    heads["whole-flat"] = make_head(
        "whole-flat", whole_x[known], whole_y[known], wg[known], cfg, c.whole_size
    )
    heads["whole-abnormal"] = make_head(
        "whole-abnormal",
        whole_x[known],
        abnormal[known].astype(int),
        wg[known],
        cfg,
        c.whole_size,
    )
    heads["whole-malignancy"] = make_head(
        "whole-malignancy",
        whole_x[abnormal],
        (whole_y[abnormal] == 2).astype(int),
        wg[abnormal],
        cfg,
        c.whole_size,
    )
    return heads


# ----------------------------------------------------------------------------- the run


class CrossValidation:
    """One cross-validation run; see the module docstring."""

    def __init__(self, cfg: CVConfig, *, progress: bool | None = None) -> None:
        from hdcnn.train.pipeline import load_manifest

        self.cfg = cfg
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.progress = sys.stderr.isatty() if progress is None else progress
        torch.set_num_threads(cfg.threads)
        self.manifest = load_manifest(cfg.dataset, Path(cfg.root))
        t0 = time.perf_counter()
        self.items = load_items(self.manifest, cfg.cascade.long_side, progress=self.progress)
        log.info("read %d images in %.0f s", len(self.items), time.perf_counter() - t0)
        self.folds = self._folds()
        self.extractor = FeatureExtractor(cfg)
        self._static: dict[str, np.ndarray] | None = None
        self._whole: np.ndarray | None = None

    # -- folds and cached features -----------------------------------------------------

    def _folds(self) -> list[np.ndarray]:
        from hdcnn.data.splits import kfold

        by_patient: dict[str, list[int]] = {}
        for item in self.items:
            by_patient.setdefault(item.patient, []).append(item.index)
        held = []
        for _, test in kfold(self.manifest, self.cfg.folds, seed=self.cfg.seed):
            held.append(np.array(sorted(i for p in test.patients() for i in by_patient[p])))
        return held

    def _cached(self, name: str, build) -> dict[str, np.ndarray]:
        path = self.out / name
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        arrays = build()
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
        return arrays

    def static(self) -> dict[str, np.ndarray]:
        if self._static is None:

            def build() -> dict[str, np.ndarray]:
                s = static_crops(self.items, self.cfg)
                s["x"] = crop_features(
                    self.extractor,
                    self.items,
                    s["image"],
                    s["boxes"],
                    s["mirror"],
                    desc="lesion/normal crops",
                    progress=self.progress,
                )
                return s

            self._static = self._cached("static_crops.npz", build)
        return self._static

    def whole(self) -> dict[str, np.ndarray]:
        def build() -> dict[str, np.ndarray]:
            x = np.stack(
                [
                    self.extractor.whole(it)
                    for it in tqdm(
                        self.items, desc="whole images", disable=not self.progress, leave=False
                    )
                ]
            )
            y = np.array([LABEL_INDEX.get(it.label, -1) for it in self.items])
            return {"x": x, "y": y}

        return self._cached("whole_images.npz", build)

    def candidates(self, tag: str, train_idx: np.ndarray) -> dict[str, np.ndarray]:
        """The detector of ``tag`` (trained on ``train_idx``) and its candidates on all images."""
        folder = self.out / tag
        folder.mkdir(parents=True, exist_ok=True)
        det_path = folder / "detector.pt"
        summary_path = folder / "detector.json"
        if det_path.is_file():
            detector, _ = load_model(det_path)
        else:
            detector, summary = train_detector(
                self.items, train_idx, self.cfg, desc=f"{tag} detector", progress=self.progress
            )
            save_checkpoint(
                det_path,
                kind="detector",
                config=detector_config(self.cfg),
                model=detector,
                classes=["lesion"],
                extra={"part": "detector", **summary},
            )
            atomic_write_text(summary_path, json.dumps(summary, indent=2))

        def build() -> dict[str, np.ndarray]:
            props = propose(
                detector,
                self.items,
                self.cfg.cascade.max_candidates,
                progress=self.progress,
                device=self.cfg.device,
            )
            return self.labelled_candidates(props, desc=f"{tag} candidate crops")

        return self._cached(f"{tag}/candidates.npz", build)

    def labelled_candidates(
        self, props: Sequence[tuple[np.ndarray, np.ndarray]], *, desc: str
    ) -> dict[str, np.ndarray]:
        """Candidate arrays of ``(boxes, scores)`` per image (model pixels): ``image``,
        ``boxes``, ``scores``, ``label`` (the worst label of the lesions each box hits, 0 for
        none, by :func:`~hdcnn.evaluation.metrics.lesion_hits`) and crop features ``x``."""
        image, boxes, scores, label = [], [], [], []
        for item, (b, s) in zip(self.items, props, strict=True):
            hits = lesion_hits(b, item.gt)
            for j in range(len(b)):
                matched = np.flatnonzero(hits[j])
                labs = [LABEL_INDEX.get(item.gt_labels[g], -1) for g in matched]
                label.append(max(labs) if labs else 0)
            image += [item.index] * len(b)
            boxes.append(np.asarray(b, np.float32).reshape(-1, 4))
            scores.append(np.asarray(s, np.float32).reshape(-1))
        arrays = {
            "image": np.array(image, np.int64),
            "boxes": np.concatenate(boxes).astype(np.float32),
            "scores": np.concatenate(scores).astype(np.float32),
            "label": np.array(label, np.int64),
        }
        arrays["x"] = crop_features(
            self.extractor,
            self.items,
            arrays["image"],
            arrays["boxes"],
            desc=desc,
            progress=self.progress,
        )
        return arrays

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

    # -- weights folders ---------------------------------------------------------------

    def write_folder(self, tag: str, train_idx: np.ndarray, cascade_cfg: CascadeConfig) -> Path:
        """Fit the six heads on ``train_idx`` and write a complete weights folder."""
        folder = self.out / tag
        cand = self.candidates(tag, train_idx)
        if (folder / CascadeConfig.FILE).is_file():
            return folder
        crops = self.training_crops(cand, train_idx)
        whole = self.whole()
        patients = [it.patient for it in self.items]
        heads = fit_heads(
            crops, whole["x"][train_idx], whole["y"][train_idx], self.cfg, patients, train_idx
        )
        for part, (model, c) in heads.items():
            file, classes = FEATURE_PARTS[part]
            save_checkpoint(
                folder / file,
                kind="feature-classifier",
                config=model.config,
                model=model,
                classes=list(classes),
                extra={"part": part, "C": c},
            )
        patients = sorted({self.items[i].patient for i in train_idx})
        cfg = replace(cascade_cfg, training={"patients": patients, "cv": self.cfg.recipe()})
        cfg.save(folder, hash_files=True)
        return folder

    def run_folds(self) -> list[Path]:
        every = np.arange(len(self.items))
        folders = []
        for k, held in enumerate(self.folds):
            train = np.setdiff1d(every, held)
            log.info(
                "fold %d/%d: %d training images, %d held out",
                k + 1,
                len(self.folds),
                len(train),
                len(held),
            )
            folders.append(self.write_folder(f"fold{k}", train, self.cfg.cascade))
        return folders


def configure_logging(out: Path) -> None:
    """INFO to ``<out>/cv.log`` (appended) and to stderr."""
    out.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    fh = logging.FileHandler(out / "cv.log")
    fh.setFormatter(fmt)
    root.addHandler(fh)


def copy_folder(src: Path, dst: Path) -> None:
    """Copy a weights folder's files (``*.pt``, ``cascade.json``) into ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.suffix in (".pt", ".json") and f.name != "detector.json":
            shutil.copy2(f, dst / f.name)


# ----------------------------------------------------------------------------- out-of-fold


@dataclass
class Scored:
    """One image scored out of fold: whole-image probabilities and detector-concept traces."""

    index: int
    fold: int
    whole: dict[str, tuple[float, float]]
    traces: dict[str, Any]


def _lean(trace: Any) -> Any:
    """A trace without its crops (kept only for display)."""
    return replace(trace, crops=np.zeros((0, 1, 1), np.float32))


def _lesion_level_threshold(
    scored: Sequence[Scored],
    items: Sequence[Item],
    concept: str,
    t_det: float,
    k: int,
    sensitivity: float,
) -> float:
    """Crop threshold that keeps ``sensitivity`` of the lesions that have a hitting candidate.

    Each lesion scores the best P(lesion) of the candidates that hit it (score >= ``t_det``,
    top ``k``); lesions without any such candidate cannot be kept by any threshold and are
    left out (they are reported as missed by the candidate recall).
    """
    from hdcnn.evaluation.metrics import threshold_at_sensitivity

    best: list[float] = []
    for s in scored:
        item = items[s.index]
        if not len(item.gt):
            continue
        tr = s.traces[concept]
        n = min(len(tr.p_lesion), k)
        keep = np.flatnonzero(tr.candidates.scores[:n] >= t_det)
        hits = lesion_hits(tr.candidates.boxes[keep], item.gt)
        for g in range(len(item.gt)):
            if hits[:, g].any():
                best.append(float(tr.p_lesion[keep][hits[:, g]].max()))
    return threshold_at_sensitivity(np.array(best), sensitivity) if best else 0.5


class Evaluation:
    """Out-of-fold scoring, thresholds, the shipped folder and the report of a run."""

    def __init__(self, cv: CrossValidation) -> None:
        self.cv = cv
        self.cfg = cv.cfg

    def score_fold(self, k: int, folder: Path) -> list[Scored]:
        from hdcnn.evaluation.experiment import Experiment

        exp = Experiment(folder)
        out = []
        held = self.cv.folds[k]
        for i in tqdm(held, desc=f"fold{k} held-out", disable=not self.cv.progress, leave=False):
            item = self.cv.items[int(i)]
            whole = {n: c.probabilities(item.prep.image) for n, c in exp.whole.items()}
            traces = {n: _lean(t) for n, t in exp.traces(item.prep, item.pixels).items()}
            out.append(Scored(int(i), k, whole, traces))
        return out

    def out_of_fold(self) -> list[Scored]:
        folders = self.cv.run_folds()
        scored: list[Scored] = []
        for k, folder in enumerate(folders):
            t0 = time.perf_counter()
            scored += self.score_fold(k, folder)
            log.info("fold %d scored out of fold in %.0f s", k, time.perf_counter() - t0)
        return sorted(scored, key=lambda s: s.index)

    def thresholds(self, scored: Sequence[Scored], rules: Any) -> dict[str, Any]:
        """Every concept's thresholds, chosen on the pooled out-of-fold scores.

        ``rules`` is an :class:`~hdcnn.evaluation.experiment.Experiment` of any weights folder of
        the run: only its (pure) decide rules are used.
        """
        from hdcnn.cascade import Thresholds, choose_thresholds

        c = self.cfg.cascade
        labels = [self.cv.items[s.index].label for s in scored]
        t_det = float(Thresholds().detector_score)
        chosen: dict[str, Thresholds] = {}
        for concept in ("det-hier", "det-flat"):
            t_c1 = _lesion_level_threshold(
                scored, self.cv.items, concept, t_det, c.max_candidates, 0.9
            )
            base = Thresholds(detector_score=t_det, c1_lesion=t_c1, abnormal=0.0, malignant=0.0)
            rule = rules.detectors[concept]
            preds = [rule.decide(s.traces[concept], base, keep_trace=False) for s in scored]
            chosen[concept] = choose_thresholds(
                [p.p_abnormal for p in preds],
                [p.p_malignant for p in preds],
                labels,
                rule="youden",
                base=base,
            )
        for concept in ("flat-whole", "hier-whole"):
            pa = [s.whole[concept][0] for s in scored]
            pm = [s.whole[concept][1] for s in scored]
            chosen[concept] = choose_thresholds(
                pa, pm, labels, rule="youden", base=Thresholds(abnormal=0.5, malignant=0.5)
            )
        return chosen

    def results(self, scored: Sequence[Scored], chosen: dict[str, Any], rules: Any):
        """:class:`hdcnn.evaluation.experiment.ImageResult` per image with the chosen thresholds
        (``rules`` as in :meth:`thresholds`)."""
        from hdcnn.cascade import verdict
        from hdcnn.evaluation.experiment import ConceptOutput, ImageResult

        results = []
        for s in scored:
            item = self.cv.items[s.index]
            r = ImageResult(
                index=s.index,
                patient_id=item.patient,
                truth=item.label,
                lesion_boxes=[tuple(float(v) for v in les.box) for les in item.record.lesions],
            )
            for concept, (pa, pm) in s.whole.items():
                t = chosen[concept]
                r.outputs[concept] = ConceptOutput(
                    pa, pm, verdict(pa, pm, t_abnormal=t.abnormal, t_malignant=t.malignant)
                )
            for concept, trace in s.traces.items():
                r.outputs[concept] = rules.decide(concept, trace, chosen[concept])
            results.append(r)
        return results

    def lesion_types(self, results, scored: Sequence[Scored], chosen) -> dict[str, Any]:
        """Per lesion kind: FROC of det-hier, candidate recall at ``max_candidates``, and the
        image-level AUC of det-hier's P(abnormal) for the images with a lesion of that kind
        against the normal images (patient-bootstrap interval)."""
        from hdcnn.evaluation import metrics

        c = self.cfg.cascade
        kinds = sorted({k for it in self.cv.items for k in it.gt_kinds})
        normal = [r.truth == Label.NORMAL for r in results]
        p_abnormal = np.array([r.outputs["det-hier"].p_abnormal for r in results])
        patients = np.array([r.patient_id for r in results])
        out: dict[str, Any] = {}
        for kind in [*kinds, "all"]:
            truths, preds, has = [], [], []
            found, total = 0, 0
            for r, s in zip(results, scored, strict=True):
                item = self.cv.items[s.index]
                recs = [les for les in item.record.lesions if kind in ("all", les.kind)]
                truths.append([les.box for les in recs])
                has.append(bool(recs) and r.truth not in (Label.NORMAL, Label.UNKNOWN))
                o = r.outputs["det-hier"]
                preds.append({"boxes": o.boxes, "scores": o.scores})
                lesions = item.gt_of_kind(kind)
                tr = s.traces["det-hier"]
                n = min(len(tr.candidates), c.max_candidates)
                keep = tr.candidates.scores[:n] >= chosen["det-hier"].detector_score
                hits = lesion_hits(tr.candidates.boxes[:n][keep], lesions)
                found += int(hits.any(axis=0).sum())
                total += len(lesions)
            fr = metrics.froc(preds, truths)
            pick = np.array(normal) | np.array(has)
            y = np.array(has)[pick]
            auc = metrics.roc_auc(y, p_abnormal[pick])
            ci = metrics.bootstrap_auc_ci(
                y, p_abnormal[pick], patients[pick], n_boot=N_BOOT, seed=self.cfg.seed
            )
            out[kind] = {
                "n_lesions": total,
                "n_images": int(np.sum(has)),
                "auc_vs_normal": _round(auc),
                "auc_vs_normal_ci": None if ci is None else [round(v, 4) for v in ci],
                "candidate_recall": round(found / total, 6) if total else None,
                "froc": {
                    k: (None if fr[k] is None else round(fr[k], 6))
                    for k in ("0.5", "1", "2", "mean")
                },
            }
        return out

    def report(self, scored, chosen, rules: Any) -> dict[str, Any]:
        from hdcnn.evaluation.experiment import CONCEPTS, ImageResult, evaluate_results

        # the figures are computed from the rounded scores that are published beside them
        self.oof = [r.to_dict() for r in self.results(scored, chosen, rules)]
        results = [ImageResult.from_dict(r) for r in self.oof]
        rep = evaluate_results(results, CONCEPTS, n_boot=N_BOOT, seed=self.cfg.seed)
        rep["protocol"] = {
            "kind": "cross-validation",
            "folds": self.cfg.folds,
            "grouping": "patient",
            "seed": self.cfg.seed,
            "scores": "out of fold: each image scored by models trained without its patient",
            "thresholds": "chosen on the pooled out-of-fold scores (Youden's J; C1 keeps 90% "
            "of the lesions that have a candidate)",
            "dataset": self.cfg.dataset,
        }
        rep["lesion_types"] = self.lesion_types(results, scored, chosen)
        rep["thresholds"] = {k: v.to_dict() for k, v in chosen.items()}
        return rep

    def training_domain(self) -> Any:
        """What the training images looked like (for the app's out-of-domain notice)."""
        from hdcnn.domain import MIAS_DOMAIN, TrainingDomain

        if self.cfg.dataset == "mias":
            return MIAS_DOMAIN
        metas = [it.meta for it in self.cv.items if it.meta is not None]
        sizes = {tuple(m.original_size) for m in metas}
        spacings = {m.pixel_spacing for m in metas}
        spacing = next(iter(spacings)) if len(spacings) == 1 else None
        return TrainingDomain(
            name=self.cfg.dataset,
            description=f"the {len(metas)} images of the {self.cfg.dataset} dataset "
            "these models were trained on",
            formats=tuple(sorted({m.format for m in metas})),
            size=next(iter(sizes)) if len(sizes) == 1 else None,
            bit_depths=tuple(sorted({int(m.bit_depth) for m in metas})),
            pixel_spacing_mm=None if spacing is None else float(spacing[0]),
        )

    def ship(self, chosen: dict[str, Any], dest: Path, cv_report: dict[str, Any]) -> Path:
        """Train the final models on all patients, write them with the OOF thresholds."""
        every = np.arange(len(self.cv.items))
        final = self.cv.write_folder("final", every, self.cfg.cascade)
        copy_folder(final, dest)
        folds = {
            f"fold{k}": sorted({self.cv.items[int(i)].patient for i in idx})
            for k, idx in enumerate(self.cv.folds)
        }
        det = chosen["det-hier"]
        cfg = replace(
            self.cfg.cascade,
            name=f"hdcnn-{self.cfg.dataset}-lite0",
            thresholds=det.to_dict(),
            concept_thresholds={k: v.to_dict() for k, v in chosen.items() if k != "det-hier"},
            operating_points={
                "rule": "youden",
                "c1_lesion_sensitivity": 0.9,
                "chosen_on": "pooled out-of-fold scores",
            },
            training_domain=self.training_domain().to_dict(),
            split={
                "dataset": self.cfg.dataset,
                "kind": "k-fold",
                "seed": self.cfg.seed,
                "folds": folds,
                "shipped_models": "trained on every patient",
            },
            training={
                "cv": self.cfg.recipe(),
                "detector": json.loads((final / "detector.json").read_text())
                if (final / "detector.json").is_file()
                else {},
            },
        )
        cfg.save(dest, hash_files=True)
        return dest


# ----------------------------------------------------------------------------- ablations


@dataclass(frozen=True)
class AblationRow:
    """What one ablation row changes against the reference recipe; every default is the
    reference's.

    Attributes:
        what: one line for the report.
        extractor / cascade: :class:`FeatureExtractor` keywords and cascade settings of crop
            features computed anew (none: the reference features).
        extend: the new features go beside the reference ones instead of replacing them.
        spots: untrained full-resolution candidates (:mod:`hdcnn.spots`) added to every
            image's detector candidates, in training as labelled crops and at scoring.
        score: a candidate's lesion score from ``(Classifier 1's P(lesion), detector score)``
            instead of Classifier 1's alone.
        hard_negatives: the detector's false positives are C1 negatives.
        fine_tuned: a fine-tuned trunk (:mod:`hdcnn.train.finetune`) instead of logistic heads.
        other_breast: image scores minus the same patient's other breast.
    """

    what: str
    extractor: dict[str, Any] = field(default_factory=dict)
    cascade: dict[str, Any] = field(default_factory=dict)
    extend: bool = False
    spots: SpotConfig | None = None
    score: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    hard_negatives: bool = True
    fine_tuned: bool = False
    other_breast: bool = False


#: The ablation rows, in report order.
ABLATION_ROWS: dict[str, AblationRow] = {
    "reference": AblationRow(
        "ImageNet Lite0 features, frozen; full-resolution crops; hard negatives"
    ),
    "random-init": AblationRow(
        "the same recipe with a randomly initialised (untrained) Lite0 trunk",
        extractor={"pretrained": False},
    ),
    "crops-512": AblationRow(
        "crops cut from the 512-px model image instead of the original pixels",
        extractor={"crop_source": "model"},
    ),
    "no-hard-negatives": AblationRow(
        "C1 negatives: random normal tissue only, no detector false positives",
        hard_negatives=False,
    ),
    "other-breast": AblationRow(
        "image scores minus the same patient's other breast (mini-MIAS L/R pairs)",
        other_breast=True,
    ),
    "fine-tuned": AblationRow(
        "the Lite0 trunk fine-tuned end to end on the same crops (hdcnn.train.finetune)",
        fine_tuned=True,
    ),
    "wide-context": AblationRow(
        "features of a second crop, 3x the box side, beside the 1.5x crop's",
        cascade={"context": 3.0},
        extend=True,
    ),
    "calc-spots": AblationRow(
        "plus 5 full-resolution microcalcification-cluster candidates per image "
        "(white top-hat speck density, hdcnn.spots)",
        spots=SpotConfig(k=5),
    ),
    "detector-score": AblationRow(
        "a candidate's P(lesion) is the detector's score; Classifier 1 unused",
        score=lambda c1, detector: detector,
    ),
    "detector-c1-mean": AblationRow(
        "a candidate's P(lesion) is the mean of the detector's score and "
        "Classifier 1's P(lesion) (no new parameter)",
        score=lambda c1, detector: (c1 + detector) / 2.0,
    ),
    "crops-224": AblationRow(
        "crops resized to 224 px (the trunk's ImageNet input size) instead of 128 px",
        cascade={"crop_size": 224},
    ),
    "stride-4": AblationRow(
        "the trunk's stride-4 maps (24 channels, pooled) beside strides 8-32: fine texture "
        "such as calcification specks",
        extractor={"stages": (0, 1, 2, 3)},
    ),
    "lite1-trunk": AblationRow(
        "crop features from the frozen ImageNet EfficientNet-Lite1 trunk (21 blocks) instead "
        "of Lite0 (16); detector unchanged",
        extractor={"backbone": "efficientnet_lite1"},
    ),
    "lite2-trunk": AblationRow(
        "crop features from the frozen ImageNet EfficientNet-Lite2 trunk (21 blocks, 10 % "
        "wider) instead of Lite0; detector unchanged",
        extractor={"backbone": "efficientnet_lite2"},
    ),
}
#: Row name -> its one-line description (the report's ``what``).
ABLATIONS: dict[str, str] = {name: row.what for name, row in ABLATION_ROWS.items()}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def check_ablation_rows(names: Sequence[str]) -> None:
    """Fail before any work if rows ``names`` cannot run.

    Raises:
        ValueError: a name that is not an ablation row (the message lists the rows).
        CheckpointError: a row's trunk weights are not installed (naming the package and the
            requirements file that installs it).
    """
    from hdcnn.nets.efficientnet import weights_path

    unknown = sorted(set(names) - set(ABLATION_ROWS))
    if unknown:
        raise ValueError(
            f"unknown ablation row(s) {', '.join(unknown)}: use {', '.join(ABLATION_ROWS)}"
        )
    for name in names:
        backbone = ABLATION_ROWS[name].extractor.get("backbone")
        if backbone is not None:
            weights_path(backbone)


class Ablations:
    """Image- and lesion-level figures of recipe variants (:data:`ABLATION_ROWS`) on the
    run's folds and candidates.

    Every variant reuses the fold detectors and their candidates; only the classifier side,
    the candidate score or (``spots``) extra candidates change. Scores are threshold-free:
    ``p_abnormal`` = max ``P(lesion)`` over the candidates, ``p_malignant`` = max
    ``P(lesion) * P(malignant|lesion)``.
    """

    def __init__(self, cv: CrossValidation) -> None:
        self.cv = cv
        self.cfg = cv.cfg
        self.every = np.arange(len(cv.items))
        #: name -> ``(p_abnormal, p_malignant)`` per image, kept for the paired differences
        self.scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _features(self, name: str) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
        """Static crops and per-fold candidates, with ``x`` recomputed for a feature variant."""
        cv = self.cv
        cands = [
            cv.candidates(f"fold{k}", np.setdiff1d(self.every, h)) for k, h in enumerate(cv.folds)
        ]
        row = ABLATION_ROWS[name]
        if row.spots is not None:
            extra = self._spot_candidates(name, row.spots)
            return cv.static(), [
                {key: np.concatenate([c[key], extra[key]]) for key in c} for c in cands
            ]
        if not (row.extractor or row.cascade):
            return cv.static(), cands
        ext = FeatureExtractor(
            replace(self.cfg, cascade=replace(self.cfg.cascade, **row.cascade)), **row.extractor
        )

        def features(ref: np.ndarray, cache: str, **crops: Any) -> np.ndarray:
            x = cv._cached(
                cache, lambda: {"x": crop_features(ext, cv.items, progress=cv.progress, **crops)}
            )["x"]
            return np.concatenate([ref, x], axis=1) if row.extend else x

        s = dict(cv.static())
        s["x"] = features(
            s["x"],
            f"ablation_{name}_static.npz",
            image=s["image"],
            boxes=s["boxes"],
            mirror=s["mirror"],
            desc=f"{name} static",
        )
        out = []
        for k, cand in enumerate(cands):
            c = dict(cand)
            c["x"] = features(
                c["x"],
                f"fold{k}/ablation_{name}.npz",
                image=c["image"],
                boxes=c["boxes"],
                desc=f"{name} fold{k}",
            )
            out.append(c)
        return s, out

    def _spot_candidates(self, name: str, spot_cfg: SpotConfig) -> dict[str, np.ndarray]:
        """Row ``name``'s full-resolution spot candidates of every image (fold-independent:
        nothing is learnt), labelled and with crop features; cached. Their ``scores`` are 1:
        they are not detector boxes, so the detector-score floor does not apply to them."""
        cv = self.cv

        def build() -> dict[str, np.ndarray]:
            props = []
            for item in cv.items:
                spacing = getattr(item.meta, "pixel_spacing", None)
                pixel_mm = float(spacing[0]) if spacing else DEFAULT_PIXEL_MM
                boxes, _ = spot_candidates(item.pixels, item.prep, pixel_mm=pixel_mm, cfg=spot_cfg)
                props.append((boxes, np.ones(len(boxes), np.float32)))
            return cv.labelled_candidates(props, desc=f"{name} candidates")

        return cv._cached(f"ablation_{name}_candidates.npz", build)

    def run_variant(self, name: str) -> dict[str, Any]:
        from hdcnn.cascade import Thresholds
        from hdcnn.evaluation import metrics

        cv, row = self.cv, ABLATION_ROWS[name]
        t_det = Thresholds().detector_score
        static, cands = self._features(name)
        n = len(cv.items)
        pa, pm = np.zeros(n), np.zeros(n)
        preds: list[Any] = [None] * n
        for k, held in enumerate(cv.folds):
            train = np.setdiff1d(self.every, held)
            cand = cands[k]
            score = (
                self._finetuned_scorer(k, train, held, cand, static)
                if row.fine_tuned
                else self._logistic_scorer(train, cand, static, hard_negatives=row.hard_negatives)
            )
            for i in held:
                # the detector's rows are its top max_candidates boxes (candidates())
                rows = np.flatnonzero(cand["image"] == i)
                rows = rows[cand["scores"][rows] >= t_det]
                if len(rows):
                    pl, pml_given = score(rows)
                    if row.score is not None:
                        pl = row.score(pl, cand["scores"][rows].astype(np.float64))
                    pml = pl * pml_given
                    pa[i], pm[i] = pl.max(), pml.max()
                    preds[i] = {"boxes": cand["boxes"][rows], "scores": pl}
                else:
                    preds[i] = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0)}
        if row.other_breast:
            pa, pm = self._minus_other(pa), self._minus_other(pm)
        self.scores[name] = (pa, pm)
        known, y_abn, y_mal, _ = self._truth()
        froc_1 = {
            kind: metrics.froc(preds, [it.gt_of_kind(kind) for it in cv.items])["1"]
            for kind in [*sorted({k for it in cv.items for k in it.gt_kinds}), "all"]
        }
        return {
            "what": row.what,
            "auc_abnormal": round(float(metrics.roc_auc(y_abn, pa[known])), 4),
            "auc_malignant": round(float(metrics.roc_auc(y_mal, pm[known])), 4),
            "froc_1": _round(froc_1.pop("all")),
            "froc_1_by_kind": {kind: _round(v) for kind, v in froc_1.items()},
        }

    def _truth(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(known, y_abnormal, y_malignant, patient)``: the images with a label and, for
        those, their truths and patient ids."""
        truth = np.array([str(it.label) for it in self.cv.items])
        known = truth != str(Label.UNKNOWN)
        patient = np.array([it.patient for it in self.cv.items])[known]
        return (
            known,
            truth[known] != str(Label.NORMAL),
            truth[known] == str(Label.MALIGNANT),
            patient,
        )

    def difference(self, name: str, reference: str = "reference") -> dict[str, Any]:
        """AUC differences of row ``name`` against ``reference`` (both already run), each with
        a paired patient-bootstrap 95 % interval (``metrics.bootstrap_auc_difference``):
        ``{"auc_abnormal": [d, low, high], "auc_malignant": [...]}``."""
        from hdcnn.evaluation import metrics

        known, y_abn, y_mal, patient = self._truth()
        out: dict[str, Any] = {}
        for key, y, j in (("auc_abnormal", y_abn, 0), ("auc_malignant", y_mal, 1)):
            got = metrics.bootstrap_auc_difference(
                y,
                self.scores[name][j][known],
                self.scores[reference][j][known],
                patient,
                n_boot=N_BOOT,
                seed=self.cfg.seed,
            )
            out[key] = (
                None if got is None or got[1] is None else [round(v, 4) for v in (got[0], *got[1])]
            )
        return out

    def _logistic_scorer(
        self,
        train: np.ndarray,
        cand: dict[str, np.ndarray],
        static: dict[str, np.ndarray],
        *,
        hard_negatives: bool,
    ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """C1 and C2 logistic heads fitted on the fold's training crops: candidate rows ->
        ``(P(lesion), P(malignant | lesion))``."""
        cv = self.cv
        crops = cv.training_crops(cand, train, static=static, hard_negatives=hard_negatives)
        graded = crops.y > 0
        groups = np.array([cv.items[int(i)].patient for i in crops.image])
        seed, fixed_c = self.cfg.seed, self.cfg.logistic_c
        c1, _ = fit_logistic(crops.x, (crops.y != 0).astype(int), seed, groups, fixed_c)
        c2, _ = fit_logistic(
            crops.x[graded], (crops.y[graded] == 2).astype(int), seed, groups[graded], fixed_c
        )

        def prob(p: tuple[np.ndarray, ...], x: np.ndarray) -> np.ndarray:
            z = ((x - p[0]) / p[1]) @ p[2][0] + p[3][0]
            return 1.0 / (1.0 + np.exp(-z))

        return lambda rows: (prob(c1, cand["x"][rows]), prob(c2, cand["x"][rows]))

    def _finetuned_scorer(
        self,
        k: int,
        train: np.ndarray,
        held: np.ndarray,
        cand: dict[str, np.ndarray],
        static: dict[str, np.ndarray],
    ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """Fold ``k``'s fine-tuned crop network, trained on the crops the logistic heads use:
        candidate rows of held-out images -> ``(P(lesion), P(malignant | lesion))``. The
        probabilities are cached in ``fold<k>/ablation_fine-tuned.npz``."""
        from hdcnn.train.finetune import FineTuneConfig, finetune, probabilities

        cv = self.cv

        def cut(image: np.ndarray, boxes: np.ndarray, mirror: np.ndarray | None) -> np.ndarray:
            size = cv.cfg.cascade.crop_size
            out = np.zeros((len(image), size, size), np.float32)
            for rows, crops in crops_by_image(cv.extractor, cv.items, image, boxes, mirror):
                out[rows] = crops
            return out

        def build() -> dict[str, np.ndarray]:
            st = np.isin(static["image"], train)
            ct = np.isin(cand["image"], train)
            crops = np.concatenate(
                [
                    cut(static["image"][st], static["boxes"][st], static["mirror"][st]),
                    cut(cand["image"][ct], cand["boxes"][ct], None),
                ]
            )
            labels = np.concatenate([static["label"][st], cand["label"][ct]])
            net = finetune(
                crops,
                labels,
                FineTuneConfig(seed=self.cfg.seed, device=self.cfg.device),
                desc=f"fold{k} fine-tune",
                progress=cv.progress,
            )
            del crops
            rows = np.flatnonzero(np.isin(cand["image"], held))
            p_lesion = np.zeros(len(cand["image"]), np.float32)
            p_mal = np.zeros(len(cand["image"]), np.float32)
            p_lesion[rows], p_mal[rows] = probabilities(
                net, cut(cand["image"][rows], cand["boxes"][rows], None)
            )
            return {"p_lesion": p_lesion, "p_malignant": p_mal}

        tuned = cv._cached(f"fold{k}/ablation_fine-tuned.npz", build)
        return lambda rows: (tuned["p_lesion"][rows], tuned["p_malignant"][rows])

    def _minus_other(self, score: np.ndarray) -> np.ndarray:
        by_patient: dict[str, list[int]] = {}
        for it in self.cv.items:
            by_patient.setdefault(it.patient, []).append(it.index)
        out = score.copy()
        for idx in by_patient.values():
            if len(idx) == 2:
                a, b = idx
                out[a], out[b] = score[a] - score[b], score[b] - score[a]
        return out

    def run(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """The report block of rows ``names`` (all of :data:`ABLATION_ROWS` if None; the
        reference row always), in report order.

        Raises:
            ValueError, CheckpointError: see :func:`check_ablation_rows` (before any work).
        """
        wanted = set(ABLATION_ROWS) if names is None else {"reference", *names}
        check_ablation_rows(sorted(wanted))
        order = [name for name in ABLATION_ROWS if name in wanted]
        rows = {}
        for name in order:
            t0 = time.perf_counter()
            rows[name] = self.run_variant(name)
            log.info("ablation %s: %s (%.0f s)", name, rows[name], time.perf_counter() - t0)
        for name in order:
            if name != "reference":
                rows[name]["minus_reference"] = self.difference(name)
        return {
            "protocol": "same folds, detectors and candidates; threshold-free image scores "
            "(max over candidates); FROC in model pixels, centre-in-box; minus_reference: "
            "AUC difference to the reference row [value, low, high], paired patient bootstrap "
            f"({N_BOOT} resamples, 95 %)",
            "rows": rows,
        }


# ----------------------------------------------------------------------------- entry point


def run(
    cfg: CVConfig,
    *,
    ship: Path | None = None,
    ablations: bool | Sequence[str] = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Cross-validate, report, optionally ship the final models and run the ablations.

    Args:
        ablations: True for every row of :data:`ABLATION_ROWS`, or the names of the rows to
            measure (the reference row always comes with them).

    Returns:
        The report (also written to ``<out>/cv_report.json``; with ``ship`` also to
        ``<ship>/experiments.json``).
    """
    if ablations is not False:
        check_ablation_rows(list(ABLATION_ROWS) if ablations is True else list(ablations))
    if ablations is not True and ablations is not False and ship is not None:
        from hdcnn.errors import HDCNNError

        raise HDCNNError(
            str(ship),
            "shipping writes experiments.json, which holds every ablation row: measure all "
            "of them (--ablations without row names) or none",
        )
    out = Path(cfg.out)
    check_run_config(cfg)
    cv = CrossValidation(cfg, progress=progress)
    ev = Evaluation(cv)
    t0 = time.perf_counter()
    scored = ev.out_of_fold()
    from hdcnn.evaluation.experiment import Experiment

    rules = Experiment(out / "fold0")  # the decide rules (every fold's are the same code)
    chosen = ev.thresholds(scored, rules)
    report = ev.report(scored, chosen, rules)
    report["config"] = cfg.recipe()
    if ablations is not False:
        report["ablations"] = Ablations(cv).run(None if ablations is True else list(ablations))
    report["seconds_this_run"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    atomic_write_text(out / "cv_report.json", text)
    oof = json.dumps({"protocol": report["protocol"], "images": ev.oof}, allow_nan=False) + "\n"
    atomic_write_text(out / OOF_FILE, oof)
    if ship is not None:
        dest = ev.ship(chosen, Path(ship), report)
        from hdcnn.cascade import load_cascade

        doc = {
            "dataset": cfg.dataset,
            "split": "cross-validation",
            "model": {"name": CascadeConfig.load(dest).name, "sha256": load_cascade(dest).sha256},
            **report,
        }
        doc.pop("seconds_this_run", None)
        atomic_write_text(dest / OOF_FILE, oof)
        atomic_write_text(
            dest / "experiments.json", json.dumps(doc, indent=2, allow_nan=False) + "\n"
        )
    return report


def check_run_config(cfg: CVConfig) -> None:
    """Refuse to resume a run folder made with other settings (its caches would not fit)."""
    from hdcnn.errors import DatasetError

    path = Path(cfg.out) / "run_config.json"
    mine = cfg.recipe()
    mine = json.loads(json.dumps(mine))
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        diff = sorted(k for k in set(stored) | set(mine) if stored.get(k) != mine.get(k))
        if diff:
            raise DatasetError(
                str(path),
                f"this run folder was made with other settings "
                f"({', '.join(diff)}): use another --out",
            )
    else:
        atomic_write_text(path, json.dumps(mine, indent=2) + "\n")
