"""Protocols of the hardware families: knobs and energy meters (refined by the tuning work)."""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable


@runtime_checkable
class Knob(Protocol):
    """One setting a tuner may change: a GPU clock, a CPU frequency, a batch size.

    ``snapshot()`` returns JSON-serialisable state that ``restore(state)`` puts back; the hardware
    context saves it to a recovery file before the first ``apply``.
    """

    name: str
    unit: str

    def domain(self) -> Sequence[Any]:
        """The discrete values this knob accepts, read from the device where possible."""

    def read(self) -> Any:
        """The value in force now."""

    def apply(self, value: Any) -> Any:
        """Set ``value`` and return the value read back after writing."""

    def snapshot(self) -> Any:
        """JSON-serialisable state to restore later."""

    def restore(self, state: Any) -> None:
        """Put back what ``snapshot`` saved."""


@runtime_checkable
class EnergyMeter(Protocol):
    """Measures energy over a window: ``start()``, run the work, ``stop()`` -> a reading."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> Any:
        """Return a reading with ``joules``, ``seconds`` and a quality label."""
