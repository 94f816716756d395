"""The speculative decoding engine, written against the Verifier and DraftModel protocols.

One loop serves target-only decoding (no draft, γ = 0) and speculative decoding, so the two are
compared on equal terms. Each step: the draft proposes up to γ tokens per row; the verifier
scores the row's pending token plus the proposals in one pass; :func:`accept` keeps a prefix per
row and adds one token; both models roll their caches back to what was kept. The pending token
(the last one committed) is never in the verifier's cache: it is fed at the next step, which is
what makes the bonus token free.

On a GPU the host never waits for a step it has just launched: it queues step t + 1 (whose inputs
are step t's results, still on the device) and only then reads step t's tokens to append them,
stream them and check the stop rules. The host's bookkeeping thus overlaps the device's work
instead of leaving it idle between passes; the price is that a row's end (EOS, a stop string) is
seen one step late, so one more step may run for nothing.

With ``batch_size`` smaller than the number of prompts the batch is *continuous*: a row whose
output is done takes the next waiting prompt at once (its models' ``admit``), so the batch stays
full. In a static batch, rows whose draft accepts more finish early and sit idle until the
slowest row is done; that idle share grows with acceptance spread and costs speculative decoding
much of its gain at larger batches (a quarter of the row slots on code at batch 8). Models
without ``admit`` run the prompts in static batches of ``batch_size``, one after another.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Sequence

import attrs

from ..checks import check_number
from ..errors import ConfigError, IncompatibleModelsError
from ..protocols import (DraftModel, Verifier, grows_trees, keeps_greedy_chains,
                         keeps_greedy_trees, reads_features, scores_trees)
from .acceptance import accept
from .metrics import Metrics
from .policy import FixedLookahead, FixedTree, LookaheadPolicy, asks_for_trees
from .sampling import Sampling, warp
from .tree import TreeShape, accept_tree, with_root

MAX_NEW_TOKENS = 1 << 20
"""The most tokens one ``generate`` call makes per prompt where no model states a context
window: far beyond any model's, and a run that does end."""

StreamCallback = Callable[[int, list[int], str], None]
"""``stream(row, new_token_ids, new_text)``: called with each row's newly committed tokens."""


@attrs.define
class Generation:
    """Result of one ``generate`` call: per-row output tokens and text, and the run's metrics."""

    token_ids: list[list[int]]
    texts: list[str]
    finish_reasons: list[str]
    metrics: Metrics


@attrs.define
class _Row:
    """Committed output of one row and why it stopped (None while running)."""

    tokens: list[int] = attrs.field(factory=list)
    text: str = ""
    done: str | None = None


