"""The analytical throughput model of speculative decoding (Yan et al., NAACL 2025).

    Throughput(d, γ, B) = B · TAR(d, γ, B) / (D(d, γ, B) + V(γ + 1, B) + O(d, γ, B))

TAR is the mean number of tokens a row emits per verifier pass (bonus included); D the time of
one ``propose(γ)`` call of draft d at batch B (≈ γ · L_draft(d, B), the paper's term); V the
verifier's time to score γ + 1 tokens per row; O the engine's own time per step (acceptance
rule, cache roll-back, detokenisation). A token tree of n nodes takes γ's place: D is its
``propose_tree`` call, V scores 1 + n tokens, and TAR is its measured accepted path + 1.
Everything here is a pure function of numbers, except :class:`ThroughputModel`, which holds a
fitted profile and answers questions about it.
``docs/throughput-model.md`` states the assumptions.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from typing import Any, Callable, Iterable, Mapping, Sequence

import attrs

from ..errors import ConfigError
from .tree import TreeShape


# -- acceptance -> tokens per pass ------------------------------------------------------------
def tar_iid(alpha: float, gamma: int) -> float:
    """Expected tokens per pass when every proposal is accepted independently with ``alpha``:
    (1 − α^(γ+1)) / (1 − α)."""
    if alpha >= 1.0:
        return gamma + 1.0
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def tar_positional(conditional: Sequence[float], gamma: int,
                   fallback: float | None = None) -> float:
    """Expected tokens per pass from per-position *conditional* acceptance:
    1 + Σ_{i=1..γ} Π_{j<i} c_j, where c_j = P(proposal j accepted | proposals < j accepted).

    Positions past the measured ones use ``fallback`` (default: the last measured value).
    """
    total, survive = 1.0, 1.0
    for i in range(gamma):
        if i < len(conditional):
            c = conditional[i]
        elif fallback is not None:
            c = fallback
        else:
            c = conditional[-1] if len(conditional) else 0.0
        survive *= c
        total += survive
    return total


def conditional_from_matches(hist: Sequence[int]) -> list[float]:
    """Per-position conditional acceptance from a histogram of match lengths.

    ``hist[m]`` counts the positions where the draft's greedy proposal agreed with the
    verifier's greedy continuation on exactly m tokens (the last bin: on all proposed tokens).
    """
    at_least = [sum(hist[m:]) for m in range(len(hist))]
    return [at_least[j + 1] / at_least[j] if at_least[j] else 0.0
            for j in range(len(hist) - 1)]


def conditional_from_cumulative(cumulative: Sequence[float]) -> list[float]:
    """Conditional acceptance from P(accepted ≥ i + 1) per position i (``Metrics.acceptance``)."""
    out, before = [], 1.0
    for p in cumulative:
        out.append(p / before if before > 0 else 0.0)
        before = p
    return out


def iid_alpha(hist: Sequence[int]) -> float:
    """The single acceptance rate α of the i.i.d. model, pooled over every proposal position of
    a match-length histogram (accepted proposals / proposals tried)."""
    at_least = [sum(hist[m:]) for m in range(len(hist))]
    tried = sum(at_least[:-1])
    return sum(at_least[1:]) / tried if tried else 0.0


def walk(matches: Sequence[int], gamma: int, max_new_tokens: int) -> tuple[int, int]:
    """Replay one row of greedy speculative decoding: ``(verifier passes, tokens emitted)``.

    ``matches[t]`` is how many of the draft's proposals at output position t agree with the
    verifier's greedy continuation. At position t a pass keeps min(matches[t], γ) proposals and
    adds one token, exactly as the engine does; emitted counts are before truncation to
    ``max_new_tokens``, as in :class:`Metrics`.
    """
    t = steps = emitted = 0
    end = min(max_new_tokens, len(matches))
    while t < end:
        n = min(matches[t], gamma) + 1
        steps += 1
        emitted += n
        t += n
    return steps, emitted


def batched(items: Sequence, batch: int) -> list:
    """The workload as whole batches of ``batch``: every item once (cycled to fill a single
    batch when there are fewer), dropping a ragged last batch. Measurement and model agree on
    this."""
    n = max(batch, len(items) // batch * batch)
    return [items[i % len(items)] for i in range(n)]


def chain_walks(rows: Sequence[Sequence[int]], gamma: int,
                max_new_tokens: int) -> list[tuple[int, int]]:
    """``(verifier passes, tokens)`` of each replayed row at γ (see :func:`walk`)."""
    return [(walk(r, gamma, max_new_tokens)[0], min(max_new_tokens, len(r))) for r in rows]


def tree_walks(rows: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """``(verifier passes, tokens)`` of each row of a live tree run: ``rows[r]`` lists the
    tokens prompt r gained at each of its passes, so its passes are the list's length."""
    return [(len(r), sum(r)) for r in rows]


