"""The configuration of a training run and the rules its values follow (no torch here:
``thrifty train --help`` and ``thrifty plugins`` must not import it)."""

from __future__ import annotations

from typing import Any, Callable

import attrs

from thrifty.errors import ConfigError


def _at_least(minimum: int, optional: bool = False) -> Callable[[Any], str | None]:
    def rule(value: Any) -> str | None:
        if optional and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            return f"must be an integer >= {minimum}"
        return None
    return rule


def _learning_rate(value: Any) -> str | None:
    """No larger rate means anything to Adam, and one near 1e38 overflows its float32 step."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not 0 < value <= 1e6):
        return "must be a finite number > 0 and at most 1e6"
    return None


def _of_type(kind: type, optional: bool = False) -> Callable[[Any], str | None]:
    def rule(value: Any) -> str | None:
        if (optional and value is None) or isinstance(value, kind):
            return None
        return f"must be a {kind.__name__}"
    return rule


RULES: dict[str, Callable[[Any], str | None]] = {
    "train": _of_type(str), "test": _of_type(str, True), "n_train": _at_least(1, True),
    "n_test": _at_least(1, True), "layer": _of_type(str), "hidden": _at_least(1),
    "epochs": _at_least(1), "batch_size": _at_least(1), "lr": _learning_rate,
    "seed": _at_least(0), "eval_every": _at_least(1), "eval_points": _at_least(1),
    "checkpoint": _of_type(str, True), "checkpoint_every": _at_least(1), "slide": _of_type(dict),
}
"""What each :class:`TrainConfig` field accepts: a function returning the problem or None.
``thrifty train``'s flags check their values with the same rules."""


@attrs.define
class TrainConfig:
    """Everything a run needs; ``thrifty train`` fills it from a TOML file and flags. Every
    value is checked on construction (a zero, negative or non-finite value would crash the
    loop, train nothing or make the loss NaN)."""

    train: str = "synthetic:amazon-670k"
    """an Extreme Classification Repository file, ``synthetic:<preset>`` or
    ``synthetic:<features>x<labels>`` (a small synthetic task of that shape)"""
    test: str | None = None
    n_train: int | None = 20_000
    """points to use (synthetic: to generate) - None for all"""
    n_test: int | None = 2_000
    layer: str = "slide"
    """the output layer: a sparse layer registered through ``thrifty_sparse_layers``
    (``slide``, ``dense`` - the full-softmax baseline - or a third party's)"""
    hidden: int = 128
    epochs: int = 1
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    eval_every: int = 50
    """steps between evaluations (P@1, P@5 on up to ``eval_points`` test points)"""
    eval_points: int = 1000
    checkpoint: str | None = None
    """directory for checkpoints; resumes from it when it holds one"""
    checkpoint_every: int = 100
    slide: dict = attrs.field(factory=dict)
    """options of the output layer (for SLIDE: family, k, l, bucket_size, budget, inference,
    rebuild, ...), checked against the layer's declaration"""

    def __attrs_post_init__(self) -> None:
        for name, rule in RULES.items():
            problem = rule(getattr(self, name))
            if problem:
                raise ConfigError(f"[train] {name} = {getattr(self, name)!r}: {name} {problem}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown [train] key(s) {unknown}; known: {sorted(known)}")
        return cls(**d)
