"""thrifty-nvml against FakeNVML, a stand-in for pynvml: no real NVML setter is ever called."""

from __future__ import annotations

import inspect
import subprocess
import sys
import time

import pynvml as real_pynvml
import pytest
from thrifty.errors import NotSupportedError, PermissionDeniedError
from thrifty.testing.knobs import KnobSuite
from thrifty.testing.meters import EnergyMeterSuite
from thrifty_nvml import plugin
from thrifty_nvml.fake import GRAPHICS_CLOCKS, FakeNVML

# the real module is imported above only to compare signatures; from here on it is replaced
KNOBS = {"gpu": "nvml.gpu-locked-clocks", "mem": "nvml.mem-locked-clocks",
         "app": "nvml.app-clocks", "power": "nvml.power-limit"}


@pytest.fixture
def fake(monkeypatch):
    def install(**kwargs) -> FakeNVML:
        nvml = FakeNVML(**kwargs)
        monkeypatch.setitem(sys.modules, "pynvml", nvml)
        return nvml
    return install


@pytest.fixture
def build(register_plugin):
    reg = register_plugin(plugin, name="nvml")
    return lambda name, **opts: reg.get(
        "hardware_knobs" if name in KNOBS.values() else "energy_meters", name).build(**opts)


def test_fake_has_the_real_names_and_parameters():
    for name, method in inspect.getmembers(FakeNVML, inspect.isfunction):
        if name.startswith("nvml"):
            real = getattr(real_pynvml, name)
            fake_params = list(inspect.signature(method).parameters)[1:]
            assert fake_params == list(inspect.signature(real).parameters), name
    for const in ("NVML_CLOCK_GRAPHICS", "NVML_CLOCK_MEM", "NVML_ERROR_NO_PERMISSION",
                  "NVML_ERROR_NOT_SUPPORTED"):
        assert getattr(FakeNVML, const) == getattr(real_pynvml, const)


def test_plugin_import_does_not_load_pynvml():
    code = "import sys, thrifty_nvml.plugin; sys.exit('pynvml' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("short", list(KNOBS))
class TestNvmlKnobs(KnobSuite):
    @pytest.fixture
    def make_knob(self, fake, build, short):
        fake()
        return lambda: build(KNOBS[short])


class TestCounterMeter(EnergyMeterSuite):
    @pytest.fixture
    def make_meter(self, fake, build):
        fake()
        return lambda: build("nvml", mode="counter")


class TestSamplingMeter(EnergyMeterSuite):
    @pytest.fixture
    def make_meter(self, fake, build):
        fake(unsupported=("nvmlDeviceGetTotalEnergyConsumption",))
        return lambda: build("nvml", period_s=0.005)


def test_domains_come_from_the_device(fake, build):
    fake()
    assert build("nvml.gpu-locked-clocks").domain() == sorted(GRAPHICS_CLOCKS)
    assert build("nvml.mem-locked-clocks").domain() == [1593, 2619]
    assert build("nvml.app-clocks", memory_mhz=1593).domain() == sorted(GRAPHICS_CLOCKS[2:])
    assert build("nvml.power-limit", step_w=100).domain() == [200, 300, 400, 500, 600, 700]


def test_writes_reach_the_driver_in_its_units(fake, build):
    nvml = fake()
    build("nvml.power-limit").apply(450)
    build("nvml.gpu-locked-clocks").apply(1305)
    assert nvml.state["power_limit_mw"] == 450_000
    assert nvml.state["locked_gpu"] == [1305, 1305]


def test_read_back_shows_a_thermal_cap(fake, build):
    fake(gpu_cap_mhz=1080)
    assert build("nvml.gpu-locked-clocks").apply(1755) == 1080


def test_no_permission_is_a_clear_error(fake, build):
    fake(privileged=False)
    with pytest.raises(PermissionDeniedError, match="root"):
        build("nvml.power-limit").apply(300)


def test_not_supported_is_a_clear_error(fake, build):
    fake(unsupported=("nvmlDeviceSetMemoryLockedClocks",))
    with pytest.raises(NotSupportedError, match="Ampere"):
        build("nvml.mem-locked-clocks").apply(1593)


def test_counter_measures_the_device_power(fake, build):
    fake(power_w=250.0)
    meter = build("nvml")
    assert meter.source == "nvml.total_energy"
    meter.start()
    time.sleep(0.1)
    reading = meter.stop()
    assert reading.watts == pytest.approx(250.0, rel=0.05)
    assert reading.resolution_j == 0.001


def test_a_window_between_counter_updates_reads_power_times_time(fake, build):
    """A counter that moves once a second shows nothing in a 50 ms window; zero joules from a
    GPU drawing 300 W would be wrong."""
    fake(power_w=300.0, counter_period_s=1.0)
    meter = build("nvml", mode="counter")
    meter.start()
    time.sleep(0.05)
    reading = meter.stop()
    assert reading.source == "nvml.power_estimate"
    assert reading.watts == pytest.approx(300.0, rel=1e-6)


def test_sampling_fallback_integrates_power(fake, build):
    fake(power_w=80.0, unsupported=("nvmlDeviceGetTotalEnergyConsumption",))
    meter = build("nvml", period_s=0.005)
    meter.start()
    time.sleep(0.1)
    reading = meter.stop()
    assert reading.source == "nvml.power_sampling"
    assert reading.watts == pytest.approx(80.0, rel=1e-6)


def test_a_counter_stuck_at_zero_falls_back_or_fails_clearly(fake, build):
    fake(power_w=0.0, energy_start_mj=0)
    assert build("nvml").source == "nvml.power_sampling"
    with pytest.raises(NotSupportedError, match="reads 0"):
        build("nvml", mode="counter")
