"""The sampling floor of the ECE: the error a perfectly calibrated probability shows on few
examples.

Each bin's observed frequency is a binomial draw around the bin's mean probability, so even
labels drawn from the probabilities themselves give a positive expected calibration error
(about ``sqrt(2 / pi) * sqrt(p (1 - p) / n_bin)`` per bin of ``n_bin`` examples of probability
``p``). On 242 films this floor is of the order of the 0.05 target itself. :func:`ece_floor`
measures it by simulation: labels ``y ~ Bernoulli(p)`` drawn for the given probabilities, the
ECE (:func:`hdcnn.evaluation.calibration.ece`) of each draw. A measured ECE within the floor's
95th percentile cannot be told apart from perfect calibration on that many examples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hdcnn.evaluation.calibration import N_BINS, ece

#: The ECE that issue 24 asks of P(abnormal) and P(malignant).
ECE_TARGET = 0.05
#: The floor's percentile that a measured ECE is read against.
FLOOR_PERCENTILE = 95
#: Rounding slack when a measured ECE is compared with the floor (ECEs of 0/1 labels are
#: discrete: the same value computed twice may differ in the last bits).
_SLACK = 1e-9


def within_floor(measured: float, p95: float) -> bool:
    """Whether a measured ECE lies within the floor's 95th percentile ``p95``."""
    return measured <= p95 + _SLACK


def floor_side(measured: float, p95: float) -> str:
    """``"within"`` or ``"above"`` the floor's 95th percentile: the one word for it."""
    return "within" if within_floor(measured, p95) else "above"


@dataclass(frozen=True)
class EceFloor:
    """The ECE of a perfectly calibrated probability on the same values, over simulations.

    Attributes:
        mean: mean simulated ECE.
        p95: its :data:`FLOOR_PERCENTILE`-th percentile.
        n_sim: simulated label draws.
        target: the ECE target the share refers to (None: no share).
        share_at_most_target: fraction of the draws with ECE at most ``target``: how often a
            perfectly calibrated probability would meet the target on these examples.
    """

    mean: float
    p95: float
    n_sim: int
    target: float | None = None
    share_at_most_target: float | None = None

    def consistent(self, measured: float) -> bool:
        """Whether a measured ECE lies within the floor's 95th percentile (consistent with
        perfect calibration at this sample size)."""
        return within_floor(measured, self.p95)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, rounded to 6 decimals (for a calibration report)."""
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


def ece_floor(
    p: Any,
    *,
    n_bins: int = N_BINS,
    n_sim: int = 1000,
    seed: int = 0,
    target: float | None = None,
) -> EceFloor:
    """The ECE that perfectly calibrated probabilities ``p`` would show on ``len(p)`` examples.

    Args:
        p: float ``(N,)`` probabilities in ``[0, 1]`` (N >= 1), taken as the true ones.
        n_bins: equal-width bins of the ECE.
        n_sim: label draws (at least 1).
        seed: seed of the ``numpy.random.Generator`` (same inputs and seed: same floor).
        target: an ECE target; when given, the share of draws at most this.

    Returns:
        :class:`EceFloor` (mean, 95th percentile, share at most ``target``).

    Raises:
        ValueError: ``p`` empty, not 1-D, or outside ``[0, 1]`` (NaN included); ``n_sim < 1``.
    """
    q = np.asarray(p, np.float64)
    if q.ndim != 1 or not len(q):
        raise ValueError(f"probabilities must be a non-empty 1-D array, got shape {q.shape}")
    if not np.all((q >= 0.0) & (q <= 1.0)):
        raise ValueError("probabilities must lie in [0, 1]")
    if n_sim < 1:
        raise ValueError(f"n_sim must be at least 1, got {n_sim}")
    draws = np.random.default_rng(seed).random((n_sim, len(q))) < q
    values = np.array([ece(y, q, n_bins) for y in draws])
    share = None if target is None else float(np.mean(values <= target))
    return EceFloor(
        mean=float(values.mean()),
        p95=float(np.percentile(values, FLOOR_PERCENTILE)),
        n_sim=n_sim,
        target=target,
        share_at_most_target=share,
    )


def floor_reading(measured: float, floor: dict[str, Any]) -> str:
    """The one plain reading of a measured ECE against its floor (:meth:`EceFloor.to_dict`),
    for the CLI, the model card and the app, e.g. (P(abnormal) of the shipped models)
    ``"0.069 is within the 95th percentile (0.087) of a perfectly calibrated probability's ECE
    on these examples (mean 0.057): consistent with perfect calibration at this sample size;
    such a probability meets 0.05 in 37 % of draws"``."""
    within = within_floor(measured, floor["p95"])
    text = (
        f"{measured:.3f} is {floor_side(measured, floor['p95'])} the {FLOOR_PERCENTILE}th "
        f"percentile ({floor['p95']:.3f}) of a perfectly calibrated probability's ECE on these "
        f"examples (mean {floor['mean']:.3f}): "
        + (
            "consistent with perfect calibration at this sample size"
            if within
            else "miscalibrated beyond what this sample size explains"
        )
    )
    if floor.get("share_at_most_target") is not None:
        text += (
            f"; such a probability meets {floor['target']:.2f} in "
            f"{100 * floor['share_at_most_target']:.0f} % of draws"
        )
    return text
