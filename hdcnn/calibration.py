"""Probability calibration and the borderline rule, as shipped in ``cascade.json``.

The cascade's verdicts are decided on its raw scores with its thresholds (docs/CASCADE.md);
nothing here changes a verdict. A :class:`Calibration` adds two things on top:

- **calibrated probabilities**: each of P(abnormal), P(malignant) and a finding's P(lesion) goes
  through a monotone map fitted on the out-of-fold scores of a cross-validation run
  (:mod:`hdcnn.evaluation.calibration` fits and measures them); a threshold is shown through
  the same map, so "calibrated probability >= calibrated threshold" reads like the verdict;
- **borderline**: a verdict whose deciding score lies inside the measured uncertainty band of
  its threshold (the patient-bootstrap interval of the threshold choice) is borderline.

The ``cascade.json`` layout (key ``"calibration"``, optional)::

    {"maps": {"p_abnormal": {"method": "isotonic", "x": [...], "y": [...]},
              "p_lesion": {"method": "platt", "a": 1.2, "b": -0.3}, ...},
     "bands": {"abnormal": {"threshold": t, "low": lo, "high": hi}, "malignant": {...}},
     "report": {...}}          # how it was fitted and measured (plain JSON, for the app)

No scikit-learn here: applying a map is NumPy arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hdcnn.errors import CheckpointError
from hdcnn.terms import Label

if TYPE_CHECKING:
    from hdcnn.cascade.rules import Thresholds

#: The calibrated probabilities, by the name the results use.
PROBABILITIES: tuple[str, ...] = ("p_abnormal", "p_malignant", "p_lesion")
#: Map families (:class:`ProbabilityMap`).
METHODS: tuple[str, ...] = ("platt", "isotonic")
#: Thresholds with a measured band, in the order a verdict is decided.
BANDED: tuple[str, ...] = ("abnormal", "malignant")
#: Scores are clipped to ``[EPS, 1 - EPS]`` before the logit of the Platt map.
EPS = 1e-6


def borderline_text(decisions: Any, subject: str = "verdict") -> str:
    """The one wording of a borderline verdict (app, reports), e.g. for ``("malignant",)``:
    "Borderline: the verdict's P(malignant) lies within the measured uncertainty of the
    malignant threshold, so the verdict could have gone the other way." Empty: ``""``."""
    names = [str(d) for d in decisions]
    if not names:
        return ""
    which = " and ".join(f"P({n})" for n in names)
    thresholds = " and ".join(names)
    verb = "lie" if len(names) > 1 else "lies"
    return (
        f"Borderline: the {subject}'s {which} {verb} within the measured uncertainty of the "
        f"{thresholds} threshold{'s' if len(names) > 1 else ''}, so the {subject} could have "
        "gone the other way."
    )


def calibrated_text(calibrated: Mapping[str, float] | None) -> str:
    """One line for the app: the calibrated probabilities as percentages ("" without)."""
    if not calibrated:
        return ""
    parts = [
        f"{name} {100 * calibrated[key]:.0f} %"
        for key, name in (("p_abnormal", "abnormal"), ("p_malignant", "malignant"))
        if key in calibrated
    ]
    return (
        "Calibrated probability: "
        + ", ".join(parts)
        + " (how often such scores were right on the development images, out of fold; the "
        "scores decide the verdict)."
    )


def logit(p: Any) -> np.ndarray:
    """``log(p / (1 - p))`` of scores clipped to ``[EPS, 1 - EPS]`` (float64)."""
    q = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(q / (1.0 - q))


@dataclass(frozen=True)
class ProbabilityMap:
    """A monotone non-decreasing map from a raw score in ``[0, 1]`` to a probability.

    Attributes:
        method: ``"platt"`` (``sigmoid(a * logit(p) + b)``, strictly increasing when ``a > 0``)
            or ``"isotonic"`` (piecewise-linear through the knots ``(x, y)``, flat outside them;
            ``x`` increasing, ``y`` non-decreasing, as scikit-learn's ``IsotonicRegression``
            with ``out_of_bounds="clip"`` predicts).
        a, b: Platt slope and intercept on the logit.
        x, y: isotonic knots.
    """

    method: str
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.method == "platt":
            if not (math.isfinite(self.a) and math.isfinite(self.b)) or self.a < 0:
                raise ValueError(f"platt needs finite a >= 0 and b, got a={self.a}, b={self.b}")
            return
        x, y = np.asarray(self.x, np.float64), np.asarray(self.y, np.float64)
        if x.size == 0 or x.shape != y.shape:
            raise ValueError("isotonic needs as many x as y knots, at least one")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ValueError("isotonic knots must be finite")
        if np.any(np.diff(x) <= 0) or np.any(np.diff(y) < 0):
            raise ValueError("isotonic knots must have increasing x and non-decreasing y")
        if y.min() < 0 or y.max() > 1:
            raise ValueError("isotonic knots must have y in [0, 1]")

    def __call__(self, p: Any) -> np.ndarray:
        """Calibrated probabilities of raw scores (any shape), float64 in ``[0, 1]``."""
        s = np.asarray(p, dtype=np.float64)
        if self.method == "platt":
            return 1.0 / (1.0 + np.exp(-(self.a * logit(s) + self.b)))
        return np.interp(s, self.x, self.y)

    def to_dict(self) -> dict[str, Any]:
        if self.method == "platt":
            return {"method": "platt", "a": round(self.a, 8), "b": round(self.b, 8)}
        return {
            "method": "isotonic",
            "x": [round(v, 8) for v in self.x],
            "y": [round(v, 8) for v in self.y],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbabilityMap:
        """Inverse of :meth:`to_dict` (``ValueError``/``TypeError``/``KeyError`` if malformed)."""
        if d["method"] == "platt":
            return cls("platt", a=float(d["a"]), b=float(d["b"]))
        return cls(
            str(d["method"]),
            x=tuple(float(v) for v in d["x"]),
            y=tuple(float(v) for v in d["y"]),
        )


@dataclass(frozen=True)
class ThresholdBand:
    """The measured uncertainty of one threshold: the scores where a verdict is borderline.

    Attributes:
        threshold: the threshold the band was measured for.
        low / high: the band's ends, ``low <= threshold <= high`` (raw score space).
    """

    threshold: float
    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.low <= self.threshold <= self.high <= 1.0:
            raise ValueError(
                f"band needs 0 <= low <= threshold <= high <= 1, got "
                f"{self.low}, {self.threshold}, {self.high}"
            )

    def around(self, threshold: float) -> tuple[float, float]:
        """The band moved to a threshold in force (an app slider): same distances below and
        above it as measured."""
        return threshold - (self.threshold - self.low), threshold + (self.high - self.threshold)

    def contains(self, score: float, threshold: float) -> bool:
        """Whether ``score`` lies in the band around ``threshold`` (ends included)."""
        lo, hi = self.around(threshold)
        return lo <= score <= hi

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(getattr(self, k)), 6) for k in ("threshold", "low", "high")}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ThresholdBand:
        return cls(float(d["threshold"]), float(d["low"]), float(d["high"]))


