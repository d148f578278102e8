"""The known-answer check of a weights folder: expected outputs on SYNTHETIC reference inputs.

A hash proves a file is the one that was written, not that it computes anything sensible: a
detector whose weights were all multiplied by 1e30 (finite, hash updated) calls every film
normal. So a folder carries, in ``cascade.json["known_answers"]``, what its det-hier cascade
gave on a few reference inputs when it was shipped (:func:`stamp`, ``python -m hdcnn models
stamp DIR``), and :func:`verify` reruns them when the cascade is loaded, part by part:

- ``detector``: every box scored clearly above the cut (the ``max_candidates``-th score, or the
  detector's own score floor) must come back with its score within ``tolerance`` and its
  corners within ``box_tolerance`` model pixels, and no new box may appear above the cut;
- ``c1`` / ``c2``: the crop classifiers on the crops of the *stored* boxes (so a broken
  detector does not hide a healthy classifier, or the reverse): P(lesion) and
  P(malignant | lesion) within ``tolerance``;
- ``c1-calc`` (folders with a calcification stream): the spots of :func:`hdcnn.spots.find_spots`
  (boxes and densities, ``spots`` when they differ: the spot finder changed) and the stream
  classifier's P(lesion) of each within ``tolerance``;
- ``verdict``: the rules of :meth:`Cascade.decide` with the folder's thresholds: the image
  probabilities within ``tolerance`` and the same label (unless a probability lies within
  ``tolerance`` of its threshold).

The reference inputs are made here by integer arithmetic from a fixed seed (bit-identical on
every machine; their SHA-256 is stored too) and are labelled SYNTHETIC. The tolerances allow
for thread counts and floating-point order (measured drift about 1e-6, see
``benchmarks/bench_known_answers.py``); a changed part moves its outputs far more.

A verified folder is remembered per process (keyed by its weights' and settings' hashes), so
loading the same cascade again costs nothing more.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from hdcnn.calcstream import SpotAnswer
from hdcnn.cascade.calc import CalcTrace, run_stream
from hdcnn.cascade.orchestrator import Cascade
from hdcnn.cascade.results import Candidates, CascadeTrace
from hdcnn.config import CascadeConfig, KnownAnswers, ReferenceAnswer, weight_file
from hdcnn.errors import CheckpointError
from hdcnn.terms import Part

log = logging.getLogger(__name__)

#: Largest accepted difference of a score or probability.
TOLERANCE = 1e-3
#: Largest accepted difference of a box corner, model pixels.
BOX_TOLERANCE = 0.5
#: Reference inputs: (name, height, width, seed).
REFERENCES: tuple[tuple[str, int, int, int], ...] = (
    ("synthetic-left", 640, 480, 11),
    ("synthetic-right", 560, 448, 23),
)

#: Failure key of an exception inside the crop classifiers (C1 and C2 run together).
CROP_HEADS = "crop heads"
#: Failure key of spots that differ from the stored ones (the spot finder, not a weights file).
SPOTS = "spots"

_verified: set[str] = set()
_lock = threading.Lock()


def _box_blur(values: np.ndarray, radius: int) -> np.ndarray:
    """Integer mean over a ``(2r + 1)²`` window (edges clamped): exact in int64."""
    padded = np.pad(values, radius, mode="edge")
    c = np.cumsum(np.cumsum(padded, axis=0), axis=1)
    c = np.pad(c, ((1, 0), (1, 0)))
    k = 2 * radius + 1
    h, w = values.shape
    total = c[k : k + h, k : k + w] - c[:h, k : k + w] - c[k : k + h, :w] + c[:h, :w]
    return total // (k * k)


def reference_image(height: int, width: int, seed: int, *, left: bool = True) -> np.ndarray:
    """A SYNTHETIC breast-like film: float32 ``(height, width)`` in ``[0, 1]``, bit-identical
    on every machine (integer arithmetic only).

    A half-ellipse of tissue on the chest-wall side (left or right), smooth texture, a dense
    round mass and a cluster of bright specks inside it, dark background.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.int64)
    dx = xx if left else (width - 1 - xx)
    ry, rx = height * 45 // 100, width * 80 // 100
    inside = (dx * dx) * (ry * ry) + ((yy - height // 2) ** 2) * (rx * rx) <= (rx * rx) * (ry * ry)
    texture = _box_blur(rng.integers(0, 20_000, (height, width), dtype=np.int64), 6)
    img = np.where(inside, 22_000 + texture, 1_500)
    cy, cx = (
        int(rng.integers(height // 3, 2 * height // 3)),
        int(rng.integers(width // 8, width // 3)),
    )
    cx = cx if left else width - 1 - cx
    r = max(8, min(height, width) // 18)
    img = img + np.where((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r, 18_000, 0)
    for _ in range(6):
        sy, sx = cy + int(rng.integers(-3 * r, 3 * r)), cx + int(rng.integers(-3 * r, 3 * r))
        img = img + np.where((yy - sy) ** 2 + (xx - sx) ** 2 <= 9, 20_000, 0)
    img = _box_blur(np.clip(img, 0, 65_535), 1)
    return (img.astype(np.float32) / np.float32(65_535)).astype(np.float32)


def reference_images() -> list[tuple[str, np.ndarray]]:
    """The reference inputs, ``[(name, pixels float32 (H, W) in [0, 1])]`` (SYNTHETIC)."""
    return [
        (name, reference_image(h, w, seed, left=i % 2 == 0))
        for i, (name, h, w, seed) in enumerate(REFERENCES)
    ]


def _pixels_sha(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels, dtype="<f4").tobytes()).hexdigest()


def _classify(
    cascade: Cascade, prep: Any, boxes: np.ndarray, pixels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    p_lesion, p_mal, _ = cascade.classify(prep, boxes.astype(np.float32).reshape(-1, 4), pixels)
    return p_lesion.astype(np.float64), p_mal.astype(np.float64)


def stamp(cascade: Cascade) -> KnownAnswers:
    """Run the reference inputs through a (det-hier) cascade and record its answers."""
    references = []
    for name, pixels in reference_images():
        prep = cascade.preprocess(pixels, source=name)
        candidates = cascade.detect(prep)
        boxes = candidates.boxes[: cascade.max_candidates]
        p_lesion, p_mal = _classify(cascade, prep, boxes, pixels)
        calc = _run_stream(cascade, prep, pixels)
        trace = CascadeTrace(prep, candidates, p_lesion, p_mal, np.zeros((0, 1, 1)), calc)
        pred = cascade.decide(trace, source=name, keep_trace=False)
        references.append(
            ReferenceAnswer(
                name=name,
                input_sha256=_pixels_sha(pixels),
                boxes=tuple(tuple(float(v) for v in b) for b in boxes),  # type: ignore[misc]
                scores=tuple(float(s) for s in candidates.scores[: len(boxes)]),
                p_lesion=tuple(float(p) for p in p_lesion),
                p_malignant=tuple(float(p) for p in p_mal),
                label=str(pred.label),
                p_abnormal=float(pred.p_abnormal),
                p_malignant_image=float(pred.p_malignant),
                spots=None if calc is None else _spot_answer(calc),
            )
        )
    return KnownAnswers(TOLERANCE, BOX_TOLERANCE, tuple(references))


def _run_stream(cascade: Cascade, prep: Any, pixels: np.ndarray) -> CalcTrace | None:
    """The calcification stream on a reference input (None: the cascade has none)."""
    stream = cascade.calc_stream
    return None if stream is None else run_stream(stream, cascade, prep, pixels)


def _spot_answer(calc: CalcTrace) -> SpotAnswer:
    return SpotAnswer(
        boxes=tuple(tuple(float(v) for v in b) for b in calc.boxes),  # type: ignore[misc]
        density=tuple(float(d) for d in calc.density),
        p_lesion=tuple(float(p) for p in calc.p_lesion),
    )


def _spots_problem(
    ref: ReferenceAnswer, calc: CalcTrace | None, answers: KnownAnswers
) -> tuple[str, str] | None:
    """``(failing part, why)`` when the calcification stream's outputs differ from ``ref``'s."""
    if calc is None or ref.spots is None:
        if calc is None and ref.spots is None:
            return None
        has = "has" if calc is not None else "has no"
        return Part.C1_CALC, f"the folder {has} a calcification stream, its known answers not"
    exp = ref.spots
    boxes = np.asarray(exp.boxes, np.float64).reshape(-1, 4)
    if len(boxes) != len(calc.boxes) or (
        len(boxes)
        and (
            np.abs(boxes - calc.boxes).max() > answers.box_tolerance
            or np.abs(np.asarray(exp.density) - calc.density).max() > answers.tolerance
        )
    ):
        return SPOTS, f"{len(calc.boxes)} spots differ from the {len(boxes)} expected"
    problem = _values_problem(
        "P(lesion) of the calcification stream",
        exp.p_lesion,
        calc.p_lesion.astype(np.float64),
        answers.tolerance,
    )
    return None if problem is None else (Part.C1_CALC, problem)


def _detector_problem(
    expected: ReferenceAnswer, got: Candidates, k: int, floor: float, answers: KnownAnswers
) -> str | None:
    """Why the detector's top ``k`` boxes differ from the expected ones (None when they agree).

    Boxes match when their scores differ by at most ``tolerance`` and their corners by at most
    ``box_tolerance``. Unmatched boxes are allowed only at the cut: when ``k`` boxes were
    expected, expected and new boxes scored within ``tolerance`` of the ``k``-th score, as many
    of each (a swap at the ``max_candidates`` border); with fewer, boxes within ``tolerance``
    of the detector's own score floor (they may cross it).
    """
    tol = answers.tolerance
    exp_boxes = np.asarray(expected.boxes, np.float64).reshape(-1, 4)
    exp_scores = np.asarray(expected.scores, np.float64)
    boxes = np.asarray(got.boxes[:k], np.float64).reshape(-1, 4)
    scores = np.asarray(got.scores[:k], np.float64)
    used: set[int] = set()
    missing: list[int] = []
    for j, (box, score) in enumerate(zip(exp_boxes, exp_scores, strict=True)):
        close = (np.abs(scores - score) <= tol) & (
            np.abs(boxes - box).max(axis=1, initial=0.0) <= answers.box_tolerance
        )
        match = [i for i in np.flatnonzero(close) if i not in used]
        if match:
            used.add(int(match[0]))
        else:
            missing.append(j)
    extra = [i for i in range(len(scores)) if i not in used]
    full = len(exp_scores) >= k > 0
    cut = float(exp_scores[-1]) if full else floor
    at_cut = all(abs(exp_scores[j] - cut) <= tol for j in missing) and all(
        abs(scores[i] - cut) <= tol for i in extra
    )
    if at_cut and (len(missing) == len(extra) or not full):
        return None
    if missing:
        j = missing[0]
        best = float(scores.max()) if len(scores) else 0.0
        return (
            f"expected a box scored {exp_scores[j]:.4f} at {np.round(exp_boxes[j], 1).tolist()}, "
            f"not found ({len(scores)} boxes, best score {best:.4f})"
        )
    return f"{len(extra)} unexpected box(es) scored up to {float(scores[extra].max()):.4f}"


def _values_problem(
    what: str, expected: Sequence[float], got: np.ndarray, tol: float
) -> str | None:
    exp = np.asarray(expected, np.float64)
    if exp.shape != got.shape:
        return f"{what}: expected {exp.size} values, got {got.size}"
    if exp.size and not np.isfinite(got).all():
        return f"{what}: non-finite outputs"
    diff = np.abs(exp - got)
    if exp.size and diff.max() > tol:
        i = int(np.argmax(diff))
        return f"{what} of crop {i} is {got[i]:.5f}, expected {exp[i]:.5f}"
    return None


def _near(value: float, threshold: float, tol: float) -> bool:
    return abs(value - threshold) <= tol


def check(cascade: Cascade, answers: KnownAnswers, *, detector_only: bool = False) -> list[str]:
    """Rerun the reference inputs; returns one line per failing part (empty: all agree).

    Each line starts with the part's weights file (or ``inputs`` / ``verdict``).
    ``detector_only``: check the detector alone (a cascade with another crop head).
    """
    t = cascade.thresholds
    tol = answers.tolerance
    floor = float(getattr(getattr(cascade.detector, "roi_heads", None), "score_thresh", 0.0))
    images = dict(reference_images())
    failures: dict[str, str] = {}
    for ref in answers.references:
        pixels = images.get(ref.name)
        if pixels is None or _pixels_sha(pixels) != ref.input_sha256:
            failures.setdefault(
                "inputs", f"reference input {ref.name!r} is not the one the answers were made on"
            )
            continue
        prep = cascade.preprocess(pixels, source=ref.name)
        k = len(ref.boxes)
        try:
            got = cascade.detect(prep)
            problem = _detector_problem(ref, got, cascade.max_candidates, floor, answers)
        except (RuntimeError, ValueError, FloatingPointError) as exc:  # broken arithmetic
            problem = f"the network failed ({type(exc).__name__})"
        if problem:
            failures.setdefault(Part.DETECTOR, f"{ref.name}: {problem}")
        if detector_only:
            continue
        boxes = np.asarray(ref.boxes, np.float64).reshape(-1, 4)
        try:
            p_lesion, p_mal = _classify(cascade, prep, boxes, pixels) if k else (np.zeros(0),) * 2
        except (RuntimeError, ValueError, FloatingPointError) as exc:
            failures.setdefault(
                CROP_HEADS, f"{ref.name}: the crop classifiers failed ({type(exc).__name__})"
            )
            continue
        for part, exp, values in (
            (Part.C1, ref.p_lesion, p_lesion),
            (Part.C2, ref.p_malignant, p_mal),
        ):
            problem = _values_problem(
                f"P({'lesion' if part == Part.C1 else 'malignant'})", exp, values, tol
            )
            if problem:
                failures.setdefault(part, f"{ref.name}: {problem}")
        try:
            calc = _run_stream(cascade, prep, pixels)
            spots = _spots_problem(ref, calc, answers)
        except (RuntimeError, ValueError, FloatingPointError) as exc:
            calc, spots = None, (Part.C1_CALC, f"the network failed ({type(exc).__name__})")
        if spots:
            failures.setdefault(spots[0], f"{ref.name}: {spots[1]}")
        if any(p in failures for p in (Part.DETECTOR, Part.C1, Part.C2, CROP_HEADS)) or spots:
            continue
        candidates = Candidates(boxes.astype(np.float32), np.asarray(ref.scores, np.float32))
        trace = CascadeTrace(prep, candidates, p_lesion, p_mal, np.zeros((0, 1, 1)), calc)
        calc_near = () if calc is None or cascade.calc_stream is None else calc.p_lesion
        t_calc = 0.0 if cascade.calc_stream is None else cascade.calc_stream.config.threshold
        pred = cascade.decide(trace, source=ref.name, keep_trace=False)
        same_label = str(pred.label) == ref.label or any(
            _near(v, th, tol)
            for v, th in (
                (pred.p_abnormal, t.effective_abnormal),
                (pred.p_malignant, t.malignant),
                *((float(p), t.c1_lesion) for p in p_lesion),
                *((float(s), t.detector_score) for s in ref.scores),
                *((float(p), t_calc) for p in calc_near),
            )
        )
        if (
            abs(pred.p_abnormal - ref.p_abnormal) > tol
            or abs(pred.p_malignant - ref.p_malignant_image) > tol
            or not same_label
        ):
            failures.setdefault(
                "verdict",
                f"{ref.name}: verdict {pred.label} (P(abnormal) {pred.p_abnormal:.4f}, "
                f"P(malignant) {pred.p_malignant:.4f}), expected {ref.label} "
                f"({ref.p_abnormal:.4f}, {ref.p_malignant_image:.4f}): thresholds or "
                "max_candidates changed since the answers were written?",
            )
    return [f"{_failing_part(key)}: {text}" for key, text in failures.items()]


def _failing_part(key: str) -> str:
    """A failure's name: the weights file of a part, else the key (``inputs``, ``verdict``)."""
    if key == CROP_HEADS:
        return f"{weight_file(Part.C1)} / {weight_file(Part.C2)}"
    return weight_file(key) if key in set(Part) else key


def verify(
    cascade: Cascade, config: CascadeConfig, source: str, *, detector_only: bool = False
) -> None:
    """Refuse a cascade whose outputs differ from ``config.known_answers``.

    Args:
        cascade: the loaded det-hier cascade.
        config: its folder's settings (``known_answers`` must be set).
        source: the folder's ``cascade.json`` path, for the error.
        detector_only: check the detector alone (see :func:`check`).

    Raises:
        CheckpointError: naming every failing part (its weights file) and how it differs.
    """
    answers = config.known_answers
    if answers is None:
        raise ValueError("config has no known answers")
    key = hashlib.sha256(
        f"{cascade.sha256} {detector_only} {json.dumps(config.to_json(), sort_keys=True)}".encode()
    ).hexdigest()
    if key in _verified:
        return
    failures = check(cascade, answers, detector_only=detector_only)
    if failures:
        raise CheckpointError(
            source,
            "the known-answer check failed, the weights do not compute what they were shipped "
            "with: " + "; ".join(failures),
        )
    with _lock:
        _verified.add(key)
