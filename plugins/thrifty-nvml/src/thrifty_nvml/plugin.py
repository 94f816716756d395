"""Registers the NVML knobs and meter. Nothing here imports pynvml: factories do, when built."""

from __future__ import annotations

from thrifty import EnergyMeterSpec, HardwareKnobSpec, Option, hookimpl

_DEVICE = {"device": Option(int, 0, "GPU index as NVML numbers it (nvidia-smi order)")}


def _locked(kind: str, name: str):
    def build(device: int):
        from .device import Gpu
        from .knobs import LockedClocksKnob

        return LockedClocksKnob(Gpu(device), name, kind)

    return build


def _application_clocks(device: int, memory_mhz: int):
    from .device import Gpu
    from .knobs import ApplicationClocksKnob

    return ApplicationClocksKnob(Gpu(device), "nvml.app-clocks", memory_mhz)


def _power_limit(device: int, step_w: int):
    from .device import Gpu
    from .knobs import PowerLimitKnob

    return PowerLimitKnob(Gpu(device), "nvml.power-limit", step_w)


def _meter(device: int, mode: str, period_s: float):
    from .meter import NvmlEnergyMeter

    return NvmlEnergyMeter("nvml", device, mode, period_s)


@hookimpl
def thrifty_hardware_knobs():
    return [
        HardwareKnobSpec(name="nvml.gpu-locked-clocks", unit="MHz", options=_DEVICE,
                         factory=_locked("Gpu", "nvml.gpu-locked-clocks"),
                         description="lock the GPU graphics clock (min = max; Volta+, root)"),
        HardwareKnobSpec(name="nvml.mem-locked-clocks", unit="MHz", options=_DEVICE,
                         factory=_locked("Memory", "nvml.mem-locked-clocks"),
                         description="lock the GPU memory clock (min = max; Ampere+, root)"),
        HardwareKnobSpec(name="nvml.app-clocks", unit="MHz", factory=_application_clocks,
                         options={**_DEVICE, "memory_mhz": Option(
                             int, 0, "memory clock to pair with (0: the one in force)")},
                         description="graphics application clock at a fixed memory clock"),
        HardwareKnobSpec(name="nvml.power-limit", unit="W", factory=_power_limit,
                         options={**_DEVICE, "step_w": Option(int, 25, "grid step in watts")},
                         description="board power limit (root)"),
    ]


@hookimpl
def thrifty_energy_meters():
    return [EnergyMeterSpec(
        name="nvml", factory=_meter,
        options={**_DEVICE,
                 "mode": Option(str, "auto", "counter, sampling, or auto (counter if it works)",
                                choices=("auto", "counter", "sampling")),
                 "period_s": Option(float, 0.02, "power sampling period (sampling mode)")},
        description="GPU energy: NVML total-energy counter, power sampling as fallback")]
