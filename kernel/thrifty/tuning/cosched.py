"""Co-scheduling fine-tuning with inference (PolyThrottle §fine-tuning): a latency predictor and
an admission controller.

A fine-tuning step cannot be pre-empted, so an inference request that arrives while one runs
waits for it. The controller therefore admits a step only when the predicted step time plus the
predicted inference time fits inside the SLO (with a safety margin), picks the largest
micro-batch that fits, and stops admitting steps whenever the recent requests' SLO attainment
falls below target, until it recovers. Latency is predicted by a model linear in FLOPs and
arithmetic intensity, fitted by least squares on a few profiled runs, as in the paper.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Sequence

import attrs
import numpy as np

from ..errors import ConfigError


@attrs.frozen
class Work:
    """What a unit of work costs: floating-point operations and bytes moved."""

    flops: float
    bytes: float

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOPs per byte."""
        return self.flops / self.bytes


def features(work: Sequence[Work]) -> np.ndarray:
    return np.array([[1.0, w.flops, w.intensity] for w in work])


@attrs.frozen
class LatencyPredictor:
    """``seconds ≈ c0 + c1 · FLOPs + c2 · intensity``, fitted by least squares on relative
    error."""

    coef: tuple[float, float, float]

    @classmethod
    def fit(cls, work: Sequence[Work], seconds: Sequence[float]) -> "LatencyPredictor":
        if len(work) != len(seconds) or len(work) < 3:
            raise ConfigError(f"fitting the latency predictor needs >= 3 (work, seconds) pairs of "
                              f"equal count; got {len(work)} and {len(seconds)}")
        x = features(work)
        if np.linalg.matrix_rank(x) < 3:
            raise ConfigError("profile work of at least three different sizes and two different "
                              "intensities: the FLOPs/intensity columns are collinear")
        y = np.asarray(seconds, dtype=float)
        if np.any(y <= 0):
            raise ConfigError("profiled times must be positive seconds")
        # relative least squares (rows scaled by 1/time): a 1 ms request and a 100 ms training
        # step are both predicted to within a similar fraction, which is what admission needs
        coef, *_ = np.linalg.lstsq(x / y[:, None], np.ones_like(y), rcond=None)
        return cls(tuple(float(c) for c in coef))

    def predict(self, work: Work) -> float:
        return float(features([work])[0] @ np.array(self.coef))


class AdmissionController:
    """Decides, whenever the server is idle, whether to run a fine-tuning step and how big.

    ``step_work(micro_batch)`` gives the cost of one fine-tuning step; ``infer_work`` the cost of
    serving one request. ``margin`` < 1 leaves room for prediction error.
    """

    def __init__(self, predictor: LatencyPredictor, slo: float, infer_work: Work,
                 step_work: Callable[[int], Work], micro_batches: Sequence[int],
                 margin: float = 0.8, target: float = 0.95, window: int = 40) -> None:
        if not 0 < margin <= 1 or not 0 < target <= 1:
            raise ConfigError("margin and target must lie in (0, 1]")
        self.predictor = predictor
        self.slo = slo
        self.infer_s = predictor.predict(infer_work)
        self.step_s = {mb: predictor.predict(step_work(mb)) for mb in sorted(micro_batches)}
        self.margin = margin
        self.target = target
        self.recent: deque[bool] = deque(maxlen=window)

    def observe(self, latency: float) -> None:
        """Record one served request's latency."""
        self.recent.append(latency <= self.slo)

    @property
    def attainment(self) -> float:
        return sum(self.recent) / len(self.recent) if self.recent else 1.0

    def admit(self) -> int | None:
        """The micro-batch of the next fine-tuning step, or None to leave the server idle."""
        if self.attainment < self.target:
            return None
        budget = self.margin * self.slo - self.infer_s
        fitting = [mb for mb, s in self.step_s.items() if s <= budget]
        return max(fitting) if fitting else None
