"""The out-of-fold stage of a run, its report and its shipped folder.

:class:`Evaluation` scores every fold's held-out images (shared out across ``torchrun``
processes) with :mod:`hdcnn.evaluation.out_of_fold`, which also chooses the thresholds on the
pooled out-of-fold scores; it writes the report and ships the final models with those
thresholds, their calibration and their known answers.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from hdcnn.config import (
    CALC_WEIGHT_FILE,
    CONFIG_FILE,
    SENSITIVITY,
    WEIGHT_FILES,
    CascadeConfig,
    OperatingPoints,
    SplitRecord,
)
from hdcnn.domain import MIAS_DOMAIN, TrainingDomain
from hdcnn.evaluation.out_of_fold import (
    CHOSEN_ON,
    RULE,
    Scored,
    out_of_fold_results,
    score_held_out,
)
from hdcnn.thresholds import Thresholds
from hdcnn.train.distributed import gather, shard
from hdcnn.train.folds import DETECTOR_SUMMARY, CrossValidation
from hdcnn.utils import atomic_write_text

log = logging.getLogger(__name__)

#: Patient-bootstrap resamples of the report's intervals (and of the shipped calibration).
N_BOOT = 1000


def copy_folder(src: Path, dst: Path) -> None:
    """Copy a weights folder's files (:data:`~hdcnn.config.WEIGHT_FILES`, the calcification
    stream's if any, and its settings file) into ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in [*(w.file for w in WEIGHT_FILES.values()), CALC_WEIGHT_FILE.file, CONFIG_FILE]:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