def static_tar(walks: Sequence[tuple[int, int]], batch: int) -> float:
    """Effective tokens per row per pass when rows of these ``(passes, tokens)`` walks run in
    consecutive batches of ``batch`` (see :func:`batched`).

    A batch runs until its slowest row is done, so a pass yields fewer tokens than the mean TAR
    once some rows have finished: TAR_eff = Σ tokens / (B · Σ_batches max_row passes).
    """
    walks = batched(walks, batch)
    passes = sum(batch * max(p for p, _ in walks[i:i + batch])
                 for i in range(0, len(walks), batch))
    return sum(t for _, t in walks) / passes if passes else 0.0


def continuous_tar(walks: Sequence[tuple[int, int]], batch: int) -> float:
    """Effective tokens per row per pass when rows of these ``(passes, tokens)`` walks (see
    :func:`batched`) run through ``batch`` rows that each take the next waiting prompt as soon
    as theirs is done (continuous batching): no row idles until the queue is empty, so only its
    drain costs idle passes. TAR_eff = Σ tokens / (B · passes until the last row is done)."""
    walks = batched(walks, batch)
    waiting = deque(p for p, _ in walks)
    running = [waiting.popleft() for _ in range(batch)]
    passes = 0
    while running:
        step = min(running)  # passes until the next row is done
        passes += step
        running = [left - step for left in running]
        running = [left if left else waiting.popleft() for left in running
                   if left or waiting]
    return sum(t for _, t in walks) / (batch * passes) if passes else 0.0


def batch_tar(rows: Sequence[Sequence[int]], gamma: int, batch: int,
              max_new_tokens: int) -> float:
    """:func:`static_tar` of replayed rows at γ."""
    return static_tar(chain_walks(rows, gamma, max_new_tokens), batch)


def refill_tar(rows: Sequence[Sequence[int]], gamma: int, batch: int,
               max_new_tokens: int) -> float:
    """:func:`continuous_tar` of replayed rows at γ."""
    return continuous_tar(chain_walks(rows, gamma, max_new_tokens), batch)


def mean_verify_ms(matches: Sequence[Sequence[int]], proposed: Sequence[Sequence[int]],
                   gamma: int, batch: int, max_new_tokens: int,
                   cost: Callable[[int], float]) -> float:
    """Mean verifier cost per pass when the engine scores only the longest real proposal.

    Walks each batch (see :func:`batched`) as live decoding does: a row visits only the output
    positions its accepted proposals lead to (``matches``, as in :func:`walk`), and each pass
    scores 1 + max over its running rows of min(proposed, γ) tokens; ``cost(k)`` is the latency
    of scoring k. A draft that always proposes γ costs ``cost(γ + 1)``; a lookup draft that often
    finds nothing costs less, which matters wherever a pass's cost grows with its width (CPUs).
    Averaging over every position instead would over-weight long proposals: inside a repeated
    span a lookup draft proposes far, and live decoding skips most of those positions."""
    rows = batched(list(zip(matches, proposed)), batch)
    widths: Counter[int] = Counter()
    for i in range(0, len(rows), batch):
        group = rows[i:i + batch]
        ends = [min(max_new_tokens, len(m)) for m, _ in group]
        pos = [0] * len(group)
        while True:
            live = [b for b, (t, end) in enumerate(zip(pos, ends)) if t < end]
            if not live:
                break
            widths[max(min(group[b][1][pos[b]], gamma) for b in live)] += 1
            for b in live:
                pos[b] += min(group[b][0][pos[b]], gamma) + 1
    passes = sum(widths.values())
    if not passes:
        return cost(gamma + 1)
    return sum(n * cost(w + 1) for w, n in widths.items()) / passes  # one cost per width


