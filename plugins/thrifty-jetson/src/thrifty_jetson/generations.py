"""Where each Jetson generation keeps its knobs and power monitors: the one table to edit.

Paths are relative to the sysfs root. The GPU devfreq directory moved with JetPack 6 (upstream
device tree, ``bus@0``); the INA3221 monitors moved from the downstream IIO driver
(``ina3221x``, ``in_powerN_input`` in mW) to hwmon with JetPack 5 (``inN_input`` mV x
``currN_input`` mA). EMC is a BPMP clock on every generation here (Tegra186 and later).
"""

from __future__ import annotations

import attrs

from thrifty.errors import ConfigError, NotSupportedError
from thrifty.hw.sysfs import Sysfs

EMC_CLOCK = "sys/kernel/debug/bpmp/debug/clk/emc"
EMC_RATE_LISTS = ("sys/kernel/debug/bpmp/debug/emc/possible_rates",
                  "sys/kernel/debug/emc/available_rates")
NVPMODEL_CONF = "etc/nvpmodel.conf"


@attrs.frozen
class Generation:
    name: str
    soc: str
    jetpack: str
    gpu_devfreq: str
    ina_layout: str               # "iio" (JetPack 4) or "hwmon" (JetPack 5+)
    ina_devices: tuple[str, ...]  # hwmon: i2c device dirs holding hwmon/hwmonN


GENERATIONS = {g.name: g for g in [
    Generation("tx2", "tegra186", "4",
               "sys/devices/17000000.gp10b/devfreq/17000000.gp10b", "iio",
               ("sys/bus/i2c/drivers/ina3221x/0-0040/iio:device0",
                "sys/bus/i2c/drivers/ina3221x/0-0041/iio:device1")),
    Generation("xavier", "tegra194", "4",
               "sys/devices/17000000.gv11b/devfreq/17000000.gv11b", "iio",
               ("sys/bus/i2c/drivers/ina3221x/1-0040/iio:device0",
                "sys/bus/i2c/drivers/ina3221x/1-0041/iio:device1")),
    Generation("orin", "tegra234", "5",
               "sys/devices/17000000.ga10b/devfreq/17000000.ga10b", "hwmon",
               ("sys/bus/i2c/drivers/ina3221/1-0040", "sys/bus/i2c/drivers/ina3221/1-0041")),
    Generation("jp6", "tegra234", "6",
               "sys/devices/platform/bus@0/17000000.gpu/devfreq/17000000.gpu", "hwmon",
               ("sys/bus/i2c/drivers/ina3221/1-0040", "sys/bus/i2c/drivers/ina3221/1-0041")),
]}


def detect(sysfs: Sysfs, name: str = "auto") -> Generation:
    """The generation called ``name``, or (``"auto"``) the one whose GPU devfreq directory
    exists under the root."""
    if name != "auto":
        if name not in GENERATIONS:
            raise ConfigError(f"unknown Jetson generation {name!r}; known: "
                              f"{', '.join(GENERATIONS)} or auto")
        return GENERATIONS[name]
    for gen in GENERATIONS.values():
        if sysfs.exists(gen.gpu_devfreq):
            return gen
    raise NotSupportedError(f"no Jetson GPU devfreq directory under {sysfs.root} (looked for "
                            f"{', '.join(g.gpu_devfreq for g in GENERATIONS.values())}); not a "
                            f"Jetson, or pass generation=... and sysfs_root=...")