class SpeculativeDecoder:
    """Draft-then-verify generation whose output is distributed exactly as the verifier's.

    ``draft=None`` gives plain target-only decoding through the same loop. ``overlap``: commit
    each step on the host while the device runs the next (default: on when the verifier runs
    on CUDA; on a CPU the host *is* the device, so there is nothing to overlap).
    """

    def __init__(self, verifier: Verifier, draft: DraftModel | None = None,
                 policy: LookaheadPolicy | TreeShape | int | None = None,
                 overlap: bool | None = None) -> None:
        if draft is not None and draft.vocab_size not in (None, verifier.vocab_size):
            raise IncompatibleModelsError(
                f"draft {draft.name!r} has a vocabulary of {draft.vocab_size} tokens but verifier "
                f"{verifier.name!r} has {verifier.vocab_size}; a draft must share the verifier's "
                f"tokenizer (distil one with `thrifty distill`)"
            )
        self.feeds = reads_features(draft)
        if self.feeds and not hasattr(verifier, "features"):
            raise IncompatibleModelsError(
                f"draft {draft.name!r} reads the verifier's hidden states, but verifier "
                f"{verifier.name!r} does not expose them; use the 'hf-fast' verifier (it runs on "
                f"the CPU too)")
        self.verifier = verifier
        self.draft = draft
        if policy is None or isinstance(policy, int):
            policy = FixedLookahead(4 if policy is None else policy)
        elif isinstance(policy, TreeShape):
            policy = FixedTree(policy)
        self.policy = policy
        if draft is not None and asks_for_trees(policy):
            lacking = [f"{role} {m.name!r}" for role, m, able in (
                ("verifier", verifier, scores_trees(verifier)), ("draft", draft, grows_trees(draft)))
                if not able]
            if lacking:
                raise IncompatibleModelsError(
                    f"token trees need a verifier with score_tree/keep_path and a draft with "
                    f"propose_tree/commit_path; {' and '.join(lacking)} cannot; use a chain "
                    f"lookahead (an int γ) with these models")
        self.overlap = (getattr(verifier.device, "type", str(verifier.device)) == "cuda"
                        if overlap is None else bool(overlap))

    # -- public API ------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str] | Sequence[Sequence[int]], *,
                 max_new_tokens: int = 64, sampling: Sampling | None = None,
                 stop: Sequence[str] = (), seed: int = 0,
                 stream: StreamCallback | None = None,
                 batch_size: int | None = None) -> Generation:
        """Generate for prompts (strings, or token-id lists): all in one batch, or through
        ``batch_size`` rows, each refilled with the next prompt as soon as its output is done
        (continuous batching; static batches one after another where a model cannot
        :attr:`refills`). Outputs come back in the order of ``prompts``."""
        sampling = sampling or Sampling()
        if not isinstance(sampling, Sampling):
            raise ConfigError(f"sampling must be a thrifty.speculative.Sampling; got "
                              f"{sampling!r}")
        ids = self._encode(prompts)
        check_number("max_new_tokens", max_new_tokens, low=1, high=MAX_NEW_TOKENS, integer=True)
        self._check_context(ids, max_new_tokens)
        if batch_size is None:
            batch_size = len(ids)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1 (rows decoded at once); got "
                              f"{batch_size!r}")
        # each static batch draws from its own seed: one seed for all would sample the same
        # output again for a prompt that comes back in a later batch
        run = lambda part, offset: self._run(  # noqa: E731
            part, min(batch_size, len(part)), max_new_tokens, sampling, stop, seed + offset,
            stream if stream is None or not offset else
            (lambda b, new, text: stream(b + offset, new, text)))
        if batch_size >= len(ids) or self.refills:
            return run(ids, 0)
        parts = [run(ids[s: s + batch_size], s) for s in range(0, len(ids), batch_size)]
        return Generation([t for g in parts for t in g.token_ids],
                          [t for g in parts for t in g.texts],
                          [r for g in parts for r in g.finish_reasons],
                          Metrics.merged([g.metrics for g in parts]))

    @property
    def refills(self) -> bool:
        """Whether a row can take a new prompt mid-batch: the verifier and the draft (if any)
        both have ``admit``."""
        return all(callable(getattr(m, "admit", None))
                   for m in (self.verifier, self.draft) if m is not None)

    @property
    def _lookahead_max(self) -> int:
        """The most tokens a step proposes per row (a tree's nodes), 0 without a draft."""
        return getattr(self.policy, "gamma_max", 0) if self.draft is not None else 0

    @property
    def _room(self) -> int | None:
        """The most tokens a row may hold in both models (``max_context``), None if unbounded."""
        limits = [m.max_context for m in (self.verifier, self.draft)
                  if getattr(m, "max_context", None) is not None]
        return min(limits, default=None)

    def _run(self, ids: list[list[int]], slots: int, max_new_tokens: int, sampling: Sampling,
             stop: Sequence[str], seed: int, stream: StreamCallback | None) -> Generation:
        """Decode ``ids`` through ``slots`` rows; ``owners[s]`` is the prompt row s serves."""
        import torch

        device = self.verifier.device
        generator = torch.Generator(device=device).manual_seed(seed)
        rows = [_Row() for _ in ids]
        owners = list(range(slots))
        waiting = deque(range(slots, len(ids)))
        metrics = Metrics(batch_size=slots)
        clock = _PhaseClock(device)
        start = getattr(self.policy, "start", None)
        if start is not None:  # a policy that depends on the batch size learns it here
            start(slots)
        self.verifier.start(ids[:slots])
        if self.draft is not None:
            if self.feeds:
                self.draft.observe(self.verifier.features)
            self.draft.start(ids[:slots])
        pending = torch.tensor([p[-1] for p in ids[:slots]], device=device)
        held = [len(p) for p in ids[:slots]]
        # a row holding more than this may outgrow its window in the next two steps (one in
        # flight, one launched now), each adding up to a lookahead + 1 tokens: then the step in
        # flight is committed first, so that a row it finishes is known to be done (and rests,
        # when nothing is left to take) before another step is launched over it
        room = self._room
        crowded_past = None if room is None else room - 2 * self._lookahead_max - 1
        inflight: _Step | None = None
        commit = lambda step: self._commit(rows, step, metrics, max_new_tokens, stop,  # noqa: E731
                                           stream, owners, held)
        while True:
            if waiting:
                pending = self._refill(ids, rows, owners, waiting, pending, held)
            live = [rows[i] for i in owners]
            if all(r.done for r in live):
                break
            crowded = crowded_past is not None and max(held) > crowded_past
            resting = [] if waiting or not crowded or not self.refills else [
                s for s, i in enumerate(owners) if rows[i].done and held[s] > crowded_past]
            if inflight is not None and (not self.overlap or crowded
                                         or _may_end_all(live, inflight, max_new_tokens)):
                commit(inflight)
                inflight = None
                continue
            if resting:
                pending = self._rest(min(ids, key=len), resting, pending, held)
            step = self._launch(pending, sampling, generator, clock, tuple(owners))
            pending = step.next
            if inflight is not None:
                commit(inflight)  # on the host while the GPU runs the step just launched
            inflight = step
        metrics.total_ms, phases = clock.finish()
        metrics.draft_ms, metrics.verify_ms = phases.get("draft", 0.0), phases.get("verify", 0.0)
        metrics.new_tokens = sum(len(r.tokens) for r in rows)
        decode = self.verifier.tokenizer.decode
        texts = [r.text if r.done == "stop" else decode(r.tokens, skip_special_tokens=True)
                 for r in rows]
        return Generation([r.tokens for r in rows], texts,
                          [r.done or "length" for r in rows], metrics)

    def _refill(self, ids, rows, owners: list[int], waiting: deque, pending, held: list[int]):
        """Give each row whose output is done the next waiting prompt; returns the new pending
        tokens. Queued after any step in flight, which still reads the row's old state: its
        results for that row are dropped, as they belong to the finished prompt."""
        for s, i in enumerate(owners):
            if not waiting:
                break
            if rows[i].done:
                owners[s] = nxt = waiting.popleft()
                pending = self._admit(s, ids[nxt], pending, held)
        return pending

    def _rest(self, prompt: list[int], slots: list[int], pending, held: list[int]):
        """Reset rows whose output is done, with nothing left to take, to ``prompt`` (the run's
        shortest, which fits as any prompt does). Such a row is stepped with its batch, its
        tokens dropped, and keeps up to a lookahead + 1 tokens a step, so without a reset it
        could outgrow a cache sized for prompt + max_new_tokens + lookahead, which
        :meth:`_check_context` promises is enough. Called with no step in flight, so every
        token a row holds has been counted in ``held``."""
        for s in slots:
            pending = self._admit(s, prompt, pending, held)
        return pending

    def _admit(self, slot: int, prompt: list[int], pending, held: list[int]):
        """Reset row ``slot`` of both models to ``prompt``; returns the new pending tokens."""
        self.verifier.admit(slot, prompt)
        if self.draft is not None:
            if self.feeds:
                self.draft.observe(self.verifier.features)
            self.draft.admit(slot, prompt)
        held[slot] = len(prompt)
        pending = pending.clone()
        pending[slot] = prompt[-1]
        return pending

    def _check_context(self, ids: list[list[int]], max_new_tokens: int) -> None:
        """Refuse before decoding when the longest prompt + max_new_tokens + lookahead would not
        fit a model's context window (its optional ``max_context``): past it a model computes
        positions it was not built for, or a static cache runs out mid-run. A row whose output
        is done keeps being stepped (its tokens dropped) while others of its batch decode;
        models with ``admit`` have it reset before it outgrows their window (:meth:`_rest`),
        while with models without it a cache sized exactly to the sum can run out then: a
        clear error from the cache, never a different token."""
        gamma = self._lookahead_max
        longest = max(map(len, ids))
        need = longest + max_new_tokens + gamma
        for role, model in (("verifier", self.verifier), ("draft", self.draft)):
            limit = getattr(model, "max_context", None)
            if limit is not None and need > limit:
                raise ConfigError(
                    f"the longest prompt ({longest} tokens) + max_new_tokens ({max_new_tokens}) "
                    f"+ lookahead ({gamma}) = {need} tokens exceed the context window of "
                    f"{role} {model.name!r} ({limit} tokens); shorten the prompt or lower "
                    f"max_new_tokens or the lookahead")

    # -- steps ---------------------------------------------------------------------------------
    def _encode(self, prompts) -> list[list[int]]:
        if isinstance(prompts, (str, bytes)) or not len(prompts):
            raise ConfigError("prompts must be a non-empty list of strings or token-id lists")
        out = []
        for i, prompt in enumerate(prompts):
            ids = self.verifier.tokenizer.encode(prompt) if isinstance(prompt, str) \
                else [int(t) for t in prompt]
            if not ids:
                raise ConfigError(f"prompt {i} is empty after tokenisation; give at least one token")
            bad = [t for t in ids if not 0 <= t < self.verifier.vocab_size]
            if bad:
                raise ConfigError(f"prompt {i} has token ids outside the vocabulary: {bad[:5]}")
            out.append(ids)
        return out

    def _launch(self, pending, sampling: Sampling, generator, clock: "_PhaseClock",
                owners: tuple[int, ...]) -> "_Step":
        """Queue one draft-verify-accept step on the device; nothing here waits for it.
        ``owners``: the prompt each row serves now, so that the step commits to them."""
        import torch

        shape = self.policy.tree() if self.draft is not None and callable(
            getattr(self.policy, "tree", None)) else None
        if shape is not None:
            return self._launch_tree(shape, pending, sampling, generator, clock, owners)
        gamma = self.policy.gamma() if self.draft is not None else 0
        t0 = clock.mark()
        proposal = self.draft.propose(gamma, sampling, generator) if gamma else None
        t1 = clock.mark()
        if proposal is None:
            drafted = pending.new_zeros(len(pending), 0)
            lengths = pending.new_zeros(len(pending))
            q = None
        else:
            # score only as many columns as the longest proposal, so that rows that found
            # nothing (an n-gram miss) do not make the verifier score padding; lengths that
            # live on the device are not read (that would wait for the draft), all columns are
            # scored instead
            on_host = proposal.lengths.device.type == "cpu"
            width = int(proposal.lengths.max()) if on_host else proposal.tokens.shape[1]
            lengths = proposal.lengths.to(pending.device)
            drafted = proposal.tokens[:, :width].to(pending.device)
            q = None if proposal.q is None else proposal.q[:, :width]
        tokens = torch.cat([pending[:, None], drafted], 1)
        # a verifier that accepts and keeps greedily itself leaves its logits unread
        kept_by_verifier = sampling.greedy and keeps_greedy_chains(self.verifier)
        if kept_by_verifier:
            accepted, nxt = self.verifier.keep_greedy_chain(tokens, lengths + 1)
        else:
            logits = self.verifier.score(tokens, lengths + 1)
        if self.feeds:
            self.draft.observe(self.verifier.features)
        t2 = clock.mark()
        if not kept_by_verifier:
            # greedy acceptance needs only the argmax, which the raw logits already give
            p = logits if sampling.greedy else warp(logits, sampling)
            accepted, nxt = accept(p, drafted, lengths, q=q, generator=generator,
                                   greedy=sampling.greedy)
            self.verifier.keep(accepted + 1)
        if self.draft is not None:
            self.draft.commit(accepted, nxt)
        clock.add("draft", t0, t1)
        clock.add("verify", t1, t2)
        return _Step.copy(drafted, lengths, accepted, nxt, gamma, owners)

    def _launch_tree(self, shape: TreeShape, pending, sampling: Sampling, generator,
                     clock: "_PhaseClock", owners: tuple[int, ...]) -> "_Step":
        """One step with a token tree: the verifier scores every node in one pass and
        :func:`accept_tree` keeps a root-to-node path per row."""
        t0 = clock.mark()
        proposal = self.draft.propose_tree(shape, sampling, generator)
        t1 = clock.mark()
        tokens, parents, lengths = with_root(proposal, pending)
        # a verifier that walks and keeps the greedy path itself leaves its logits unread
        kept_by_verifier = sampling.greedy and keeps_greedy_trees(self.verifier)
        if kept_by_verifier:
            path, kept, nxt = self.verifier.keep_greedy_tree(tokens, parents, lengths, shape)
        else:
            logits = self.verifier.score_tree(tokens, parents, lengths)
        if self.feeds:
            self.draft.observe(self.verifier.features)
        t2 = clock.mark()
        if not kept_by_verifier:
            p = logits if sampling.greedy else warp(logits, sampling)
            q = None if proposal.q is None else proposal.q.to(p.device)
            path, kept, nxt = accept_tree(p, tokens[:, 1:], parents[:, 1:], lengths - 1, shape,
                                          q=q, generator=generator, greedy=sampling.greedy)
            self.verifier.keep_path(path, kept)
        self.draft.commit_path(path, kept, nxt)
        clock.add("draft", t0, t1)
        clock.add("verify", t1, t2)
        # the kept nodes' tokens play the part of a chain's accepted proposals
        on_path = tokens.gather(1, path)[:, 1:]
        return _Step.copy(on_path, lengths - 1, kept - 1, nxt, shape.depth, owners)

    def _commit(self, rows, step: "_Step", metrics, limit, stop, stream, owners: list[int],
                held: list[int]) -> None:
        """Append each running row's accepted tokens and next token to the prompt the row
        served when the step was launched; apply the stop rules. ``held[b]`` counts the tokens
        row b's models hold, while the row still serves that prompt (``owners``)."""
        drafted_l, lens, acc, nxt_l = step.lists()
        if step.gamma:
            self.policy.observe(step.host[:, -3], step.host[:, -2])
        eos = self.verifier.eos_token_ids
        proposed, kept, emitted = [], [], []
        for b, owner in enumerate(step.owners):
            if owners[b] == owner:
                held[b] += acc[b] + 1
            row = rows[owner]
            if row.done:
                continue
            new = drafted_l[b][: acc[b]] + [nxt_l[b]]
            proposed.append(lens[b])
            kept.append(acc[b])
            emitted.append(len(new))
            room = limit - len(row.tokens)
            if len(new) >= room:
                new, row.done = new[:room], "length"
            for i, tok in enumerate(new):
                if tok in eos:
                    new, row.done = new[: i + 1], "eos"
                    break
            row.tokens.extend(new)
            if stop or stream is not None:  # text is only needed to find stops or to stream
                self._update_text(owner, row, new, stop, stream)
        metrics.record_step(proposed, kept, emitted)

    def _update_text(self, b: int, row: _Row, new: list[int], stop, stream) -> None:
        before = row.text
        row.text = self.verifier.tokenizer.decode(row.tokens, skip_special_tokens=True)
        hit = _first_stop(row.text, stop, len(before))
        if hit is not None:
            row.text, row.done = row.text[:hit], "stop"
            row.tokens = _tokens_for(row.tokens, hit, self.verifier.tokenizer)
        if stream is not None:
            stream(b, new, row.text[len(before):] if row.text.startswith(before) else row.text)


