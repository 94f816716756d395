"""Registers the ``zeus`` energy meter. Nothing here imports zeus: the factory does, so the
meter is listed (and ``thrifty plugins`` works) where zeus is not installed."""

from thrifty import EnergyMeterSpec, Option, hookimpl


def _meter(device: int, approx_instant_energy: bool):
    from .meter import ZeusEnergyMeter

    return ZeusEnergyMeter("zeus", device, approx_instant_energy)


@hookimpl
def thrifty_energy_meters():
    return [EnergyMeterSpec(
        name="zeus", factory=_meter,
        options={"device": Option(int, 0, "CUDA device index (CUDA_VISIBLE_DEVICES applies)"),
                 "approx_instant_energy": Option(
                     bool, True, "a window shorter than the energy counter's update period "
                                 "reads instantaneous power x time instead of 0")},
        description="GPU energy through Zeus's ZeusMonitor (begin_window / end_window); "
                    "needs `pip install zeus`")]
