"""The built-in optimizers, ``grid`` and ``random``, and the bookkeeping every optimizer shares.

:class:`SearchOptimizer` keeps the trials told so far, which configurations were seen, and the
best feasible trial; a subclass only decides what to propose next (``propose``). Plugins'
optimizers subclass it too, so "never propose a seen configuration" and "best() is the feasible
minimum" hold the same way everywhere.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, ThriftyError
from .space import Constraint, Space, Trial, best_trial


class SearchExhausted(ThriftyError):
    """Every configuration of the space has been told; there is nothing left to propose."""


class SearchOptimizer:
    """Shared state of an ask/tell optimizer over a discrete :class:`Space`."""

    def __init__(self, space: Space, objective: str = "energy",
                 constraints: Sequence[Constraint] = (), seed: int = 0) -> None:
        if not isinstance(space, Space):
            raise ConfigError(f"an optimizer needs a thrifty.tuning.Space, got "
                              f"{type(space).__name__}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"seed must be an int, got {seed!r}")
        self.space = space
        self.objective = objective
        self.constraints = tuple(constraints)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.trials: list[Trial] = []
        self.seen: set[tuple] = set()

    def feasible(self, metrics: Mapping[str, float]) -> bool:
        v = metrics.get(self.objective)
        return v is not None and math.isfinite(v) and all(c.holds(metrics) for c in self.constraints)

    def tell(self, config: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        key = self.space.key(config)
        missing = [m for m in (self.objective, *(c.metric for c in self.constraints))
                   if m not in metrics]
        if missing:
            raise ConfigError(f"metrics for {dict(config)} lack {missing}; the optimizer "
                              f"minimises {self.objective!r} subject to "
                              f"{[str(c) for c in self.constraints]} (report inf for a failed run)")
        metrics = {k: float(v) for k, v in metrics.items()}
        self.trials.append(Trial(self.space.config(key), metrics, self.feasible(metrics)))
        self.seen.add(key)

    def best(self) -> Trial | None:
        return best_trial(self.trials, self.objective)

    def ask(self) -> dict[str, Any]:
        if len(self.seen) >= self.space.size:
            raise SearchExhausted(f"all {self.space.size} configurations have been tried")
        return self.space.config(self.propose())

    def propose(self) -> tuple:
        """The key of the next configuration to try; never one in ``self.seen``."""
        raise NotImplementedError


class GridSearch(SearchOptimizer):
    """Every configuration in grid order (the last knob varies fastest); the seed is unused
    because the order is the point of a grid."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._order = self.space.keys()

    def propose(self) -> tuple:
        for key in self._order:
            if key not in self.seen:
                return key
        raise SearchExhausted("grid exhausted")  # unreachable: ask() checks the count first


class RandomSearch(SearchOptimizer):
    """Uniform sampling without replacement, seeded."""

    def propose(self) -> tuple:
        while True:
            if self.space.size - len(self.seen) < 64 or self.space.allowed is not None:
                left = [k for k in self.space.keys() if k not in self.seen]
                return left[self.rng.integers(len(left))]
            key = self.space.sample_keys(self.rng, 1)[0]
            if key not in self.seen:
                return key
