"""The profiler: everything the throughput model needs, measured on one device and workload.

* verifier latency by number of scored tokens per row (1 … the widest step + 1) and batch size;
* each draft's ``propose(γ)`` latency by γ and batch size;
* the engine's own time per step (acceptance rule, roll-back, detokenisation) by γ and batch;
* acceptance per position: greedy by record-and-replay, and optionally sampled, live;
* for each token-tree shape a draft can grow: its ``propose_tree`` latency and the engine's
  time per step by batch size, and the tokens each prompt gains per pass in a live tree run;
* decode-step latency of random-weight decoders of a given depth and width (``shapes``), so that
  a draft that does not exist yet can be costed.

Every latency is a median over ``repeats`` after ``warmup`` untimed runs, taken after waiting
for queued GPU work. Results save to and load from JSON.
"""

from __future__ import annotations

import datetime
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import attrs

from ..checks import check_number
from ..errors import ConfigError, DatasetFormatError
from ..atomic import write_json_atomically
from ..files import read_json
from ..protocols import grows_trees, reads_features, scores_trees
from .engine import SpeculativeDecoder
from .record import Acceptance, record, replay
from .sampling import Sampling
from .tree import TreeShape

Progress = Callable[[str], None]


@attrs.define
class TreeProfile:
    """One token-tree shape of one draft, measured live (a tree's acceptance cannot be replayed
    from a chain's matches: its siblings are other tokens than the chain's).

    ``rows[r]``: tokens prompt r gained at each verifier pass of a greedy run, in order (its
    walk: the pass count is the list's length); ``sampled``: ``{"temperature": T, "rows":
    [...]}``, the same under sampling."""

    propose_ms: dict[int, float] = attrs.field(factory=dict)   # batch -> ms
    overhead_ms: dict[int, float] = attrs.field(factory=dict)  # batch -> ms
    rows: list[list[int]] = attrs.field(factory=list)
    sampled: dict | None = None
    verify_ms: dict[int, float] = attrs.field(factory=dict)  # batch -> ms of one score_tree


@attrs.define
class DraftProfile:
    """One draft's measured costs and acceptance. ``config``: how it was built
    (``{"name": ..., "options": {...}}``), for exporting ready-to-paste settings. ``trees``:
    shape (``"4x2:8"``) -> its :class:`TreeProfile`."""

    label: str
    config: dict
    propose_ms: dict[int, dict[int, float]] = attrs.field(factory=dict)   # batch -> γ -> ms
    overhead_ms: dict[int, dict[int, float]] = attrs.field(factory=dict)  # batch -> γ -> ms
    acceptance: Acceptance | None = None
    trees: dict[str, TreeProfile] = attrs.field(factory=dict)


