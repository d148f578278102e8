"""Out-of-fold scoring and threshold choice of a cross-validation (``python -m hdcnn cv``).

Every held-out image is scored by the real inference code
(:class:`~hdcnn.evaluation.experiment.Experiment` loaded from the weights folder of the fold
that held its patient out), read when its turn comes. The thresholds are chosen on the pooled
out-of-fold scores: C1's crop threshold keeps :data:`~hdcnn.config.SENSITIVITY` of the lesions
that have a hitting candidate, then Youden's J on the images, per concept.

The training wing (:mod:`hdcnn.train.scoring`) runs the folds, shares the images out across
``torchrun`` processes and ships; the images it passes here only need the fields of
:class:`HeldOut` (:class:`hdcnn.train.images.Item` has them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from tqdm import tqdm

from hdcnn.config import SENSITIVITY
from hdcnn.evaluation.metrics import lesion_hits
from hdcnn.terms import Label
from hdcnn.thresholds import DETECTOR_SCORE, Thresholds, threshold_at_sensitivity

if TYPE_CHECKING:
    from hdcnn.data.manifest import ImageRecord
    from hdcnn.evaluation.experiment import Experiment, ImageResult

#: Operating-point rule of the image thresholds (:func:`hdcnn.cascade.choose_thresholds`).
RULE = "youden"
#: Where the thresholds are chosen (the cv report's protocol, ``operating_points.chosen_on``).
CHOSEN_ON = "pooled out-of-fold scores"


class HeldOut(Protocol):
    """What scoring needs to know of one developer image."""

    @property
    def gt(self) -> np.ndarray:
        """Lesion boxes ``(G, 4)`` in model pixels."""

    @property
    def label(self) -> Label: ...

    @property
    def patient(self) -> str: ...

    @property
    def record(self) -> ImageRecord: ...


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


def score_held_out(
    folder: Path, held: Sequence[int], image: Callable[[int], Any], fold: int, *, progress: bool
) -> list[Scored]:
    """Images ``held`` of fold ``fold``, scored by ``folder``'s inference code.

    ``image(i)`` reads image ``i`` when its turn comes: ``.prep`` (the preprocessed model
    image) and ``.pixels`` (the original pixels the crops are cut from).
    """
    from hdcnn.cascade.calc import pixel_mm_of
    from hdcnn.evaluation.experiment import Experiment

    exp = Experiment(folder)
    out = []
    for i in tqdm(held, desc=f"fold{fold} held-out", disable=not progress, leave=False):
        img = image(int(i))
        whole = {n: c.probabilities(img.prep.image) for n, c in exp.whole.items()}
        spacing = pixel_mm_of(img.item.meta)
        traces = {
            n: _lean(t) for n, t in exp.traces(img.prep, img.pixels, pixel_mm=spacing).items()
        }
        out.append(Scored(int(i), fold, whole, traces))
    return out


def lesion_level_threshold(
    scored: Sequence[Scored],
    images: Sequence[HeldOut],
    concept: str,
    t_det: float,
    k: int,
    sensitivity: float,
) -> float:
    """Crop threshold that keeps ``sensitivity`` of the lesions that have a hitting candidate.

    Each lesion scores the best P(lesion) of the candidates that hit it (score >= ``t_det``,
    top ``k``); lesions without any such candidate cannot be kept by any threshold and are
    left out (they are reported as missed by the candidate recall). Without any: the neutral
    threshold.
    """
    best: list[float] = []
    for s in scored:
        gt = images[s.index].gt
        if not len(gt):
            continue
        tr = s.traces[concept]
        n = min(len(tr.p_lesion), k)
        keep = np.flatnonzero(tr.candidates.scores[:n] >= t_det)
        best += best_hitting_scores(tr.candidates.boxes[keep], tr.p_lesion[keep], gt)
    return threshold_at_sensitivity(np.array(best), sensitivity)


def best_hitting_scores(boxes: np.ndarray, scores: np.ndarray, gt: np.ndarray) -> list[float]:
    """For each lesion of ``gt`` that some box hits (the FROC rule), the best score of the
    boxes that hit it: what a lesion-level threshold is chosen on."""
    if not len(boxes) or not len(gt):
        return []
    hits = lesion_hits(boxes, gt)
    return [float(scores[hits[:, g]].max()) for g in range(len(gt)) if hits[:, g].any()]


def choose_out_of_fold_thresholds(
    scored: Sequence[Scored],
    images: Sequence[HeldOut],
    rules: Experiment,
    max_candidates: int,
    sensitivity: float = SENSITIVITY,
) -> dict[str, Thresholds]:
    """Every concept's thresholds, chosen on the pooled out-of-fold scores.

    ``rules`` is an :class:`~hdcnn.evaluation.experiment.Experiment` of any weights folder of
    the run: only its (pure) decide rules are used.
    """
    from hdcnn.cascade import choose_thresholds

    labels = [images[s.index].label for s in scored]
    chosen: dict[str, Thresholds] = {}
    for concept in ("det-hier", "det-flat"):
        t_c1 = lesion_level_threshold(
            scored, images, concept, DETECTOR_SCORE, max_candidates, sensitivity
        )
        base = Thresholds(c1_lesion=t_c1, abnormal=0.0, malignant=0.0)
        rule = rules.detectors[concept]
        preds = [rule.decide(s.traces[concept], base, keep_trace=False) for s in scored]
        chosen[concept] = choose_thresholds(
            [p.p_abnormal for p in preds],
            [p.p_malignant for p in preds],
            labels,
            rule=RULE,
            base=base,
        )
    for concept in ("flat-whole", "hier-whole"):
        pa = [s.whole[concept][0] for s in scored]
        pm = [s.whole[concept][1] for s in scored]
        chosen[concept] = choose_thresholds(pa, pm, labels, rule=RULE, base=Thresholds())
    return chosen


def out_of_fold_results(
    scored: Sequence[Scored],
    images: Sequence[HeldOut],
    chosen: dict[str, Thresholds],
    rules: Experiment,
) -> list[ImageResult]:
    """:class:`~hdcnn.evaluation.experiment.ImageResult` per image with the ``chosen``
    thresholds (``rules`` as in :func:`choose_out_of_fold_thresholds`)."""
    from hdcnn.cascade import verdict
    from hdcnn.evaluation.experiment import ConceptOutput, ImageResult

    results = []
    for s in scored:
        item = images[s.index]
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
