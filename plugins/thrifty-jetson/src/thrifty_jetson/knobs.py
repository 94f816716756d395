"""Jetson knobs: GPU devfreq (Hz), the EMC memory clock (Hz) and the nvpmodel power mode.

CPU frequencies use thrifty-cpu's ``cpu.*`` knobs (plain cpufreq on every Jetson). Apply
``jetson.nvpmodel`` before clock knobs: a power mode resets the clock limits.
"""

from __future__ import annotations

import os
import re
import subprocess

from thrifty.errors import KnobError, NotSupportedError, PermissionDeniedError
from thrifty.hw.sysfs import FileKnob, RangeLockKnob, Sysfs, common_values

from .generations import EMC_CLOCK, EMC_RATE_LISTS, NVPMODEL_CONF, detect


def gpu_knob(kind: str, name: str, sysfs_root: str = "/", generation: str = "auto"):
    """``kind`` is ``freq`` (pin min = max), ``min-freq`` or ``max-freq``."""
    sysfs = Sysfs(sysfs_root)
    d = detect(sysfs, generation).gpu_devfreq
    domain = lambda: common_values(sysfs, [d], "available_frequencies")  # noqa: E731
    if kind == "freq":
        return RangeLockKnob(name, "Hz", sysfs, [d], "min_freq", "max_freq", domain)
    return FileKnob(name, "Hz", sysfs, [d], kind.replace("-", "_"), domain)


class EmcKnob:
    """The external memory clock through BPMP debugfs: lock (``mrq_rate_locked = 1``), then
    write ``rate``, as jetson_clocks does; read back ``rate``."""

    unit = "Hz"

    def __init__(self, name: str, sysfs_root: str = "/") -> None:
        self.name, self.sysfs = name, Sysfs(sysfs_root)
        if not self.sysfs.exists(EMC_CLOCK):
            raise NotSupportedError(f"no EMC clock at {self.sysfs.path(EMC_CLOCK)}: mount "
                                    f"debugfs (mount -t debugfs none /sys/kernel/debug) as root")

    def domain(self) -> list[int]:
        """Listed rates (kHz lists, as L4T writes them, are recognised: no EMC runs below
        10 MHz), else the clock's min and max rate."""
        for rel in EMC_RATE_LISTS:
            if self.sysfs.exists(rel):
                rates = [int(v) for v in self.sysfs.read(rel).split()]
                return sorted({r * 1000 if r < 10_000_000 else r for r in rates})
        return sorted({int(self.sysfs.read(f"{EMC_CLOCK}/{f}")) for f in ("min_rate", "max_rate")})

    def read(self) -> int:
        return int(self.sysfs.read(f"{EMC_CLOCK}/rate"))

    def apply(self, value: int) -> int:
        self.sysfs.write(f"{EMC_CLOCK}/mrq_rate_locked", 1)
        self.sysfs.write(f"{EMC_CLOCK}/rate", int(value))
        return self.read()

    def snapshot(self) -> dict:
        return {f: self.sysfs.read(f"{EMC_CLOCK}/{f}") for f in ("rate", "mrq_rate_locked")}

    def restore(self, state: dict) -> None:
        self.sysfs.write(f"{EMC_CLOCK}/rate", state["rate"])
        self.sysfs.write(f"{EMC_CLOCK}/mrq_rate_locked", state["mrq_rate_locked"])


_MODE = re.compile(r"<\s*POWER_MODEL\s+ID=(\d+)")


class NvpmodelKnob:
    """The power mode (``nvpmodel -m ID``); the domain is the IDs in ``/etc/nvpmodel.conf``."""

    unit = ""

    def __init__(self, name: str, sysfs_root: str = "/", command: str = "nvpmodel") -> None:
        self.name, self.sysfs, self.command = name, Sysfs(sysfs_root), command

    def _run(self, *args: str) -> str:
        try:
            done = subprocess.run([self.command, *args], capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=60)
        except FileNotFoundError:
            raise NotSupportedError(f"{self.command!r} not found: not a Jetson, or pass "
                                    f"command=/path/to/nvpmodel") from None
        if done.returncode != 0:
            if hasattr(os, "geteuid") and os.geteuid() != 0:
                raise PermissionDeniedError(f"`{self.command} {' '.join(args)}` failed; it needs "
                                            f"root: run as root (sudo)")
            raise KnobError(f"`{self.command} {' '.join(args)}` failed: "
                            f"{(done.stderr or done.stdout).strip()}")
        return done.stdout

    def domain(self) -> list[int]:
        return sorted({int(m) for m in _MODE.findall(self.sysfs.read(NVPMODEL_CONF))})

    def read(self) -> int:
        lines = [ln.strip() for ln in self._run("-q").splitlines() if ln.strip().isdigit()]
        if not lines:
            raise KnobError(f"`{self.command} -q` printed no mode number")
        return int(lines[-1])

    def apply(self, value: int) -> int:
        self._run("-m", str(int(value)))
        return self.read()

    def snapshot(self) -> int:
        return self.read()

    def restore(self, state: int) -> None:
        self._run("-m", str(int(state)))
