"""ZeusMonitor behind thrifty's :class:`~thrifty.protocols.EnergyMeter` protocol.

Zeus measures named windows (``begin_window(key)`` / ``end_window(key)`` -> ``Measurement``
with ``time`` in seconds and ``gpu_energy`` in joules per GPU index); thrifty's meters measure
one window at a time (``start()`` / ``stop()`` -> :class:`~thrifty.hw.EnergyReading`). Each
meter owns one ZeusMonitor watching one GPU and no CPU package, so a reading holds what the
NVML meter's holds and the two can be compared window for window (``bench/zeus_vs_nvml.py``).
"""

from __future__ import annotations

import itertools

from thrifty.errors import MeterError, NotSupportedError
from thrifty.hw import EnergyReading

_WINDOWS = itertools.count()


def _monitor_class():
    try:
        from zeus.monitor import ZeusMonitor
    except ImportError as exc:
        raise NotSupportedError(
            f"the 'zeus' energy meter needs the zeus package, which is not importable here "
            f"({exc}); install it with `pip install zeus` (or `pip install thrifty-zeus[zeus]`), "
            f"or use the 'nvml' meter") from exc
    return ZeusMonitor


class ZeusEnergyMeter:
    """One GPU's energy through a ZeusMonitor. Zeus reads NVML's total-energy counter
    (millijoules) where the GPU has one and samples power where it does not."""

    resolution_j = 0.001

    def __init__(self, name: str = "zeus", device: int = 0,
                 approx_instant_energy: bool = True) -> None:
        monitor = _monitor_class()
        self.name = name
        self.device = device
        try:
            self.monitor = monitor(gpu_indices=[device], cpu_indices=[],
                                   approx_instant_energy=approx_instant_energy)
        except Exception as exc:  # zeus raises its own types (ZeusGPUInitError, ...)
            raise MeterError(f"meter {name!r}: ZeusMonitor cannot watch GPU {device}: "
                             f"{type(exc).__name__}: {exc}") from exc
        self.source = f"zeus {_version()}"
        self._key: str | None = None

    def start(self) -> None:
        if self._key is not None:  # a window left open: discard it, start afresh
            self.monitor.end_window(self._key, cancel=True)
        self._key = f"thrifty-{next(_WINDOWS)}"
        self.monitor.begin_window(self._key)

    def stop(self) -> EnergyReading:
        if self._key is None:
            raise MeterError(f"meter {self.name!r}: stop() called without start()")
        key, self._key = self._key, None
        m = self.monitor.end_window(key)
        if self.device not in m.gpu_energy:
            raise MeterError(f"meter {self.name!r}: Zeus returned no energy for GPU "
                             f"{self.device} (it measured {sorted(m.gpu_energy)})")
        return EnergyReading(joules=float(m.gpu_energy[self.device]), seconds=float(m.time),
                             source=self.source, resolution_j=self.resolution_j)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("zeus")
    except PackageNotFoundError:
        return "(unpackaged)"
