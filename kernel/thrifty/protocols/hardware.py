"""Protocols of the hardware families: knobs and energy meters.

Both are structural: any object with these attributes and methods works, whether it drives a
GPU clock through NVML, a sysfs file, or a batch size in the serving loop. Conformance suites
(:mod:`thrifty.testing.knobs`, :mod:`thrifty.testing.meters`) check the contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from ..hw.energy import EnergyReading


@runtime_checkable
class Knob(Protocol):
    """One setting a tuner may change: a GPU clock, a CPU frequency, a batch size.

    Values are JSON-serialisable scalars in the knob's ``unit`` (``"MHz"``, ``"kHz"``, ``"W"``,
    ``"Hz"``, ``""`` for names such as governors). ``snapshot()`` returns JSON-serialisable
    state that ``restore(state)`` puts back, also in a fresh process: the hardware context saves
    it to a recovery file before the first ``apply`` so a killed run can be undone.
    """

    name: str
    unit: str

    def domain(self) -> Sequence[Any]:
        """The discrete values this knob accepts, sorted, read from the device where possible."""

    def read(self) -> Any:
        """The value in force now."""

    def apply(self, value: Any) -> Any:
        """Set ``value`` and return the value read back after writing (a thermal or power cap
        may make it differ; callers compare). Raises a ``KnobError`` subclass on failure."""

    def snapshot(self) -> Any:
        """JSON-serialisable state to restore later (possibly from another process)."""

    def restore(self, state: Any) -> None:
        """Put back what ``snapshot`` saved."""


@runtime_checkable
class EnergyMeter(Protocol):
    """Measures energy over a window: ``start()``, run the work, ``stop()`` -> a reading.

    ``stop()`` without ``start()`` raises :class:`thrifty.errors.MeterError`; a meter may be
    started again after ``stop()``.
    """

    name: str

    def start(self) -> None: ...

    def stop(self) -> "EnergyReading":
        """Return a :class:`thrifty.hw.EnergyReading`: joules, seconds, source, resolution,
        whether the counter wrapped."""
