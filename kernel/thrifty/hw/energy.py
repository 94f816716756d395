"""Energy readings and the pure arithmetic behind every meter.

Meters differ in where joules come from: a cumulative counter (NVML's total energy, RAPL's
``energy_uj``) or a power signal sampled over the window (NVML power, INA3221 rails). Both end
in an :class:`EnergyReading` that says which source produced it and how fine it is, so a tuner
can refuse a window that is too short for the counter behind it.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Sequence

import attrs

from ..errors import MeterError


@attrs.frozen
class EnergyReading:
    """Joules spent over ``seconds`` of wall time, with a quality label.

    ``source`` names the mechanism (``"nvml.total_energy"``, ``"nvml.power_sampling"``,
    ``"rapl"``, ``"ina3221"``); ``resolution_j`` is the smallest energy step the source can show;
    ``wrapped`` is true when a counter wrapped during the window (the joules are corrected).
    """

    joules: float
    seconds: float
    source: str
    resolution_j: float
    wrapped: bool = False

    @property
    def watts(self) -> float:
        """Mean power over the window (0 for an empty window)."""
        return self.joules / self.seconds if self.seconds > 0 else 0.0


def counter_delta(start: int, end: int, wrap_at: int) -> tuple[int, bool]:
    """The increase of a counter that wraps to 0 after ``wrap_at``; (delta, wrapped).

    One wrap per window is all a two-point reading can see, so windows must stay shorter than
    the time the counter takes to wrap (RAPL: ``max_energy_range_uj`` at full power, minutes).
    """
    if end >= start:
        return end - start, False
    return end + wrap_at - start, True


def trapezoid_joules(times: Sequence[float], watts: Sequence[float]) -> float:
    """Energy of a sampled power signal by the trapezoid rule (seconds, watts -> joules)."""
    if len(times) != len(watts):
        raise ValueError("times and watts must have the same length")
    return float(sum((t1 - t0) * (w0 + w1) / 2.0
                     for t0, t1, w0, w1 in zip(times, times[1:], watts, watts[1:])))


class SamplingMeter:
    """An energy meter that integrates a power signal sampled by a background thread.

    Why a thread: power readings are instantaneous, so the window must be covered while the
    measured work runs in the caller's thread. A sample is taken at ``start()`` and at ``stop()``
    so the integral spans exactly the window. ``read_watts`` is called from the thread.
    """

    def __init__(self, name: str, read_watts: Callable[[], float], source: str,
                 period_s: float = 0.01, watts_step: float = 0.001) -> None:
        if period_s <= 0:
            raise MeterError(f"{name}: sampling period must be > 0 s, got {period_s}")
        self.name = name
        self.source = source
        self.period_s = period_s
        self.watts_step = watts_step
        self._read = read_watts
        self._samples: list[tuple[float, float]] = []
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _sample(self) -> None:
        self._samples.append((time.perf_counter(), float(self._read())))

    def _loop(self) -> None:
        assert self._stop is not None
        try:
            while not self._stop.wait(self.period_s):
                self._sample()
        except BaseException as exc:  # surfaced by stop(); a thread cannot raise to its caller
            self._error = exc

    def start(self) -> None:
        if self._thread is not None:
            raise MeterError(f"meter {self.name!r} is already running; call stop() first")
        self._samples, self._error = [], None
        self._sample()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-sampler",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> EnergyReading:
        if self._thread is None or self._stop is None:
            raise MeterError(f"meter {self.name!r}: stop() called without start()")
        self._stop.set()
        self._thread.join()
        self._thread = None
        if self._error is not None:
            raise self._error
        self._sample()
        times, watts = zip(*self._samples)
        return EnergyReading(joules=trapezoid_joules(times, watts),
                             seconds=times[-1] - times[0], source=self.source,
                             resolution_j=self.watts_step * self.period_s, wrapped=False)
