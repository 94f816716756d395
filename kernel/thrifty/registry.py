"""The typed facade in front of the plugin manager: user code never touches pluggy.

``thrifty.registry()`` returns the process-wide registry, loaded from entry points on first use.
Every lookup is by name and fails with a message that lists what is registered.
"""

from __future__ import annotations

from .checks import did_you_mean
from .errors import UnknownNameError
from .plugins import PluginInfo, PluginManager
from .records import (
    FAMILIES,
    CommandSpec,
    DraftModelSpec,
    EnergyMeterSpec,
    HardwareKnobSpec,
    OptimizerSpec,
    SamplerSpec,
    SparseLayerSpec,
    Record,
    VerifierSpec,
)


class Registry:
    """Typed access to everything plugins registered."""

    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager

    def names(self, family: str) -> list[str]:
        return sorted(self.manager.records(family))

    def get(self, family: str, name: str) -> Record:
        """The record called ``name`` in ``family``, or an error listing the registered names."""
        if family not in FAMILIES:
            raise UnknownNameError(f"unknown hook family {family!r}; families: {sorted(FAMILIES)}")
        found = self.manager.records(family)
        if name not in found:
            hint = did_you_mean(name, found)
            listed = ", ".join(sorted(found)) or "(none: is the plugin installed?)"
            raise UnknownNameError(
                f"no {family.replace('_', ' ')[:-1]} named {name!r}.{hint} Registered: {listed}. "
                f"`thrifty plugins` shows which plugin provides what."
            )
        return found[name]

    def preferred(self, family: str) -> str:
        """The name of ``family``'s record of highest ``priority`` (ties: the first name): the
        default where a command names none, so the core names no plugin and installing a
        better part changes the default."""
        specs = [self.get(family, n) for n in self.names(family)]
        if not specs:
            raise UnknownNameError(f"no {family.replace('_', ' ')[:-1]} is registered; "
                                   f"`thrifty plugins` shows what loaded")
        return min(specs, key=lambda s: (-s.priority, s.name)).name

    def draft_model(self, name: str) -> DraftModelSpec:
        return self.get("draft_models", name)  # type: ignore[return-value]

    def verifier(self, name: str) -> VerifierSpec:
        return self.get("verifiers", name)  # type: ignore[return-value]

    def hardware_knob(self, name: str) -> HardwareKnobSpec:
        return self.get("hardware_knobs", name)  # type: ignore[return-value]

    def energy_meter(self, name: str) -> EnergyMeterSpec:
        return self.get("energy_meters", name)  # type: ignore[return-value]

    def optimizer(self, name: str) -> OptimizerSpec:
        return self.get("optimizers", name)  # type: ignore[return-value]

    def sparse_layer(self, name: str) -> SparseLayerSpec:
        return self.get("sparse_layers", name)  # type: ignore[return-value]

    def sampler(self, name: str) -> SamplerSpec:
        return self.get("samplers", name)  # type: ignore[return-value]

    def command(self, name: str) -> CommandSpec:
        return self.get("commands", name)  # type: ignore[return-value]

    def commands(self) -> dict[str, CommandSpec]:
        """Every registered CLI sub-command, by name."""
        return self.manager.records("commands")  # type: ignore[return-value]

    def plugins(self) -> list[PluginInfo]:
        return self.manager.plugins()


_default: Registry | None = None


def registry() -> Registry:
    """The process-wide registry, loading entry points on first call."""
    global _default
    if _default is None:
        _default = Registry(PluginManager().load_entry_points())
    return _default


def reset_registry() -> None:
    """Forget the process-wide registry (tests; after installing a plugin at run time)."""
    global _default
    _default = None