# -- latency tables ----------------------------------------------------------------------------
def interp(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """Piecewise-linear interpolation, extended linearly past both ends (never below zero)."""
    if not len(xs):
        raise ConfigError("cannot interpolate an empty latency table; profile it first")
    pts = sorted(zip(xs, ys))
    if len(pts) == 1:
        return float(pts[0][1])
    if x <= pts[0][0]:
        (x0, y0), (x1, y1) = pts[0], pts[1]
    elif x >= pts[-1][0]:
        (x0, y0), (x1, y1) = pts[-2], pts[-1]
    else:
        k = next(i for i in range(1, len(pts)) if pts[i][0] >= x)
        (x0, y0), (x1, y1) = pts[k - 1], pts[k]
    return max(0.0, float(y0 + (y1 - y0) * (x - x0) / (x1 - x0)))


def interp_table(table: Mapping[int, Mapping[int, float]], batch: int, x: int) -> float:
    """Look up ``table[batch][x]`` interpolating in x within each batch, then across batches."""
    batches = sorted(table)
    values = [interp(x, sorted(table[b]), [table[b][k] for k in sorted(table[b])])
              for b in batches]
    return interp(batch, batches, values)


def interp_batch(table: Mapping[int, float], batch: int) -> float:
    """Look up ``table[batch]``, interpolating across the profiled batch sizes."""
    return interp(batch, sorted(table), [table[b] for b in sorted(table)])


def throughput(batch: int, tar: float, draft_ms: float, verify_ms: float,
               overhead_ms: float) -> float:
    """Tokens per second of a batch: B · TAR per pass, one pass every D + V + O milliseconds."""
    step = draft_ms + verify_ms + overhead_ms
    return 1000.0 * batch * tar / step if step > 0 else math.inf


# -- per-layer latency model for drafts that do not exist yet ------------------------------------
@attrs.frozen
class ShapeModel:
    """Latency of one decode step of a decoder of ``layers`` layers and width ``width``.

    Fitted per (width, batch) as ``head + layers · per_layer`` (least squares over the profiled
    depths: the paper's observation that depth, not width, drives a draft's latency makes this
    line the natural model); other widths and batches are interpolated linearly.
    """

    lines: Mapping[tuple[int, int], tuple[float, float]]  # (width, batch) -> (head, per_layer)

    @classmethod
    def fit(cls, points: Iterable[Mapping[str, Any]]) -> "ShapeModel":
        """``points``: dicts with ``layers``, ``width``, ``batch``, ``ms``."""
        import numpy as np

        groups: dict[tuple[int, int], list[tuple[int, float]]] = {}
        for p in points:
            groups.setdefault((int(p["width"]), int(p["batch"])), []).append(
                (int(p["layers"]), float(p["ms"])))
        lines = {}
        for key, pts in groups.items():
            depths = np.array([d for d, _ in pts], float)
            ms = np.array([m for _, m in pts], float)
            if len(set(depths.tolist())) < 2:
                raise ConfigError(f"shape profile for width {key[0]}, batch {key[1]} has one "
                                  f"depth only; profile at least two depths per width")
            slope, head = np.polyfit(depths, ms, 1)
            lines[key] = (max(float(head), 0.0), max(float(slope), 0.0))
        if not lines:
            raise ConfigError("no shape profile points; run `thrifty profile --shape LAYERSxWIDTH`")
        return cls(lines)

    def step_ms(self, layers: int, width: int, batch: int) -> float:
        widths = sorted({w for w, _ in self.lines})
        per_width = []
        for w in widths:
            bs = sorted(b for ww, b in self.lines if ww == w)
            per_width.append(interp(batch, bs, [self.lines[(w, b)][0] + layers *
                                                self.lines[(w, b)][1] for b in bs]))
        return interp(width, widths, per_width)


# -- the fitted model ----------------------------------------------------------------------------
@attrs.frozen
class Prediction:
    """One predicted operating point and where its time goes. ``tree``: the token tree's shape
    (``"4x2:8"``) of a tree step, whose ``gamma`` is the tree's depth; None for a chain."""

    draft: str | None
    gamma: int
    batch: int
    tar: float
    draft_ms: float
    verify_ms: float
    overhead_ms: float
    tree: str | None = None

    @property
    def lookahead(self) -> "int | TreeShape":
        """What the engine takes as its policy to run this point: γ or the tree's shape."""
        return TreeShape.parse(self.tree) if self.tree else self.gamma

    @property
    def step_ms(self) -> float:
        return self.draft_ms + self.verify_ms + self.overhead_ms

    @property
    def throughput(self) -> float:
        return throughput(self.batch, self.tar, self.draft_ms, self.verify_ms, self.overhead_ms)

    def shares(self) -> dict[str, float]:
        step = self.step_ms or 1.0
        return {"draft": self.draft_ms / step, "verify": self.verify_ms / step,
                "overhead": self.overhead_ms / step}

    def explain(self) -> str:
        """Where the time goes, in one sentence a person can act on."""
        s = self.shares()
        who = self.draft or "target-only"
        step = f"tree {self.tree}" if self.tree else f"γ={self.gamma}"
        return (f"{who} {step} batch {self.batch}: {self.throughput:.1f} tok/s = "
                f"{self.batch} × TAR {self.tar:.2f} tokens per {self.step_ms:.2f} ms pass; "
                f"draft {100 * s['draft']:.0f}% ({self.draft_ms:.2f} ms), verify "
                f"{100 * s['verify']:.0f}% ({self.verify_ms:.2f} ms), overhead "
                f"{100 * s['overhead']:.0f}% ({self.overhead_ms:.2f} ms)")

    def as_dict(self) -> dict:
        return {"draft": self.draft, "gamma": self.gamma, "tree": self.tree, "batch": self.batch,
                "tar": round(self.tar, 4), "draft_ms": round(self.draft_ms, 4),
                "verify_ms": round(self.verify_ms, 4), "overhead_ms": round(self.overhead_ms, 4),
                "throughput": round(self.throughput, 3),
                "shares": {k: round(v, 4) for k, v in self.shares().items()}}


@attrs.frozen
class Hypothetical:
    """A draft that does not exist yet: its shape gives its latency (through a
    :class:`ShapeModel`), its assumed acceptance its TAR, and a measured draft lends the engine
    overhead (``like``; default: the first profiled draft)."""

    name: str
    layers: int
    width: int
    acceptance: float | Sequence[float]
    like: str | None = None


class ThroughputModel:
    """Predictions from one :class:`thrifty.speculative.profile.Profile`.

    ``sampled=True`` uses the acceptance measured under sampling instead of greedy replay.
    ``refill=True`` predicts continuous batching (``generate(..., batch_size=B)`` over more
    prompts than rows: a row takes the next prompt as soon as it is done) instead of static
    batches, which wait for their slowest row.
    """

    def __init__(self, profile, sampled: bool = False, refill: bool = False) -> None:
        self.profile = profile
        self.sampled = sampled
        self.refill = refill
        self._verify = {b: {k + 1: ms for k, ms in enumerate(row)}
                        for b, row in profile.verify_ms.items()}
        self._shape = ShapeModel.fit(profile.shapes) if profile.shapes else None
        self.hypotheticals: dict[str, Hypothetical] = {}

    # -- the three terms ---------------------------------------------------------------------
    def verify_ms(self, tokens: int, batch: int) -> float:
        return interp_table(self._verify, batch, tokens)

    def draft_ms(self, draft: str, gamma: int, batch: int) -> float:
        if gamma == 0:
            return 0.0
        if draft in self.hypotheticals:
            h = self.hypotheticals[draft]
            if self._shape is None:
                raise ConfigError("a hypothetical draft needs a shape profile: "
                                  "`thrifty profile --shape 1x576 --shape 2x576 ...`")
            return gamma * self._shape.step_ms(h.layers, h.width, batch)
        return interp_table(self._draft(draft).propose_ms, batch, gamma)

    def overhead_ms(self, draft: str | None, gamma: int, batch: int) -> float:
        if draft is None or gamma == 0:
            return interp_batch(self.profile.target_overhead_ms, batch)
        if draft in self.hypotheticals:
            draft = self.hypotheticals[draft].like or next(iter(self.profile.drafts))
        return interp_table(self._draft(draft).overhead_ms, batch, gamma)

    def tar(self, draft: str | None, gamma: int, batch: int = 1) -> float:
        """TAR at (γ, B): replayed per-row walks when recorded (greedy; accounts for the rows
        that idle: until the slowest row of a static batch is done, or while a continuous
        batch drains), else the per-position conditional acceptance, else i.i.d. α."""
        if draft is None or gamma == 0:
            return 1.0
        if draft in self.hypotheticals:
            acc = self.hypotheticals[draft].acceptance
            if isinstance(acc, (int, float)):
                return tar_iid(float(acc), gamma)
            return tar_positional(list(acc), gamma)
        acc = self._draft(draft).acceptance
        if acc is None:
            raise ConfigError(f"draft {draft!r} has no acceptance profile; profile it with a "
                              f"workload (`thrifty profile --workload ...`)")
        if self.sampled:
            if not acc.sampled:
                raise ConfigError(f"draft {draft!r} was profiled without sampling; re-run "
                                  f"`thrifty profile --temperature T`")
            return tar_positional(conditional_from_cumulative(acc.sampled["cumulative"]), gamma)
        if acc.rows and gamma <= acc.gamma_max:
            effective = refill_tar if self.refill else batch_tar
            return effective(acc.rows, gamma, batch, acc.max_new_tokens)
        return tar_positional(conditional_from_matches(acc.match_hist), gamma)

    def trees(self, draft: str) -> list[TreeShape]:
        """The token-tree shapes profiled for ``draft`` (none for a hypothetical draft)."""
        found = self.profile.drafts.get(draft)
        return [TreeShape.parse(s) for s in found.trees] if found is not None else []

    def predict_tree(self, draft: str, shape: TreeShape, batch: int) -> Prediction:
        """A tree step of ``draft``: its measured ``propose_tree`` latency, ``score_tree``
        latency (1 + nodes tokens a row through the tree's mask) and overhead, and TAR from the
        live tree run's per-row passes (idle-aware as for chains)."""
        found = self.profile.drafts[draft].trees.get(str(shape)) \
            if draft in self.profile.drafts else None
        if found is None:
            raise ConfigError(f"tree {shape} of draft {draft!r} is not in the profile; profiled "
                              f"trees: {[str(s) for s in self.trees(draft)]}; profile it with "
                              f"`thrifty profile --trees {shape}`")
        rows = found.rows
        if self.sampled:
            if not found.sampled:
                raise ConfigError(f"tree {shape} of draft {draft!r} was profiled without "
                                  f"sampling; re-run `thrifty profile --temperature T`")
            rows = found.sampled["rows"]
        effective = continuous_tar if self.refill else static_tar
        # the tree's own pass; a profile from before that was timed: a chain of as many tokens
        verify = interp_batch(found.verify_ms, batch) if found.verify_ms \
            else self.verify_ms(1 + shape.nodes, batch)
        return Prediction(draft, shape.depth, batch, effective(tree_walks(rows), batch),
                          interp_batch(found.propose_ms, batch), verify,
                          interp_batch(found.overhead_ms, batch), tree=str(shape))

    # -- questions -----------------------------------------------------------------------------
    def predict(self, draft: str | None, gamma: "int | TreeShape", batch: int) -> Prediction:
        """The point (draft, γ or tree shape, batch); ``draft=None``: target-only decoding."""
        if isinstance(gamma, TreeShape):
            return self.predict_tree(draft, gamma, batch)
        if draft is None:
            gamma = 0
        return Prediction(draft, gamma, batch, self.tar(draft, gamma, batch),
                          self.draft_ms(draft, gamma, batch) if draft else 0.0,
                          self.scored_verify_ms(draft, gamma, batch),
                          self.overhead_ms(draft, gamma, batch))

    def scored_verify_ms(self, draft: str | None, gamma: int, batch: int) -> float:
        """Verifier latency per pass: γ + 1 tokens, or, where the replay recorded how many
        tokens the draft actually proposed, the mean over the widths the engine scores."""
        acc = None if draft is None or gamma == 0 or draft in self.hypotheticals \
            else self._draft(draft).acceptance
        if acc is not None and acc.proposed and gamma <= acc.gamma_max and not self.sampled:
            return mean_verify_ms(acc.rows, acc.proposed, gamma, batch, acc.max_new_tokens,
                                  lambda k: self.verify_ms(k, batch))
        return self.verify_ms(gamma + 1, batch)

    def drafts(self) -> list[str]:
        return list(self.profile.drafts) + list(self.hypotheticals)

    def rank(self, batch: int, gammas: Iterable[int] | None = None,
             drafts: Sequence[str] | None = None, trees: bool = True) -> list[Prediction]:
        """Every (draft, γ) and, with ``trees``, every profiled (draft, tree shape) at ``batch``,
        fastest first; target-only decoding is included."""
        gammas = list(gammas or range(1, self.profile.gamma_max + 1))
        drafts = drafts or self.drafts()
        preds = [self.predict(None, 0, batch)]
        preds += [self.predict(d, g, batch) for d in drafts for g in gammas]
        if trees:
            preds += [self.predict_tree(d, s, batch) for d in drafts for s in self.trees(d)]
        return sorted(preds, key=lambda p: -p.throughput)

    def best(self, batch: int, **kwargs) -> Prediction:
        return self.rank(batch, **kwargs)[0]

    def add_hypothetical(self, draft: Hypothetical) -> None:
        """Evaluate a draft from its shape alone (see :class:`Hypothetical`)."""
        if draft.name in self.profile.drafts:
            raise ConfigError(f"hypothetical draft {draft.name!r} clashes with a profiled draft")
        if draft.like is not None:
            self._draft(draft.like)
        self.hypotheticals[draft.name] = draft

    def _draft(self, name: str):
        try:
            return self.profile.drafts[name]
        except KeyError:
            raise ConfigError(f"draft {name!r} is not in the profile; profiled drafts: "
                              f"{sorted(self.profile.drafts)}") from None
