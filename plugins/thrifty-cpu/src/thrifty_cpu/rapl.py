"""The RAPL energy meter over ``/sys/class/powercap/intel-rapl:N`` (Intel, and AMD Zen through
the same driver).

``energy_uj`` is a microjoule counter that wraps to 0 after ``max_energy_range_uj``; each
zone's delta is corrected for one wrap (the window must be shorter than the counter's range at
full power, minutes on a server). Since Linux 5.10 (the PLATYPUS side channel) ``energy_uj`` is
readable by root only, so the meter checks at construction and says what to do.
"""

from __future__ import annotations

import time

from thrifty.errors import ConfigError, MeterError, NotSupportedError, PermissionDeniedError
from thrifty.hw import EnergyReading, counter_delta
from thrifty.hw.sysfs import Sysfs

POWERCAP = "sys/class/powercap"


def select_zones(sysfs: Sysfs, zones: str) -> list[str]:
    """Zone directories: ``"package"`` (every top-level package zone: the default, as summing
    ``psys`` or sub-zones with packages would count energy twice) or names like
    ``"intel-rapl:0,intel-rapl:0:0"``."""
    if zones == "package":
        found = [z for z in sysfs.glob(f"{POWERCAP}/intel-rapl:[0-9]*")
                 if z.count(":") == 1 and sysfs.read(f"{z}/name").startswith("package")]
    else:
        found = [f"{POWERCAP}/{z.strip()}" for z in zones.split(",") if z.strip()]
        missing = [z for z in found if not sysfs.exists(z)]
        if missing:
            raise ConfigError(f"RAPL zones {missing} do not exist under {sysfs.root}; present: "
                              f"{sysfs.glob(f'{POWERCAP}/intel-rapl:*')}")
    if not found:
        raise NotSupportedError(f"no RAPL package zone under {sysfs.root / POWERCAP}: this CPU or "
                                f"kernel has no RAPL (load the intel_rapl_msr module?)")
    return found


class RaplMeter:
    def __init__(self, name: str = "rapl", sysfs_root: str = "/", zones: str = "package") -> None:
        self.name = name
        self.sysfs = Sysfs(sysfs_root)
        self.zones = select_zones(self.sysfs, zones)
        self.ranges = [int(self.sysfs.read(f"{z}/max_energy_range_uj")) for z in self.zones]
        self._start: tuple[list[int], float] | None = None
        self._counters()   # fail now, with the fix, rather than in the middle of a trial

    def _counters(self) -> list[int]:
        try:
            return [int(self.sysfs.read(f"{z}/energy_uj")) for z in self.zones]
        except PermissionDeniedError:
            raise PermissionDeniedError(
                "RAPL energy counters are readable by root only (Linux 5.10+, CVE-2020-8694): "
                "run as root, or let this user read them with "
                "`sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj`") from None

    def start(self) -> None:
        self._start = (self._counters(), time.perf_counter())

    def stop(self) -> EnergyReading:
        if self._start is None:
            raise MeterError(f"meter {self.name!r}: stop() called without start()")
        end, t1 = self._counters(), time.perf_counter()
        (begin, t0), self._start = self._start, None
        deltas = [counter_delta(b, e, r) for b, e, r in zip(begin, end, self.ranges)]
        return EnergyReading(joules=sum(d for d, _ in deltas) / 1e6, seconds=t1 - t0,
                             source="rapl", resolution_j=1e-6,
                             wrapped=any(w for _, w in deltas))
