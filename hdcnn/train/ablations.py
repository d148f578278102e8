"""Ablation rows: what each recipe variant changes, and their figures on a run's folds.

A new row goes in :data:`ABLATION_ROWS`. Every row reuses the run's fold detectors and their
candidates; only the classifier side, the candidate score or (``spots``) extra candidates
change. Runs on one process (rank 0 after the shared stages).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hdcnn.config import CONTEXT, CROP_SIZE, LONG_SIDE
from hdcnn.spots import SpotConfig, spot_candidates
from hdcnn.terms import Label
from hdcnn.thresholds import DETECTOR_SCORE
from hdcnn.train.calc import (
    CALC_SPOTS,
    SIMULATED_CACHE,
    calc_candidates,
    calc_scorer,
    lesion_odds,
    logistic_probability,
    pixel_mm_of,
    simulated_candidates,
)
from hdcnn.train.features import (
    FeatureExtractor,
    crop_features,
    crops_by_image,
)
from hdcnn.train.folds import CrossValidation
from hdcnn.train.heads import fit_logistic
from hdcnn.train.images import Image
from hdcnn.train.scoring import N_BOOT

log = logging.getLogger(__name__)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _candidate_recall(proposed: Sequence[np.ndarray], items: Sequence[Any], kind: str) -> float:
    """Share of the lesions of ``kind`` that some proposed box hits (the FROC rule)."""
    from hdcnn.evaluation.metrics import lesion_hits

    hit = total = 0
    for boxes, item in zip(proposed, items, strict=True):
        gt = item.gt_of_kind(kind)
        total += len(gt)
        if len(gt) and len(boxes):
            hit += int(lesion_hits(boxes, gt).any(axis=0).sum())
    return hit / total if total else float("nan")


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
        detector: its own fold detectors, with these
            :func:`~hdcnn.train.detector.detector_config` fields (the recipe's heads on their
            candidates).
        other_breast: image scores minus the same patient's other breast.
        calc: a calcification stream beside the detector's candidates: these spot candidates
            with their own classifier (:mod:`hdcnn.train.calc`); their findings join the
            image scores and the FROC.
        simulated: with ``calc``, the stream's classifier also learns from SIMULATED clusters
            inserted into copies of the fold's training normals
            (:func:`~hdcnn.train.calc.simulated_candidates`).
        average_last: its own fold detectors, their weights averaged over the last this-many
            epochs (:func:`~hdcnn.train.detector.fit_detector`).
        c1_scale: with ``calc``, the stream's P(lesion) moved onto Classifier 1's scale
            (``reference_odds`` of :func:`~hdcnn.train.calc.fit_calc_classifier`).
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
    detector: dict[str, Any] = field(default_factory=dict)
    calc: SpotConfig | None = None
    simulated: bool = False
    average_last: int = 0
    c1_scale: bool = False


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
        f"crops cut from the {LONG_SIDE}-px model image instead of the original pixels",
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
        f"features of a second crop, 3x the box side, beside the {CONTEXT:g}x crop's",
        cascade={"context": 3.0},
        extend=True,
    ),
    "calc-spots": AblationRow(
        "plus 5 full-resolution microcalcification-cluster candidates per image "
        "(white top-hat speck density, hdcnn.spots)",
        spots=SpotConfig(k=5),
    ),
    "calc-stream": AblationRow(
        "a calcification stream beside the detector: the 20 strongest full-resolution "
        "speck-density maxima per image, its own classifier (64-px Lite0 crop features and 8 "
        "speck features; every other spot of a training image its negative)",
        calc=CALC_SPOTS,
    ),
    "simulated-clusters": AblationRow(
        "calc-stream, its classifier also taught by one SIMULATED cluster inserted into a copy "
        "of every training normal (counts and contrasts of the fold's real clusters); "
        "inserted images never scored",
        calc=CALC_SPOTS,
        simulated=True,
    ),
    "calc-stream-prior": AblationRow(
        "calc-stream, the stream's P(lesion) moved onto Classifier 1's scale (its intercept "
        "moved by the log ratio of the two training sets' negatives per positive)",
        calc=CALC_SPOTS,
        c1_scale=True,
    ),
    "simulated-clusters-prior": AblationRow(
        "simulated-clusters, the stream's P(lesion) moved onto Classifier 1's scale as in "
        "calc-stream-prior",
        calc=CALC_SPOTS,
        simulated=True,
        c1_scale=True,
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
        f"crops resized to 224 px (the trunk's ImageNet input size) instead of {CROP_SIZE} px",
        cascade={"crop_size": 224},
    ),
    "stride-4": AblationRow(
        "the trunk's stride-4 maps (24 channels, pooled) beside strides 8-32: fine texture "
        "such as calcification specks",
        extractor={"stages": (0, 1, 2, 3)},
    ),
    "scratch-detector": AblationRow(
        "the from-scratch detector of `hdcnn train` (small conv backbone, random weights) in "
        "place of the ImageNet Lite0 FPN, same epochs; the recipe's heads on its candidates",
        detector={"backbone": "tiny"},
    ),
    "swa-detector": AblationRow(
        "the detector's weights averaged over its last 3 of 6 epochs (stochastic weight "
        "averaging, torch.optim.swa_utils); same architecture, no inference cost",
        average_last=3,
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
        row = ABLATION_ROWS[name]
        own = row.detector or row.average_last
        variant = (
            {
                "variant": name,
                "overrides": row.detector,
                "average_last": min(row.average_last, self.cfg.det_epochs),
            }
            if own
            else {}
        )
        cands = [
            cv.candidates(f"fold{k}", np.setdiff1d(self.every, h), **variant)
            for k, h in enumerate(cv.folds)
        ]
        if row.spots is not None:
            extra = self._spot_candidates(name, row.spots)
            return cv.static(), [
                {key: np.concatenate([c[key], extra[key]]) for key in c} for c in cands
            ]
        if not (row.extractor or row.cascade):
            return cv.static(), cands
        ext = FeatureExtractor(
            replace(self.cfg, cascade=replace(self.cfg.cascade, **row.cascade)),
            cv.device,
            **row.extractor,
        )

        def features(ref: np.ndarray, cache: str, **crops: Any) -> np.ndarray:
            x = cv.cached(
                cache,
                lambda: {
                    "x": crop_features(ext, cv.source, ctx=cv.ctx, progress=cv.progress, **crops)
                },
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

        def spots(image: Image) -> tuple[np.ndarray, np.ndarray]:
            boxes, _ = spot_candidates(
                image.pixels, image.prep, pixel_mm=pixel_mm_of(image), cfg=spot_cfg
            )
            return boxes, np.ones(len(boxes), np.float32)

        return cv.labelled_candidates(
            f"ablation_{name}_candidates.npz", spots, desc=f"{name} candidates"
        )

    def run_variant(self, name: str) -> dict[str, Any]:
        from hdcnn.evaluation import metrics
        from hdcnn.evaluation.findings_froc import findings_froc

        cv, row = self.cv, ABLATION_ROWS[name]
        t_det = DETECTOR_SCORE
        static, cands = self._features(name)
        calc = None
        if row.calc is not None:
            cache = "calc_candidates.npz" if row.calc == CALC_SPOTS else f"ablation_{name}_calc.npz"
            calc = calc_candidates(cv, row.calc, name=cache)
        n = len(cv.items)
        pa, pm = np.zeros(n), np.zeros(n)
        preds: list[Any] = [None] * n
        proposed: list[np.ndarray] = [np.zeros((0, 4))] * n
        alone: list[Any] = [None] * n  # the calcification stream's findings by themselves
        for k, held in enumerate(cv.folds):
            train = np.setdiff1d(self.every, held)
            cand = cands[k]
            c2 = None
            if row.fine_tuned:
                score = self._finetuned_scorer(k, train, held, cand, static)
            else:
                score, c2 = self._logistic_scorer(
                    train, cand, static, hard_negatives=row.hard_negatives
                )
            extra = (
                simulated_candidates(cv, train, name=f"fold{k}/{SIMULATED_CACHE}")
                if row.simulated
                else None
            )
            odds = None
            if row.c1_scale:
                crops = cv.training_crops(
                    cand, train, static=static, hard_negatives=row.hard_negatives
                )
                odds = lesion_odds(crops.y)
            calc_p = (
                None if calc is None else calc_scorer(cv, calc, train, extra, reference_odds=odds)
            )
            for i in held:
                # the detector's rows are its top max_candidates boxes (candidates())
                rows = np.flatnonzero(cand["image"] == i)
                rows = rows[cand["scores"][rows] >= t_det]
                boxes, pl, pml = cand["boxes"][rows], np.zeros(0), np.zeros(0)
                if len(rows):
                    pl, pml_given = score(rows)
                    if row.score is not None:
                        pl = row.score(pl, cand["scores"][rows].astype(np.float64))
                    pml = pl * pml_given
                if calc is not None and calc_p is not None and c2 is not None:
                    spots = np.flatnonzero(calc["image"] == i)
                    p_spot = calc_p(spots)
                    alone[i] = {"boxes": calc["boxes"][spots], "scores": p_spot}
                    boxes = np.concatenate([boxes, calc["boxes"][spots]])
                    pl = np.concatenate([pl, p_spot])
                    pml = np.concatenate([pml, p_spot * logistic_probability(c2, calc["x"][spots])])
                proposed[i] = boxes
                if len(pl):
                    pa[i], pm[i] = pl.max(), pml.max()
                    preds[i] = {"boxes": boxes, "scores": pl}
                else:
                    preds[i] = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0)}
        if row.other_breast:
            pa, pm = self._minus_other(pa), self._minus_other(pm)
        self.scores[name] = (pa, pm)
        known, y_abn, y_mal, _ = self._truth()
        kinds = [*sorted({k for it in cv.items for k in it.gt_kinds}), "all"]
        truths = {kind: [it.gt_of_kind(kind) for it in cv.items] for kind in kinds}
        froc_1 = {kind: metrics.froc(preds, truths[kind])["1"] for kind in kinds}
        merged_1 = {kind: findings_froc(preds, truths[kind])["1"] for kind in kinds}
        recall = {kind: _candidate_recall(proposed, cv.items, kind) for kind in kinds}
        out = {
            "what": row.what,
            "auc_abnormal": round(float(metrics.roc_auc(y_abn, pa[known])), 4),
            "auc_malignant": round(float(metrics.roc_auc(y_mal, pm[known])), 4),
            "froc_1": _round(froc_1.pop("all")),
            "froc_1_by_kind": {kind: _round(v) for kind, v in froc_1.items()},
            "froc_1_findings": _round(merged_1.pop("all")),
            "froc_1_findings_by_kind": {kind: _round(v) for kind, v in merged_1.items()},
            "candidate_recall": _round(recall.pop("all")),
            "candidate_recall_by_kind": {kind: _round(v) for kind, v in recall.items()},
        }
        if calc is not None:
            # what the stream finds by itself: calcification FROC counting its own findings
            # and false positives only
            calcs = [it.gt_of_kind("calcification") for it in cv.items]
            out["calc_stream_alone_froc"] = {
                k: _round(v)
                for k, v in metrics.froc(alone, calcs).items()
                if k in ("0.5", "1", "2")
            }
        return out

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
    ) -> tuple[Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, ...]]:
        """C1 and C2 logistic heads fitted on the fold's training crops: candidate rows ->
        ``(P(lesion), P(malignant | lesion))``, and C2's parameters (for other crops)."""
        cv = self.cv
        crops = cv.training_crops(cand, train, static=static, hard_negatives=hard_negatives)
        graded = crops.y > 0
        groups = np.array([cv.items[int(i)].patient for i in crops.image])
        seed, fixed_c = self.cfg.seed, self.cfg.logistic_c
        c1, _ = fit_logistic(crops.x, (crops.y != 0).astype(int), seed, groups, fixed_c)
        c2, _ = fit_logistic(
            crops.x[graded], (crops.y[graded] == 2).astype(int), seed, groups[graded], fixed_c
        )

        prob = logistic_probability
        return lambda rows: (prob(c1, cand["x"][rows]), prob(c2, cand["x"][rows])), c2

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
            for rows, crops in crops_by_image(cv.extractor, cv.source, image, boxes, mirror):
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

        tuned = cv.cached(f"fold{k}/ablation_fine-tuned.npz", build)
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
