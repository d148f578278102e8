"""Calibration metrics, and fitting the calibration that ``cascade.json`` ships.

Everything is measured on a cross-validation run's out-of-fold scores (``oof_predictions.json``,
det-hier) and cross-fitted on the run's own patient folds: each fold's scores are calibrated
by a map fitted on the other folds, so the "after" figures are held out, never in-sample.

- Probabilities and their truth: ``p_abnormal`` (abnormal vs normal images), ``p_malignant``
  (malignant vs the rest), ``p_lesion`` per candidate (a hit when its box centre lies in a
  lesion box, :func:`hdcnn.evaluation.metrics.lesion_hits`; candidates of abnormal images
  without lesion boxes are left out: their truth is unknown).
- Method: for each probability, Platt scaling (logistic regression on the logit of the score)
  or isotonic regression (scikit-learn; each step's value Laplace-smoothed, so that no step of
  a few images says 0 or 1), whichever has the lower cross-fitted Brier score (a proper
  score). Platt suits small data (two parameters); isotonic assumes no shape.
- Metrics: Brier score, expected calibration error over :data:`N_BINS` equal-width bins (ECE =
  sum over bins of ``n_bin / N * |mean p - observed frequency|``), a reliability table, a
  patient-bootstrap 95 % interval of the ECE, and its sampling floor (the ECE perfectly
  calibrated probabilities show on as many examples, :mod:`hdcnn.evaluation.ece_floor`).
- Threshold bands: each threshold is chosen again (the operating-point rule of
  ``cascade.json``) on patient-bootstrap resamples of the out-of-fold images; the central
  :data:`BAND_LEVEL` interval of those thresholds, widened to hold the shipped threshold, is
  the band inside which a verdict is borderline.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hdcnn.calibration import BANDED, METHODS, Calibration, ProbabilityMap, ThresholdBand, logit
from hdcnn.errors import DatasetError
from hdcnn.terms import Label

log = logging.getLogger(__name__)

#: Equal-width bins of the ECE and the reliability diagram.
N_BINS = 10
#: Central fraction of the bootstrap thresholds that forms a threshold's band.
BAND_LEVEL = 0.5
#: The concept whose scores are calibrated (the product).
CONCEPT = "det-hier"
#: How a weights folder is calibrated again (shown beside the figures).
COMMAND = "python -m hdcnn calibrate models/"


@dataclass(frozen=True)
class Scores:
    """One probability's scores with their truth, patient and cross-validation fold.

    Attributes:
        scores: float64 ``(N,)`` raw scores in ``[0, 1]``.
        truth: int ``(N,)`` 0/1.
        groups: ``(N,)`` patient ids (bootstrap unit).
        folds: ``(N,)`` fold of each patient (cross-fitting unit).
    """

    scores: np.ndarray
    truth: np.ndarray
    groups: np.ndarray
    folds: np.ndarray


# ----------------------------------------------------------------------------- metrics


def brier(truth: Any, p: Any) -> float:
    """Mean squared difference between probability and 0/1 truth."""
    y, q = np.asarray(truth, np.float64), np.asarray(p, np.float64)
    return float(np.mean((q - y) ** 2))


def _bins(p: np.ndarray, n_bins: int) -> np.ndarray:
    return np.minimum((p * n_bins).astype(int), n_bins - 1)


def ece(truth: Any, p: Any, n_bins: int = N_BINS) -> float:
    """Expected calibration error over ``n_bins`` equal-width bins of ``[0, 1]``."""
    y, q = np.asarray(truth, np.float64), np.asarray(p, np.float64)
    b = _bins(q, n_bins)
    n = np.bincount(b, minlength=n_bins)
    gap = np.abs(
        np.bincount(b, weights=q, minlength=n_bins) - np.bincount(b, weights=y, minlength=n_bins)
    )
    return float(gap.sum() / max(len(q), 1)) if n.sum() else 0.0


def reliability(truth: Any, p: Any, n_bins: int = N_BINS) -> list[dict[str, Any]]:
    """The reliability diagram: per non-empty bin ``{"low", "high", "n", "mean_p",
    "frequency"}`` (bins of equal width over ``[0, 1]``)."""
    y, q = np.asarray(truth, np.float64), np.asarray(p, np.float64)
    b = _bins(q, n_bins)
    rows = []
    for k in range(n_bins):
        m = b == k
        if m.any():
            rows.append(
                {
                    "low": round(k / n_bins, 4),
                    "high": round((k + 1) / n_bins, 4),
                    "n": int(m.sum()),
                    "mean_p": round(float(q[m].mean()), 6),
                    "frequency": round(float(y[m].mean()), 6),
                }
            )
    return rows


def ece_ci(
    truth: Any, p: Any, groups: Any, *, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Patient-bootstrap 95 % percentile interval of the ECE."""
    from hdcnn.evaluation.metrics import bootstrap_indices

    y, q = np.asarray(truth, np.float64), np.asarray(p, np.float64)
    values = [ece(y[i], q[i]) for i in bootstrap_indices(groups, n_boot=n_boot, seed=seed)]
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def summary(s: Scores, p: np.ndarray, *, n_boot: int, seed: int) -> dict[str, Any]:
    """Brier, ECE with its interval and its sampling floor (``ece_floor``: the ECE that
    perfectly calibrated probabilities ``p`` would show on these examples, ``n_boot`` label
    draws; :mod:`hdcnn.evaluation.ece_floor`), and the reliability table of probabilities ``p``."""
    from hdcnn.evaluation.ece_floor import ECE_TARGET, ece_floor

    lo, hi = ece_ci(s.truth, p, s.groups, n_boot=n_boot, seed=seed)
    return {
        "brier": round(brier(s.truth, p), 6),
        "ece": round(ece(s.truth, p), 6),
        "ece_ci": [round(lo, 6), round(hi, 6)],
        "ece_floor": ece_floor(p, n_sim=n_boot, seed=seed, target=ECE_TARGET).to_dict(),
        "reliability": reliability(s.truth, p),
    }


