"""Constrained Bayesian optimisation over a discrete configuration space (PolyThrottle's search).

One GP models the objective (energy), one GP each constraint metric (latency); both on a log
scale when the values are positive, because energy and latency vary by factors across a DVFS
ladder and a log makes the surface closer to stationary. Each step scores every untried
configuration (or a sample of a huge space plus the incumbent's neighbours) by, by default
(``acquisition="lcb"``),

    -(predicted energy - beta · its sd)  among configurations with P(all SLOs hold) >= 1/2

or (``acquisition="ei"``, PolyThrottle's choice) by expected improvement over the best feasible
energy × P(all SLOs hold); before any feasible point is known, by P(feasible) alone. In SLO-safe
mode, after the initial design, only configurations predicted feasible with probability at least
``safe_threshold`` are proposed (the most probably feasible one if none qualifies), so a live
system rarely sees a violating configuration.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from thrifty.errors import ConfigError
from thrifty.tuning import Constraint, SearchOptimizer, Space

from .acquisition import expected_improvement, feasible_lower_bound, probability_feasible
from .gp import fit_gp


class ConstrainedBO(SearchOptimizer):
    """EI × probability-of-feasibility search with Matérn 5/2 GPs."""

    def __init__(self, space: Space, objective: str = "energy",
                 constraints: Sequence[Constraint] = (), seed: int = 0, *, initial: int = 0,
                 safe: bool = False, safe_threshold: float = 0.95, candidates: int = 4000,
                 restarts: int = 2, log: bool = True, acquisition: str = "lcb",
                 beta: float = 0.25) -> None:
        super().__init__(space, objective, constraints, seed)
        if not 0.0 < safe_threshold < 1.0:
            raise ConfigError(f"safe_threshold must lie in (0, 1); got {safe_threshold}")
        if initial < 0 or candidates < 1 or restarts < 1:
            raise ConfigError("initial must be >= 0, candidates and restarts >= 1")
        if acquisition not in ("lcb", "ei"):
            raise ConfigError(f"acquisition must be 'lcb' or 'ei'; got {acquisition!r}")
        if not beta >= 0.0:
            raise ConfigError(f"beta must be >= 0; got {beta}")
        self.acquisition_name = acquisition
        self.beta = beta
        self.initial = initial or min(max(3, len(space.names) + 1), space.size)
        self.safe = safe
        self.safe_threshold = safe_threshold
        self.max_candidates = candidates
        self.restarts = restarts
        self.log = log
        self._design = self._initial_design()
        self._theta: dict[str, np.ndarray] = {}

    # -- initial design --------------------------------------------------------------------------
    def _initial_design(self) -> list[tuple]:
        """A space-filling start: the middle configuration, then greedy maximin picks (each the
        candidate farthest from those chosen) from a seeded sample."""
        pool = self.space.sample_keys(self.rng, min(self.max_candidates, 2000))
        x = self.space.encode(pool)
        centre = np.full(x.shape[1], 0.5)
        chosen = [int(np.argmin(((x - centre) ** 2).sum(1)))]
        dist = ((x - x[chosen[0]]) ** 2).sum(1)
        while len(chosen) < min(self.initial, len(pool)):
            i = int(np.argmax(dist + 1e-9 * self.rng.random(len(dist))))
            chosen.append(i)
            dist = np.minimum(dist, ((x - x[i]) ** 2).sum(1))
        return [pool[i] for i in chosen]

    # -- proposing -------------------------------------------------------------------------------
    def propose(self) -> tuple:
        if len(self.trials) < self.initial:
            for key in self._design:
                if key not in self.seen:
                    return key
        candidates = self._candidates()
        if len(self.trials) < 2:
            return candidates[self.rng.integers(len(candidates))]
        from threadpoolctl import threadpool_limits

        # the matrices are tiny: BLAS threads only add spin-waiting, badly so on a shared box
        with threadpool_limits(1):
            score = self.acquisition(candidates)
        top = np.flatnonzero(score >= score.max() - 1e-12 * max(abs(score.max()), 1e-300))
        return candidates[int(self.rng.choice(top))]

    def _candidates(self) -> list[tuple]:
        if self.space.size - len(self.seen) <= self.max_candidates:
            return [k for k in self.space.keys() if k not in self.seen]
        pool = dict.fromkeys(self.space.sample_keys(self.rng, self.max_candidates))
        best = self.best()
        if best is not None:
            pool.update(dict.fromkeys(self.space.neighbors(self.space.key(best.config))))
        left = [k for k in pool if k not in self.seen]
        return left or [k for k in self.space.keys() if k not in self.seen]

    def _logged(self, values: np.ndarray) -> bool:
        return self.log and bool(np.all(values > 0))

    def _model(self, metric: str, xc: np.ndarray, bound: float | None = None):
        """Fit a GP on ``metric`` over the finite trials; return (mean, var) at ``xc`` and the
        transformed bound (or None when the metric cannot be modelled yet)."""
        pairs = [(self.space.key(t.config), t.metrics.get(metric, math.nan)) for t in self.trials]
        pairs = [(k, v) for k, v in pairs if v is not None and math.isfinite(v)]
        if len(pairs) < 2:
            return None
        values = np.array([v for _, v in pairs])
        logged = self._logged(values)
        y = np.log(values) if logged else values
        gp = fit_gp(self.space.encode([k for k, _ in pairs]), y, self.rng, self.restarts,
                    self._theta.get(metric))
        self._theta[metric] = gp.theta
        mean, var = gp.predict(xc)
        if bound is not None and logged:
            bound = math.log(bound) if bound > 0 else -math.inf
        return mean, var, bound, logged

    def acquisition(self, candidates: list[tuple]) -> np.ndarray:
        """The chosen acquisition at each candidate (P(feasible) alone before a feasible point)."""
        xc = self.space.encode(candidates)
        means, variances, bounds = [], [], []
        for c in self.constraints:
            model = self._model(c.metric, xc, c.bound)
            if model is not None:
                means.append(model[0]), variances.append(model[1]), bounds.append(model[2])
        pof = probability_feasible(means, variances, bounds) if means else np.ones(len(xc))
        best = self.best()
        objective = self._model(self.objective, xc)
        if best is None or objective is None:
            score = pof
        else:
            mean, var, _, logged = objective
            incumbent = best.value(self.objective)
            incumbent = math.log(incumbent) if logged else incumbent
            score = (feasible_lower_bound(mean, var, pof, self.beta)
                     if self.acquisition_name == "lcb"
                     else expected_improvement(mean, var, incumbent) * pof)
        if self.safe and len(self.trials) >= self.initial and means:
            safe = pof >= self.safe_threshold
            score = np.where(safe, score, -np.inf) if safe.any() else pof
        return score