@attrs.define
class Profile:
    """Everything measured for one verifier, its candidate drafts, a workload and a device."""

    verifier: str
    device: str
    workload: str
    gamma_max: int
    batches: list[int]
    verify_ms: dict[int, list[float]] = attrs.field(factory=dict)  # batch -> [k = 1, 2, …]
    target_overhead_ms: dict[int, float] = attrs.field(factory=dict)  # batch -> ms per step
    drafts: dict[str, DraftProfile] = attrs.field(factory=dict)
    shapes: list[dict] = attrs.field(factory=list)  # {layers, width, batch, ms}
    meta: dict = attrs.field(factory=dict)

    def save(self, path: str | Path) -> None:
        write_json_atomically(path, attrs.asdict(self), indent=1)

    @classmethod
    def load(cls, path: str | Path) -> "Profile":
        """Read a profile and check every number in it: a NaN, negative or zero latency or an
        empty acceptance row would otherwise turn into a made-up throughput."""
        raw = read_json(path, "profile")
        try:
            drafts = {}
            for label, d in raw.pop("drafts").items():
                acc = d.pop("acceptance")
                trees = {shape: _tree_profile(label, shape, t)
                         for shape, t in d.pop("trees", {}).items()}
                drafts[label] = DraftProfile(
                    **{**d, "propose_ms": _int_keys(d["propose_ms"]),
                       "overhead_ms": _int_keys(d["overhead_ms"])},
                    acceptance=Acceptance(**acc) if acc else None, trees=trees)
            raw["verify_ms"] = {int(b): v for b, v in raw["verify_ms"].items()}
            raw["target_overhead_ms"] = {int(b): v for b, v in raw["target_overhead_ms"].items()}
            prof = cls(**raw, drafts=drafts)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            raise DatasetFormatError(f"cannot read profile {path}: {exc!r}; make one with "
                                     f"`thrifty profile -o {path}`") from None
        try:
            prof.check()
        except ConfigError as exc:
            raise DatasetFormatError(f"profile {path}: {exc}; profile again with `thrifty "
                                     f"profile -o {path}`") from None
        return prof

    def check(self) -> None:
        """Every latency finite and > 0 (overheads >= 0), every acceptance row non-empty, every
        tree shape well-formed and within the verifier's measured widths."""
        check_number("gamma_max", self.gamma_max, low=1, integer=True)
        for b, row in self.verify_ms.items():
            if not isinstance(row, list) or len(row) < self.gamma_max + 1:
                raise ConfigError(f"verify_ms at batch {b} must list {self.gamma_max + 1} "
                                  f"latencies (k = 1 … gamma_max + 1); got {row!r}")
            for k, ms in enumerate(row, 1):
                check_number(f"verify_ms at batch {b}, k={k}", ms, low=0, low_open=True)
        for label, d in self.drafts.items():
            for shape, tree in d.trees.items():
                self._check_tree(f"draft {label!r} tree {shape!r}", shape, tree)
        for b, ms in self.target_overhead_ms.items():
            check_number(f"target_overhead_ms at batch {b}", ms, low=0)
        for label, d in self.drafts.items():
            for table, low_open in (("propose_ms", True), ("overhead_ms", False)):
                for b, row in getattr(d, table).items():
                    for g, ms in row.items():
                        check_number(f"draft {label!r} {table} at batch {b}, γ={g}", ms,
                                     low=0, low_open=low_open)
            acc = d.acceptance
            if acc is None:
                continue
            check_number(f"draft {label!r} acceptance max_new_tokens", acc.max_new_tokens,
                         low=1, integer=True)
            check_number(f"draft {label!r} acceptance gamma_max", acc.gamma_max, low=1,
                         integer=True)
            if not acc.rows or not all(isinstance(r, list) and r for r in acc.rows):
                raise ConfigError(f"draft {label!r} has an empty acceptance row (or none); "
                                  f"its acceptance cannot be estimated")
            for r, row in enumerate(acc.rows):
                for m in row:
                    check_number(f"draft {label!r} acceptance row {r}", m, low=0, integer=True)
        for shape in self.shapes:
            if not isinstance(shape, dict):
                raise ConfigError(f"shape entry {shape!r} is not an object with layers, width, "
                                  f"batch and ms")
            check_number(f"shape {shape.get('layers')}x{shape.get('width')} ms",
                         shape.get("ms"), low=0, low_open=True)

    def _check_tree(self, what: str, shape: str, tree: TreeProfile) -> None:
        """A tree's shape parses, the verifier was timed scoring all its nodes, its latencies
        are numbers and every row is a non-empty list of passes that each gained >= 1 token."""
        try:
            nodes = TreeShape.parse(shape).nodes
        except ConfigError as exc:
            raise ConfigError(f"{what}: {exc}") from None
        for b, row in self.verify_ms.items():
            if len(row) < nodes + 1:
                raise ConfigError(f"{what} scores {nodes + 1} tokens a row, but verify_ms at "
                                  f"batch {b} lists {len(row)} widths")
        for table, low_open in (("propose_ms", True), ("overhead_ms", False),
                                ("verify_ms", True)):
            for b, ms in getattr(tree, table).items():
                check_number(f"{what} {table} at batch {b}", ms, low=0, low_open=low_open)
        for kind, rows in (("", tree.rows), ("sampled ", (tree.sampled or {}).get("rows", []))):
            if not isinstance(rows, list) or not all(isinstance(r, list) and r for r in rows):
                raise ConfigError(f"{what} has an empty {kind}row (or rows that are not lists)")
            for r, row in enumerate(rows):
                for n in row:
                    check_number(f"{what} {kind}row {r}", n, low=1, integer=True)
        if not tree.rows:
            raise ConfigError(f"{what} has no rows; its acceptance cannot be estimated")