@attrs.define
class _Step:
    """A launched step: the next pending tokens (on the device) and a copy of what the host
    needs (proposals, lengths, accepted counts, next tokens) that is read only when committed.

    On CUDA the copy goes to pinned memory without waiting, and :meth:`lists` waits for it (an
    event), so the host can commit one step while the device runs the next.
    """

    next: Any
    host: Any  # long [B, width + 3]: proposals, then lengths, accepted, next
    ready: Any  # a CUDA event, or None when the copy is already done
    gamma: int
    owners: tuple[int, ...]  # the prompt each row served at launch

    @classmethod
    def copy(cls, drafted, lengths, accepted, nxt, gamma: int,
             owners: tuple[int, ...]) -> "_Step":
        import torch

        both = torch.cat([drafted.long(), lengths.long()[:, None], accepted[:, None],
                          nxt[:, None]], 1)
        ready = None
        if both.device.type == "cuda":
            both = both.to("cpu", non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
        return cls(nxt, both, ready, gamma, owners)

    @property
    def width(self) -> int:
        return self.host.shape[1] - 3

    def lists(self) -> tuple[list[list[int]], list[int], list[int], list[int]]:
        """Host lists (proposals, lengths, accepted, next), once the device has written them."""
        if self.ready is not None:
            self.ready.synchronize()
        host = self.host.tolist()
        return ([r[: self.width] for r in host], [r[-3] for r in host], [r[-2] for r in host],
                [r[-1] for r in host])


def _may_end_all(rows: Sequence[_Row], step: _Step, limit: int) -> bool:
    """Whether ``step`` can bring every running row to ``limit`` tokens: then the engine commits
    it before launching another, which would otherwise run for nothing."""
    return all(len(r.tokens) + step.width + 1 >= limit for r in rows if not r.done)


def _first_stop(text: str, stop: Sequence[str], since: int) -> int | None:
    """Index in ``text`` where the earliest stop string begins, looking only at new text."""
    hits = []
    for s in stop:
        i = text.find(s, max(since - len(s) + 1, 0))
        if i >= 0:
            hits.append(i)
    return min(hits) if hits else None


def _tokens_for(tokens: list[int], cut: int, tokenizer) -> list[int]:
    """The shortest prefix of ``tokens`` whose text reaches ``cut`` characters (the stop)."""
    for n in range(1, len(tokens) + 1):
        if len(tokenizer.decode(tokens[:n], skip_special_tokens=True)) > cut:
            return tokens[:n]
    return tokens


class _PhaseClock:
    """Times the draft and verify phases without stalling the GPU.

    On CUDA it records events on the stream and reads them once, after the last step: a
    ``synchronize`` per phase would leave the GPU idle while the host catches up, and the
    timing itself would slow decoding. On the CPU it reads ``perf_counter``.
    """

    def __init__(self, device) -> None:
        import torch

        self.cuda = getattr(device, "type", str(device)) == "cuda"
        self._event = (lambda: torch.cuda.Event(enable_timing=True)) if self.cuda else None
        self.spans: list[tuple[str, object, object]] = []
        self.begin_wall = time.perf_counter()

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = self._event()
        event.record()
        return event

    def add(self, phase: str, start, end) -> None:
        self.spans.append((phase, start, end))

    def _ms(self, start, end) -> float:
        return start.elapsed_time(end) if self.cuda else 1000 * (end - start)

    def finish(self) -> tuple[float, dict[str, float]]:
        """Total wall milliseconds and milliseconds per phase."""
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        total = 1000 * (time.perf_counter() - self.begin_wall)
        phases: dict[str, float] = {}
        for phase, start, end in self.spans:
            phases[phase] = phases.get(phase, 0.0) + self._ms(start, end)
        return total, phases