# ----------------------------------------------------------------------------- fitting


def fit_map(method: str, scores: Any, truth: Any) -> ProbabilityMap:
    """A calibration map fitted with scikit-learn.

    Args:
        method: ``"platt"`` (unpenalised logistic regression on ``logit(score)``) or
            ``"isotonic"`` (``IsotonicRegression(out_of_bounds="clip")`` on the score).
        scores: float ``(N,)`` raw scores; truth: ``(N,)`` 0/1 with both classes.

    Raises:
        ValueError: one class only, or an unknown method.
    """
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    s, y = np.asarray(scores, np.float64), np.asarray(truth, int)
    if len(np.unique(y)) < 2:
        raise ValueError("calibration needs positive and negative examples")
    if method == "platt":
        model = LogisticRegression(C=1e6, max_iter=1000).fit(logit(s)[:, None], y)
        slope = max(float(model.coef_[0, 0]), 0.0)  # a falling map would reorder the scores
        return ProbabilityMap("platt", a=slope, b=float(model.intercept_[0]))
    if method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
        # each step's value is its examples' frequency of positives, Laplace-smoothed:
        # (positives + 1) / (examples + 2), so a step of 8 abnormal images says 0.9, not 1.0
        blocks, member = np.unique(iso.predict(s), return_inverse=True)
        smoothed = (np.bincount(member, weights=y) + 1) / (np.bincount(member) + 2)
        step = np.clip(np.searchsorted(blocks, iso.y_thresholds_), 0, len(blocks) - 1)
        return ProbabilityMap(
            "isotonic",
            x=tuple(float(v) for v in iso.X_thresholds_),
            y=tuple(float(v) for v in np.maximum.accumulate(smoothed[step])),
        )
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def cross_fitted(method: str, s: Scores) -> np.ndarray:
    """Each fold's scores calibrated by a map fitted on the other folds (float64 ``(N,)``)."""
    out = np.empty(len(s.scores))
    for fold in np.unique(s.folds):
        held = s.folds == fold
        out[held] = fit_map(method, s.scores[~held], s.truth[~held])(s.scores[held])
    return out


# ----------------------------------------------------------------------------- data


def patient_folds(split: Mapping[str, Any], patients: Sequence[str], k: int = 5) -> dict[str, int]:
    """Fold of each patient: the cross-validation's own folds (``cascade.json`` ``split.folds``)
    when they cover every patient, else ``k`` patient-grouped folds in sorted order."""
    folds = split.get("folds") or {}
    out = {str(p): i for i, name in enumerate(sorted(folds)) for p in folds[name]}
    if all(p in out for p in patients):
        return out
    log.warning("the stored folds do not cover these patients: using %d sorted folds", k)
    return {p: i % k for i, p in enumerate(sorted(set(patients)))}


