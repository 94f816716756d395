"""INA3221 power-rail meters: the rails are sampled and their summed power integrated.

JetPack 4 (IIO driver ``ina3221x``): ``rail_name_N`` and ``in_powerN_input`` (mW).
JetPack 5+ (hwmon): ``inN_label``, ``inN_input`` (mV) and ``currN_input`` (mA).
"""

from __future__ import annotations

from thrifty.errors import ConfigError, NotSupportedError
from thrifty.hw import SamplingMeter
from thrifty.hw.sysfs import Sysfs

from .generations import Generation, detect


def find_rails(sysfs: Sysfs, gen: Generation) -> dict[str, tuple[str, ...]]:
    """Rail label -> the files whose product (hwmon) or value (iio) is its power."""
    rails: dict[str, tuple[str, ...]] = {}
    if gen.ina_layout == "iio":
        for dev in gen.ina_devices:
            for label in sysfs.glob(f"{dev}/rail_name_[0-9]"):
                n = label[-1]
                rails[sysfs.read(label)] = (f"{dev}/in_power{n}_input",)
    else:
        for dev in gen.ina_devices:
            for label in sysfs.glob(f"{dev}/hwmon/hwmon*/in[0-9]_label"):
                base, n = label.rsplit("/", 1)[0], label.rsplit("/", 1)[1][2]
                rails[sysfs.read(label)] = (f"{base}/in{n}_input", f"{base}/curr{n}_input")
    return rails


def select_rails(rails: dict[str, tuple[str, ...]], wanted: str) -> dict[str, tuple[str, ...]]:
    """``wanted`` = comma-separated labels, or ``""``: the module input rail ``VDD_IN`` where the
    board has one (it already includes the others), else every rail."""
    if not rails:
        raise NotSupportedError("no INA3221 rails found: wrong generation or sysfs root?")
    if not wanted:
        return {"VDD_IN": rails["VDD_IN"]} if "VDD_IN" in rails else rails
    names = [w.strip() for w in wanted.split(",") if w.strip()]
    missing = [n for n in names if n not in rails]
    if missing:
        raise ConfigError(f"INA3221 rails {missing} not found; this board has: {sorted(rails)}")
    return {n: rails[n] for n in names}


def ina3221_meter(name: str = "jetson.ina3221", sysfs_root: str = "/", generation: str = "auto",
                  rails: str = "", period_s: float = 0.01) -> SamplingMeter:
    sysfs = Sysfs(sysfs_root)
    chosen = select_rails(find_rails(sysfs, detect(sysfs, generation)), rails)

    def watts() -> float:
        total = 0.0
        for files in chosen.values():
            if len(files) == 1:
                total += int(sysfs.read(files[0])) / 1e3
            else:
                total += int(sysfs.read(files[0])) * int(sysfs.read(files[1])) / 1e6
        return total

    watts()   # fail at construction (permissions, missing files), not mid-window
    return SamplingMeter(name, watts, source="ina3221", period_s=period_s, watts_step=0.001)