def _tree_profile(label: str, shape: str, raw: Any) -> TreeProfile:
    """One tree entry of a profile's JSON; a malformed one is named in the error."""
    try:
        # a profile saved before trees' own verifier timing holds no verify_ms
        return TreeProfile(**{**raw, "propose_ms": _int_keys(raw["propose_ms"]),
                              "overhead_ms": _int_keys(raw["overhead_ms"]),
                              "verify_ms": _int_keys(raw.get("verify_ms", {}))})
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise ValueError(f"draft {label!r} tree {shape!r}: {exc!r}") from None


def _int_keys(table: Mapping):
    """JSON's string keys as ints again, one or two levels deep (batch [-> γ] -> ms)."""
    return {int(b): _int_keys(v) if isinstance(v, Mapping) else float(v)
            for b, v in table.items()}


# -- timing ---------------------------------------------------------------------------------------
def _clock(device) -> float:
    """Wall time, after waiting for queued GPU work, so that a timed call is all in the span."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        torch.cuda.synchronize(device)
    return time.perf_counter()


def median_ms(fn: Callable[[], Any], device, repeats: int, warmup: int,
              after: Callable[[Any], None] | None = None) -> float:
    """Median wall time of ``fn()`` in ms; ``after(result)`` runs untimed after each call."""
    times = []
    for i in range(warmup + repeats):
        t0 = _clock(device)
        out = fn()
        t1 = _clock(device)
        if after is not None:
            after(out)
        if i >= warmup:
            times.append(1000 * (t1 - t0))
    return statistics.median(times)


def _batch_rows(prompts: Sequence[Sequence[int]], batch: int) -> list[list[int]]:
    """``batch`` prompt rows, cycling through the workload when it has fewer."""
    return [list(prompts[i % len(prompts)]) for i in range(batch)]


def verifier_latency(verifier, prompts: Sequence[Sequence[int]], batch: int, max_tokens: int,
                     repeats: int = 5, warmup: int = 2, sweeps: int = 3) -> list[float]:
    """Median ms of one ``score`` call with k = 1 … ``max_tokens`` tokens per row.

    Each k is timed ``repeats`` times in a row, in ``sweeps`` sweeps over every k, and its
    latency is the median over the sweeps. A shared machine's slow spells last seconds, so one
    sweep lands a spell on one or two widths and bends the curve, which on a CPU has real bends
    of its own that must survive (small-matrix kernels: at batch 1, 3 tokens cost more than 5);
    sweeps spread a spell over every width instead."""
    import torch

    verifier.start(_batch_rows(prompts, batch))
    device = verifier.device
    tokens = torch.tensor([(row * max_tokens)[:max_tokens] for row in _batch_rows(prompts, batch)],
                          device=device)
    keep = torch.ones(batch, dtype=torch.long, device=device)

    def one(k: int) -> float:
        lengths = torch.full((batch,), k, dtype=torch.long, device=device)
        return median_ms(lambda: verifier.score(tokens[:, :k], lengths), device, repeats, warmup,
                         after=lambda _: verifier.keep(keep))

    timed = [[one(k) for k in range(1, max_tokens + 1)] for _ in range(sweeps)]
    return [statistics.median(ms) for ms in zip(*timed)]


def tree_verifier_latency(verifier, prompts: Sequence[Sequence[int]], batch: int,
                          shape: TreeShape, repeats: int = 5, warmup: int = 2) -> float:
    """Median ms of one ``score_tree`` call over a full tree of ``shape`` a row (its chain of
    ``depth`` nodes, the other nodes siblings along it), each followed untimed by keeping the
    root. A tree pass attends through its ancestor mask, which can cost more than a chain pass
    of as many tokens (a causal kernel), so a tree is priced by its own pass."""
    import torch

    rows = _batch_rows(prompts, batch)
    verifier.start(rows)
    device = verifier.device
    k = 1 + shape.nodes
    # with the root: chain column c + 1 hangs on column c; sibling i on chain column i % depth
    parents = [-1] + list(range(shape.depth)) + [i % shape.depth
                                                 for i in range(shape.nodes - shape.depth)]
    tokens = torch.tensor([(row * k)[:k] for row in rows], device=device)
    parents = torch.tensor([parents] * batch, device=device)
    lengths = torch.full((batch,), k, dtype=torch.long, device=device)
    root = torch.zeros(batch, shape.depth + 1, dtype=torch.long, device=device)
    one = torch.ones(batch, dtype=torch.long, device=device)
    return median_ms(lambda: verifier.score_tree(tokens, parents, lengths), device, repeats,
                     warmup, after=lambda _: verifier.keep_path(root, one))


def draft_latency(draft, prompts: Sequence[Sequence[int]], batch: int,
                  gammas: Sequence[int | TreeShape], device, repeats: int = 5, warmup: int = 2,
                  verifier=None) -> dict:
    """Median ms of one proposal per entry of ``gammas``: ``propose(γ)`` for an int γ,
    ``propose_tree(shape)`` for a :class:`TreeShape`. In steady state: after each call half a
    chain's proposals are accepted (a tree keeps its root only: its cost depends on its shape,
    not on the path kept) and a correction token is committed, as in a typical step. A feature
    draft gets its first features from ``verifier``'s prefill and zeros after that (latency
    depends on shapes only)."""
    import torch

    rows = _batch_rows(prompts, batch)
    feeds = reads_features(draft)
    if feeds:
        if verifier is None:
            raise ConfigError(f"{draft.name} reads the verifier's hidden states; pass the "
                              f"verifier to draft_latency")
        verifier.start(rows)
        draft.observe(verifier.features)
        width = verifier.features.shape[-1]
    draft.start(rows)
    greedy, gen = Sampling(), torch.Generator().manual_seed(0)

    def propose(size):
        if isinstance(size, TreeShape):
            return draft.propose_tree(size, greedy, gen)
        return draft.propose(size, greedy, gen)

    def settle(proposal, size) -> None:
        dev = proposal.tokens.device
        nxt = proposal.tokens[:, 0] if proposal.tokens.shape[1] else \
            torch.zeros(batch, dtype=torch.long, device=dev)
        if feeds:
            draft.observe(verifier.features.new_zeros(batch, proposal.tokens.shape[1] + 1,
                                                      width))
        if isinstance(size, TreeShape):
            draft.commit_path(torch.zeros(batch, size.depth + 1, dtype=torch.long, device=dev),
                              torch.ones(batch, dtype=torch.long, device=dev), nxt)
        else:
            draft.commit((proposal.lengths // 2).to(dev), nxt)

    return {g: median_ms(lambda: propose(g), device, repeats, warmup,
                         after=lambda p: settle(p, g)) for g in gammas}


def tree_rows(verifier, draft, shape: TreeShape, prompts: Sequence[Sequence[int]],
              max_new_tokens: int, batch: int, sampling: Sampling | None = None,
              seed: int = 0) -> list[list[int]]:
    """Tokens each prompt gains at each verifier pass when the engine decodes ``prompts`` with
    trees of ``shape`` through ``batch`` continuously refilled rows (static batches where the
    models cannot refill). Under greedy decoding a row's walk does not depend on its batch, so
    one run gives every batch size its TAR (``static_tar``/``continuous_tar``)."""
    rows: list[list[int]] = [[] for _ in prompts]
    SpeculativeDecoder(verifier, draft, shape).generate(
        prompts, max_new_tokens=max_new_tokens, sampling=sampling, seed=seed, batch_size=batch,
        stream=lambda row, new, _: rows[row].append(len(new)))
    return rows


class _TimedPrefill:
    """A model seen through a proxy that times its prefills (``start``, and ``admit`` when it
    has one), so decode-only time is total − prefill; everything else passes through."""

    def __init__(self, inner, device) -> None:
        self._inner, self._device, self.prefill_ms = inner, device, 0.0
        if callable(getattr(inner, "admit", None)):  # the proxy refills only if the model can
            self.admit = self._timed(inner.admit)
        self.start = self._timed(inner.start)

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def _timed(self, fn):
        def timed(*args) -> None:
            t0 = _clock(self._device)
            fn(*args)
            self.prefill_ms += 1000 * (_clock(self._device) - t0)
        return timed


@attrs.frozen
class Measurement:
    """Decode throughput of a live run (prefill excluded) and per-pass means of its parts."""

    throughput: float
    tar: float
    draft_ms: float
    verify_ms: float
    overhead_ms: float
    acceptance: list[float]

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v)
                for k, v in attrs.asdict(self).items()}


def measure(verifier, draft, gamma, batch: int, prompts: Sequence[Sequence[int]],
            max_new_tokens: int = 64, repeats: int = 3, sampling: Sampling | None = None,
            seed: int = 0, refill: bool = False) -> Measurement:
    """Run the engine over ``prompts`` in consecutive batches of ``batch`` (``refill``: all of
    them through ``batch`` continuously refilled rows) and report the median (over
    ``repeats``) decode throughput: tokens / (total − prefill) time.

    ``gamma`` is a fixed lookahead, a :class:`TreeShape` or a :class:`LookaheadPolicy`;
    ``draft=None`` or ``gamma=0`` decodes target-only."""
    if not prompts:
        raise ConfigError("measure needs at least one prompt")
    device = verifier.device
    runs = []
    for _ in range(repeats):
        v = _TimedPrefill(verifier, device)
        d = _TimedPrefill(draft, device) if draft is not None and gamma else None
        decoder = SpeculativeDecoder(v, d, gamma if d is not None else 0)
        tokens = passes = rows = emitted = 0
        total = draft_ms = verify_ms = 0.0
        proposed_at: list[int] = []
        accepted_at: list[int] = []
        parts = [prompts] if refill else [prompts[i:i + batch]
                                          for i in range(0, len(prompts), batch)]
        for part in parts:
            m = decoder.generate(part, max_new_tokens=max_new_tokens, sampling=sampling,
                                 seed=seed, batch_size=batch).metrics
            tokens += m.new_tokens
            passes += m.target_passes
            rows += m.row_steps
            emitted += m.emitted
            total += m.total_ms
            draft_ms += m.draft_ms
            verify_ms += m.verify_ms
            for j, (p, a) in enumerate(zip(m.proposed_at, m.accepted_at)):
                if j == len(proposed_at):
                    proposed_at.append(0)
                    accepted_at.append(0)
                proposed_at[j] += p
                accepted_at[j] += a
        decode = total - v.prefill_ms - (d.prefill_ms if d is not None else 0.0)
        runs.append(Measurement(1000 * tokens / decode, emitted / rows, draft_ms / passes,
                                verify_ms / passes, (decode - draft_ms - verify_ms) / passes,
                                [a / p if p else 0.0 for a, p in zip(accepted_at, proposed_at)]))
    return median_run(runs)


def median_run(runs: Sequence[Measurement]) -> Measurement:
    """The run of median throughput (the higher middle one of an even count)."""
    return sorted(runs, key=lambda r: r.throughput)[len(runs) // 2]


# -- latency from shape alone -------------------------------------------------------------------
def shape_latency(layers: int, width: int, vocab: int, batch: int, device: str = "cpu",
                  dtype: str = "float32", context: int = 128, repeats: int = 5,
                  warmup: int = 2) -> float:
    """Median ms of one cached decode step of a random-weight Llama-style decoder.

    Dimensions scale with ``width`` as in SmolLM2 (head size 64, three query heads per key/value
    head, MLP 8/3 × width); the vocabulary is the verifier's, because the output projection is
    often the largest single cost of a shallow draft.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if layers < 1 or width < 64 or width % 64:
        raise ConfigError(f"shape needs layers >= 1 and a width that is a multiple of 64; "
                          f"got {layers}x{width}")
    heads = width // 64
    config = LlamaConfig(vocab_size=vocab, hidden_size=width, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=max(1, heads // 3)
                         if heads % 3 == 0 else heads,
                         intermediate_size=64 * round(width * 8 / 3 / 64),
                         tie_word_embeddings=True, max_position_embeddings=context + 64)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(device=device, dtype=getattr(torch, dtype)).eval()
    ids = torch.randint(0, vocab, (batch, context), device=device)
    step = torch.randint(0, vocab, (batch, 1), device=device)
    with torch.inference_mode():
        out = model(ids, use_cache=True)
        key = "cache" if "cache" in out else "past_key_values"  # this transformers' keyword
        cache = out[key]

        def one():
            return model(step, use_cache=True, **{key: cache}).logits

        ms = median_ms(one, torch.device(device), repeats, warmup,
                       # a negative crop removes that many trailing tokens (transformers >= 5.17
                       # refuses a positive length)
                       after=lambda _: cache.crop(context - cache.get_seq_length()))
    del model, cache
    return ms


# -- the whole profile ---------------------------------------------------------------------------
def profile(verifier, drafts: Mapping[str, tuple[Any, dict]], prompts: Sequence[str],
            workload: str = "", batches: Sequence[int] = (1, 4, 16), gamma_max: int = 8,
            max_new_tokens: int = 64, repeats: int = 5, warmup: int = 2,
            temperature: float | None = None, shapes: Sequence[tuple[int, int]] = (),
            dtype: str = "float32", sweeps: int = 3, trees: Sequence[TreeShape | str] = (),
            progress: Progress | None = None) -> Profile:
    """Profile ``verifier`` and ``drafts`` (label -> (draft, config)) on ``prompts``.

    Latencies use ``repeats`` medians (the verifier's, over ``sweeps`` sweeps of every width);
    the engine overhead per step is read from short live runs at γ = 1 and γmax (its only live
    measurement); acceptance comes from record and replay. Each of ``trees`` (shapes, or text
    such as ``"4x2:8"``) is profiled for every draft that grows trees, if the verifier scores
    them, with its acceptance from a live run; the drafts that cannot are listed in
    ``meta["trees_skipped"]`` (label -> why).
    """
    say = progress or (lambda _: None)
    if gamma_max < 1 or not batches or min(batches) < 1 or sweeps < 1:
        raise ConfigError("profile needs gamma_max >= 1, batch sizes >= 1 and sweeps >= 1")
    trees = [TreeShape.parse(t) if isinstance(t, str) else t for t in trees]
    device = verifier.device
    ids = [verifier.tokenizer.encode(p) if isinstance(p, str) else list(p) for p in prompts]
    result = Profile(verifier.name, str(device), workload, gamma_max, sorted(batches),
                     meta=_meta(repeats, warmup, max_new_tokens, len(ids)) | {"sweeps": sweeps})
    draft_gammas = sorted({1, 2, 4, gamma_max} & set(range(1, gamma_max + 1)))
    widest = max([gamma_max] + [t.nodes for t in trees]) + 1
    for b in result.batches:
        say(f"verifier latency, batch {b}")
        result.verify_ms[b] = verifier_latency(verifier, ids, b, widest, repeats, warmup,
                                               sweeps)
        rows = _batch_rows(ids, b)
        result.target_overhead_ms[b] = measure(verifier, None, 0, b, rows, max_new_tokens,
                                               repeats=min(repeats, 3)).overhead_ms
    say("recording the verifier's greedy continuations")
    rec = record(verifier, ids, max_new_tokens, horizon=gamma_max, batch=max(result.batches),
                 workload=workload)
    skipped = {label: why for label, (draft, _) in drafts.items()
               if trees and (why := _no_trees(verifier, draft))}
    if skipped:
        result.meta["trees_skipped"] = skipped
    for label, (draft, config) in drafts.items():
        dp = DraftProfile(label, config)
        grown = [] if label in skipped else trees
        say(f"{label}: replaying acceptance")
        dp.acceptance = replay(rec, draft, gamma_max, batch=max(result.batches),
                               verifier=verifier)
        if temperature:
            sampled = measure(verifier, draft, gamma_max, max(result.batches), ids,
                              max_new_tokens, 1, Sampling(temperature=temperature))
            dp.acceptance.sampled = {"temperature": temperature,
                                     "cumulative": sampled.acceptance}
        for shape in grown:
            say(f"{label}: tree {shape} acceptance")
            tree = dp.trees[str(shape)] = TreeProfile(rows=tree_rows(
                verifier, draft, shape, ids, max_new_tokens, max(result.batches)))
            if temperature:
                tree.sampled = {"temperature": temperature, "rows": tree_rows(
                    verifier, draft, shape, ids, max_new_tokens, max(result.batches),
                    Sampling(temperature=temperature))}
        for b in result.batches:
            say(f"{label}: latency and overhead, batch {b}")
            ms = draft_latency(draft, ids, b, draft_gammas + grown, device, repeats, warmup,
                               verifier)
            dp.propose_ms[b] = {g: ms[g] for g in draft_gammas}
            rows = _batch_rows(ids, b)

            def overhead(lookahead) -> float:
                return measure(verifier, draft, lookahead, b, rows, max_new_tokens,
                               repeats=min(repeats, 3)).overhead_ms

            dp.overhead_ms[b] = {g: overhead(g) for g in sorted({1, gamma_max})}
            for shape in grown:
                dp.trees[str(shape)].propose_ms[b] = ms[shape]
                dp.trees[str(shape)].verify_ms[b] = tree_verifier_latency(
                    verifier, ids, b, shape, repeats, warmup)
                dp.trees[str(shape)].overhead_ms[b] = overhead(shape)
        result.drafts[label] = dp
    for layers, width in shapes:
        for b in result.batches:
            say(f"shape {layers}x{width}, batch {b}")
            result.shapes.append({"layers": layers, "width": width, "batch": b,
                                  "ms": shape_latency(layers, width, verifier.vocab_size, b,
                                                      str(device), dtype, repeats=repeats,
                                                      warmup=warmup)})
    return result


def _no_trees(verifier, draft) -> str | None:
    """Why ``draft`` cannot be profiled with token trees against ``verifier``, or None."""
    lacking = [f"{role} {m.name!r} has no {methods}" for role, m, able, methods in (
        ("verifier", verifier, scores_trees(verifier), "score_tree/keep_path"),
        ("draft", draft, grows_trees(draft), "propose_tree/commit_path")) if not able]
    return "; ".join(lacking) + " (chains only)" if lacking else None


def _meta(repeats: int, warmup: int, max_new_tokens: int, prompts: int) -> dict:
    import numpy

    meta = {"date": datetime.date.today().isoformat(), "machine": platform.machine(),
            "python": platform.python_version(), "numpy": numpy.__version__,
            "repeats": repeats, "warmup": warmup, "max_new_tokens": max_new_tokens,
            "prompts": prompts, "time": time.time()}
    try:
        import torch

        meta["torch"] = torch.__version__
        if torch.cuda.is_available():
            meta["gpu"] = torch.cuda.get_device_name()
    except ImportError:  # pragma: no cover - torch is needed to profile anything
        pass
    return meta
