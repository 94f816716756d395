"""Hardware knobs, energy meters and the hardware context that restores them.

* :class:`EnergyReading` -- joules over a window, with source, resolution and wrap flag;
* :class:`HardwareContext` -- applies knob values, restores them on every exit path, keeps a
  recovery file; :func:`restore_from_file` undoes a run that was killed hard;
* :mod:`thrifty.hw.sysfs` -- sysfs-backed knobs shared by the CPU and Jetson plugins;
* :class:`SamplingMeter` -- integrates a sampled power signal (NVML fallback, INA3221).
"""

from .context import HardwareContext, default_recovery_file, restore_from_file
from .energy import EnergyReading, SamplingMeter, counter_delta, trapezoid_joules

__all__ = ["EnergyReading", "HardwareContext", "SamplingMeter", "counter_delta",
           "default_recovery_file", "restore_from_file", "trapezoid_joules"]
