"""Lookahead by batch size: the throughput model's per-batch choice as one schedule.

The best γ falls as the batch grows (the verifier's pass stops being free once the batch fills
the device), so one γ is a compromise. A *schedule* is a list of ranges
``(batch_start, batch_end, gamma)``: inclusive, positive, ascending and contiguous from batch 1,
``gamma >= 0`` (0: target-only wins there). It is the shape vLLM's speculative config takes as
``num_speculative_tokens_per_batch_size``; batch sizes past the last range keep its γ (as vLLM
does). :func:`gamma_schedule` computes one from a fitted
:class:`~thrifty.speculative.throughput.ThroughputModel`, :func:`check_schedule` enforces the
shape rules, and :class:`BatchLookahead` is the policy that makes thrifty's own engine follow it.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import attrs

from ..errors import ConfigError

Range = tuple[int, int, int]


def check_schedule(ranges: Any) -> list[Range]:
    """``ranges`` as a list of ``(start, end, gamma)`` int triples, or a ConfigError naming the
    rule it breaks (inclusive, positive, ascending, contiguous from 1, gamma >= 0)."""
    if not isinstance(ranges, (list, tuple)) or not ranges:
        raise ConfigError(f"a lookahead schedule is a non-empty list of [batch_start, batch_end, "
                          f"gamma] ranges, e.g. [[1, 4, 5], [5, 64, 2]]; got {ranges!r}")
    out: list[Range] = []
    expect = 1
    for entry in ranges:
        if not isinstance(entry, (list, tuple)) or len(entry) != 3 or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in entry):
            raise ConfigError(f"schedule entry {entry!r} is not three integers "
                              f"[batch_start, batch_end, gamma]")
        lo, hi, gamma = entry
        if lo != expect or hi < lo:
            raise ConfigError(f"schedule ranges must be ascending and contiguous from batch 1: "
                              f"expected one starting at {expect}, got {list(entry)}")
        if gamma < 0:
            raise ConfigError(f"schedule gamma must be >= 0; got {list(entry)}")
        out.append((lo, hi, gamma))
        expect = hi + 1
    return out


def gamma_at(ranges: Sequence[Range], batch: int) -> int:
    """γ of the range holding ``batch`` (the last range's past its end)."""
    for lo, hi, gamma in ranges:
        if lo <= batch <= hi:
            return gamma
    return ranges[-1][2]


def gamma_schedule(model, draft: str, batches: Iterable[int]) -> list[Range]:
    """Best γ for ``draft`` (0 where target-only is faster) at every batch size from 1 to the
    largest of ``batches``, merged into ranges. Between profiled sizes the model interpolates
    the verifier's and draft's timings, as it does for any batch it is asked about."""
    top = max(batches)
    gammas = range(1, model.profile.gamma_max + 1)
    out: list[list[int]] = []
    for b in range(1, top + 1):
        best = max([model.predict(None, 0, b)] + [model.predict(draft, g, b) for g in gammas],
                   key=lambda p: p.throughput)
        if out and out[-1][2] == best.gamma:
            out[-1][1] = b
        else:
            out.append([b, b, best.gamma])
    return check_schedule([tuple(r) for r in out])


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
    """A lookahead policy that takes γ from a schedule by the batch size the engine runs.

    The engine calls :meth:`start` with its number of rows before the first step; every step
    reports each row again (``observe``), so γ follows the batch the verifier scores. Rows whose
    prompt is done keep being scored until the last prompt ends, so the engine's batch, not the
    number of unfinished prompts, sets the step's cost and hence γ.
    """

    ranges: Sequence[Range] = attrs.field(converter=check_schedule)
    batch: int = 1

    def start(self, rows: int) -> None:
        self.batch = rows

    def gamma(self) -> int:
        return gamma_at(self.ranges, self.batch)

    def observe(self, proposed, accepted) -> None:
        self.batch = len(proposed) or self.batch
