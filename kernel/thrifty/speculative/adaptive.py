"""Adaptive lookahead: choose γ at every step from what the draft has been accepting lately.

The acceptance of proposal position j given that positions < j were accepted, c_j, gets a Beta
posterior updated after every step (each row is one trial per position it reached) with
exponential forgetting, so the estimate follows the text as it changes (code, then prose, then
a list...). Before each step the policy picks the γ that maximises the throughput model's
expected tokens per unit time, B · TAR(γ) / step_ms(γ, B), with TAR from the current c_j.
Forgetting pulls unobserved positions back towards the prior, so a γ that looked too long is
tried again once the draft has been doing well for a while. On a GPU the engine reports each
step one step late (it queues the next step before reading the last one back), so γ is chosen
from every step but the one still running.
"""

from __future__ import annotations

from typing import Callable, Sequence

from ..errors import ConfigError
from .throughput import tar_positional

StepCost = Callable[[int, int], float]
"""``step_ms(gamma, batch)``: milliseconds of one draft + verify + overhead step."""


class AdaptiveLookahead:
    """A :class:`~thrifty.speculative.policy.LookaheadPolicy` that re-chooses γ every step.

    Args:
        step_ms: cost of one step at (γ, batch); :meth:`from_model` takes it from a fitted
            :class:`~thrifty.speculative.throughput.ThroughputModel`.
        gamma_max: the largest γ considered.
        prior: prior mean of c_j (one value, or one per position).
        prior_strength: pseudo-trials the prior is worth.
        decay: forgetting factor applied to the counts at every step (1 = never forget).
        gamma_min: the smallest γ (>= 1 so that acceptance keeps being observed).
        batch: the batch size assumed until the first step is observed.
    """

    def __init__(self, step_ms: StepCost, gamma_max: int = 8,
                 prior: float | Sequence[float] = 0.6, prior_strength: float = 4.0,
                 decay: float = 0.95, gamma_min: int = 1, batch: int = 1) -> None:
        if not 1 <= gamma_min <= gamma_max:
            raise ConfigError(f"adaptive lookahead needs 1 <= gamma_min <= gamma_max; "
                              f"got {gamma_min}, {gamma_max}")
        if not 0 < decay <= 1 or prior_strength <= 0:
            raise ConfigError("adaptive lookahead needs 0 < decay <= 1 and prior_strength > 0")
        prior = [float(prior)] * gamma_max if isinstance(prior, (int, float)) else list(prior)
        prior = (prior + [prior[-1]] * gamma_max)[:gamma_max]
        if not all(0 <= p <= 1 for p in prior):
            raise ConfigError(f"prior acceptance must lie in [0, 1]; got {prior}")
        self.step_ms = step_ms
        self.gamma_max, self.gamma_min = gamma_max, gamma_min
        self.prior, self.strength, self.decay = prior, prior_strength, decay
        self.batch = batch
        self.hits = [0.0] * gamma_max
        self.trials = [0.0] * gamma_max
        self.history: list[int] = []

    @classmethod
    def from_model(cls, model, draft: str, **kwargs) -> "AdaptiveLookahead":
        """Costs from ``model`` (a ThroughputModel) and a prior from ``draft``'s profile."""
        from .throughput import conditional_from_matches

        acc = model.profile.drafts[draft].acceptance if draft in model.profile.drafts else None
        if acc is not None and acc.rows and "prior" not in kwargs:
            kwargs["prior"] = conditional_from_matches(acc.match_hist)
        kwargs.setdefault("gamma_max", model.profile.gamma_max)
        return cls(lambda g, b: model.predict(draft, g, b).step_ms, **kwargs)

    @property
    def conditional(self) -> list[float]:
        """Posterior mean of c_j for every position j."""
        return [(h + self.strength * p) / (t + self.strength)
                for h, t, p in zip(self.hits, self.trials, self.prior)]

    def expected_rate(self, gamma: int) -> float:
        """Expected tokens per ms at γ for the current batch."""
        return self.batch * tar_positional(self.conditional, gamma) / self.step_ms(gamma,
                                                                                   self.batch)

    def gamma(self) -> int:
        best = max(range(self.gamma_min, self.gamma_max + 1), key=self.expected_rate)
        self.history.append(best)
        return best

    def observe(self, proposed, accepted) -> None:
        """Row b tried positions 0 … accepted[b] (the last one failed unless all passed)."""
        self.hits = [h * self.decay for h in self.hits]
        self.trials = [t * self.decay for t in self.trials]
        rows = list(zip(proposed.tolist(), accepted.tolist()))
        self.batch = len(rows) or self.batch
        for n, a in rows:
            for j in range(min(a + 1, n, self.gamma_max)):
                self.trials[j] += 1
                self.hits[j] += j < a
