"""Typed, frozen records that registration hooks return.

A plugin never hands the core a bare class or function: it yields one record per thing it
provides (``DraftModelSpec(name="ngram", factory=..., options={...})``). The core validates each
record, stamps the providing plugin and distribution on it (provenance), and rejects duplicate
names. Options are declared, so that pipelines are checked at assembly time, before any model is
loaded.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping

import attrs

from .checks import check_keys
from .errors import ConfigError

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""Default of an option that the user must always give."""


@attrs.frozen
class Option:
    """One declared option of a registered part: its type, default and meaning.

    ``type`` is a Python type (or a tuple of types) that the value must be an instance of;
    ``int`` values are accepted where ``float`` is declared. ``choices`` restricts the value.
    """

    type: type | tuple[type, ...]
    default: Any = REQUIRED
    help: str = ""
    choices: tuple[Any, ...] | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, owner: str, key: str, value: Any) -> Any:
        """Return ``value`` if it fits this option, else raise a ConfigError naming the fix."""
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in types:
            ok = False
        else:
            ok = isinstance(value, types)
        if not ok:
            wanted = " or ".join(t.__name__ for t in types)
            raise ConfigError(
                f"{owner}: option {key!r} must be {wanted}, got {type(value).__name__} {value!r}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{owner}: option {key!r} must be a finite number, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"{owner}: option {key!r} must be one of {list(self.choices)}, got {value!r}"
            )
        return value

    def parse(self, owner: str, key: str, text: str) -> Any:
        """The value that command-line ``text`` means for this option, by its declared type:
        a bool (true/false, yes/no, on/off, 1/0), an int, a float, None (``none``), the text
        itself where ``str`` is declared, else comma-separated items for a list or tuple.
        A number is preferred where both a number and ``str`` are declared; the result still
        goes through :meth:`check` when the part is built."""
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        lowered = text.strip().lower()
        if bool in types and lowered in _BOOLS:
            return _BOOLS[lowered]
        for kind in (int, float):
            if kind in types:
                try:
                    return kind(text)
                except ValueError:
                    pass
        if type(None) in types and lowered in ("none", "null"):
            return None
        if str in types:
            return text
        for kind in (list, tuple):
            if kind in types:
                return kind(v.strip() for v in text.split(",") if v.strip())
        wanted = " or ".join(t.__name__ for t in types)
        raise ConfigError(f"{owner}: option {key!r} must be {wanted}; cannot read {text!r} as one")


_BOOLS = {"true": True, "yes": True, "on": True, "1": True,
          "false": False, "no": False, "off": False, "0": False}


def check_options(owner: str, declared: Mapping[str, Option], given: Mapping[str, Any]) -> dict:
    """Validate user options against a declaration; return them with defaults filled in."""
    check_keys(owner, given, declared, noun="option")
    out = {}
    for key, opt in declared.items():
        if key in given:
            out[key] = opt.check(owner, key, given[key])
        elif opt.required:
            raise ConfigError(
                f"{owner}: option {key!r} is required ({opt.help or opt.type}); add {key} = ..."
            )
        else:
            out[key] = opt.default
    return out


def _check_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(
            f"{type(instance).__name__}.name must be lower-case letters, digits, '.', '_' or '-' "
            f"starting with a letter or digit; got {value!r}"
        )


def _check_callable(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not callable(value):
        raise ConfigError(
            f"{type(instance).__name__} {instance.name!r}: {attribute.name} must be callable")


@attrs.frozen(kw_only=True)
class Record:
    """Fields every registered record has. Provenance is filled in by the core, not the plugin."""

    name: str = attrs.field(validator=_check_name)
    description: str = ""
    plugin: str | None = None
    distribution: str | None = None
    version: str | None = None

    family: str = attrs.field(init=False, default="")

    def provenance(self) -> str:
        """Human-readable origin, used in every error that mentions this record."""
        dist = self.distribution or "?"
        ver = f" {self.version}" if self.version else ""
        return f"{self.name!r} from plugin {self.plugin or '?'} ({dist}{ver})"


@attrs.frozen(kw_only=True)
class Spec(Record):
    """A registered part: something built from declared options by a factory."""

    factory: Callable[..., Any] = attrs.field(validator=_check_callable)
    options: Mapping[str, Option] = attrs.field(factory=dict, converter=dict)

    def build(self, *args: Any, **options: Any) -> Any:
        """Validate ``options`` against the declaration and call the factory."""
        checked = check_options(f"{self.family} {self.name!r}", self.options, options)
        return self.factory(*args, **checked)


@attrs.frozen(kw_only=True)
class EngineSettings:
    """How engines other than thrifty run a draft: what ``thrifty select`` exports for it.

    ``vllm``: vLLM ``speculative_config`` entries besides the lookahead (``method``, ``model``,
    ``prompt_lookup_max``, ...). ``transformers``: ``generate()`` keyword arguments besides the
    lookahead (an ``assistant_model`` value is the folder to load it from). ``assistant``: entries
    of that assistant model's ``generation_config``, where transformers reads the assistant's
    lookahead and schedule (not from ``generate()``). ``transformers_gamma`` names the setting
    that takes γ: an ``assistant`` entry when ``assistant`` is given, else a ``generate()``
    argument. ``prepare``: a command to run first, such as the one that writes the checkpoint
    ``model`` names, or ``""``.
    """

    vllm: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)
    transformers: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)
    assistant: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)
    transformers_gamma: str = ""
    prepare: str = ""


