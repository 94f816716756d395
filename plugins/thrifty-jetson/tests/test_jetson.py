"""thrifty-jetson against fake trees laid out like each generation's."""

from __future__ import annotations

import pytest
from thrifty.errors import ConfigError, NotSupportedError
from thrifty.testing.knobs import KnobSuite
from thrifty.testing.meters import EnergyMeterSuite
from thrifty_jetson import plugin
from thrifty_jetson.fake import EMC_RATES_KHZ, GPU_FREQS_HZ, rail_watts, write_jetson_tree
from thrifty_jetson.generations import EMC_CLOCK, GENERATIONS

GENS = list(GENERATIONS)


@pytest.fixture
def build(register_plugin):
    reg = register_plugin(plugin, name="jetson")
    return lambda name, **opts: reg.get(
        "energy_meters" if name == "jetson.ina3221" else "hardware_knobs", name).build(**opts)


def _options(name, root):
    return {"sysfs_root": str(root), **({"command": str(root / "usr/sbin/nvpmodel")}
                                        if name == "jetson.nvpmodel" else {})}


@pytest.mark.parametrize(("gen", "name"), [(g, "jetson.gpu-freq") for g in GENS] + [
    ("orin", "jetson.gpu-min-freq"), ("xavier", "jetson.gpu-max-freq"), ("tx2", "jetson.emc"),
    ("jp6", "jetson.emc")])
class TestJetsonKnobs(KnobSuite):
    @pytest.fixture
    def make_knob(self, tmp_path, build, gen, name):
        root = write_jetson_tree(tmp_path, gen)
        return lambda: build(name, **_options(name, root))


class TestNvpmodel(KnobSuite):
    @pytest.fixture
    def make_knob(self, tmp_path, build):
        root = write_jetson_tree(tmp_path, "orin")
        return lambda: build("jetson.nvpmodel", **_options("jetson.nvpmodel", root))


@pytest.mark.parametrize("gen", GENS)
class TestIna3221(EnergyMeterSuite):
    @pytest.fixture
    def make_meter(self, tmp_path, build, gen):
        root = write_jetson_tree(tmp_path, gen)
        return lambda: build("jetson.ina3221", sysfs_root=str(root), period_s=0.005)


@pytest.mark.parametrize("gen", GENS)
def test_generation_is_detected_and_paths_match(tmp_path, build, gen):
    root = write_jetson_tree(tmp_path, gen)
    knob = build("jetson.gpu-freq", sysfs_root=str(root))
    assert knob.dirs == [GENERATIONS[gen].gpu_devfreq]
    assert knob.domain() == list(GPU_FREQS_HZ)
    assert knob.apply(726_750_000) == 726_750_000
    gpu = root / GENERATIONS[gen].gpu_devfreq
    assert (gpu / "min_freq").read_text().strip() == (gpu / "max_freq").read_text().strip()


@pytest.mark.parametrize("gen", GENS)
def test_ina3221_integrates_the_right_rails(tmp_path, build, gen):
    import time
    root = write_jetson_tree(tmp_path, gen)
    watts = rail_watts(gen)
    expected = watts["VDD_IN"] if "VDD_IN" in watts else sum(watts.values())
    meter = build("jetson.ina3221", sysfs_root=str(root), period_s=0.005)
    meter.start()
    time.sleep(0.05)
    reading = meter.stop()
    assert reading.source == "ina3221"
    assert reading.watts == pytest.approx(expected, rel=1e-9)


def test_named_rails_and_unknown_rails(tmp_path, build):
    root = write_jetson_tree(tmp_path, "orin")
    meter = build("jetson.ina3221", sysfs_root=str(root), rails="VDD_SOC,VDD_CPU_GPU_CV")
    assert meter._read() == pytest.approx(2.5 + 3.0)
    with pytest.raises(ConfigError, match="VDD_GPU.*VDD_IN"):
        build("jetson.ina3221", sysfs_root=str(root), rails="VDD_GPU")


def test_emc_rates_from_the_list_or_the_clock_limits(tmp_path, build):
    orin = write_jetson_tree(tmp_path / "orin", "orin")
    assert build("jetson.emc", sysfs_root=str(orin)).domain() == [r * 1000 for r in EMC_RATES_KHZ]
    tx2 = write_jetson_tree(tmp_path / "tx2", "tx2")
    emc = build("jetson.emc", sysfs_root=str(tx2))
    assert emc.domain() == [EMC_RATES_KHZ[0] * 1000, EMC_RATES_KHZ[-1] * 1000]
    emc.apply(EMC_RATES_KHZ[0] * 1000)
    assert (tx2 / EMC_CLOCK / "mrq_rate_locked").read_text().strip() == "1"


def test_cpu_knobs_from_thrifty_cpu_work_on_a_jetson_tree(tmp_path):
    import thrifty_cpu.plugin
    from thrifty.testing import fresh_registry

    reg = fresh_registry(load_entry_points=False, plugins={"cpu": thrifty_cpu.plugin})
    root = write_jetson_tree(tmp_path, "xavier")
    knob = reg.hardware_knob("cpu.freq").build(sysfs_root=str(root))
    assert len(knob.dirs) == 8 and knob.apply(1_190_400) == 1_190_400


def test_missing_tree_and_unknown_generation(tmp_path, build):
    with pytest.raises(NotSupportedError, match="not a Jetson"):
        build("jetson.gpu-freq", sysfs_root=str(tmp_path))
    with pytest.raises(ConfigError, match=r"generation.*tx2.*jp6.*nano"):
        build("jetson.gpu-freq", sysfs_root=str(tmp_path), generation="nano")
