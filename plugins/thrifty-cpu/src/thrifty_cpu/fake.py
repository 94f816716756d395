"""Fake sysfs trees laid out like the kernel's, for tests (here, in thrifty-jetson, and in the
kill tests): plain files under a temporary root, passed to knobs as ``sysfs_root``."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

FREQS_KHZ = (600_000, 1_200_000, 1_800_000, 2_400_000)
GOVERNORS = ("performance", "powersave", "schedutil", "userspace")


def _put(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{value}\n")


def write_cpufreq_tree(root: str | Path, cpus: int = 4, freqs: Sequence[int] = FREQS_KHZ,
                       listed: bool = True, governor: str = "schedutil") -> Path:
    """``cpus`` CPUs with cpufreq at the lowest..highest of ``freqs``; ``listed=False`` leaves
    out ``scaling_available_frequencies`` as ``intel_pstate`` does."""
    root = Path(root)
    for cpu in range(cpus):
        d = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        files = {"scaling_governor": governor, "scaling_available_governors": " ".join(GOVERNORS),
                 "scaling_min_freq": min(freqs), "scaling_max_freq": max(freqs),
                 "cpuinfo_min_freq": min(freqs), "cpuinfo_max_freq": max(freqs),
                 "scaling_cur_freq": max(freqs), "scaling_setspeed": "<unsupported>"}
        if listed:
            files["scaling_available_frequencies"] = " ".join(map(str, freqs))
        for name, value in files.items():
            _put(d / name, value)
    return root


def write_rapl_tree(root: str | Path, zones: dict[str, tuple[str, int, int]] | None = None
                    ) -> Path:
    """RAPL zones ``{"intel-rapl:0": (name, energy_uj, max_energy_range_uj)}``; by default one
    package with a sub-zone and a psys zone (which must not be summed with it)."""
    root = Path(root)
    zones = zones or {"intel-rapl:0": ("package-0", 1_000_000, 262_143_328_850),
                      "intel-rapl:0:0": ("core", 500_000, 262_143_328_850),
                      "intel-rapl:1": ("psys", 9_000_000, 262_143_328_850)}
    for zone, (name, energy, max_range) in zones.items():
        d = root / "sys/class/powercap" / zone
        _put(d / "name", name)
        _put(d / "energy_uj", energy)
        _put(d / "max_energy_range_uj", max_range)
    return root


def set_energy(root: str | Path, zone: str, energy_uj: int) -> None:
    """Move a fake RAPL counter (what the hardware does between two reads)."""
    _put(Path(root) / "sys/class/powercap" / zone / "energy_uj", energy_uj)
