"""Protocol of the optimizer family: ask/tell over a discrete configuration space."""

from __future__ import annotations

from typing import Any, Mapping, Protocol, runtime_checkable


@runtime_checkable
class Optimizer(Protocol):
    """Seeded ask/tell search. ``ask()`` proposes a configuration (a dict knob -> value);
    ``tell(config, metrics)`` reports what was measured (energy, latency, ...)."""

    def ask(self) -> Mapping[str, Any]: ...

    def tell(self, config: Mapping[str, Any], metrics: Mapping[str, float]) -> None: ...
