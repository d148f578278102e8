"""The shipped recipe, ``python -m hdcnn cv``: patient-grouped k-fold cross-validation of the
pretrained cascade, then thresholds, shipping and ablations. This module only sequences:

1. :class:`~hdcnn.train.folds.CrossValidation` indexes the images once
   (:class:`~hdcnn.train.images.ImageSource`: model images spilled to the run folder, original
   pixels read when a crop needs them) and splits the patients into folds;
2. shared stages, on every ``torchrun`` process: per fold the detector
   (:func:`~hdcnn.train.detector.fit_detector`, DDP) and its candidates with crop features
   (sharded), the final detector when shipping, the static crops and whole-image features;
3. each fold's heads and weights folder (:mod:`hdcnn.train.heads`, rank 0), then the
   out-of-fold scores (:mod:`hdcnn.train.scoring`, sharded);
4. on rank 0 alone: thresholds and report, the ablation rows (:mod:`hdcnn.train.ablations`)
   and the shipped folder.

Every stage writes its result atomically and is skipped when it exists, so a killed run
resumes where it stopped. Progress goes to the log (``<out>/cv.log``) and, on a terminal, to
tqdm bars.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hdcnn.config import CascadeConfig
from hdcnn.errors import DatasetError, HDCNNError
from hdcnn.evaluation.experiment import OOF_FILE
from hdcnn.train import distributed
from hdcnn.utils import atomic_write_text

log = logging.getLogger(__name__)

#: Settings that describe the machine, not the recipe (a resumed run may change them).
MACHINE_SETTINGS = ("root", "out", "threads", "device", "cache")
#: Recipe switches added after runs were shipped: left out of :meth:`CVConfig.recipe` when off,
#: so older run folders resume and older ``cascade.json`` records read the same.
LATER_SWITCHES = ("calc_stream",)


@dataclass(frozen=True)
class CVConfig:
    """Settings of one cross-validation run (stored in the report and in ``cascade.json``).

    Attributes:
        dataset / root: the developer data (``hdcnn.data.adapters.load_dataset``).
        out: run folder (folds, final models, report, log).
        folds / seed: patient-grouped stratified k-fold.
        det_epochs / det_lr / det_batch / trainable_stages: detector fine-tuning (ImageNet
            start; ``trainable_stages`` of Lite0's four, counted from the deepest);
            ``det_batch`` images per process and step.
        logistic_c: inverse L2 strength of every logistic-regression head (standardised
            features); None = chosen per head by an inner patient-grouped CV on the training
            folds only (:func:`hdcnn.train.heads.fit_logistic`).
        normal_crops: random normal-tissue crops per training image (negatives of C1).
        lesion_jitter: shifted/rescaled copies of each training lesion crop (plus mirrors).
        hard_negatives: use the detector's false positives on training images as negatives.
        pretrained: ImageNet weights for the trunks (False = the random-init ablation).
        calc_stream: every weights folder also gets the calcification stream
            (:mod:`hdcnn.train.calc`): its classifier fitted on the folder's training images,
            its threshold chosen on the pooled out-of-fold spot scores.
        threads: torch CPU threads (per process).
        device: torch device of detector training, proposals, crop features and the
            fine-tuned ablation (``"cpu"``, ``"cuda"``, ``"cuda:1"``; under ``torchrun``
            ``"cuda"`` means each process's local GPU); a speed-up only, the held-out images
            are always scored by the CPU inference code.
        cache: optional preprocessed cache (``python -m hdcnn dataset cache``) of the
            dataset's model images.
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
    calc_stream: bool = False
    threads: int = 2
    device: str = "cpu"
    cache: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cascade"] = self.cascade.settings_dict()
        return d

    def recipe(self) -> dict[str, Any]:
        """:meth:`to_dict` without machine-specific paths, threads and device (for shipped
        files, and what a resumed run must share)."""
        recipe = {k: v for k, v in self.to_dict().items() if k not in MACHINE_SETTINGS}
        # recipe switches added later are absent from older runs' files when off
        return {k: v for k, v in recipe.items() if not (k in LATER_SWITCHES and v is False)}


def configure_logging(out: Path) -> None:
    """INFO to ``<out>/cv.log`` (appended) and to stderr; under ``torchrun`` rank 0 only."""
    if distributed.rank_from_environment() != 0:
        return
    out.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    fh = logging.FileHandler(out / "cv.log")
    fh.setFormatter(fmt)
    root.addHandler(fh)


def check_request(ship: Path | None, ablations: bool | Sequence[str]) -> None:
    """Refuse, before any work, ablation rows that cannot run or a partial set to ship."""
    from hdcnn.train.ablations import ABLATION_ROWS, check_ablation_rows

    if ablations is not False:
        check_ablation_rows(list(ABLATION_ROWS) if ablations is True else list(ablations))
    if ablations is not True and ablations is not False and ship is not None:
        raise HDCNNError(
            str(ship),
            "shipping writes experiments.json, which holds every ablation row: measure all "
            "of them (--ablations without row names) or none",
        )


def run(
    cfg: CVConfig,
    *,
    ship: Path | None = None,
    ablations: bool | Sequence[str] = False,
    progress: bool | None = None,
) -> dict[str, Any] | None:
    """Cross-validate, report, optionally ship the final models and run the ablations.

    Under ``torchrun`` every process calls it; the shared stages and the held-out scoring run
    on all of them, the rest on rank 0, which alone returns the report (the others None).

    Args:
        ablations: True for every row of :data:`hdcnn.train.ablations.ABLATION_ROWS`, or the
            names of the rows to measure (the reference row always comes with them).

    Returns:
        The report (also written to ``<out>/cv_report.json``; with ``ship`` also to
        ``<ship>/experiments.json``), or None on a rank other than 0.
    """
    check_request(ship, ablations)
    ctx = distributed.setup(use_cuda=cfg.device.startswith("cuda"))
    try:
        if ctx.is_main:
            check_run_config(cfg)
        distributed.barrier(ctx)
        return _run(cfg, ctx, ship=ship, ablations=ablations, progress=progress)
    finally:
        # no closing barrier: the other ranks finish long before rank 0's own stages
        distributed.cleanup(ctx, ok=False)


def _run(
    cfg: CVConfig,
    ctx: distributed.DistContext,
    *,
    ship: Path | None,
    ablations: bool | Sequence[str],
    progress: bool | None,
) -> dict[str, Any] | None:
    from hdcnn.evaluation.experiment import Experiment
    from hdcnn.evaluation.out_of_fold import choose_out_of_fold_thresholds
    from hdcnn.train.ablations import Ablations
    from hdcnn.train.folds import CrossValidation, stage
    from hdcnn.train.scoring import Evaluation

    out = Path(cfg.out)
    t0 = time.perf_counter()
    cv = CrossValidation(cfg, ctx=ctx, progress=progress)
    cv.shared_stages(final=ship is not None)
    ev = Evaluation(cv)
    with stage("heads and out-of-fold scores"):
        scored = ev.out_of_fold()  # heads on rank 0, scoring sharded
    if not ctx.is_main:
        return None
    cv.alone()
    with stage("thresholds and report"):
        rules = Experiment(out / "fold0")  # the decide rules (every fold's are the same code)
        chosen = choose_out_of_fold_thresholds(scored, cv.items, rules, cfg.cascade.max_candidates)
        report = ev.report(scored, chosen, rules)
    report["config"] = cfg.recipe()
    if ablations is not False:
        with stage("ablations"):
            rows = None if ablations is True else list(ablations)
            report["ablations"] = Ablations(cv).run(rows)
    report["seconds_this_run"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    atomic_write_text(out / "cv_report.json", text)
    oof = json.dumps({"protocol": report["protocol"], "images": ev.oof}, allow_nan=False) + "\n"
    atomic_write_text(out / OOF_FILE, oof)
    if ship is not None:
        with stage("ship"):
            ev.ship_with_report(chosen, Path(ship), report, oof)
    return report


def check_run_config(cfg: CVConfig) -> None:
    """Refuse to resume a run folder made with other settings (its caches would not fit)."""
    path = Path(cfg.out) / "run_config.json"
    mine = json.loads(json.dumps(cfg.recipe()))
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
