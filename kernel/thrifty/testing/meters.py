"""Conformance suite for energy meters: subclass :class:`EnergyMeterSuite` in a plugin's tests.

Provide a fixture ``make_meter`` that returns a factory of fresh meters (on a fake device in
unit tests). Override :meth:`EnergyMeterSuite.work` to make the device spend energy during the
window; the default sleeps, which is enough for fakes whose power does not depend on load.
"""

from __future__ import annotations

import math
import time

import pytest

from ..errors import MeterError
from ..hw import EnergyReading
from ..protocols import EnergyMeter


class EnergyMeterSuite:
    window_s = 0.05

    @pytest.fixture
    def meter(self, make_meter):
        return make_meter()

    def work(self, seconds: float) -> None:
        time.sleep(seconds)

    def _window(self, meter) -> tuple[EnergyReading, float]:
        t0 = time.perf_counter()
        meter.start()
        self.work(self.window_s)
        reading = meter.stop()
        return reading, time.perf_counter() - t0

    def test_follows_protocol(self, meter):
        assert isinstance(meter, EnergyMeter)
        assert isinstance(meter.name, str) and meter.name

    def test_a_window_gives_a_labelled_reading(self, meter):
        reading, wall = self._window(meter)
        assert isinstance(reading, EnergyReading)
        assert self.window_s * 0.99 <= reading.seconds <= wall + 1e-3
        assert math.isfinite(reading.joules) and reading.joules >= 0
        assert isinstance(reading.source, str) and reading.source
        assert reading.resolution_j > 0
        assert isinstance(reading.wrapped, bool)
        assert reading.watts == pytest.approx(reading.joules / reading.seconds)

    def test_windows_are_independent(self, meter):
        first, _ = self._window(meter)
        second, wall = self._window(meter)
        assert second.seconds <= wall + 1e-3
        assert first.source == second.source

    def test_stop_without_start_is_a_meter_error(self, meter):
        with pytest.raises(MeterError):
            meter.stop()
