"""One GPU through NVML, with NVML's errors turned into thrifty's.

``pynvml`` is imported here, lazily, so that listing plugins never loads the NVML library; tests
put a stand-in module (:class:`thrifty_nvml.fake.FakeNVML`) into ``sys.modules["pynvml"]``.
"""

from __future__ import annotations

import importlib
from typing import Any

from thrifty.errors import KnobError, NotSupportedError, PermissionDeniedError, ThriftyError


def load_nvml() -> Any:
    """The ``pynvml`` module, initialised (NVML reference-counts ``nvmlInit``)."""
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        raise NotSupportedError("thrifty-nvml needs the NVML bindings: "
                                "pip install nvidia-ml-py") from None
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise NotSupportedError(f"NVML did not initialise ({exc}): is an NVIDIA driver "
                                f"installed and a GPU visible?") from None
    return nvml


class Gpu:
    """An NVML device handle plus error translation; ``gpu("nvmlDeviceGetPowerUsage")`` calls
    the named function with the handle first. ``error`` is the class for unexpected failures
    (KnobError for knobs, MeterError for meters)."""

    def __init__(self, index: int = 0, error: type[ThriftyError] = KnobError) -> None:
        self.nvml = load_nvml()
        self.index, self.error = index, error
        count = self.call("nvmlDeviceGetCount")
        if not 0 <= index < count:
            raise error(f"no GPU with index {index}: NVML sees {count} device(s); use "
                        f"device=0..{count - 1}")
        self.handle = self.call("nvmlDeviceGetHandleByIndex", index)

    def __call__(self, function: str, *args: Any) -> Any:
        return self.call(function, self.handle, *args)

    def call(self, function: str, *args: Any) -> Any:
        nvml = self.nvml
        try:
            return getattr(nvml, function)(*args)
        except nvml.NVMLError as exc:
            code = getattr(exc, "value", None)
            where = f"GPU {self.index}: {function}"
            if code == nvml.NVML_ERROR_NO_PERMISSION:
                raise PermissionDeniedError(
                    f"{where} needs root: run as root (sudo) or have an administrator grant "
                    f"clock/power permissions (nvidia-smi -acp UNRESTRICTED for application "
                    f"clocks)") from None
            if code == nvml.NVML_ERROR_NOT_SUPPORTED:
                raise NotSupportedError(
                    f"{where} is not supported by this GPU or driver (locked clocks need Volta+, "
                    f"memory locks Ampere+, the energy counter Volta+)") from None
            raise self.error(f"{where} failed: NVML error {code} ({exc})") from None
