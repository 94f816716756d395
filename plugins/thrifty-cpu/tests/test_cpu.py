"""thrifty-cpu against fake sysfs trees."""

from __future__ import annotations

from pathlib import Path

import pytest
from thrifty.errors import ConfigError, NotSupportedError, PermissionDeniedError
from thrifty.testing.knobs import KnobSuite
from thrifty.testing.meters import EnergyMeterSuite
from thrifty_cpu import plugin
from thrifty_cpu.fake import FREQS_KHZ, set_energy, write_cpufreq_tree, write_rapl_tree

CPU0 = "sys/devices/system/cpu/cpu0/cpufreq"


@pytest.fixture
def build(register_plugin):
    reg = register_plugin(plugin, name="cpu")
    return lambda name, **opts: reg.get(
        "energy_meters" if name == "rapl" else "hardware_knobs", name).build(**opts)


@pytest.mark.parametrize("kind", ["governor", "min-freq", "max-freq", "freq", "setspeed"])
@pytest.mark.parametrize("listed", [True, False], ids=["listed", "pstate"])
class TestCpufreqKnobs(KnobSuite):
    @pytest.fixture
    def make_knob(self, tmp_path, build, kind, listed):
        root = str(write_cpufreq_tree(tmp_path, listed=listed))
        return lambda: build(f"cpu.{kind}", sysfs_root=root, cpus="1-3")


class TestRapl(EnergyMeterSuite):
    @pytest.fixture
    def make_meter(self, tmp_path, build):
        root = str(write_rapl_tree(tmp_path))
        return lambda: build("rapl", sysfs_root=root)


def test_frequency_domain_lists_or_grids(tmp_path, build):
    root = str(write_cpufreq_tree(tmp_path / "a"))
    assert build("cpu.freq", sysfs_root=root).domain() == list(FREQS_KHZ)
    root = str(write_cpufreq_tree(tmp_path / "b", freqs=(800_000, 2_250_000), listed=False))
    assert build("cpu.freq", sysfs_root=root, step_khz=500_000).domain() == [
        800_000, 1_300_000, 1_800_000, 2_250_000]


def test_lock_writes_every_selected_cpu_and_only_those(tmp_path, build):
    root = write_cpufreq_tree(tmp_path)
    build("cpu.freq", sysfs_root=str(root), cpus="0,2").apply(1_200_000)
    read = lambda cpu, f: int((root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq/{f}").read_text())
    assert [read(c, "scaling_max_freq") for c in range(4)] == [1_200_000, 2_400_000,
                                                               1_200_000, 2_400_000]
    assert read(0, "scaling_min_freq") == read(0, "scaling_max_freq")


def test_lock_above_the_current_max_raises_max_first(tmp_path, build, monkeypatch):
    root = write_cpufreq_tree(tmp_path)
    knob = build("cpu.freq", sysfs_root=str(root), cpus="0")
    knob.apply(600_000)
    order = []
    from thrifty.hw.sysfs import Sysfs
    real_write = Sysfs.write
    monkeypatch.setattr(Sysfs, "write", lambda self, rel, v: (order.append(rel.split("/")[-1]),
                                                             real_write(self, rel, v)))
    knob.apply(2_400_000)
    assert order == ["scaling_max_freq", "scaling_min_freq"]


def test_setspeed_switches_governor_and_restores_it(tmp_path, build):
    root = write_cpufreq_tree(tmp_path, governor="powersave")
    knob = build("cpu.setspeed", sysfs_root=str(root), cpus="0")
    snap = knob.snapshot()
    assert knob.apply(1_800_000) == 1_800_000
    assert (root / CPU0 / "scaling_governor").read_text().strip() == "userspace"
    knob.restore(snap)
    assert (root / CPU0 / "scaling_governor").read_text().strip() == "powersave"


def test_bad_cpu_selection_names_the_fix(tmp_path, build):
    root = str(write_cpufreq_tree(tmp_path, cpus=2))
    with pytest.raises(ConfigError, match=r"\[5\].*online CPUs with cpufreq: \[0, 1\]"):
        build("cpu.freq", sysfs_root=root, cpus="1,5")


def test_no_cpufreq_is_not_supported(tmp_path, build):
    with pytest.raises(NotSupportedError, match="no CPU has a cpufreq directory"):
        build("cpu.freq", sysfs_root=str(tmp_path))


def test_rapl_sums_packages_only_and_corrects_a_wrap(tmp_path, build):
    root = write_rapl_tree(tmp_path, {
        "intel-rapl:0": ("package-0", 900, 1_000),
        "intel-rapl:0:0": ("core", 10, 1_000),
        "intel-rapl:1": ("package-1", 5_000, 1_000_000),
        "intel-rapl:2": ("psys", 0, 1_000_000)})
    meter = build("rapl", sysfs_root=str(root))
    meter.start()
    set_energy(root, "intel-rapl:0", 100)          # wrapped: 900 -> 1000 -> 0 -> 100
    set_energy(root, "intel-rapl:0:0", 900_000)    # a sub-zone: not counted
    set_energy(root, "intel-rapl:1", 5_300)
    set_energy(root, "intel-rapl:2", 999_999)      # psys: not counted
    reading = meter.stop()
    assert reading.joules == pytest.approx((200 + 300) / 1e6)
    assert reading.wrapped and reading.source == "rapl" and reading.resolution_j == 1e-6


def test_rapl_named_zones(tmp_path, build):
    root = write_rapl_tree(tmp_path)
    meter = build("rapl", sysfs_root=str(root), zones="intel-rapl:0:0")
    meter.start()
    set_energy(root, "intel-rapl:0:0", 750_000)
    assert meter.stop().joules == pytest.approx(0.25)
    with pytest.raises(ConfigError, match="intel-rapl:7"):
        build("rapl", sysfs_root=str(root), zones="intel-rapl:7")


def test_root_only_rapl_says_how_to_fix_it(tmp_path, build, monkeypatch):
    root = write_rapl_tree(tmp_path)
    real = Path.read_text

    def read_text(self, *args, **kwargs):
        if self.name == "energy_uj":   # what a 0400 file gives a normal user
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(PermissionDeniedError, match=r"root.*chmod o\+r"):
        build("rapl", sysfs_root=str(root))
