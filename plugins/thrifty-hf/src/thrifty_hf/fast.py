"""GPU fast path: a causal LM's forward over a per-row static KV cache, replayed as CUDA graphs.

Why: SmolLM2-135M is so small that an eager Hugging Face forward on a GPU is nothing but kernel
launches (about 21 ms a pass on an H200, flat from 1 to 17 tokens), so per-pass overhead, not
arithmetic, decides the speed of speculative decoding. A static cache (fixed slots per row, a
per-row count of valid slots) makes every step the same shapes with no allocation and no host
synchronisation, so each (batch, tokens) shape is captured once as a CUDA graph and replayed;
prefills too, padded to a few bucket lengths.

Rollback is free: row b's cache is valid in slots ``[0, n[b])``; a step writes its k tokens at
slots ``n[b] .. n[b]+k-1`` and every query sees only slots up to its own position, so slots past
``n[b]`` are never read until overwritten. Keeping ``m`` of the k tokens is ``n[b] += m``. A
token tree is the same step with another mask and other positions (:mod:`.steps`); keeping a
root-to-node path moves its keys and values to the first slots of the step, in every layer.
Attention reads only the slots the rows hold, rounded up to a bucket chosen on the host
(:meth:`StaticLM.span`), so its cost follows the context in use rather than ``max_len``.

The same :class:`StaticLM` runs a verifier or a thrifty draft (:mod:`thrifty_hf.drafts`) with
one of two bodies over the same cache (:func:`make_body`): the fused Llama forward of
:mod:`.fused` (fused copies of q/k/v and gate/up, the rest shared; half the kernel launches) for
the models its allow-list admits, and the model's own transformers modules (:mod:`.generic`)
for every other tested family; the rest are refused at load. On the CPU, or with
``graphs=False``, it runs the same forward eagerly, which is what the CPU tests check against
transformers' own forward, family by family. Every forward also returns the final hidden states,
which the verifier passes on to a feature draft (:class:`FastFeatureDraft`); a greedy proposal
of γ tokens is captured as one graph, and so is a greedy token tree (the chain with its
runners-up as leaf siblings, :func:`thrifty.speculative.tree.sibling_tree`, or an EAGLE-2
expansion, compiled whole with ``compile=true``), the verifier's greedy step (the pass, greedy
acceptance and the keeping, chain or tree: :meth:`FastVerifier.keep_greedy_chain`,
:meth:`FastVerifier.keep_greedy_tree`) and a draft's re-pending of the path kept.
"""

from __future__ import annotations

from typing import Sequence

from thrifty.errors import ConfigError
from thrifty.protocols import Proposal


BODIES = ("auto", "fused", "generic")


def make_body(model, max_len: int, body: str = "auto", vocab=None):
    """The forward that runs ``model`` over the static cache: the fused Llama body
    (:mod:`.fused`) where its allow-list holds, transformers' own modules (:mod:`.generic`)
    otherwise. ``body`` forces one ("fused" is refused where its allow-list fails). ``vocab``
    (token ids, a thrifty draft's): the logits cover these tokens only, in this order."""
    from .fused import FusedBody, fused_refusal
    from .generic import GenericBody

    if body not in BODIES:
        raise ConfigError(f"unknown fast-path body {body!r}; choose one of {', '.join(BODIES)}")
    why = fused_refusal(model, max_len) if body != "generic" else "the generic body was asked for"
    if body == "fused" and why is not None:
        raise ConfigError(f"the fused Llama body cannot run {type(model).__name__} exactly: "
                          f"{why}; use body='auto', which takes the generic body")
    return (FusedBody if why is None else GenericBody)(model, max_len, vocab)


