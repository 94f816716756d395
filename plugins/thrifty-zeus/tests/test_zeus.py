"""thrifty-zeus against a stand-in ZeusMonitor (zeus itself needs a GPU to measure anything).

The stand-in has ZeusMonitor's constructor and window methods, with zeus 0.16's parameters, and
returns a Measurement-shaped object: a GPU that draws a constant power.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from thrifty.errors import MeterError, NotSupportedError
from thrifty.testing.meters import EnergyMeterSuite
from thrifty_zeus import plugin

WATTS = 150.0


@dataclass
class Measurement:
    time: float
    gpu_energy: dict[int, float]
    cpu_energy: dict[int, float] | None = None
    dram_energy: dict[int, float] | None = None


@dataclass
class FakeZeusMonitor:
    """zeus.monitor.ZeusMonitor's interface over GPUs that draw ``WATTS`` each."""

    gpu_indices: list[int] | None = None
    cpu_indices: list[int] | None = None
    approx_instant_energy: bool = False
    log_file: str | None = None
    sync_execution_with: str = "torch"
    gpus: int = 2
    windows: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if any(i >= self.gpus for i in self.gpu_indices or ()):
            raise IndexError(f"GPU index out of range: {self.gpu_indices}")

    def begin_window(self, key: str, sync_execution: bool = True, restart: bool = False) -> None:
        if key in self.windows and not restart:
            raise ValueError(f"Measurement window '{key}' already exists")
        self.windows[key] = time.time()

    def end_window(self, key: str, sync_execution: bool = True,
                   cancel: bool = False) -> Measurement:
        try:
            start = self.windows.pop(key)
        except KeyError:
            raise ValueError(f"Measurement window '{key}' does not exist") from None
        elapsed = 0.0 if cancel else time.time() - start
        return Measurement(elapsed, {i: WATTS * elapsed for i in self.gpu_indices})


@pytest.fixture
def zeus(monkeypatch):
    """Install the stand-in as ``zeus.monitor``; returns the monitors the meters made."""
    made = []

    class Monitor(FakeZeusMonitor):
        def __post_init__(self):
            super().__post_init__()
            made.append(self)

    package, monitor = types.ModuleType("zeus"), types.ModuleType("zeus.monitor")
    monitor.ZeusMonitor = Monitor
    package.monitor = monitor
    monkeypatch.setitem(sys.modules, "zeus", package)
    monkeypatch.setitem(sys.modules, "zeus.monitor", monitor)
    return made


@pytest.fixture
def build(register_plugin):
    reg = register_plugin(plugin, name="zeus")
    return lambda **opts: reg.get("energy_meters", "zeus").build(**opts)


class TestZeusMeterConformance(EnergyMeterSuite):
    @pytest.fixture
    def make_meter(self, zeus, build):
        return build


def test_reading_is_the_gpus_joules_over_the_window(zeus, build):
    meter = build(device=1)
    meter.start()
    time.sleep(0.05)
    reading = meter.stop()
    assert reading.joules == pytest.approx(WATTS * reading.seconds)
    assert reading.watts == pytest.approx(WATTS)
    (monitor,) = zeus
    assert monitor.gpu_indices == [1] and monitor.cpu_indices == []  # one GPU, no CPU
    assert monitor.approx_instant_energy is True
    assert monitor.windows == {}  # the window was closed


def test_start_twice_discards_the_open_window(zeus, build):
    meter = build()
    meter.start()
    meter.start()
    assert len(zeus[0].windows) == 1
    assert meter.stop().seconds < 1


def test_a_gpu_zeus_cannot_watch_is_a_meter_error(zeus, build):
    with pytest.raises(MeterError, match="cannot watch GPU 5"):
        build(device=5)


def test_without_zeus_the_meter_is_listed_and_building_it_says_how_to_install(
        monkeypatch, build):
    monkeypatch.setitem(sys.modules, "zeus", None)  # import zeus -> ImportError
    monkeypatch.setitem(sys.modules, "zeus.monitor", None)
    with pytest.raises(NotSupportedError, match="pip install zeus"):
        build()


def test_thrifty_plugins_lists_the_zeus_meter():
    """The installed distribution, through the real CLI (zeus installed or not)."""
    cli = Path(sys.executable).parent / "thrifty"
    rows = json.loads(subprocess.run([str(cli), "plugins", "--json"], capture_output=True,
                                     text=True, check=True).stdout)
    (row,) = [r for r in rows if r["distribution"] == "thrifty-zeus"]
    assert row["status"] == "ok" and row["provides"]["energy_meters"] == ["zeus"]