class Evaluation:
    """Out-of-fold scoring, thresholds, the shipped folder and the report of a run."""

    def __init__(self, cv: CrossValidation) -> None:
        self.cv = cv
        self.cfg = cv.cfg

    def score_fold(self, k: int, folder: Path, held: Sequence[int]) -> list[Scored]:
        """Images ``held`` of fold ``k``, scored by its weights folder's inference code."""
        return score_held_out(folder, held, self.cv.image, k, progress=bool(self.cv.progress))

    def out_of_fold(self) -> list[Scored]:
        """Every image scored by its fold's folder; under ``torchrun`` each process scores its
        share of every fold (rank 0 fits the heads first) and every process gets them all."""
        folders = self.cv.fold_folders()
        scored: list[Scored] = []
        for k, folder in enumerate(folders):
            t0 = time.perf_counter()
            scored += self.score_fold(k, folder, shard(self.cv.folds[k], self.cv.ctx))
            log.info("fold %d scored out of fold in %.0f s", k, time.perf_counter() - t0)
        return sorted(gather(scored, self.cv.ctx), key=lambda s: s.index)

    def lesion_types(self, results: Sequence[Any]) -> dict[str, Any]:
        """The per-lesion-type table of the out-of-fold results
        (:func:`hdcnn.evaluation.lesion_types.lesion_type_figures`, as ``evaluate`` writes it)."""
        from hdcnn.evaluation.lesion_types import lesion_type_figures

        kinds = [[str(les.kind) for les in self.cv.items[r.index].record.lesions] for r in results]
        return lesion_type_figures(results, kinds, n_boot=N_BOOT, seed=self.cfg.seed)

    def report(
        self, scored: Sequence[Scored], chosen: dict[str, Thresholds], rules: Any
    ) -> dict[str, Any]:
        """The run's report on the out-of-fold ``scored`` images with the ``chosen``
        thresholds (``rules``: see
        :func:`~hdcnn.evaluation.out_of_fold.choose_out_of_fold_thresholds`); keeps the published
        out-of-fold results in :attr:`oof`."""
        from hdcnn.evaluation.experiment import CONCEPTS, ImageResult, evaluate_results

        # the figures are computed from the rounded scores that are published beside them
        results = out_of_fold_results(scored, self.cv.items, chosen, rules)
        self.oof = [r.to_dict() for r in results]
        results = [ImageResult.from_dict(r) for r in self.oof]
        rep = evaluate_results(results, CONCEPTS, n_boot=N_BOOT, seed=self.cfg.seed)
        rep["protocol"] = {
            "kind": "cross-validation",
            "folds": self.cfg.folds,
            "grouping": "patient",
            "seed": self.cfg.seed,
            "scores": "out of fold: each image scored by models trained without its patient",
            "thresholds": f"chosen on the {CHOSEN_ON} (Youden's J; C1 keeps "
            f"{SENSITIVITY:.0%} of the lesions that have a candidate)",
            "dataset": self.cfg.dataset,
        }
        rep["lesion_types"] = self.lesion_types(results)
        rep["thresholds"] = {k: v.to_dict() for k, v in chosen.items()}
        return rep

    def training_domain(self) -> TrainingDomain:
        """What the training images looked like (for the app's out-of-domain notice)."""
        if self.cfg.dataset == "mias":
            return MIAS_DOMAIN
        metas = [it.meta for it in self.cv.items]
        sizes = {m.original_size for m in metas}
        spacings = {m.pixel_spacing for m in metas}
        spacing = next(iter(spacings)) if len(spacings) == 1 else None
        return TrainingDomain(
            name=self.cfg.dataset,
            description=f"the {len(metas)} images of the {self.cfg.dataset} dataset "
            "these models were trained on",
            formats=tuple(sorted({m.format for m in metas})),
            size=next(iter(sizes)) if len(sizes) == 1 else None,
            bit_depths=tuple(sorted({m.bit_depth for m in metas})),
            pixel_spacing_mm=None if spacing is None else float(spacing[0]),
        )

    def ship(self, chosen: dict[str, Thresholds], dest: Path, oof: str) -> Path:
        """Train the final models on all patients and write a folder that ``predict`` accepts:
        the weights with the out-of-fold thresholds, the out-of-fold scores ``oof``, their
        probability calibration (:func:`hdcnn.evaluation.calibration.calibrate_folder`) and
        the known answers (:func:`hdcnn.cascade.stamp_known_answers`)."""
        from hdcnn.cascade import stamp_known_answers
        from hdcnn.evaluation.experiment import OOF_FILE

        every = np.arange(len(self.cv.items))
        final = self.cv.write_folder("final", every, self.cfg.cascade)
        copy_folder(final, dest)
        folds = {
            f"fold{k}": tuple(sorted({self.cv.items[int(i)].patient for i in idx}))
            for k, idx in enumerate(self.cv.folds)
        }
        summary = final / DETECTOR_SUMMARY
        cfg = replace(
            self.cfg.cascade,
            calc_stream=CascadeConfig.load(final).calc_stream,
            name=f"hdcnn-{self.cfg.dataset}-lite0",
            thresholds=chosen["det-hier"],
            concept_thresholds={k: v for k, v in chosen.items() if k != "det-hier"},
            operating_points=OperatingPoints(
                rule=RULE, c1_lesion_sensitivity=SENSITIVITY, chosen_on=CHOSEN_ON
            ),
            training_domain=self.training_domain(),
            split=SplitRecord(
                dataset=self.cfg.dataset,
                kind="k-fold",
                seed=self.cfg.seed,
                folds=folds,
                shipped_models="trained on every patient",
            ),
            training={
                "cv": self.cfg.recipe(),
                "detector": json.loads(summary.read_text()) if summary.is_file() else {},
            },
        )
        cfg.save(dest, hash_files=True)
        atomic_write_text(dest / OOF_FILE, oof)
        self.calibrate(dest)
        stamp_known_answers(dest)  # after the calibration: the settings are final
        return dest

    def calibrate(self, dest: Path) -> None:
        """Fit the probability calibration of ``dest`` on its out-of-fold scores. A probability
        without a positive or a negative example (a small cohort) is left out, warned; one
        that cannot be fitted at all ships the folder without a calibration, warned."""
        from hdcnn.errors import DatasetError
        from hdcnn.evaluation.calibration import calibrate_folder

        try:
            calibration = calibrate_folder(dest, n_boot=N_BOOT, seed=self.cfg.seed, partial=True)
        except DatasetError as exc:
            log.warning("%s ships without a probability calibration (%s)", dest, exc)
            return
        for name, why in calibration.report.get("not_fitted", {}).items():
            log.warning("%s: %s is not calibrated: %s", dest, name, why)

    def ship_with_report(
        self, chosen: dict[str, Thresholds], dest: Path, report: dict[str, Any], oof: str
    ) -> Path:
        """:meth:`ship`, then the report as ``experiments.json``."""
        from hdcnn.cascade import load_cascade
        from hdcnn.config import CascadeConfig

        dest = self.ship(chosen, dest, oof)
        doc = {
            "dataset": self.cfg.dataset,
            "split": "cross-validation",
            "model": {
                "name": CascadeConfig.load(dest).name,
                "sha256": load_cascade(dest, known_answers="require").sha256,
            },
            **report,
        }
        doc.pop("seconds_this_run", None)
        atomic_write_text(
            dest / "experiments.json", json.dumps(doc, indent=2, allow_nan=False) + "\n"
        )
        return dest
