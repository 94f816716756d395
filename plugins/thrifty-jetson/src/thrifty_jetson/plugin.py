"""Registers the Jetson knobs and the INA3221 meter (sysfs and a subprocess; nothing heavy)."""

from __future__ import annotations

from thrifty import EnergyMeterSpec, HardwareKnobSpec, Option, hookimpl

_ROOT = {"sysfs_root": Option(str, "/", "directory that holds sys/ and etc/ (a fake tree in "
                                        "tests)")}
_GEN = {**_ROOT, "generation": Option(str, "auto", "tx2, xavier, orin, jp6 or auto",
                                      choices=("auto", "tx2", "xavier", "orin", "jp6"))}


def _gpu(kind: str):
    def factory(**options):
        from .knobs import gpu_knob

        return gpu_knob(kind, f"jetson.gpu-{kind}", **options)
    return factory


def _emc(**options):
    from .knobs import EmcKnob

    return EmcKnob("jetson.emc", **options)


def _nvpmodel(**options):
    from .knobs import NvpmodelKnob

    return NvpmodelKnob("jetson.nvpmodel", **options)


def _ina(**options):
    from .ina3221 import ina3221_meter

    return ina3221_meter("jetson.ina3221", **options)


@hookimpl
def thrifty_hardware_knobs():
    gpu = {"freq": "pin the GPU clock: devfreq min_freq = max_freq",
           "min-freq": "GPU devfreq floor (min_freq)", "max-freq": "GPU devfreq ceiling"}
    return [HardwareKnobSpec(name=f"jetson.gpu-{k}", unit="Hz", options=_GEN, factory=_gpu(k),
                             description=text) for k, text in gpu.items()] + [
        HardwareKnobSpec(name="jetson.emc", unit="Hz", options=_ROOT, factory=_emc,
                         description="memory (EMC) clock, locked through BPMP debugfs"),
        HardwareKnobSpec(name="jetson.nvpmodel", unit="", factory=_nvpmodel,
                         options={**_ROOT, "command": Option(str, "nvpmodel", "nvpmodel program")},
                         description="power mode (nvpmodel -m); apply before clock knobs"),
    ]


@hookimpl
def thrifty_energy_meters():
    return [EnergyMeterSpec(
        name="jetson.ina3221", factory=_ina,
        options={**_GEN, "rails": Option(str, "", "rail labels, comma-separated (default: "
                                                  "VDD_IN if present, else all)"),
                 "period_s": Option(float, 0.01, "sampling period")},
        description="board power from the INA3221 rail monitors, sampled and integrated")]