@dataclass(frozen=True)
class Calibration:
    """Calibration maps and threshold bands of one weights folder (``cascade.json``).

    Attributes:
        maps: name in :data:`PROBABILITIES` -> its map (a name without a map stays raw).
        bands: name in :data:`BANDED` -> the threshold's band.
        report: how the maps and bands were fitted and measured (plain JSON; for the app and
            the model card, never read by the cascade).
    """

    maps: Mapping[str, ProbabilityMap] = field(default_factory=dict)
    bands: Mapping[str, ThresholdBand] = field(default_factory=dict)
    report: Mapping[str, Any] = field(default_factory=dict)

    def probability(self, name: str, score: float) -> float | None:
        """The calibrated probability of a raw score, or None without a map for ``name``."""
        fn = self.maps.get(name)
        return None if fn is None else float(fn(score))

    def probabilities(self, name: str, scores: Any) -> np.ndarray | None:
        """Calibrated probabilities of many raw scores at once (float64), or None without a
        map for ``name``."""
        fn = self.maps.get(name)
        return None if fn is None else fn(scores)

    def calibrated(self, p_abnormal: float, p_malignant: float) -> dict[str, float]:
        """``{"p_abnormal", "p_malignant"}`` calibrated (the names that have a map)."""
        out = {"p_abnormal": self.probability("p_abnormal", p_abnormal)}
        out["p_malignant"] = self.probability("p_malignant", p_malignant)
        return {k: v for k, v in out.items() if v is not None}

    def borderline(
        self, label: Label, p_abnormal: float, p_malignant: float, thresholds: Thresholds
    ) -> tuple[str, ...]:
        """Which decisions of a verdict were near calls.

        The abnormal decision is borderline when ``p_abnormal`` lies in the abnormal band
        around ``thresholds.effective_abnormal``; for a benign or malignant verdict the
        malignant decision is borderline when ``p_malignant`` lies in the malignant band around
        ``thresholds.malignant`` (a normal verdict never reached that decision).

        Returns:
            The borderline decisions in :data:`BANDED` order (empty: a clear verdict).
        """
        out = []
        band = self.bands.get("abnormal")
        if band is not None and band.contains(p_abnormal, thresholds.effective_abnormal):
            out.append("abnormal")
        band = self.bands.get("malignant")
        if (
            band is not None
            and Label(label) != Label.NORMAL
            and band.contains(p_malignant, thresholds.malignant)
        ):
            out.append("malignant")
        return tuple(out)

    def to_json(self) -> dict[str, Any]:
        """The ``cascade.json`` layout of the module docstring."""
        return {
            "maps": {k: self.maps[k].to_dict() for k in PROBABILITIES if k in self.maps},
            "bands": {k: self.bands[k].to_dict() for k in BANDED if k in self.bands},
            "report": dict(self.report),
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "calibration") -> Calibration:
        """Parse :meth:`to_json`'s layout (``source`` names it in errors: the settings file
        or its field).

        Raises:
            CheckpointError: not an object, an unknown name, or a malformed map or band.
        """
        if not isinstance(data, Mapping):
            raise CheckpointError(source, "calibration must be a JSON object")
        maps, bands = data.get("maps") or {}, data.get("bands") or {}
        report = data.get("report") or {}
        if not isinstance(maps, Mapping) or not isinstance(bands, Mapping):
            raise CheckpointError(source, "calibration maps and bands must be JSON objects")
        if set(maps) - set(PROBABILITIES) or set(bands) - set(BANDED):
            raise CheckpointError(
                source,
                f"calibration has unknown names: maps must be among {PROBABILITIES}, "
                f"bands among {BANDED}",
            )
        try:
            return cls(
                maps={k: ProbabilityMap.from_dict(v) for k, v in maps.items()},
                bands={k: ThresholdBand.from_dict(v) for k, v in bands.items()},
                report=dict(report),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(source, f"bad calibration ({exc!r})") from exc
