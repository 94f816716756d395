"""Registers the cpufreq knobs and the RAPL meter (sysfs only; nothing heavy to import)."""

from __future__ import annotations

from thrifty import EnergyMeterSpec, HardwareKnobSpec, Option, hookimpl

_ROOT = {"sysfs_root": Option(str, "/", "directory that holds sys/ (a fake tree in tests)")}
_CPUS = {**_ROOT, "cpus": Option(str, "all", "CPUs to set: 'all' or a list such as '0-3,8'"),
         "step_khz": Option(int, 100_000, "grid step where the driver lists no frequencies")}

_KNOBS = {
    "governor": ("", "cpufreq governor (scaling_governor) of the selected CPUs"),
    "min-freq": ("kHz", "cpufreq floor (scaling_min_freq)"),
    "max-freq": ("kHz", "cpufreq ceiling (scaling_max_freq)"),
    "freq": ("kHz", "pin the frequency: scaling_min_freq = scaling_max_freq"),
    "setspeed": ("kHz", "scaling_setspeed under the userspace governor (switched to and back)"),
}


def _knob(kind: str):
    def factory(**options):
        from .cpufreq import build

        return build(kind, f"cpu.{kind}", **options)
    return factory


def _rapl(**options):
    from .rapl import RaplMeter

    return RaplMeter("rapl", **options)


@hookimpl
def thrifty_hardware_knobs():
    return [HardwareKnobSpec(name=f"cpu.{kind}", unit=unit, description=text, options=_CPUS,
                             factory=_knob(kind))
            for kind, (unit, text) in _KNOBS.items()]


@hookimpl
def thrifty_energy_meters():
    return [EnergyMeterSpec(
        name="rapl", factory=_rapl, description="CPU package energy from RAPL (wrap-safe)",
        options={**_ROOT, "zones": Option(str, "package", "'package' or zone names such as "
                                                          "'intel-rapl:0,intel-rapl:0:0'")})]
