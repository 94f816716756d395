"""GPU knobs: locked graphics clocks, locked memory clocks, application clocks, power limit.

Domains come from the device. Every ``apply`` reads the value back, because the driver may run
the GPU below a lock or limit (thermal or power capping) without failing the write.
"""

from __future__ import annotations

from typing import Any

from .device import Gpu


def _graphics_clocks(gpu: Gpu, memory_mhz: int | None = None) -> list[int]:
    if memory_mhz is None:
        memory_mhz = max(gpu("nvmlDeviceGetSupportedMemoryClocks"))
    return sorted(set(gpu("nvmlDeviceGetSupportedGraphicsClocks", memory_mhz)))


class LockedClocksKnob:
    """Pins a clock domain with ``nvmlDeviceSet{Gpu,Memory}LockedClocks(min=max=value)``.

    NVML cannot report an existing lock, so the snapshot records only that the clock is to be
    unlocked: ``restore`` calls the matching ``Reset`` function (the driver default).
    ``read()`` is the clock running now (``nvmlDeviceGetClockInfo``).
    """

    unit = "MHz"

    def __init__(self, gpu: Gpu, name: str, kind: str) -> None:
        self.gpu, self.name, self.kind = gpu, name, kind
        nvml = gpu.nvml
        self._clock = nvml.NVML_CLOCK_GRAPHICS if kind == "Gpu" else nvml.NVML_CLOCK_MEM

    def domain(self) -> list[int]:
        if self.kind == "Gpu":
            return _graphics_clocks(self.gpu)
        return sorted(set(self.gpu("nvmlDeviceGetSupportedMemoryClocks")))

    def read(self) -> int:
        return int(self.gpu("nvmlDeviceGetClockInfo", self._clock))

    def apply(self, value: int) -> int:
        self.gpu(f"nvmlDeviceSet{self.kind}LockedClocks", int(value), int(value))
        return self.read()

    def snapshot(self) -> dict:
        return {"locked": False}

    def restore(self, state: dict) -> None:
        self.gpu(f"nvmlDeviceReset{self.kind}LockedClocks")


class ApplicationClocksKnob:
    """The graphics application clock at a fixed memory clock (``memory_mhz``; default: the
    memory application clock in force). Application clocks have a getter, so restore is exact."""

    unit = "MHz"

    def __init__(self, gpu: Gpu, name: str, memory_mhz: int = 0) -> None:
        self.gpu, self.name = gpu, name
        nvml = gpu.nvml
        self._gfx, self._mem = nvml.NVML_CLOCK_GRAPHICS, nvml.NVML_CLOCK_MEM
        self.memory_mhz = memory_mhz or int(gpu("nvmlDeviceGetApplicationsClock", self._mem))

    def domain(self) -> list[int]:
        return _graphics_clocks(self.gpu, self.memory_mhz)

    def read(self) -> int:
        return int(self.gpu("nvmlDeviceGetApplicationsClock", self._gfx))

    def apply(self, value: int) -> int:
        self.gpu("nvmlDeviceSetApplicationsClocks", self.memory_mhz, int(value))
        return self.read()

    def snapshot(self) -> list[int]:
        return [int(self.gpu("nvmlDeviceGetApplicationsClock", self._mem)), self.read()]

    def restore(self, state: list[int]) -> None:
        self.gpu("nvmlDeviceSetApplicationsClocks", int(state[0]), int(state[1]))


class PowerLimitKnob:
    """The board power limit in watts, on a grid of ``step_w`` between the device's constraints
    (both ends included). NVML works in milliwatts; the snapshot keeps the exact milliwatts."""

    unit = "W"

    def __init__(self, gpu: Gpu, name: str, step_w: int = 25) -> None:
        self.gpu, self.name, self.step_w = gpu, name, step_w

    def domain(self) -> list[int]:
        lo_mw, hi_mw = self.gpu("nvmlDeviceGetPowerManagementLimitConstraints")
        lo, hi = -(-int(lo_mw) // 1000), int(hi_mw) // 1000
        return sorted(set(range(lo, hi + 1, self.step_w)) | {hi})

    def read(self) -> Any:
        watts = self.gpu("nvmlDeviceGetPowerManagementLimit") / 1000
        return int(watts) if watts == int(watts) else watts

    def apply(self, value: int) -> Any:
        self.gpu("nvmlDeviceSetPowerManagementLimit", int(round(value * 1000)))
        return self.read()

    def snapshot(self) -> int:
        return int(self.gpu("nvmlDeviceGetPowerManagementLimit"))

    def restore(self, state: int) -> None:
        self.gpu("nvmlDeviceSetPowerManagementLimit", int(state))
