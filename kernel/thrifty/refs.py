"""Parts named on the command line: ``NAME[:VALUE][,KEY=VALUE...]``.

``VALUE`` is the part's first required option (the ``model`` of an HF draft, the ``weights`` of
a PairConnect one), so ``hf:smollm2-draft-l2`` works for any plugin without the CLI knowing
which option that is; each ``KEY=VALUE`` sets any other declared option, read by the type the
record declares (``ngram,max_ngram=4``, ``hf:smollm2-draft-l2,dtype=bfloat16``).
"""

from __future__ import annotations

from typing import Any

from .checks import did_you_mean
from .errors import ConfigError
from .records import Spec


def split_ref(text: str) -> tuple[str, str, dict[str, str]]:
    """``NAME[:VALUE][,KEY=VALUE...]`` -> (name, value, {key: text})."""
    head, *pairs = text.split(",")
    name, _, value = head.partition(":")
    options = {}
    for pair in pairs:
        key, eq, raw = pair.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"cannot read {pair!r} in {text!r}; write NAME[:VALUE],KEY=VALUE")
        options[key.strip()] = raw.strip()
    return name.strip(), value.strip(), options


def ref_options(spec: Spec, value: str, pairs: dict[str, str]) -> dict[str, Any]:
    """The options that ``value`` and ``KEY=VALUE`` pairs give ``spec``, typed by its record."""
    owner = f"{spec.family.replace('_', ' ')[:-1]} {spec.name!r}"
    options: dict[str, Any] = {}
    if value:
        required = [k for k, opt in spec.options.items() if opt.required]
        if not required:
            raise ConfigError(f"{owner} has no required option to take {value!r}; give it as "
                              f"plain {spec.name!r} (options: {', '.join(spec.options) or 'none'})")
        options[required[0]] = value
    for key, text in pairs.items():
        if key not in spec.options:
            raise ConfigError(f"{owner} has no option {key!r}.{did_you_mean(key, spec.options)} "
                              f"It accepts: {', '.join(sorted(spec.options)) or '(none)'}")
        options[key] = spec.options[key].parse(owner, key, text)
    return options


def plugin_ref(text: str, family: str, registry) -> tuple[str, dict[str, Any]]:
    """A ``--draft`` or ``--verifier`` argument (``family``: "draft_models" or "verifiers") as
    ``(name, options)`` for :func:`thrifty.pipeline`."""
    name, value, pairs = split_ref(text)
    return name, ref_options(registry.get(family, name), value, pairs)