class StaticLM:
    """A causal LM over a static KV cache of ``batch`` rows x ``max_len`` slots.

    ``forward(tokens, n)`` appends ``tokens`` [B, k] at slots ``n[b]..`` of each row and returns
    the final hidden states [B, k, E] (the LM head's input, which feature drafts read) and
    float32 logits [B, k, V]; it is a pure function of its inputs and the cache, so it can be
    captured as a CUDA graph per shape. ``run`` replays the graph of the shape (on CUDA).

    ``vocab`` (a draft's: LongTensor of token ids, see :mod:`thrifty_hf.ranking`): the logits
    cover only these tokens, column i for token ``vocab[i]`` (:meth:`tokens_of` maps a column to
    its token, :meth:`full_logits` widens them to the whole vocabulary).
    """

    def __init__(self, model, *, max_len: int = 1024, graphs: bool | None = None,
                 body: str = "auto", compile: bool = False, vocab=None) -> None:
        import torch

        self.max_len = int(max_len)
        self.body = make_body(model, self.max_len, body, vocab)
        if compile:
            # one compilation per step shape (batch, tokens; prefill buckets): more than
            # dynamo's default of 8, after which it would quietly run the shape uncompiled
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
            self.body.compile()
        self.device = model.get_output_embeddings().weight.device
        self.dtype = self.body.dtype
        self.vocab_size, self.width = int(self.body.vocab_size), int(self.body.width)
        self.proposable = None if vocab is None else vocab.to(self.device)
        limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        self.max_context = min(self.max_len, limit) if limit else self.max_len
        """Tokens a row may hold: the static cache, and no more positions than the model has."""
        self.graphs_on = (self.device.type == "cuda") if graphs is None else bool(graphs)
        if self.graphs_on and self.device.type != "cuda":
            raise ConfigError("CUDA graphs need a CUDA device; pass graphs=False on the CPU")
        dev = self.device
        self.slots = torch.arange(self.max_len, device=dev)
        self.prefill_bucket = 64 if self.graphs_on else 1
        """Prefills are padded to a multiple of this many tokens, so that a few captured graphs
        serve every prompt length: an eager prefill launches its ~1,200 kernels one by one
        from Python, which cost more than the pass itself and weighed on every generate call
        (3x more per step for speculative decoding, which takes 3x fewer steps)."""
        self.span_bucket = 256 if self.graphs_on else 16
        """Attention reads the first S slots of each row, S the next multiple of this many
        that covers the longest row (see :meth:`span`): a step's attention and masks then cost
        what the rows hold, not ``max_len`` (SmolLM2-135M lost a third of its speed on an
        H100 when ``max_len`` grew from 1024 to 2560), and each (shape, S) is one graph."""
        self.batch = 0
        self.cache = None
        self._graphs: dict = {}
        self._pool = None

    # -- cache ---------------------------------------------------------------------------------
    def reset(self, batch: int) -> None:
        """Make room for ``batch`` rows (reallocating, and dropping graphs, if it changed)."""
        import torch

        if batch == self.batch:
            return
        self._graphs.clear()
        # the graphs were the pool's only users: PyTorch frees a private pool with its last
        # graph, and capturing into the stale handle fails, so the next capture opens a new one
        self._pool = None
        self.cache = None
        # [layer, key | value, row, kv head, slot, head dim]: one write per layer stores a
        # step's keys and values, and each layer's keys (values) are one contiguous block
        b = self.body
        self.cache = torch.zeros((b.layers, 2, batch, b.kv_heads, self.max_len, b.head_dim),
                                 device=self.device, dtype=self.dtype)
        # row indices live as long as the graphs that read them (a graph holds addresses)
        self.rows = torch.arange(batch, device=self.device)
        self.batch = batch

    # -- the forward ---------------------------------------------------------------------------
    def tokens_of(self, columns):
        """The token ids of logit columns ``columns`` (the same ids without a ``vocab``)."""
        return columns if self.proposable is None else self.proposable[columns]

    def full_logits(self, logits):
        """``logits`` [..., columns] over the whole vocabulary: -inf for every token outside
        ``vocab`` (probability 0 under any sampling warp), so a sampled draft's q is a
        distribution over token ids, as acceptance reads it."""
        if self.proposable is None:
            return logits
        out = logits.new_full((*logits.shape[:-1], self.vocab_size), float("-inf"))
        return out.index_copy_(out.dim() - 1, self.proposable, logits)

    def span(self, reach: int | None) -> int:
        """The slots a step reads when no row holds more than ``reach`` tokens after it (a
        host-side bound, so choosing costs no synchronisation): ``reach`` rounded up to a
        multiple of :attr:`span_bucket`, every slot when ``reach`` is None."""
        if reach is None:
            return self.max_len
        return min(-(-max(reach, 1) // self.span_bucket) * self.span_bucket, self.max_len)

    def forward(self, tokens, n, features=None, logits: bool = True, at=None, parents=None,
                span: int | None = None, fresh: bool = False):
        """Append ``tokens`` [B, k] at slots ``n[b] + i``; return (hidden [B, k, E], float32
        logits [B, k, V] or None). ``features`` [B, k, E]: a feature draft's second input.
        ``at`` (LongTensor [B]): the cache rows to use, when not all of them (an admission).
        ``parents`` [B, k] (or the ancestry [B, k, k]): the tokens are a tree (see
        :class:`thrifty_hf.steps.Step`), not a chain. ``span``: attention reads slots
        ``0 .. span-1`` only (every slot by default), which must cover ``n[b] + k`` of every
        row. ``fresh``: every row's ``n`` is 0 (a prefill; see :class:`thrifty_hf.steps.Step`).

        Runs without autograd: one weight that still required grad once turned every cache write
        into an autograd node, so each step's graph held the previous caches alive and the
        tensor <-> node cycles outlived the model (hundreds of MiB per configuration)."""
        import torch

        with torch.no_grad():
            return self.body.forward(self.cache, self.slots[:span], tokens, n, features,
                                     logits, at, parents, fresh)

    def run(self, tokens, n, features=None, parents=None, reach: int | None = None):
        """``forward`` through the CUDA graph of this shape (captured on first use).
        ``reach``: a host-side bound on every row's tokens after the step, which picks the
        slots attention reads (:meth:`span`), a part of the graph's key."""
        span = self.span(reach)
        extra = {name: t for name, t in (("features", features), ("parents", parents))
                 if t is not None}
        inputs = (tokens, n, *extra.values())

        def step(tokens, n, *rest):
            return self.forward(tokens, n, span=span, **dict(zip(extra, rest)))

        key = ("step", span, *extra) + tuple(tuple(t.shape) for t in inputs)
        return self.replay(key, step, inputs)

    def replay(self, key, fn, inputs):
        """``fn(*inputs)``, a function of tensors that runs this model over its cache, as the
        CUDA graph stored under ``key`` (captured on first use; eager without graphs). The
        outputs are the graph's own buffers: valid until its next replay."""
        if not self.graphs_on:
            return fn(*inputs)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(fn, inputs)
            self._graphs[key] = entry
        graph, static, out = entry
        for dst, src in zip(static, inputs):
            dst.copy_(src)
        graph.replay()
        return out

    def _capture(self, fn, inputs):
        import torch

        static = tuple(t.clone() for t in inputs)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):  # warm-up: writes the same slots the real step will rewrite
                fn(*static)
        torch.cuda.current_stream(self.device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = fn(*static)
        return graph, static, out

    def prefill(self, prompts: Sequence[Sequence[int]], features=None, row: int | None = None):
        """Reset to ``len(prompts)`` rows and cache each prompt (``features`` [B, L, E]: a
        feature draft's, for the longest prompt's L). Returns the counts ``n`` and the final
        hidden states [B, L, E] (row b's first ``len(prompts[b])`` are real; on CUDA a graph
        buffer, valid until the next prefill). With ``row``, cache the one prompt in that row
        alone and leave the others as they are (continuous batching)."""
        import torch

        if row is None:
            self.reset(len(prompts))
        elif len(prompts) != 1 or not 0 <= row < self.batch:
            raise ConfigError(f"admit one prompt into a row 0..{self.batch - 1} of the running "
                              f"batch; got {len(prompts)} prompts for row {row!r}")
        longest = max(len(p) for p in prompts)
        self.check_room(longest)
        n = torch.zeros(len(prompts), dtype=torch.long, device=self.device)
        if longest:
            # slots past a row's prompt are never read before they are overwritten, so padding
            # to the bucket changes nothing but the shape
            width = min(-(-longest // self.prefill_bucket) * self.prefill_bucket, self.max_len)
            pad = torch.zeros(len(prompts), width, dtype=torch.long)
            for b, p in enumerate(prompts):
                pad[b, : len(p)] = torch.as_tensor(list(p), dtype=torch.long)
            inputs = (_upload(pad, self.device), n)
            if features is not None:
                inputs += (torch.nn.functional.pad(features, (0, 0, 0, width - longest)),)
            span = self.span(width)
            if row is None:
                fn = lambda *x: self.forward(*x, logits=False, span=span,  # noqa: E731
                                             fresh=True)
            else:
                inputs += (_upload([row], self.device),)
                fn = lambda *x: self.forward(*x[:-1], logits=False, at=x[-1],  # noqa: E731
                                             span=span, fresh=True)
            key = ("prefill", row is None) + tuple(tuple(t.shape) for t in inputs)
            hidden, _ = self.replay(key, fn, inputs)
            hidden = hidden[:, :longest]
        else:
            hidden = torch.zeros(len(prompts), 0, self.width, device=self.device,
                                 dtype=self.dtype)
        return _upload([len(p) for p in prompts], self.device), hidden

    def check_room(self, needed: int) -> None:
        if needed > self.max_len:
            raise ConfigError(
                f"the fast path's static cache holds {self.max_len} tokens per row and this "
                f"step needs {needed}; pass a larger max_len (the option of the hf-fast "
                f"verifier and draft)")


class _Room:
    """An upper bound on the longest row's cache use, so that capacity checks need no sync."""

    def __init__(self, lm: StaticLM, n) -> None:
        self.lm, self.bound = lm, int(n.max()) if n.numel() else 0

    def ensure(self, n, extra: int) -> None:
        if self.bound + extra > self.lm.max_len:
            self.bound = int(n.max())  # the one synchronisation, only when near capacity
            self.lm.check_room(self.bound + extra)

    def grow(self, k: int) -> None:
        self.bound += k

    def cover(self, n: int) -> None:
        """A row now holds ``n`` tokens (an admitted prompt)."""
        self.bound = max(self.bound, n)


def _kept(lm: StaticLM, n, path, lengths):
    """The counts after row b keeps the columns ``path[b, :lengths[b]]`` of the step just
    written at its slots ``n[b] ..`` as its next tokens: their keys and values move from slots
    ``n[b] + path[b, i]`` to ``n[b] + i`` in every layer (the rest of ``path`` moves garbage
    past the new count, where nothing reads it)."""
    import torch

    cache, rows, start = lm.cache, lm.rows[:, None], n[:, None]
    cache[:, :, rows, :, start + torch.arange(path.shape[1], device=path.device)] = \
        cache[:, :, rows, :, start + path]
    return n + lengths


def _upload(values, device):
    """``values`` as a long tensor on ``device``, copied without waiting for queued GPU work:
    a copy from pageable host memory synchronises the stream, which would end the overlap of
    the step in flight whenever continuous batching admits a prompt (pinned memory is cached
    by torch and held until its copy is done)."""
    import torch

    t = torch.as_tensor(values, dtype=torch.long)
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def _set_row(t, row: int, value):
    """``t`` with row ``row`` set to ``value``, as a new tensor: the old one may still be read
    by a step in flight."""
    t = t.clone()
    t[row] = value
    return t


class FastVerifier:
    """The Verifier protocol over :class:`StaticLM` (CUDA graphs on CUDA)."""

    def __init__(self, model, tokenizer, *, name: str = "hf-fast", max_len: int = 1024,
                 graphs: bool | None = None, eos_token_ids=None, body: str = "auto",
                 compile: bool = False) -> None:
        self.lm = StaticLM(model, max_len=max_len, graphs=graphs, body=body, compile=compile)
        self.max_context = self.lm.max_context
        self.model = model  # the HF model, whose embedding a thrifty draft shares
        self.name = name
        self.vocab_size = self.lm.vocab_size
        self.tokenizer = tokenizer
        self.device = self.lm.device
        if eos_token_ids is None:
            # the hf verifier's rule (generation config, model config, then the tokenizer), so
            # the two paths stop at the same tokens
            from .models import eos_token_ids as hf_eos

            eos_token_ids = hf_eos(model, tokenizer)
        self.eos_token_ids = frozenset(eos_token_ids)
        self.n = None
        self.features = None
        """Final hidden states of the last ``start`` or ``score`` ([B, k, E]), which a feature
        draft reads; a graph buffer, valid until the next ``score``."""

    def start(self, prompts) -> None:
        self.n, self.features = self.lm.prefill([list(p[:-1]) for p in prompts])
        self.room = _Room(self.lm, self.n)

    def score(self, tokens, lengths):
        return self.score_tree(tokens, None, lengths)

    def keep(self, lengths) -> None:
        self.n = self.n + lengths.to(self.n.device)
        self.room.grow(self._k)

    def score_tree(self, tokens, parents, lengths):
        """``score`` of a token tree per row (``parents`` None: a chain, each column the
        parent of the next). The nodes are written at slots ``n[b] ..`` in column order, each
        at the position of its depth and seeing its ancestors only (:class:`.steps.Step`);
        :meth:`keep_path` then moves the kept ones into place."""
        k = tokens.shape[1]
        self.room.ensure(self.n, k)
        self._k = k
        self.features, logits = self.lm.run(tokens, self.n, parents=parents,
                                             reach=self.room.bound + k)
        return logits.clone()

    def keep_path(self, path, lengths) -> None:
        """Keep the scored columns ``path[b, :lengths[b]]`` of row b as its next tokens
        (:func:`_kept`). A path may be wider than the tree it walked (the tree shape's depth);
        no row keeps more than the tree's columns."""
        path = path[:, : self._k].to(self.n.device)
        self.n = _kept(self.lm, self.n, path, lengths.to(self.n.device))
        self.room.grow(path.shape[1])

    def keep_greedy_chain(self, tokens, lengths):
        """``score``, greedy :func:`~thrifty.speculative.accept` and ``keep`` in one call
        (:meth:`_greedy_step`). Returns (accepted, next_tokens)."""
        from thrifty.speculative import accept

        def walk(tokens, n, lengths, logits):
            accepted, nxt = accept(logits, tokens[:, 1:], lengths - 1, greedy=True)
            return n + accepted + 1, accepted, nxt

        return self._greedy_step("chain", walk, tokens.shape[1], tokens, lengths)

    def keep_greedy_tree(self, tokens, parents, lengths, shape):
        """``score_tree``, greedy :func:`~thrifty.speculative.accept_tree` and ``keep_path``
        in one call (:meth:`_greedy_step`). Returns (path, kept, next_tokens)."""
        from thrifty.speculative import accept_tree

        k = tokens.shape[1]

        def walk(tokens, n, lengths, logits, parents):
            path, kept, nxt = accept_tree(logits, tokens[:, 1:], parents[:, 1:], lengths - 1,
                                          shape, greedy=True)
            return _kept(self.lm, n, path[:, :k], kept), path, kept, nxt

        return self._greedy_step(("tree", shape), walk, min(shape.depth + 1, k), tokens,
                                 lengths, parents)

    def _greedy_step(self, kind, walk, grown: int, tokens, lengths, parents=None):
        """The pass over ``tokens`` (a tree, given ``parents``), ``walk``'s greedy acceptance
        over its logits and the counts after keeping what it accepted, as one function of
        tensors, so on CUDA one graph replay: the walk and the keeping are dozens of small
        kernels (a hundred for a tree), which launched from Python one by one kept the GPU
        waiting for the host at every step. ``walk(tokens, n, lengths, logits[, parents])``
        returns (the new counts, what it found); the row holds at most ``grown`` more tokens.
        Returns what the walk found."""
        k = tokens.shape[1]
        self.room.ensure(self.n, k)
        span = self.lm.span(self.room.bound + k)
        inputs = (tokens, self.n, lengths) + (() if parents is None else (parents,))

        def step(tokens, n, lengths, *tree):
            hidden, logits = self.lm.forward(tokens, n, parents=tree[0] if tree else None,
                                             span=span)
            return hidden, *walk(tokens, n, lengths, logits, *tree)

        key = ("greedy step", kind, span) + tuple(tuple(t.shape) for t in inputs)
        self.features, *out = self.lm.replay(key, step, inputs)
        self.n, *found = (t.clone() for t in out)
        self.room.grow(grown)
        return tuple(found)

    def admit(self, row: int, prompt) -> None:
        _, self.features = self.lm.prefill([list(prompt[:-1])], row=row)
        self.n = _set_row(self.n, row, len(prompt) - 1)
        self.room.cover(len(prompt) - 1)


class _Proposer:
    """What both fast drafts share: the draft over a :class:`StaticLM` and its proposal loop.

    Greedy proposals are one function of tensors (pending tokens, counts, features), so on
    CUDA a whole proposal of γ tokens is one graph replay: a one-layer draft's step costs a few
    microseconds of GPU time, and launching each step (and its argmax) from Python cost several
    times more. Sampled proposals draw from a ``torch.Generator`` step by step.
    """

    def __init__(self, model, *, name: str = "hf-fast", max_len: int = 1024,
                 graphs: bool | None = None, body: str = "auto", compile: bool = False,
                 trees: str = "siblings", vocab=None) -> None:
        self.lm = StaticLM(model, max_len=max_len, graphs=graphs, body=body, compile=compile,
                           vocab=vocab)
        self.max_context = self.lm.max_context
        self.name = name
        self.vocab_size = self.lm.vocab_size
        if trees not in TREES:
            raise ConfigError(f"{self.name}: trees={trees!r} is not one of {', '.join(TREES)}")
        self.trees = trees
        self._grow = _expanded
        if compile:
            # the whole expansion as one compiled function: the bookkeeping between the draft
            # steps (ranking, parents, ancestry; a hundred small kernels) fuses
            from .steps import compiled

            self._grow = compiled(_expanded)

    def _propose(self, tokens, feats, gamma: int, sampling, generator, reach: int, shape=None):
        """The chain of ``gamma`` tokens as a Proposal (``reach``: a host-side bound on every
        row's tokens after it, for which the caller ensured room: attention reads the span that
        covers it, not the whole cache); with a TreeShape ``shape`` (depth
        ``gamma``), the chain with runners-up as leaf siblings
        (:func:`~thrifty.speculative.tree.sibling_tree`) as (TreeProposal, on_chain)."""
        import torch
        from thrifty.protocols import TreeProposal
        from thrifty.speculative.tree import sibling_tree

        if shape is not None:
            self._fits(shape)
        if sampling.greedy:
            inputs = (tokens, self.n, self.plen) + (() if feats is None else (feats,))
            span = self.lm.span(reach)
            key = ("greedy", gamma, shape, span) + tuple(tuple(t.shape) for t in inputs)
            out = self.lm.replay(key, lambda *x: self._greedy(gamma, shape, span, *x), inputs)
            if shape is None:
                return Proposal(out.clone(), torch.full_like(self.n, gamma))
            *tree, on_chain = (t.clone() for t in out)
            return TreeProposal(*tree), on_chain
        chooser = _Chooser(sampling, generator)

        def step(*x):
            hidden, logits = self.lm.run(*x, reach=reach)
            return hidden, self.lm.full_logits(logits)

        _walk(step, self.lm.rows, tokens, self.n, self.plen, feats, gamma, chooser.choose)
        chain, q = torch.stack(chooser.tokens, 1), torch.stack(chooser.qs, 1)
        if shape is None:
            return Proposal(chain, torch.full_like(self.n, gamma), q)
        return sibling_tree(chain, q, shape, sampled=True)

    def _greedy(self, gamma: int, shape, span: int, tokens, n, plen, feats=None):
        """The greedy chain [B, γ], or the fields of its tree and on_chain (a tuple of
        tensors, a graph's outputs). Picked in logit columns, fed back and returned as
        token ids (:meth:`StaticLM.tokens_of`)."""
        import torch
        from thrifty.speculative.tree import sibling_tree

        picked: list = []
        seen: list = []

        def argmax(logits):
            seen.append(logits)
            picked.append(logits.argmax(-1))
            return self.lm.tokens_of(picked[-1])

        _walk(lambda *x: self.lm.forward(*x, span=span), self.lm.rows, tokens, n, plen, feats,
              gamma, argmax)
        chain = torch.stack(picked, 1)
        if shape is None:
            return self.lm.tokens_of(chain)
        tree, on_chain = sibling_tree(chain, torch.stack(seen, 1).softmax(-1), shape,
                                      sampled=False)
        return self.lm.tokens_of(tree.tokens), tree.parents, tree.lengths, on_chain

    def _fits(self, shape) -> None:
        """A tree's node has up to ``branch`` children, distinct tokens the draft proposes."""
        columns = self.vocab_size if self.lm.proposable is None else len(self.lm.proposable)
        if shape.branch > columns:
            raise ConfigError(f"{self.name}: a tree of {shape.branch} branches needs as many "
                              f"tokens to propose, and this draft proposes {columns} (its vocab "
                              f"option); raise vocab or lower the branch")

    def _kept_nodes(self, path, lengths):
        """The tokens of the last tree's kept nodes ``path[:, 1:]`` (valid up to
        ``lengths - 1``) and how many of them are chain nodes."""
        import torch

        tokens, on_chain = self._tree
        nodes = _path_nodes(tokens, path)
        real = torch.arange(path.shape[1] - 1, device=path.device) < lengths[:, None] - 1
        chain = torch.cat([torch.zeros_like(on_chain[:, :1]), on_chain], 1).gather(1, path)
        return nodes, (chain[:, 1:] & real).sum(1)

    def _expand(self, shape, tokens, feats):
        """An EAGLE-2 tree (:func:`_expanded`) grown above the pending ``tokens`` (and a feature
        draft's ``feats``), as (TreeProposal, on_chain); the pending tokens are cached, the
        tree is not (``commit_path`` re-feeds the kept path)."""
        import torch
        from thrifty.protocols import TreeProposal

        self._fits(shape)
        width = tokens.shape[1]
        grown = (shape.depth - 1) * shape.branch  # the columns of the last tree step
        self.room.ensure(self.n, width + grown)
        inputs = (tokens, self.n, self.plen) + (() if feats is None else (feats,))
        span = self.lm.span(self.room.bound + width + grown)
        key = ("expand", shape, span) + tuple(tuple(t.shape) for t in inputs)
        out = self.lm.replay(key, lambda *x: self._grow(self.lm, shape, span, *x), inputs)
        tokens, parents, lengths = (t.clone() for t in out)
        self.room.grow(width)
        # every node is the draft's deterministic choice: a point mass, whatever the sampling
        # (TreeProposal.q None), which keeps multi-candidate acceptance exact
        return TreeProposal(tokens, parents, lengths), torch.zeros_like(tokens, dtype=torch.bool)

    def _repend(self, kept_tokens, kept, next_tokens):
        """Row b kept its first ``kept[b]`` proposals ``kept_tokens[b]`` and then
        ``next_tokens[b]``: the pending tokens (:func:`_repended`)."""
        tokens, self.n, self.plen = _repended(kept_tokens, kept, next_tokens, self.n, self.plen)
        return tokens

    def _pend_path(self, path, lengths, next_tokens, seen=None):
        """Row b kept the nodes ``path[b, :lengths[b]]`` of the last tree, which the draft did
        not cache, and then ``next_tokens[b]``: returns the pending tokens (and, given the
        verifier's features ``seen`` of every tree column, theirs), from :func:`_path_pending`
        as one graph replay on CUDA: its few dozen small kernels, launched one by one from
        Python, kept the GPU waiting for the host at every tree step."""
        dev = self.n.device
        inputs = (self._tree[0], path.to(dev), lengths.to(dev), next_tokens.to(dev), self.n,
                  self.plen) + (() if seen is None else (seen,))
        key = ("kept path",) + tuple(tuple(t.shape) for t in inputs)
        self.n, self.plen, *pending = (t.clone() for t in
                                       self.lm.replay(key, _path_pending, inputs))
        self._tree = None
        return pending


def _repended(kept_tokens, kept, next_tokens, n, plen):
    """Row b kept its first ``kept[b]`` proposals ``kept_tokens[b]`` and then
    ``next_tokens[b]``, which become its pending tokens, to be fed with the next proposal after
    the ones pending now (fed by the last one) are counted as cached: returns (the pending
    tokens, the new counts n, their number plen)."""
    import torch

    tokens = torch.cat([kept_tokens, next_tokens[:, None]], 1)
    col = torch.arange(tokens.shape[1], device=n.device)
    return torch.where(col == kept[:, None], next_tokens[:, None], tokens), n + plen, kept + 1


def _path_nodes(tree_tokens, path):
    """The tokens of the nodes ``path[:, 1:]`` of a tree of ``tree_tokens`` (node indices,
    0 = the root)."""
    import torch

    return torch.cat([torch.zeros_like(tree_tokens[:, :1]), tree_tokens], 1).gather(1, path)[:, 1:]


def _path_pending(tree_tokens, path, lengths, next_tokens, n, plen, seen=None):
    """(n, plen, pending tokens[, their features]) after row b kept the nodes
    ``path[b, :lengths[b]]`` of a tree of ``tree_tokens`` (node indices, 0 = the root) and then
    ``next_tokens[b]`` (:func:`_repended`); each pending position pairs with ``seen``'s
    feature of the column before it (the verifier's, of every tree column), a feature draft's
    second input."""
    tokens, n, plen = _repended(_path_nodes(tree_tokens, path), lengths - 1, next_tokens, n, plen)
    if seen is None:
        return n, plen, tokens
    return n, plen, tokens, seen.gather(1, path[..., None].expand(-1, -1, seen.shape[-1]))


def _walk(step, rows, tokens, n, plen, feats, gamma: int, choose) -> None:
    """γ draft steps: one ragged step over each row's ``plen`` pending tokens (at slots
    ``n..``), then γ - 1 single steps on the token just chosen; a feature draft (``feats``
    given) is fed back its own predicted feature. ``step(tokens, n, feats)`` returns
    (hidden, logits); ``choose(logits)`` returns the tokens it picked."""
    hidden, logits = step(tokens, n, feats)
    at = plen - 1
    feat, last = hidden[rows, at], logits[rows, at]
    cur = n + plen
    for i in range(gamma):
        if i:
            hidden, logits = step(token[:, None], cur, None if feats is None else feat[:, None])
            feat, last = hidden[:, 0], logits[:, 0]
            cur = cur + 1
        token = choose(last)


class FastDraft(_Proposer):
    """The DraftModel protocol over :class:`StaticLM`.

    Row b's cache holds its committed tokens but its ``plen[b]`` pending ones (1, or 2 when the
    last proposal was accepted whole: its final token was never fed; after an expanded tree,
    the kept path and the next token), which the first step of the next proposal feeds as one
    ragged step.
    """

    def start(self, prompts) -> None:
        import torch

        self.n, _ = self.lm.prefill([list(p[:-1]) for p in prompts])
        batch = len(prompts)
        self.pending = torch.zeros(batch, 2, dtype=torch.long, device=self.lm.device)
        self.pending[:, 0] = torch.tensor([p[-1] for p in prompts], device=self.lm.device)
        self.plen = torch.ones(batch, dtype=torch.long, device=self.lm.device)
        self.room = _Room(self.lm, self.n)
        self._proposed = None

    def admit(self, row: int, prompt) -> None:
        self.lm.prefill([list(prompt[:-1])], row=row)
        self.n = _set_row(self.n, row, len(prompt) - 1)
        self.pending = _set_row(self.pending, row, 0)
        self.pending[row, 0] = prompt[-1]
        self.plen = _set_row(self.plen, row, 1)
        self.room.cover(len(prompt) - 1)

    def propose(self, gamma: int, sampling, generator) -> Proposal:
        reach = self.pending.shape[1] + gamma
        self.room.ensure(self.n, reach)
        proposal = self._propose(self.pending, None, gamma, sampling, generator,
                                 self.room.bound + reach)
        self.room.grow(reach)
        self._proposed = proposal.tokens
        return proposal

    def propose_tree(self, shape, sampling, generator):
        if self.trees == "expand":
            tree, on_chain = self._expand(shape, self.pending, None)
        else:
            reach = self.pending.shape[1] + shape.depth
            self.room.ensure(self.n, reach)
            tree, on_chain = self._propose(self.pending, None, shape.depth, sampling,
                                           generator, self.room.bound + reach, shape)
            self.room.grow(reach)
        self._tree = tree.tokens, on_chain
        self._depth = shape.depth
        return tree

    def commit(self, accepted, next_tokens) -> None:
        import torch

        accepted = accepted.to(self.n.device)
        next_tokens = next_tokens.to(self.n.device)
        if self._proposed is None:
            # γ = 0 this step: feed the pending tokens so that only the new one is pending
            width = self.pending.shape[1]
            self.room.ensure(self.n, width)
            self.lm.run(self.pending, self.n, reach=self.room.bound + width)
            self.room.grow(width)
            self.n = self.n + self.plen
            self.pending = torch.stack([next_tokens, torch.zeros_like(next_tokens)], 1)
            self.plen = torch.ones_like(self.plen)
        else:
            self._advance(self._proposed, accepted, accepted, next_tokens,
                          self._proposed.shape[1])
        self._proposed = None

    def commit_path(self, path, lengths, next_tokens) -> None:
        """A sibling tree's path runs down the chain and may end on a sibling leaf (see
        :meth:`_advance`); an expanded tree's path is not cached, so it becomes pending."""
        if self.trees == "expand":
            self.pending, = self._pend_path(path, lengths, next_tokens)
            return
        path, lengths = path.to(self.n.device), lengths.to(self.n.device)
        nodes, chain = self._kept_nodes(path, lengths)
        self._advance(nodes, lengths - 1, chain, next_tokens.to(self.n.device), self._depth)
        self._tree = None

    def _advance(self, kept_tokens, kept, chain, next_tokens, depth: int) -> None:
        """Row b kept ``kept_tokens[b, :kept[b]]``, whose first ``chain[b]`` are nodes of the
        chain of ``depth`` just proposed, then ``next_tokens[b]``. The cache holds the pending
        tokens and the chain's first depth - 1 tokens, so it keeps those of them that were kept;
        the last kept token, when the cache lacks it (the chain's end or a sibling), is pending
        again with the next token."""
        import torch

        cached = chain.clamp(max=depth - 1)
        self.n = self.n + self.plen + cached
        extra = kept > cached
        last = kept_tokens.gather(1, (kept - 1).clamp(min=0)[:, None])[:, 0]
        self.pending = torch.stack([torch.where(extra, last, next_tokens),
                                    torch.where(extra, next_tokens, 0)], 1)
        self.plen = 1 + extra.long()


class FastFeatureDraft(_Proposer):
    """A feature draft (:mod:`thrifty_hf.drafts`; EAGLE-style) over :class:`StaticLM`.

    Draft position j is fed (token x_j, verifier feature f_{j-1}) and predicts f_j, hence
    x_{j+1}. A position can be cached for good only once the verifier has scored the token
    before it, so after each verification the draft's *pending* positions are the kept tokens
    and the correction, paired with the verifier's features of the tokens before them (all
    known now); the next proposal feeds them in one ragged step, then γ - 1 single steps that
    feed the draft's own predicted features. The engine hands over the verifier's features by
    :meth:`observe` before :meth:`start` and before every :meth:`commit`.
    """

    def __init__(self, model, **options) -> None:
        super().__init__(model, **options)
        if not self.lm.body.reads_features:
            raise ConfigError(f"{self.name} is not a feature draft (its config lacks "
                              f"thrifty_features); load it with FastDraft")
        self._seen = None

    def observe(self, features) -> None:
        """The verifier's final hidden states of its last ``start`` or ``score``."""
        self._seen = features

    def start(self, prompts) -> None:
        import torch

        seen = self._need_features()
        dev, batch = self.lm.device, len(prompts)
        shifted = _shifted(seen)
        self.n, _ = self.lm.prefill([list(p[:-1]) for p in prompts],
                                    shifted[:, : max(len(p) for p in prompts) - 1])
        self.pend_tok = torch.tensor([[p[-1]] for p in prompts], device=dev)
        self.pend_feat = shifted[self.lm.rows, self.n][:, None]
        self.plen = torch.ones(batch, dtype=torch.long, device=dev)
        self.room = _Room(self.lm, self.n)
        self._proposed = None

    def admit(self, row: int, prompt) -> None:
        seen = self._need_features()  # [1, P - 1, E]: the verifier's prefill of this row
        shifted = _shifted(seen)
        cached = len(prompt) - 1
        self.lm.prefill([list(prompt[:-1])], shifted[:, :cached], row=row)
        self.n = _set_row(self.n, row, cached)
        self.pend_tok = _set_row(self.pend_tok, row, 0)
        self.pend_tok[row, 0] = prompt[-1]
        self.pend_feat = _set_row(self.pend_feat, row, 0)
        self.pend_feat[row, 0] = shifted[0, cached]
        self.plen = _set_row(self.plen, row, 1)
        self.room.cover(cached)

    def propose(self, gamma: int, sampling, generator) -> Proposal:
        width = self.pend_tok.shape[1]
        self.room.ensure(self.n, width + gamma)
        proposal = self._propose(self.pend_tok, self.pend_feat, gamma, sampling, generator,
                                 self.room.bound + width + gamma)
        self.room.grow(width)
        self._proposed = proposal.tokens
        return proposal

    def propose_tree(self, shape, sampling, generator):
        if self.trees == "expand":
            tree, on_chain = self._expand(shape, self.pend_tok, self.pend_feat)
        else:
            width = self.pend_tok.shape[1]
            self.room.ensure(self.n, width + shape.depth)
            tree, on_chain = self._propose(self.pend_tok, self.pend_feat, shape.depth, sampling,
                                           generator, self.room.bound + width + shape.depth,
                                           shape)
            self.room.grow(width)
        self._tree = tree.tokens, on_chain
        return tree

    def commit(self, accepted, next_tokens) -> None:
        import torch

        seen = self._need_features()
        accepted = accepted.to(self.n.device)
        next_tokens = next_tokens.to(self.n.device)
        if self._proposed is None:
            # γ = 0 this step: the pending positions were never fed; feed them now
            self.room.ensure(self.n, self.pend_tok.shape[1])
            self.lm.run(self.pend_tok, self.n, self.pend_feat,
                        reach=self.room.bound + self.pend_tok.shape[1])
            self.room.grow(self.pend_tok.shape[1])
        # scored: [pending, d_1 .. d_{k-1}] with features f of each
        k = seen.shape[1]
        proposed = self._proposed if self._proposed is not None else next_tokens[:, None][:, :0]
        self.pend_tok = self._repend(proposed[:, : k - 1], accepted, next_tokens)
        self.pend_feat = seen.clone()
        self._proposed = None

    def commit_path(self, path, lengths, next_tokens) -> None:
        """The verifier's features of the path's columns pair with the path's tokens."""
        seen = self._need_features()  # [B, 1 + N, E]: every tree column
        self.pend_tok, self.pend_feat = self._pend_path(path, lengths, next_tokens, seen)

    def _need_features(self):
        if self._seen is None:
            raise ConfigError(f"{self.name} is a feature draft: it needs the verifier's hidden "
                              f"states (SpeculativeDecoder passes them from an 'hf-fast' "
                              f"verifier through observe())")
        return self._seen


TREES = ("siblings", "expand")
"""How a fast draft grows a token tree: ``siblings``, its greedy chain with the runners-up of
each depth as leaves (:func:`thrifty.speculative.tree.sibling_tree`); ``expand``, the likeliest
nodes of each depth grown further (:func:`_expanded`, EAGLE-2)."""


def _expanded(lm, shape, span: int, tokens, n, plen, feats=None):
    """An EAGLE-2 tree grown by a draft over ``lm``: (tokens, parents, lengths) of a
    :class:`~thrifty.protocols.TreeProposal`, pure tensor work (one graph on CUDA).

    The root is the row's last pending position. Each depth takes the ``branch`` likeliest
    children of the depth before, ranked by the product of the draft's probabilities along
    their path (children of one node, or of several), so the tree widens where the draft is
    unsure and deepens where it is sure. To score a depth the draft runs over every node so far
    as one tree step above the pending tokens (each node at its depth's position, seeing the
    cache and its ancestors; a feature draft's node fed its parent's predicted feature): as
    many draft steps as a chain of the tree's depth, and no cache of its own for the tree (the
    engine's ``commit_path`` re-feeds whatever path the verifier keeps). Every tree step has
    the last one's width, padded with nodes no real node descends from, so that one shape
    serves them all (a launch-bound draft step costs the same a few columns wider; with
    ``compile=true`` the whole expansion is one compiled function a shape). Last, the
    ``nodes`` likeliest of all are kept, parents before children. The ancestry is rebuilt
    each depth (not written into in place), which inductor's CPU code generation of torch 2.13
    fails to compile when several depths update one buffer."""
    import torch
    from thrifty.speculative.topk import top_k

    branch, depth = shape.branch, shape.depth
    width = (depth - 1) * branch
    hidden, logits = lm.forward(tokens, n, feats, span=span)  # the pending tokens
    rows, at = lm.rows, plen - 1
    feat, logp = hidden[rows, at][:, None], logits[rows, at].log_softmax(-1)[:, None]
    reads = feats is not None
    score = torch.zeros_like(logp[:, :, 0])  # [B, frontier]: log-probability of each path
    base = n + plen
    frontier = torch.zeros_like(plen)[:, None]  # node indices (0: the root)
    # the tree as the draft reads it, filled depth by depth: its tokens, their fed features
    # and its ancestry, kept up to date here rather than derived from parents each depth
    # (a dozen small kernels a depth); padding columns see themselves alone
    eye = torch.eye(width, dtype=torch.bool, device=n.device)
    grown = torch.zeros_like(tokens[:, :1]).expand(-1, width).clone()
    seen = eye.expand(len(n), width, width)
    grown_feat = feat.new_zeros(len(n), width, feat.shape[-1]) if reads else None
    toks, pars, scores = [], [], []
    for d in range(depth):
        if d:  # score the frontier: the draft over every node so far, one tree step
            real = d * branch
            hid, lg = lm.forward(grown, base, grown_feat, parents=seen, span=span)
            feat, logp = hid[:, real - branch: real], lg[:, real - branch: real].log_softmax(-1)
        vocab = logp.shape[-1]
        # a node's value never exceeds its parent's (log-probabilities <= 0); the tiny
        # per-depth discount breaks ties so that keeping the likeliest keeps every ancestor
        best, pick = top_k((score[:, :, None] + logp).flatten(1), branch)
        score = best - 1e-6 * (d + 1)
        owner = pick // vocab
        toks.append(lm.tokens_of(pick % vocab))
        pars.append(frontier.gather(1, owner))
        scores.append(score)
        if d + 1 < depth:  # the last depth is never fed to the draft
            cols = slice(d * branch, (d + 1) * branch)
            grown[:, cols] = toks[-1]
            if reads:
                grown_feat[:, cols] = feat.gather(1, owner[..., None].expand(-1, -1,
                                                                          feat.shape[-1]))
            # a node sees itself and what its parent, a row of the last depth's block, sees
            block = eye[cols].expand(len(n), -1, -1) if not d else \
                eye[cols] | block.gather(1, owner[..., None].expand(-1, -1, width))
            seen = torch.cat([seen[:, : cols.start], block, seen[:, cols.stop:]], 1)
        frontier = 1 + d * branch + torch.arange(branch, device=n.device).expand_as(owner)
    kept_n = min(shape.nodes, depth * branch)
    ranked = torch.cat(scores, 1)
    keep = torch.zeros_like(ranked, dtype=torch.bool).scatter_(
        1, ranked.topk(kept_n, -1).indices, True)
    col = keep.long().cumsum(1)  # the node index each kept node takes (1-based)
    dest = torch.where(keep, col - 1, shape.nodes)  # dropped nodes land past the end
    remap = torch.cat([torch.zeros_like(col[:, :1]), col], 1)  # old node index -> new
    out = []
    for values in (torch.cat(toks, 1), remap.gather(1, torch.cat(pars, 1))):
        flat = torch.zeros(values.shape[0], shape.nodes + 1, dtype=values.dtype,
                           device=values.device)
        out.append(flat.scatter_(1, dest, values)[:, :-1])
    return out[0], out[1], torch.full_like(n, kept_n)


def _shifted(features):
    """Features one position later: draft position j reads f_{j-1}; nothing precedes 0."""
    import torch

    return torch.cat([features.new_zeros(features.shape[0], 1, features.shape[-1]), features], 1)


def fast_draft(model, trees: str = "siblings", **options):
    """The fast path for a draft module: :class:`FastFeatureDraft` for a feature draft,
    :class:`FastDraft` otherwise (``options``: name, max_len, graphs, body, compile, vocab (the
    token ids it may propose, see :mod:`thrifty_hf.ranking`); ``trees``: how it grows token
    trees, :data:`TREES`)."""
    kind = FastFeatureDraft if getattr(model, "fc", None) is not None else FastDraft
    return kind(model, trees=trees, **options)


class _Chooser:
    """Samples each proposed token from the draft's warped logits and keeps its q."""

    def __init__(self, sampling, generator) -> None:
        self.sampling, self.generator = sampling, generator
        self.tokens: list = []
        self.qs: list = []

    def choose(self, logits):
        from thrifty.speculative.sampling import sample, warp

        q = warp(logits, self.sampling)
        self.qs.append(q)
        self.tokens.append(sample(q, self.generator))
        return self.tokens[-1]
