"""An in-process stand-in for ``pynvml``, for tests and dry runs: no driver, no real setter.

Put it where the plugin imports from::

    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML())

It behaves like one datacentre GPU: supported clocks, application clocks, locked clocks that
the current clock follows (capped by ``gpu_cap_mhz``, as a thermal cap would), a power limit
between constraints, an energy counter that grows at ``power_w``. ``privileged=False`` makes
setters fail with NO_PERMISSION; names in ``unsupported`` fail with NOT_SUPPORTED. With
``state_file`` the settable state lives in a JSON file, so several processes (a run that gets
killed, then ``thrifty hw restore``) see one device. Function names and arities match
nvidia-ml-py (a test checks).
"""

from __future__ import annotations

import json
import time
import types
from pathlib import Path

MEMORY_CLOCKS = [2619, 1593]
GRAPHICS_CLOCKS = [1980, 1755, 1530, 1305, 1080, 855, 630, 405]
IDLE_GRAPHICS_MHZ = 345
POWER_LIMITS_MW = (200_000, 700_000)
DEFAULT_STATE = {"locked_gpu": None, "locked_mem": None, "app": [2619, 1755],
                 "power_limit_mw": 700_000}


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {3: "Not Supported", 4: "Insufficient Permissions", 2: "Invalid Argument"}.get(
            self.value, f"NVML Error with code {self.value}")


