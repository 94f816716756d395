"""cpufreq knobs (values in kHz, as the kernel writes them): governor, min, max, a lock of both,
and ``scaling_setspeed`` for the userspace governor.

The selection of CPUs (``cpus="all"`` or ``"0-3,8"``) is resolved against the tree, and every
knob writes the same value to each selected CPU. Used by the Jetson plugin too.
"""

from __future__ import annotations

from typing import Any

from thrifty.errors import ConfigError, NotSupportedError
from thrifty.hw.sysfs import FileKnob, RangeLockKnob, Sysfs, common_values

CPU_ROOT = "sys/devices/system/cpu"


def parse_cpus(text: str) -> list[int] | None:
    """``"all"`` -> None; ``"0-3,8"`` -> [0, 1, 2, 3, 8]."""
    if text.strip() == "all":
        return None
    out: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ConfigError(f"cpus must be 'all' or a list such as '0-3,8', got {text!r}") from None
    return sorted(out)


def cpufreq_dirs(sysfs: Sysfs, cpus: str = "all") -> list[str]:
    """The ``cpufreq`` directories of the selected CPUs that have one (offline CPUs do not)."""
    found = {int(d.split("/")[-2][3:]): d for d in sysfs.glob(f"{CPU_ROOT}/cpu[0-9]*/cpufreq")}
    if not found:
        raise NotSupportedError(f"no CPU has a cpufreq directory under {sysfs.path(CPU_ROOT)}: "
                                f"the kernel exposes no frequency scaling here (a VM or a "
                                f"container?), or the sysfs root is wrong")
    wanted = parse_cpus(cpus)
    if wanted is None:
        return [found[c] for c in sorted(found)]
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise ConfigError(f"CPUs {missing} have no cpufreq directory under {sysfs.root}; online "
                          f"CPUs with cpufreq: {sorted(found)}")
    return [found[c] for c in wanted]


def frequency_domain(sysfs: Sysfs, dirs: list[str], step_khz: int):
    """Frequencies every selected CPU lists, or (``intel_pstate``/``amd-pstate`` list none) a
    grid of ``step_khz`` from ``cpuinfo_min_freq`` to ``cpuinfo_max_freq``, both included."""
    def domain() -> list[int]:
        if all(sysfs.exists(f"{d}/scaling_available_frequencies") for d in dirs):
            return common_values(sysfs, dirs, "scaling_available_frequencies")
        lo = max(int(sysfs.read(f"{d}/cpuinfo_min_freq")) for d in dirs)
        hi = min(int(sysfs.read(f"{d}/cpuinfo_max_freq")) for d in dirs)
        return sorted(set(range(lo, hi + 1, step_khz)) | {hi})
    return domain


class SetspeedKnob(FileKnob):
    """``scaling_setspeed``: works only under the userspace governor, so ``apply`` switches to it
    and the snapshot keeps the governor that was in force, which ``restore`` puts back."""

    def apply(self, value: Any) -> Any:
        for d in self.dirs:
            if self.sysfs.read(f"{d}/scaling_governor") != "userspace":
                self.sysfs.write(f"{d}/scaling_governor", "userspace")
        return super().apply(value)

    def read(self) -> int | None:
        """The speed set, or None when another governor is in charge (the kernel then shows
        ``<unsupported>``)."""
        if self.sysfs.read(f"{self.dirs[0]}/scaling_governor") != "userspace":
            return None
        return int(self.sysfs.read(f"{self.dirs[0]}/{self.attr}"))

    def snapshot(self) -> dict:
        state = {}
        for d in self.dirs:
            governor = self.sysfs.read(f"{d}/scaling_governor")
            speed = self.sysfs.read(f"{d}/scaling_setspeed") if governor == "userspace" else None
            state[d] = [governor, speed]
        return state

    def restore(self, state: dict) -> None:
        for d, (governor, speed) in state.items():
            self.sysfs.write(f"{d}/scaling_governor", governor)
            if speed is not None:
                self.sysfs.write(f"{d}/scaling_setspeed", speed)


def build(kind: str, name: str, sysfs_root: str = "/", cpus: str = "all",
          step_khz: int = 100_000):
    """A cpufreq knob of ``kind`` governor, min-freq, max-freq, freq or setspeed."""
    sysfs = Sysfs(sysfs_root)
    dirs = cpufreq_dirs(sysfs, cpus)
    freqs = frequency_domain(sysfs, dirs, step_khz)
    if kind == "governor":
        return FileKnob(name, "", sysfs, dirs, "scaling_governor", parse=str,
                        domain=lambda: common_values(sysfs, dirs, "scaling_available_governors",
                                                     parse=str))
    if kind == "freq":
        return RangeLockKnob(name, "kHz", sysfs, dirs, "scaling_min_freq", "scaling_max_freq",
                             freqs)
    if kind == "setspeed":
        return SetspeedKnob(name, "kHz", sysfs, dirs, "scaling_setspeed", freqs)
    attr = {"min-freq": "scaling_min_freq", "max-freq": "scaling_max_freq"}[kind]
    return FileKnob(name, "kHz", sysfs, dirs, attr, freqs)
