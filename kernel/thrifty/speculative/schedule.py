"""Lookahead by batch size: the throughput model's per-batch choice as one schedule.

The best γ falls as the batch grows (the verifier's pass stops being free once the batch fills
the device), so one γ is a compromise; a token tree, which scores more tokens per pass for a
longer accepted path, pays off where a pass is nearly free and loses where it is not. A
*schedule* is a list of ranges ``(batch_start, batch_end, gamma)``: inclusive, positive,
ascending and contiguous from batch 1, ``gamma`` an int >= 0 (0: target-only wins there) or a
tree shape such as ``"4x2:8"``. With ints only it is the shape vLLM's speculative config takes
as ``num_speculative_tokens_per_batch_size``; batch sizes past the last range keep its γ (as
vLLM does). :func:`gamma_schedule` computes one from a fitted
:class:`~thrifty.speculative.throughput.ThroughputModel`, :func:`check_schedule` enforces the
shape rules, and :class:`BatchLookahead` is the policy that makes thrifty's own engine follow it.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import attrs

from ..errors import ConfigError
from .tree import TreeShape

Range = tuple[int, int, "int | str"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_schedule(ranges: Any) -> list[Range]:
    """``ranges`` as a list of ``(start, end, gamma or tree shape)`` triples (shapes written as
    ``str(TreeShape)``), or a ConfigError naming the rule it breaks (inclusive, positive,
    ascending, contiguous from 1, gamma >= 0, a shape that parses)."""
    if not isinstance(ranges, (list, tuple)) or not ranges:
        raise ConfigError(f"a lookahead schedule is a non-empty list of [batch_start, batch_end, "
                          f"gamma] ranges, e.g. [[1, 4, 5], [5, 64, 2]] (gamma may be a tree "
                          f"shape such as \"4x2:8\"); got {ranges!r}")
    out: list[Range] = []
    expect = 1
    for entry in ranges:
        if not isinstance(entry, (list, tuple)) or len(entry) != 3 or not all(
                map(_is_int, entry[:2])) or not (_is_int(entry[2]) or isinstance(entry[2], str)):
            raise ConfigError(f"schedule entry {entry!r} is not three integers "
                              f"[batch_start, batch_end, gamma], nor two and a tree shape "
                              f"[batch_start, batch_end, \"DEPTHxBRANCH:NODES\"]")
        lo, hi, gamma = entry
        if lo != expect or hi < lo:
            raise ConfigError(f"schedule ranges must be ascending and contiguous from batch 1: "
                              f"expected one starting at {expect}, got {list(entry)}")
        if isinstance(gamma, str):
            try:
                gamma = str(TreeShape.parse(gamma))
            except ConfigError as exc:
                raise ConfigError(f"schedule entry {list(entry)}: {exc}") from None
        elif gamma < 0:
            raise ConfigError(f"schedule gamma must be >= 0; got {list(entry)}")
        out.append((lo, hi, gamma))
        expect = hi + 1
    return out


def gamma_at(ranges: Sequence[Range], batch: int) -> int | str:
    """γ (or tree shape) of the range holding ``batch`` (the last range's past its end)."""
    for lo, hi, gamma in ranges:
        if lo <= batch <= hi:
            return gamma
    return ranges[-1][2]


def gamma_schedule(model, draft: str, batches: Iterable[int], trees: bool = True) -> list[Range]:
    """Best γ or, with ``trees``, profiled tree shape for ``draft`` (0 where target-only is
    faster) at every batch size from 1 to the largest of ``batches``, merged into ranges.
    Between profiled sizes the model interpolates the verifier's and draft's timings, as it
    does for any batch it is asked about."""
    out: list[list] = []
    for b in range(1, max(batches) + 1):
        best = model.best(b, drafts=[draft], trees=trees)
        choice = best.tree or best.gamma
        if out and out[-1][2] == choice:
            out[-1][1] = b
        else:
            out.append([b, b, choice])
    return check_schedule([tuple(r) for r in out])


def has_trees(ranges: Sequence[Range]) -> bool:
    """Whether any range of a schedule runs a token tree."""
    return any(isinstance(r[2], str) for r in ranges)


def schedule_draft(model, batches: Sequence[int]) -> str:
    """The one profiled draft to schedule when an engine takes a single draft: the highest
    mean, over ``batches``, of its best throughput as a share of the best at that batch."""
    best = {b: model.best(b).throughput for b in batches}
    drafts = list(model.profile.drafts)
    if not drafts:
        raise ConfigError("the profile has no draft to schedule; profile with --draft")
    return max(drafts, key=lambda d: sum(model.best(b, drafts=[d]).throughput / best[b]
                                         for b in batches))


@attrs.define
class BatchLookahead:
    """A lookahead policy that takes γ or a token tree from a schedule by the batch size the
    engine runs.

    The engine calls :meth:`start` with its number of rows before the first step; every step
    reports each row again (``observe``), so the choice follows the batch the verifier scores.
    Rows whose prompt is done keep being scored until the last prompt ends, so the engine's
    batch, not the number of unfinished prompts, sets the step's cost and hence the choice.
    ``trees`` tells the engine whether the schedule ever asks for a tree (then its models
    must grow and score them).
    """

    ranges: Sequence[Range] = attrs.field(converter=check_schedule)
    batch: int = 1

    def start(self, rows: int) -> None:
        self.batch = rows

    def tree(self) -> TreeShape | None:
        """The range's tree shape, or None where it runs a chain."""
        choice = gamma_at(self.ranges, self.batch)
        return TreeShape.parse(choice) if isinstance(choice, str) else None

    def gamma(self) -> int:
        """The range's γ (a tree range's: its depth)."""
        tree = self.tree()
        return tree.depth if tree is not None else gamma_at(self.ranges, self.batch)

    @property
    def trees(self) -> bool:
        return has_trees(self.ranges)

    @property
    def gamma_max(self) -> int:
        """The most tokens one step proposes over every range (a tree's: all its nodes)."""
        return max(TreeShape.parse(g).nodes if isinstance(g, str) else g
                   for _, _, g in self.ranges)

    def observe(self, proposed, accepted) -> None:
        self.batch = len(proposed) or self.batch
