"""Software knobs: settings of the workload itself (batch size, threads, dtype, draft, lookahead).

They follow the same :class:`thrifty.protocols.Knob` protocol as hardware knobs, so one tuner and
one hardware context handle both, but applying one only records the value: the workload reads
it, either from the configuration a backend hands it on every run or, in-process, with
:func:`current`. The value lives in one process-wide table keyed by knob name (the software
analogue of a sysfs file), so a knob rebuilt by name sees and restores the same setting.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from ..errors import ConfigError, KnobDomainError
from ..records import HardwareKnobSpec, Option

_STATE: dict[str, Any] = {}


def current(name: str) -> Any:
    """The value last applied to software knob ``name`` in this process (its default if none)."""
    if name not in _STATE:
        raise ConfigError(f"no software knob {name!r} has been built in this process; "
                          f"built: {sorted(_STATE)}")
    return _STATE[name]


class SoftwareKnob:
    """A knob whose state is the recorded value; ``apply`` checks it against the domain."""

    def __init__(self, name: str, values: Sequence[Any], unit: str = "", default: Any = None):
        values = tuple(values)
        if not values:
            raise ConfigError(f"knob {name!r}: give at least one value")
        self.name = name
        self.unit = unit
        self._values = values
        default = values[0] if default is None else default
        if default not in values:
            raise ConfigError(f"knob {name!r}: default {default!r} is not among {list(values)}")
        if _STATE.get(name) not in values:
            _STATE[name] = default

    def domain(self) -> tuple:
        return self._values

    def read(self) -> Any:
        return _STATE[self.name]

    def apply(self, value: Any) -> Any:
        if value not in self._values:
            raise KnobDomainError(f"knob {self.name!r} has no value {value!r}; its domain is "
                                  f"{list(self._values)}")
        _STATE[self.name] = value
        return value

    def snapshot(self) -> Any:
        return _STATE[self.name]

    def restore(self, state: Any) -> None:
        _STATE[self.name] = state

    def __repr__(self) -> str:
        return f"SoftwareKnob({self.name!r}, {list(self._values)}, value={self.read()!r})"


def _parse_values(name: str, values: Any, cast: type) -> tuple:
    """Accept a list/tuple or a comma-separated string (as the CLI gives it)."""
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",") if v.strip()]
    try:
        return tuple(cast(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"knob {name!r}: values must be {cast.__name__}s, got {values!r}") \
            from exc


def registered_drafts() -> tuple[str, ...]:
    """``none`` (target-only) and every registered draft: the ``draft`` knob's default domain,
    read when the knob is built, so a third-party draft is as tunable as a built-in one."""
    from ..registry import registry

    return ("none", *registry().names("draft_models"))


def _factory(name: str, cast: type, unit: str, domain: Callable[[], tuple] | tuple):
    def build(values=None, default=None):
        if values is None:
            values = domain() if callable(domain) else domain
        parsed = _parse_values(name, values, cast)
        return SoftwareKnob(name, parsed, unit, None if default is None else cast(default))

    build.__name__ = f"build_{name.replace('-', '_')}_knob"
    return build


_VALUES = (list, tuple, str)

SOFTWARE_KNOBS: dict[str, tuple[type, str, tuple | Callable[[], tuple], str]] = {
    "batch-size": (int, "queries", (1, 2, 4, 8, 16, 32, 64), "queries served per batch"),
    "threads": (int, "threads", tuple(sorted({1, 2, 4, 8, 16, os.cpu_count() or 1})),
                "CPU threads the workload may use (torch.set_num_threads)"),
    "dtype": (str, "", ("float32", "bfloat16", "float16"), "numeric type of weights"),
    "draft": (str, "", registered_drafts,
              "speculative decoding's draft model (a draft name; 'none' decodes target-only)"),
    "lookahead": (int, "tokens", (0, 1, 2, 3, 4, 6, 8),
                  "tokens the draft proposes per target pass (γ; 0 = target-only)"),
}
"""Name -> (value type, unit, default domain or a function giving it, description) of each
built-in software knob."""


def software_knob_specs() -> list[HardwareKnobSpec]:
    """One ``HardwareKnobSpec`` per built-in software knob."""
    specs = []
    for name, (cast, unit, values, help_text) in SOFTWARE_KNOBS.items():
        specs.append(HardwareKnobSpec(
            name=name, unit=unit, factory=_factory(name, cast, unit, values),
            description=f"software knob: {help_text}; recorded for the workload to read",
            options={
                "values": Option((*_VALUES, type(None)), None if callable(values) else values,
                                 "the domain: a list or 'a,b,c'" + (
                                     " (default: read from the registry when built)"
                                     if callable(values) else "")),
                "default": Option((cast, type(None)), None, "value before tuning (first value)"),
            }))
    return specs
