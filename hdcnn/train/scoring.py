"""Out-of-fold scoring, threshold choice, the report and the shipped folder of a run.

Every held-out image is scored by the real inference code
(:class:`hdcnn.evaluation.experiment.Experiment` loaded from its fold's weights folder), read
from the image source when its turn comes; the thresholds are chosen on the pooled
out-of-fold scores.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hdcnn.evaluation.metrics import lesion_hits
from hdcnn.terms import Label
from hdcnn.train.distributed import gather, shard
from hdcnn.train.folds import CrossValidation
from hdcnn.train.images import Item
from hdcnn.utils import atomic_write_text

log = logging.getLogger(__name__)

#: Patient-bootstrap resamples of the report's intervals.
N_BOOT = 1000


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def copy_folder(src: Path, dst: Path) -> None:
    """Copy a weights folder's files (``*.pt``, ``cascade.json``) into ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.suffix in (".pt", ".json") and f.name != "detector.json":
            shutil.copy2(f, dst / f.name)


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

    def score_fold(self, k: int, folder: Path, held: Sequence[int]) -> list[Scored]:
        """Images ``held`` of fold ``k``, scored by its weights folder's inference code."""
        from hdcnn.evaluation.experiment import Experiment

        exp = Experiment(folder)
        out = []
        for i in tqdm(held, desc=f"fold{k} held-out", disable=not self.cv.progress, leave=False):
            image = self.cv.image(int(i))
            whole = {n: c.probabilities(image.prep.image) for n, c in exp.whole.items()}
            traces = {n: _lean(t) for n, t in exp.traces(image.prep, image.pixels).items()}
            out.append(Scored(int(i), k, whole, traces))
        return out

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

    def ship_with_report(
        self, chosen: dict[str, Any], dest: Path, report: dict[str, Any], oof: str
    ) -> Path:
        """:meth:`ship`, then the report as ``experiments.json`` and the out-of-fold scores."""
        from hdcnn.cascade import load_cascade
        from hdcnn.config import CascadeConfig
        from hdcnn.evaluation.experiment import OOF_FILE

        dest = self.ship(chosen, dest, report)
        doc = {
            "dataset": self.cfg.dataset,
            "split": "cross-validation",
            "model": {"name": CascadeConfig.load(dest).name, "sha256": load_cascade(dest).sha256},
            **report,
        }
        doc.pop("seconds_this_run", None)
        atomic_write_text(dest / OOF_FILE, oof)
        atomic_write_text(
            dest / "experiments.json", json.dumps(doc, indent=2, allow_nan=False) + "\n"
        )
        return dest