class FakeNVML(types.ModuleType):
    NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM, NVML_CLOCK_MEM = 0, 1, 2
    NVML_ERROR_INVALID_ARGUMENT, NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_NO_PERMISSION = 2, 3, 4
    NVMLError = NVMLError

    def __init__(self, state_file: str | Path | None = None, *, privileged: bool = True,
                 unsupported: tuple[str, ...] = (), power_w: float = 120.0,
                 gpu_cap_mhz: int | None = None, energy_start_mj: int = 5_000_000,
                 counter_period_s: float = 0.0) -> None:
        super().__init__("pynvml")
        self.counter_period_s = counter_period_s
        self.state_file = Path(state_file) if state_file else None
        self.privileged, self.unsupported = privileged, set(unsupported)
        self.power_w, self.gpu_cap_mhz = power_w, gpu_cap_mhz
        self._energy0, self._t0 = energy_start_mj, time.monotonic()
        self._state = dict(DEFAULT_STATE)
        if self.state_file and self.state_file.exists():
            self._load()
        else:
            self._save()

    # -- state -------------------------------------------------------------------------------
    def _load(self) -> None:
        if self.state_file:
            self._state = json.loads(self.state_file.read_text())

    def _save(self) -> None:
        if self.state_file:
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._state))
            tmp.replace(self.state_file)

    @property
    def state(self) -> dict:
        """The settable state as a dict (read fresh from the state file, if any)."""
        self._load()
        return dict(self._state)

    def _enter(self, function: str, setter: bool = False) -> dict:
        if function in self.unsupported:
            raise NVMLError(self.NVML_ERROR_NOT_SUPPORTED)
        if setter and not self.privileged:
            raise NVMLError(self.NVML_ERROR_NO_PERMISSION)
        self._load()
        return self._state

    def _set(self, function: str, key: str, value) -> None:
        self._enter(function, setter=True)[key] = value
        self._save()

    # -- library -----------------------------------------------------------------------------
    def nvmlInit(self):
        return None

    def nvmlShutdown(self):
        return None

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, index):
        if index != 0:
            raise NVMLError(self.NVML_ERROR_INVALID_ARGUMENT)
        return "gpu0"

    def nvmlDeviceGetName(self, handle):
        return "Fake NVIDIA H100"

    # -- clocks ------------------------------------------------------------------------------
    def nvmlDeviceGetSupportedMemoryClocks(self, handle):
        self._enter("nvmlDeviceGetSupportedMemoryClocks")
        return list(MEMORY_CLOCKS)

    def nvmlDeviceGetSupportedGraphicsClocks(self, handle, memoryClockMHz):
        self._enter("nvmlDeviceGetSupportedGraphicsClocks")
        if memoryClockMHz not in MEMORY_CLOCKS:
            raise NVMLError(self.NVML_ERROR_INVALID_ARGUMENT)
        top = GRAPHICS_CLOCKS if memoryClockMHz == MEMORY_CLOCKS[0] else GRAPHICS_CLOCKS[2:]
        return list(top)

    def nvmlDeviceGetClockInfo(self, handle, type):
        state = self._enter("nvmlDeviceGetClockInfo")
        if type == self.NVML_CLOCK_MEM:
            return state["locked_mem"][1] if state["locked_mem"] else MEMORY_CLOCKS[0]
        clock = state["locked_gpu"][1] if state["locked_gpu"] else IDLE_GRAPHICS_MHZ
        return min(clock, self.gpu_cap_mhz) if self.gpu_cap_mhz else clock

    def nvmlDeviceGetApplicationsClock(self, handle, type):
        state = self._enter("nvmlDeviceGetApplicationsClock")
        return state["app"][0] if type == self.NVML_CLOCK_MEM else state["app"][1]

    def _check_range(self, lo, hi, allowed) -> None:
        if not (min(allowed) <= lo <= hi <= max(allowed)):
            raise NVMLError(self.NVML_ERROR_INVALID_ARGUMENT)

    def nvmlDeviceSetGpuLockedClocks(self, handle, minGpuClockMHz, maxGpuClockMHz):
        self._check_range(minGpuClockMHz, maxGpuClockMHz, GRAPHICS_CLOCKS)
        self._set("nvmlDeviceSetGpuLockedClocks", "locked_gpu", [minGpuClockMHz, maxGpuClockMHz])

    def nvmlDeviceResetGpuLockedClocks(self, handle):
        self._set("nvmlDeviceResetGpuLockedClocks", "locked_gpu", None)

    def nvmlDeviceSetMemoryLockedClocks(self, handle, minMemClockMHz, maxMemClockMHz):
        self._check_range(minMemClockMHz, maxMemClockMHz, MEMORY_CLOCKS)
        self._set("nvmlDeviceSetMemoryLockedClocks", "locked_mem", [minMemClockMHz, maxMemClockMHz])

    def nvmlDeviceResetMemoryLockedClocks(self, handle):
        self._set("nvmlDeviceResetMemoryLockedClocks", "locked_mem", None)

    def nvmlDeviceSetApplicationsClocks(self, handle, maxMemClockMHz, maxGraphicsClockMHz):
        if maxGraphicsClockMHz not in self.nvmlDeviceGetSupportedGraphicsClocks(handle,
                                                                                maxMemClockMHz):
            raise NVMLError(self.NVML_ERROR_INVALID_ARGUMENT)
        self._set("nvmlDeviceSetApplicationsClocks", "app", [maxMemClockMHz, maxGraphicsClockMHz])

    # -- power and energy --------------------------------------------------------------------
    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle):
        self._enter("nvmlDeviceGetPowerManagementLimitConstraints")
        return list(POWER_LIMITS_MW)

    def nvmlDeviceGetPowerManagementLimit(self, handle):
        return self._enter("nvmlDeviceGetPowerManagementLimit")["power_limit_mw"]

    def nvmlDeviceSetPowerManagementLimit(self, handle, limit):
        if not POWER_LIMITS_MW[0] <= limit <= POWER_LIMITS_MW[1]:
            raise NVMLError(self.NVML_ERROR_INVALID_ARGUMENT)
        self._set("nvmlDeviceSetPowerManagementLimit", "power_limit_mw", limit)

    def nvmlDeviceGetPowerUsage(self, handle):
        self._enter("nvmlDeviceGetPowerUsage")
        return int(self.power_w * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        self._enter("nvmlDeviceGetTotalEnergyConsumption")
        elapsed = time.monotonic() - self._t0
        if self.counter_period_s:  # the driver adds to the counter once a period (H100: ~0.1 s)
            elapsed -= elapsed % self.counter_period_s
        return int(self._energy0 + self.power_w * elapsed * 1000)