def probability_scores(results: Sequence[Any], folds: Mapping[str, int]) -> dict[str, Scores]:
    """The three probabilities of det-hier's out-of-fold results with their truth.

    Args:
        results: :class:`~hdcnn.evaluation.experiment.ImageResult` with a ``det-hier`` output.
        folds: patient id -> fold.
    """
    from hdcnn.evaluation.metrics import lesion_hits

    rows = _image_rows(results)
    image: dict[str, list[Any]] = {"pa": [], "pm": [], "ya": [], "ym": [], "g": []}
    lesion: dict[str, list[Any]] = {"s": [], "y": [], "g": []}
    for r in rows:
        o = r.outputs[CONCEPT]
        image["pa"].append(o.p_abnormal)
        image["pm"].append(o.p_malignant)
        image["ya"].append(int(r.truth != Label.NORMAL))
        image["ym"].append(int(r.truth == Label.MALIGNANT))
        image["g"].append(r.patient_id)
        unknown = r.truth != Label.NORMAL and not r.lesion_boxes  # where is its lesion?
        if unknown or o.boxes is None or not len(o.boxes):
            continue
        hits = lesion_hits(o.boxes, np.asarray(r.lesion_boxes, np.float64).reshape(-1, 4))
        lesion["s"] += [float(v) for v in o.scores]
        lesion["y"] += [int(v) for v in hits.any(axis=1)]
        lesion["g"] += [r.patient_id] * len(o.scores)

    def make(scores: list[float], truth: list[int], groups: list[str]) -> Scores:
        g = np.asarray(groups, dtype=str)
        return Scores(
            np.asarray(scores, np.float64),
            np.asarray(truth, int),
            g,
            np.asarray([folds[p] for p in g], int),
        )

    return {
        "p_abnormal": make(image["pa"], image["ya"], image["g"]),
        "p_malignant": make(image["pm"], image["ym"], image["g"]),
        "p_lesion": make(lesion["s"], lesion["y"], lesion["g"]),
    }


#: Image labels with a known truth.
BINARY_LABELS = (Label.NORMAL, Label.BENIGN, Label.MALIGNANT)


# ----------------------------------------------------------------------------- bands


def _image_rows(results: Sequence[Any]) -> list[Any]:
    """The results with a det-hier output and a known label."""
    return [r for r in results if CONCEPT in r.outputs and r.truth in BINARY_LABELS]


def choose_again(rows: Sequence[Any], config: Mapping[str, Any]) -> Any:
    """The det-hier thresholds chosen on ``rows`` as cv chose the shipped ones:
    ``cascade.json``'s operating-point rule (:func:`hdcnn.cascade.choose_thresholds`), from
    C1's training threshold as ``evaluate --calibrate`` does."""
    from hdcnn.cascade import Thresholds, choose_thresholds
    from hdcnn.config import OperatingPoints, c1_training_threshold

    shipped = Thresholds.from_dict(config.get("thresholds") or {})
    ops = OperatingPoints.from_json(config.get("operating_points") or {})
    c1 = c1_training_threshold(config.get("training"))
    return choose_thresholds(
        [r.outputs[CONCEPT].p_abnormal for r in rows],
        [r.outputs[CONCEPT].p_malignant for r in rows],
        [r.truth for r in rows],
        sens_abnormal=ops.sens_abnormal,
        sens_malignant=ops.sens_malignant,
        rule=ops.rule,
        base=replace(shipped, c1_lesion=c1 if c1 is not None else shipped.c1_lesion),
    )


def threshold_bands(
    results: Sequence[Any],
    config: Mapping[str, Any],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = BAND_LEVEL,
) -> dict[str, ThresholdBand]:
    """Each banded threshold's patient-bootstrap interval around the shipped threshold
    (``config["thresholds"]``): the thresholds chosen again (:func:`choose_again`) on every
    resample, their central ``level`` interval widened to hold the shipped threshold."""
    from hdcnn.cascade import Thresholds
    from hdcnn.evaluation.metrics import bootstrap_indices

    rows = _image_rows(results)
    shipped = Thresholds.from_dict(config.get("thresholds") or {})
    drawn = []
    for idx in bootstrap_indices([r.patient_id for r in rows], n_boot=n_boot, seed=seed):
        t = choose_again([rows[i] for i in idx], config)
        drawn.append((t.effective_abnormal, t.malignant))
    values = np.asarray(drawn)
    q = [50 * (1 - level), 50 * (1 + level)]
    out = {}
    for j, (name, t) in enumerate(
        zip(BANDED, (shipped.effective_abnormal, shipped.malignant), strict=True)
    ):
        lo, hi = np.percentile(values[:, j], q)
        out[name] = ThresholdBand(t, max(0.0, min(float(lo), t)), min(1.0, max(float(hi), t)))
    return out


