"""Pipelines: speculative decoding assembled by name from registered parts.

Python and TOML are equivalent::

    pipe = thrifty.pipeline(verifier=("hf", {"model": "smollm2-135m"}),
                            drafts=[("hf", {"model": "smollm2-draft-l2"}), ("ngram", {})])

    [speculative]
    verifier = { plugin = "hf", model = "smollm2-135m" }
    drafts = [ { plugin = "hf", model = "smollm2-draft-l2" }, { plugin = "ngram" } ]
    lookahead = 4            # a tree: "4x2:8"; by batch size: [[1, 4, "3x2:6"], [5, 64, 2]]

Assembly validates every name and option against the registry before any model is loaded;
models load on first use and are kept. From Python, ``thrifty.pipeline.from_config(path)``
assembles the TOML (a file, TOML text or a dict) and ``thrifty.pipeline.load_config(path)`` reads
it into a dict (to add ``[generate]`` or ``[sampling]`` settings of your own).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, Mapping, Sequence

import attrs

from .checks import check_keys
from .errors import ConfigError
from .files import parse_toml, read_toml
from .records import Option, Spec, check_options
from .registry import Registry, registry as default_registry


@attrs.frozen
class Part:
    """A registered part chosen by name, with its options already validated."""

    spec: Spec
    options: Mapping[str, Any]

    @property
    def label(self) -> str:
        """The plugin's name with its model and every other option set away from its default
        (placement, ``device`` and ``dtype``, aside: a run sets it for all its parts alike),
        so that two parts of one plugin configured differently are told apart where profiles
        and schedules key drafts by label."""
        shown = {k: v for k, v in self.options.items() if k == "model"}
        shown.update((k, v) for k, v in self.options.items()
                     if k not in ("model", *PLACEMENT) and v != self.spec.options[k].default)
        extra = ",".join(f"{k}={v}" for k, v in shown.items())
        return f"{self.spec.name}({extra})" if extra else self.spec.name


PLACEMENT = ("device", "dtype")
"""Options that place a part rather than configure it; :attr:`Part.label` leaves them out."""


def _part(reg: Registry, family: str, ref: Any) -> Part:
    """Resolve ``("name", {options})``, ``"name"`` or ``{"plugin": "name", **options}``."""
    if isinstance(ref, str):
        name, options = ref, {}
    elif isinstance(ref, Mapping):
        if "plugin" not in ref:
            raise ConfigError(f"a {family} entry needs plugin = \"<name>\"; got {dict(ref)}")
        options = {k: v for k, v in ref.items() if k != "plugin"}
        name = ref["plugin"]
    elif isinstance(ref, (tuple, list)) and len(ref) == 2 and isinstance(ref[1], Mapping):
        name, options = ref
    else:
        raise ConfigError(
            f"cannot read {family} entry {ref!r}: use \"name\", (\"name\", {{options}}) or "
            f"{{ plugin = \"name\", ... }}"
        )
    if not isinstance(name, str):
        raise ConfigError(f"a {family} entry names its plugin with a string; got {name!r}")
    spec = reg.get(family, name)
    return Part(spec, check_options(f"{family} {name!r}", spec.options, options))


class Pipeline:
    """A verifier, candidate drafts and decoding settings; builds decoders on demand."""

    def __init__(self, verifier: Part, drafts: Sequence[Part], lookahead: Any = 4) -> None:
        self.verifier_part = verifier
        self.draft_parts = list(drafts)
        self.lookahead = lookahead
        self._verifier = None
        self._drafts: dict[int, Any] = {}

    @property
    def verifier(self):
        """The verifier, loaded on first use."""
        if self._verifier is None:
            self._verifier = self.verifier_part.spec.factory(**self.verifier_part.options)
        return self._verifier

    def draft_index(self, draft: int | str | None) -> int | None:
        """Index of a draft given by position or by label/name; None for target-only."""
        if draft is None or isinstance(draft, int):
            if draft is not None and not 0 <= draft < len(self.draft_parts):
                raise ConfigError(f"draft index {draft} out of range; "
                                  f"pipeline has {len(self.draft_parts)} draft(s)")
            return draft
        labels = [p.label for p in self.draft_parts]
        for i, p in enumerate(self.draft_parts):
            if draft in (p.label, p.spec.name, p.options.get("model")):
                return i
        raise ConfigError(f"pipeline has no draft {draft!r}; drafts: {labels}")

    def draft(self, draft: int | str):
        i = self.draft_index(draft)
        if i not in self._drafts:
            part = self.draft_parts[i]
            self._drafts[i] = part.spec.factory(self.verifier, **part.options)
        return self._drafts[i]

    def decoder(self, draft: int | str | None = 0, lookahead: Any = None):
        """A :class:`SpeculativeDecoder`; ``draft=None`` (or no drafts) decodes target-only."""
        from .speculative import SpeculativeDecoder

        if not self.draft_parts:
            draft = None
        d = None if draft is None else self.draft(draft)
        return SpeculativeDecoder(self.verifier, d,
                                  self.lookahead if lookahead is None else lookahead)

    def generate(self, prompts, *, draft: int | str | None = 0, **kwargs):
        return self.decoder(draft).generate(prompts, **kwargs)


def pipeline(verifier: Any, drafts: Sequence[Any] = (), lookahead: Any = 4,
             registry: Registry | None = None) -> Pipeline:
    """Assemble a pipeline by name; wrong names and options fail here, before loading models."""
    from .speculative import BatchLookahead, FixedTree, TreeShape

    reg = registry or default_registry()
    if isinstance(lookahead, (list, tuple)):
        lookahead = BatchLookahead(lookahead)
    elif isinstance(lookahead, str):
        lookahead = TreeShape.parse(lookahead)
    if isinstance(lookahead, TreeShape):  # TOML text, or the CLI's parsed --lookahead
        lookahead = FixedTree(lookahead)
    if isinstance(lookahead, bool) or not isinstance(lookahead, int) and not hasattr(
            lookahead, "gamma"):
        raise ConfigError(f"lookahead must be an int >= 0, a token tree's shape such as "
                          f"\"4x2:8\", a schedule of [batch_start, batch_end, gamma] ranges or "
                          f"a policy; got {lookahead!r}")
    if isinstance(lookahead, int) and lookahead < 0:
        raise ConfigError(f"lookahead must be >= 0; got {lookahead}")
    if isinstance(drafts, (str, Mapping)):
        drafts = [drafts]
    if not isinstance(drafts, (list, tuple)):
        raise ConfigError(f"drafts must be a list of draft entries; got {drafts!r}")
    parts = [_part(reg, "draft_models", d) for d in drafts]
    labels = [p.label for p in parts]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ConfigError(f"drafts {twice} are given more than once with the same options; "
                          f"list each draft once (drafts of one plugin must differ in an "
                          f"option, e.g. their model)")
    return Pipeline(_part(reg, "verifiers", verifier), parts, lookahead)


def load_config(source: str | Path) -> dict:
    """Read a TOML pipeline file (or TOML text) into a dict, with a clear error when malformed."""
    if str(source).lstrip().startswith("["):
        return parse_toml(str(source), "config text")
    return read_toml(source, "config file")


RUN_TABLES: dict[str, dict[str, Option]] = {
    "generate": {
        "prompts": Option(list, help="prompt strings"),
        "max_new_tokens": Option(int, help="tokens to generate per prompt"),
        "stop": Option(list, help="stop strings"),
        "batch_size": Option(int, help="rows decoded at once"),
    },
    "sampling": {
        "temperature": Option(float, help="0 = greedy"),
        "top_k": Option(int, help="0 = off"),
        "top_p": Option(float, help="1 = off"),
    },
}
"""The tables a pipeline file may hold beside ``[speculative]``, and their keys."""


def run_settings(config: Mapping[str, Any], source: str = "config") -> dict[str, dict]:
    """The ``[generate]`` and ``[sampling]`` tables of a pipeline config, checked: unknown
    tables and keys (with a "did you mean"), types (``prompts = "abc"`` is not three prompts),
    and the sampling ranges. Only the keys given are returned, so that command-line flags
    fill the rest. ``source`` (the file) starts every message."""
    from .speculative.sampling import Sampling

    check_keys(source, config, ["speculative", *RUN_TABLES], noun="table")
    out = {}
    for name, declared in RUN_TABLES.items():
        table = config.get(name, {})
        where = f"{source} [{name}]"
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where} must be a table ([{name}] with key = value lines); "
                              f"got {table!r}")
        check_keys(where, table, declared, noun="key")
        out[name] = {k: declared[k].check(where, k, v) for k, v in table.items()}
    for key in ("prompts", "stop"):
        values = out["generate"].get(key, [])
        if not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{source} [generate]: {key} must be a list of strings; got "
                              f"{values!r}")
    try:
        Sampling(**out["sampling"])
    except ConfigError as exc:
        raise ConfigError(f"{source} [sampling]: {exc}") from None
    return out


def from_config(config: Mapping[str, Any] | str | Path,
                registry: Registry | None = None) -> Pipeline:
    """Assemble a pipeline from a ``[speculative]`` table (a dict, TOML text or a file path)."""
    if not isinstance(config, Mapping):
        config = load_config(config)
    table = config.get("speculative")
    if not isinstance(table, Mapping) or "verifier" not in table:
        raise ConfigError("config needs a [speculative] table with verifier = { plugin = ... }")
    check_keys("[speculative]", table, ["verifier", "drafts", "lookahead"])
    return pipeline(table["verifier"], table.get("drafts", ()), table.get("lookahead", 4),
                    registry=registry)


class _PipelineModule(types.ModuleType):
    """``thrifty.pipeline`` is this module (``thrifty.pipeline.from_config``,
    ``thrifty.pipeline.load_config``) and, called, the :func:`pipeline` function: one name, so
    that ``import thrifty.pipeline`` and ``thrifty.pipeline(...)`` both mean what they say."""

    def __call__(self, *args: Any, **kwargs: Any) -> Pipeline:
        return pipeline(*args, **kwargs)


sys.modules[__name__].__class__ = _PipelineModule
