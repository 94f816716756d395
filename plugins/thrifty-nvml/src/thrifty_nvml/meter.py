"""The NVML energy meter: the total-energy counter where the GPU has one, power sampling where
it does not.

``nvmlDeviceGetTotalEnergyConsumption`` is millijoules since the driver loaded (Volta and
newer). Older GPUs answer NOT_SUPPORTED, and some (Tegra) initialise NVML but report zero; in
``mode="auto"`` both fall back to integrating ``nvmlDeviceGetPowerUsage`` (milliwatts) sampled
by a thread every ``period_s``.

The counter moves once per driver update period (about 0.1 s on an H100, measured by
``bench/zeus_vs_nvml.py``), so a window's joules are exact to within one update's energy: at
700 W that is ~70 J, large against a 0.2 s window and small against a 4 s one. A window in
which the counter does not move at all reads the power draw times the window instead, labelled
``nvml.power_estimate``; for short windows ``mode="sampling"`` integrates power every
``period_s``.
"""

from __future__ import annotations

import time

from thrifty.errors import MeterError, NotSupportedError
from thrifty.hw import EnergyReading, SamplingMeter, counter_delta

from .device import Gpu

_UINT64 = 2**64


class NvmlEnergyMeter:
    def __init__(self, name: str = "nvml", device: int = 0, mode: str = "auto",
                 period_s: float = 0.02) -> None:
        self.name = name
        self.gpu = Gpu(device, error=MeterError)
        self._sampler: SamplingMeter | None = None
        self._start: tuple[int, float] | None = None
        if mode != "sampling" and not self._counter_works(mode == "counter"):
            mode = "sampling"
        if mode == "sampling":
            self._sampler = SamplingMeter(
                name, lambda: self.gpu("nvmlDeviceGetPowerUsage") / 1000.0,
                source="nvml.power_sampling", period_s=period_s, watts_step=0.001)
        self.source = self._sampler.source if self._sampler else "nvml.total_energy"

    def _counter_works(self, required: bool) -> bool:
        try:
            works = self.gpu("nvmlDeviceGetTotalEnergyConsumption") > 0
        except NotSupportedError:
            if required:
                raise
            return False
        if required and not works:
            raise NotSupportedError(f"GPU {self.gpu.index}: the NVML energy counter reads 0 "
                                    f"(Tegra or a driver that does not count); use "
                                    f"mode='sampling'")
        return works

    def start(self) -> None:
        if self._sampler:
            return self._sampler.start()
        self._start = (self.gpu("nvmlDeviceGetTotalEnergyConsumption"), time.perf_counter())

    def stop(self) -> EnergyReading:
        if self._sampler:
            return self._sampler.stop()
        if self._start is None:
            raise MeterError(f"meter {self.name!r}: stop() called without start()")
        end_mj, t1 = self.gpu("nvmlDeviceGetTotalEnergyConsumption"), time.perf_counter()
        (start_mj, t0), self._start = self._start, None
        delta, wrapped = counter_delta(start_mj, end_mj, _UINT64)
        if delta == 0 and t1 > t0:
            # the driver adds to the counter once per update period (about 0.1 s on an H100),
            # so a shorter window can see no tick at all: zero joules from a powered GPU would
            # be wrong, and the power reading times the window is the best estimate there is
            watts = self.gpu("nvmlDeviceGetPowerUsage") / 1000.0
            return EnergyReading(joules=watts * (t1 - t0), seconds=t1 - t0,
                                 source="nvml.power_estimate", resolution_j=0.001)
        return EnergyReading(joules=delta / 1000.0, seconds=t1 - t0, source=self.source,
                             resolution_j=0.001, wrapped=wrapped)