def borderline_cross_fitted(
    results: Sequence[Any],
    config: Mapping[str, Any],
    folds: Mapping[str, int],
    *,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """The borderline rule checked on held-out folds: for each fold, thresholds and bands
    from the other folds' images only, then that fold's verdicts and borderline flags.

    Returns:
        ``{"n_images", "n_borderline", "error_rate_borderline", "error_rate_clear",
        "n_boot"}``.
    """
    from hdcnn.cascade import verdict

    rows = _image_rows(results)
    flags, wrong = [], []
    for fold in sorted(set(folds[r.patient_id] for r in rows)):
        train = [r for r in rows if folds[r.patient_id] != fold]
        t = choose_again(train, config)
        fitted = {**config, "thresholds": t.to_dict()}
        bands = Calibration(bands=threshold_bands(train, fitted, n_boot=n_boot, seed=seed))
        for r in (r for r in rows if folds[r.patient_id] == fold):
            o = r.outputs[CONCEPT]
            label = verdict(
                o.p_abnormal,
                o.p_malignant,
                t_abnormal=t.effective_abnormal,
                t_malignant=t.malignant,
            )
            flags.append(bool(bands.borderline(label, o.p_abnormal, o.p_malignant, t)))
            wrong.append(label != r.truth)
    f, w = np.asarray(flags, bool), np.asarray(wrong, bool)
    return {
        "n_images": len(rows),
        "n_borderline": int(f.sum()),
        "error_rate_borderline": round(float(w[f].mean()), 4) if f.any() else None,
        "error_rate_clear": round(float(w[~f].mean()), 4) if (~f).any() else None,
        "n_boot": n_boot,
    }


def borderline_summary(
    results: Sequence[Any], config: Mapping[str, Any], calibration: Calibration
) -> dict[str, Any]:
    """How many out-of-fold verdicts are borderline, and how often those and the clear ones
    are wrong (the bands come from the same images: an in-sample check); and how many verdicts
    would change if they were decided on calibrated probabilities (they are not)."""
    from hdcnn.cascade import Thresholds, verdict

    t = Thresholds.from_dict(config.get("thresholds") or {})
    rows = _image_rows(results)
    flags, wrong = [], []
    for r in rows:
        o = r.outputs[CONCEPT]
        flags.append(bool(calibration.borderline(o.label, o.p_abnormal, o.p_malignant, t)))
        wrong.append(o.label != r.truth)
    f, w = np.asarray(flags), np.asarray(wrong)
    # deciding on calibrated probabilities against thresholds moved through the same maps
    # would change the verdicts that an isotonic map's flat steps merge with their threshold
    changed = 0
    fa, fm = calibration.maps.get("p_abnormal"), calibration.maps.get("p_malignant")
    if fa is not None and fm is not None:
        ta, tm = float(fa(t.effective_abnormal)), float(fm(t.malignant))
        for r in rows:
            o = r.outputs[CONCEPT]
            moved = verdict(
                float(fa(o.p_abnormal)), float(fm(o.p_malignant)), t_abnormal=ta, t_malignant=tm
            )
            changed += int(moved != o.label)
    return {
        "verdicts_changed_if_decided_on_calibrated": changed,
        "n_images": len(rows),
        "n_borderline": int(f.sum()),
        "error_rate_borderline": round(float(w[f].mean()), 4) if f.any() else None,
        "error_rate_clear": round(float(w[~f].mean()), 4) if (~f).any() else None,
    }


# ----------------------------------------------------------------------------- the whole fit


def fit_calibration(
    results: Sequence[Any],
    config: Mapping[str, Any],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    partial: bool = False,
) -> Calibration:
    """Maps (method chosen by cross-fitted Brier), bands and the measured report.

    Args:
        results: det-hier out-of-fold :class:`~hdcnn.evaluation.experiment.ImageResult` list.
        config: the weights folder's ``cascade.json`` as a dict (thresholds, operating
            points, folds).
        n_boot: patient-bootstrap resamples (ECE intervals, threshold bands).
        seed: bootstrap seed (same inputs and seed: same calibration).
        partial: leave out (and name in ``report["not_fitted"]``) a probability without a
            positive or a negative example instead of refusing (``cv --ship`` on a small
            cohort); its values are then shown raw.

    Raises:
        DatasetError: a probability has no positive or no negative example (not ``partial``),
            or none can be fitted.
    """
    patients = [r.patient_id for r in results]
    folds = patient_folds(config.get("split") or {}, patients)
    data = probability_scores(results, folds)
    maps: dict[str, ProbabilityMap] = {}
    report: dict[str, Any] = {"probabilities": {}}
    not_fitted: dict[str, str] = {}
    for name, s in data.items():
        if len(np.unique(s.truth)) < 2:
            problem = "calibration needs positive and negative examples"
            if not partial:
                raise DatasetError(name, problem)
            not_fitted[name] = (
                f"{problem} ({len(s.scores)} examples, {int(s.truth.sum())} positive)"
            )
            continue
        held = {m: cross_fitted(m, s) for m in METHODS}
        method = min(METHODS, key=lambda m: (brier(s.truth, held[m]), m))
        maps[name] = fit_map(method, s.scores, s.truth)
        report["probabilities"][name] = {
            "n": len(s.scores),
            "n_positive": int(s.truth.sum()),
            "method": method,
            "brier_by_method": {m: round(brier(s.truth, held[m]), 6) for m in METHODS},
            "before": summary(s, s.scores, n_boot=n_boot, seed=seed),
            "after": summary(s, held[method], n_boot=n_boot, seed=seed),
        }
    if not maps:
        raise DatasetError(", ".join(data), "calibration needs positive and negative examples")
    if not_fitted:
        report["not_fitted"] = not_fitted
    bands = threshold_bands(results, config, n_boot=n_boot, seed=seed)
    calibration = Calibration(maps, bands)
    report.update(
        {
            "fitted_on": f"{CONCEPT} out-of-fold scores of {len(results)} images",
            "cross_fitting": f"{len(set(folds.values()))} patient folds of the cross-validation",
            "n_bins": N_BINS,
            "band_level": BAND_LEVEL,
            "n_boot": n_boot,
            "seed": seed,
            "borderline": borderline_summary(results, config, calibration),
            "borderline_cross_fitted": borderline_cross_fitted(
                results, config, folds, n_boot=max(n_boot // 5, 20), seed=seed
            ),
            "command": COMMAND,
        }
    )
    return replace(calibration, report=report)


def evaluate_calibration(
    results: Sequence[Any], calibration: Calibration, *, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """How well a shipped calibration holds on other images (``python -m hdcnn evaluate``):
    Brier, ECE and reliability of each mapped probability, raw and calibrated, on ``results``
    (det-hier; none of them was used to fit the maps when they are held out).

    Returns:
        ``{name: {"n", "n_positive", "before", "after"}}`` (:func:`summary` each); ``{}``
        without det-hier results.
    """
    patients = {r.patient_id: 0 for r in results}
    if not any(CONCEPT in r.outputs for r in results):
        return {}
    out = {}
    for name, s in probability_scores(results, patients).items():
        fn = calibration.maps.get(name)
        if fn is None or not len(s.scores):
            continue
        out[name] = {
            "n": len(s.scores),
            "n_positive": int(s.truth.sum()),
            "before": summary(s, s.scores, n_boot=n_boot, seed=seed),
            "after": summary(s, fn(s.scores), n_boot=n_boot, seed=seed),
        }
    return out


def calibrate_folder(
    weights_dir: str | os.PathLike[str],
    oof: str | os.PathLike[str] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    partial: bool = False,
) -> Calibration:
    """Fit the calibration on a folder's out-of-fold scores and write it into its
    ``cascade.json`` (atomically; nothing else in the file changes).

    Args:
        weights_dir: weights folder with ``cascade.json`` (cv's ``--ship`` folder).
        oof: out-of-fold scores, a file or a cv run folder (default: ``weights_dir``'s
            ``oof_predictions.json``).
        partial: see :func:`fit_calibration`.

    Raises:
        CheckpointError: no or bad ``cascade.json``; DatasetError: no or bad scores.
    """
    from hdcnn.config import CascadeConfig
    from hdcnn.evaluation.compare import load_oof

    cfg = CascadeConfig.load(weights_dir)
    results = load_oof(oof if oof is not None else weights_dir)
    calibration = fit_calibration(results, cfg.to_json(), n_boot=n_boot, seed=seed, partial=partial)
    replace(cfg, calibration=calibration).save(weights_dir, hash_files=False)
    return calibration
