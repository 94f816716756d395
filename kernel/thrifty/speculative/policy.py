"""Lookahead policies: how many tokens (γ) the draft proposes at each step.

A policy sees what happened at every step (``observe``) and answers ``gamma()`` before the next.
:class:`FixedLookahead` is the paper's setting; adaptive policies plug in through the same two
methods. A policy may also have ``start(rows)``, which the engine calls with its number of rows
before the first step (:class:`~thrifty.speculative.schedule.BatchLookahead` picks γ by it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs

from ..errors import ConfigError

if TYPE_CHECKING:
    from .tree import TreeShape


@runtime_checkable
class LookaheadPolicy(Protocol):
    def gamma(self) -> int:
        """γ for the next step (0 = a plain target step)."""

    def observe(self, proposed, accepted) -> None:
        """Per-row proposal lengths and accepted counts (LongTensors [B]) of the last step."""

    # Optional: ``gamma_max``, the largest γ the policy ever answers (for trees, the most nodes
    # of one), which the engine adds to the prompt and the new tokens when it checks the models'
    # context windows before decoding.
    #
    # Optional: ``tree()``, a :class:`~thrifty.speculative.TreeShape` for the next step, or None
    # for a chain of ``gamma()`` tokens; a policy may switch between the two (by batch size).
    # With ``tree()``, optional ``trees``: whether it ever answers a tree (default True), so that
    # a policy whose choices are all chains runs with models that cannot grow trees.


def asks_for_trees(policy) -> bool:
    """Whether ``policy`` may ask for a token tree (see :class:`LookaheadPolicy`): then the
    engine refuses, before decoding, models that cannot grow or score one."""
    return callable(getattr(policy, "tree", None)) and bool(getattr(policy, "trees", True))


@attrs.define
class FixedLookahead:
    """Always propose ``gamma`` tokens."""

    value: int = 4

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.value, int) or self.value < 0:
            raise ConfigError(f"lookahead gamma must be an int >= 0; got {self.value!r}")

    def gamma(self) -> int:
        return self.value

    @property
    def gamma_max(self) -> int:
        return self.value

    def observe(self, proposed, accepted) -> None:
        return None


@attrs.define
class FixedTree:
    """Always propose a token tree of ``shape`` (a :class:`~thrifty.speculative.TreeShape`)."""

    shape: "TreeShape"

    def __attrs_post_init__(self) -> None:
        from .tree import TreeShape

        if not isinstance(self.shape, TreeShape):
            raise ConfigError(f"a tree policy takes a TreeShape; got {self.shape!r}")

    def gamma(self) -> int:
        return self.shape.depth

    def tree(self):
        return self.shape

    @property
    def gamma_max(self) -> int:
        return self.shape.nodes

    def observe(self, proposed, accepted) -> None:
        return None