@attrs.frozen(kw_only=True)
class DraftModelSpec(Spec):
    """A draft model for speculative decoding.

    ``factory(verifier, **options)`` returns an object following
    :class:`thrifty.protocols.DraftModel`; it receives the verifier so that it can share its
    tokenizer or embedding and check that the vocabularies agree.

    ``export(options)`` returns the :class:`EngineSettings` that run the same draft in vLLM and
    transformers (``options``: the draft's, defaults filled in), or None where no other engine
    runs this draft; ``export=None``: none ever does. The draft's plugin knows what its draft
    is elsewhere; the core only prints it.
    """

    export: Callable[[Mapping[str, Any]], EngineSettings | None] | None = None
    family: str = attrs.field(init=False, default="draft_models")


@attrs.frozen(kw_only=True)
class VerifierSpec(Spec):
    """A target model that scores drafts. ``factory(**options)`` returns a
    :class:`thrifty.protocols.Verifier`."""

    priority: int = 0
    """``generate``, ``profile`` and ``select`` use the registered verifier of highest priority
    when none is named (ties: the first name in sorted order), so the core names no plugin."""
    family: str = attrs.field(init=False, default="verifiers")


@attrs.frozen(kw_only=True)
class HardwareKnobSpec(Spec):
    """A hardware knob (GPU clock, memory clock, CPU frequency, power limit, ...).

    ``factory(**options)`` returns a :class:`thrifty.protocols.Knob`. ``unit`` names what the
    values measure (``"MHz"``, ``"W"``, ``"kHz"``).
    """

    unit: str = ""
    family: str = attrs.field(init=False, default="hardware_knobs")


@attrs.frozen(kw_only=True)
class EnergyMeterSpec(Spec):
    """An energy meter. ``factory(**options)`` returns a :class:`thrifty.protocols.EnergyMeter`."""

    family: str = attrs.field(init=False, default="energy_meters")


@attrs.frozen(kw_only=True)
class OptimizerSpec(Spec):
    """An ask/tell optimizer over a discrete configuration space.

    ``factory(space, objective, constraints, seed, **options)`` returns a
    :class:`thrifty.protocols.Optimizer`.
    """

    priority: int = 0
    """The tuner uses the registered optimizer of highest priority when none is named (ties: the
    first name in sorted order), so installing a better optimizer changes the default without
    the core naming it."""
    family: str = attrs.field(init=False, default="optimizers")


@attrs.frozen(kw_only=True)
class SparseLayerSpec(Spec):
    """A layer that computes few of its neurons (SLIDE) or replaces dense work (PairConnect).

    ``factory(in_features, out_features, **options)`` returns a ``torch.nn.Module`` following
    :class:`thrifty.protocols.SparseLayer`.
    """

    family: str = attrs.field(init=False, default="sparse_layers")


@attrs.frozen(kw_only=True)
class SamplerSpec(Spec):
    """A locality-sensitive-hash neuron sampler.

    ``factory(dim, **options)`` returns a :class:`thrifty.protocols.Sampler`.
    """

    family: str = attrs.field(init=False, default="samplers")


@attrs.frozen(kw_only=True)
class CommandSpec(Record):
    """A ``thrifty`` sub-command. ``configure(parser)`` adds arguments to its
    ``argparse.ArgumentParser`` (keep it cheap: it runs whenever the CLI starts); ``run(args)``
    does the work and returns an exit code (None means 0). ``description`` is its help line."""

    configure: Callable[[Any], None] = attrs.field(validator=_check_callable)
    run: Callable[[Any], int | None] = attrs.field(validator=_check_callable)
    family: str = attrs.field(init=False, default="commands")


FAMILIES: dict[str, type[Record]] = {
    "draft_models": DraftModelSpec,
    "verifiers": VerifierSpec,
    "hardware_knobs": HardwareKnobSpec,
    "energy_meters": EnergyMeterSpec,
    "optimizers": OptimizerSpec,
    "sparse_layers": SparseLayerSpec,
    "samplers": SamplerSpec,
    "commands": CommandSpec,
}
"""Hook family name -> record type. The hook for family ``f`` is ``thrifty_f``."""
