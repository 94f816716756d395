"""The pure energy arithmetic and the sampling meter."""

from __future__ import annotations

import time

import pytest
from thrifty.errors import MeterError
from thrifty.hw import SamplingMeter, counter_delta, trapezoid_joules


def test_counter_delta_without_and_with_a_wrap():
    assert counter_delta(100, 350, 1_000) == (250, False)
    assert counter_delta(900, 100, 1_000) == (200, True)


def test_trapezoid_is_exact_for_a_linear_ramp():
    times = [0.0, 0.5, 1.5, 2.0]
    watts = [10.0 + 4 * t for t in times]          # 10 W rising to 18 W over 2 s
    assert trapezoid_joules(times, watts) == pytest.approx(28.0)
    with pytest.raises(ValueError):
        trapezoid_joules([0.0, 1.0], [1.0])


def test_sampling_meter_covers_the_whole_window():
    meter = SamplingMeter("steady", lambda: 7.0, "test", 0.002)
    t0 = time.perf_counter()
    meter.start()
    time.sleep(0.05)
    r = meter.stop()
    assert 0.05 <= r.seconds <= time.perf_counter() - t0
    assert r.joules == pytest.approx(7.0 * r.seconds, rel=1e-9)
    assert r.watts == pytest.approx(7.0)
    assert r.source == "test" and r.resolution_j == pytest.approx(0.001 * 0.002)


def test_sampling_meter_errors_surface_in_stop():
    calls = []

    def read():
        calls.append(1)
        if len(calls) > 2:
            raise MeterError("rail vanished")
        return 1.0

    meter = SamplingMeter("flaky", read, "test", 0.001)
    with pytest.raises(MeterError, match="without start"):
        meter.stop()
    meter.start()
    time.sleep(0.02)
    with pytest.raises(MeterError, match="rail vanished"):
        meter.stop()
