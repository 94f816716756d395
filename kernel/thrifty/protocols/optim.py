"""Protocol of the optimizer family: seeded ask/tell search over a discrete configuration space.

An optimizer is built by ``OptimizerSpec.factory(space, objective, constraints, seed, **options)``
where ``space`` is a :class:`thrifty.tuning.Space`, ``objective`` the name of the metric to
minimise (``"energy"``), ``constraints`` a sequence of :class:`thrifty.tuning.Constraint`
(``latency <= SLO``) and ``seed`` an int: the same seed and the same answers give the same
proposals. The caller may ``tell`` before any ``ask`` (warm start from an earlier log).
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, runtime_checkable


@runtime_checkable
class Optimizer(Protocol):
    """Seeded ask/tell search that never proposes a configuration it has already been told."""

    def ask(self) -> Mapping[str, Any]:
        """Propose a configuration not yet told; raise
        :class:`thrifty.tuning.SearchExhausted` when every configuration has been told."""

    def tell(self, config: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """Report what ``config`` measured (objective and constraint metrics; a non-finite
        value marks a failed run, which counts as infeasible)."""

    def best(self) -> Any:
        """The feasible :class:`thrifty.tuning.Trial` with the lowest objective so far, or None."""
