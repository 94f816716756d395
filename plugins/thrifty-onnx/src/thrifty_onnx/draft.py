"""The ONNX Runtime draft model: a DraftModel over an ``InferenceSession``.

The graph (see :mod:`thrifty_onnx.layout`) is stateless; the draft owns the KV cache as
onnxruntime ``OrtValue``s that stay where the execution provider put them: each step binds the
previous step's ``present_*`` outputs as the next step's ``past_*`` inputs through I/O binding,
so the cache is never copied to or from numpy while decoding.

Ragged rows and rollback use the attention mask instead of moving memory: every row shares the
cache's slot axis, a slot whose mask bit is 0 (right padding of a ragged step, or a proposal the
verifier rejected) is ignored by attention, and RoPE positions come from explicit
``position_ids``, so a hole shifts nothing. When holes pile up, the cache is compacted once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from thrifty.protocols import Proposal, TreeProposal

from .layout import (ATTENTION_MASK, INPUT_IDS, LOGITS, LOGITS_INDEX, POSITION_IDS, GraphLayout,
                     check_compatible, load_layout, past_names, present_names)
from .session import PROVIDERS, SessionSettings, create_session

_GPU_PROVIDERS = (PROVIDERS["cuda"], PROVIDERS["tensorrt"], PROVIDERS["rocm"])


class SlotCache:
    """Per-layer key/value OrtValues [B, kv_heads, T, head_dim] and a validity mask [B, T].

    ``positions[b]`` is the RoPE position of row b's next token (its count of valid slots).
    """

    def __init__(self, layout: GraphLayout, batch: int, device: str) -> None:
        import onnxruntime as ort

        self._ort = ort
        self.device = device
        shape = (batch, layout.kv_heads, 0, layout.head_dim)
        empty = np.zeros(shape, dtype=layout.cache_dtype)
        self.values = [ort.OrtValue.ortvalue_from_numpy(empty, device, 0)
                       for _ in range(2 * layout.num_layers)]
        self.mask = np.zeros((batch, 0), dtype=np.int64)
        self.positions = np.zeros(batch, dtype=np.int64)

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    def wasted(self) -> int:
        """Slots that compaction would remove."""
        return self.length - int(self.mask.sum(1).max(initial=0))

    def compact(self) -> None:
        """Pack each row's valid slots to the right end (left padding), dropping the holes.

        Slot order is kept, and the graph reads positions from ``position_ids``, so attention
        sees the same keys in the same order as before.
        """
        counts = self.mask.sum(1)
        length = int(counts.max(initial=0))
        mask = np.zeros((self.mask.shape[0], length), dtype=np.int64)
        keep = [np.flatnonzero(row) for row in self.mask]
        for b, idx in enumerate(keep):
            mask[b, length - len(idx):] = 1
        packed = []
        for value in self.values:
            old = value.numpy()
            new = np.zeros(old.shape[:2] + (length,) + old.shape[3:], dtype=old.dtype)
            for b, idx in enumerate(keep):
                new[b, :, length - len(idx):] = old[b][:, idx]
            packed.append(self._ort.OrtValue.ortvalue_from_numpy(new, self.device, 0))
        self.values, self.mask = packed, mask


class OnnxDraft:
    """A draft model that runs an exported graph with onnxruntime.

    ``compact_after``: compact the cache once this many of its slots are holes (and they are at
    least a quarter of it); holes cost attention work but moving memory costs too.
    """

    def __init__(self, path: str | Path, verifier: Any, settings: SessionSettings | None = None,
                 name: str = "onnx", compact_after: int = 16) -> None:
        self.layout = load_layout(path)
        check_compatible(self.layout, verifier)
        self.settings = settings or SessionSettings()
        self.session = create_session(path, self.settings, self.layout.opset)
        self.name = name
        self.vocab_size = self.layout.vocab_size
        self.providers = self.session.get_providers()
        self._ort_device = "cuda" if self.providers[0] in _GPU_PROVIDERS else "cpu"
        self._past = [n for i in range(self.layout.num_layers) for n in past_names(i)]
        self._present = [n for i in range(self.layout.num_layers) for n in present_names(i)]
        self.compact_after = compact_after
        self._cache: SlotCache | None = None
        self._pending: list[list[int]] = []
        self._proposed: tuple[np.ndarray, int] | None = None
        self._tree: tuple[np.ndarray, np.ndarray] | None = None  # tokens, on-chain columns

    # -- DraftModel protocol -----------------------------------------------------------------------
    def start(self, prompts: Sequence[Sequence[int]]) -> None:
        self._cache = SlotCache(self.layout, len(prompts), self._ort_device)
        self._pending = [[int(t) for t in p] for p in prompts]
        self._proposed = None

    def propose(self, gamma: int, sampling: Any, generator: Any) -> Proposal:
        import torch

        batch = len(self._pending)
        if gamma <= 0:
            return Proposal(torch.zeros(batch, 0, dtype=torch.long),
                            torch.zeros(batch, dtype=torch.long))
        drafted, q, _ = self._chain(gamma, sampling, generator)
        return Proposal(torch.from_numpy(drafted), torch.full((batch,), gamma, dtype=torch.long),
                        q)

    def propose_tree(self, shape: Any, sampling: Any, generator: Any) -> TreeProposal:
        """Its chain of ``shape.depth`` tokens with runners-up as leaf siblings
        (:func:`~thrifty.speculative.tree.sibling_tree`)."""
        import torch

        from thrifty.speculative.tree import sibling_tree

        drafted, q, seen = self._chain(shape.depth, sampling, generator)
        probs = torch.from_numpy(np.stack(seen, 1)).softmax(-1) if q is None else q
        tree, on_chain = sibling_tree(torch.from_numpy(drafted).to(probs.device), probs, shape,
                                      sampled=q is not None)
        self._tree = (tree.tokens.cpu().numpy(), on_chain.cpu().numpy())
        return tree

    def _chain(self, gamma: int, sampling: Any, generator: Any):
        """Feed every row's uncached committed tokens, then draft ``gamma`` tokens one step at
        a time: the tokens [B, γ] (numpy), their q [B, γ, V] (torch; None under greedy) and the
        logits each was picked from (numpy [B, V] a step)."""
        import torch

        batch = len(self._pending)
        # feed every row's uncached committed tokens (ragged, right-padded) in one step
        counts = np.array([len(p) for p in self._pending])
        tokens = np.zeros((batch, counts.max()), dtype=np.int64)
        real = np.arange(tokens.shape[1])[None, :] < counts[:, None]
        for b, pending in enumerate(self._pending):
            tokens[b, : len(pending)] = pending
        last = np.unique(counts - 1)  # the columns whose logits some row needs
        logits = self.forward(tokens, real, last)[np.arange(batch),
                                                  np.searchsorted(last, counts - 1)]
        self._pending = [[] for _ in range(batch)]
        first_slot = self._cache.length
        picked, qs, seen = [], [], []
        for i in range(gamma):
            tok, q = self._pick(logits, sampling, generator)
            picked.append(tok)
            qs.append(q)
            seen.append(logits)
            if i + 1 < gamma:
                logits = self.forward(tok[:, None], np.ones((batch, 1), dtype=bool),
                                      np.zeros(1, dtype=np.int64))[:, 0]
        drafted = np.stack(picked, 1)
        self._proposed = (drafted, first_slot)
        return drafted, None if sampling.greedy else torch.stack(qs, 1), seen

    def commit(self, accepted: Any, next_tokens: Any) -> None:
        accepted, next_tokens = accepted.tolist(), next_tokens.tolist()
        if self._proposed is None:  # a step without proposals (γ = 0)
            for pending, nxt in zip(self._pending, next_tokens):
                pending.append(int(nxt))
            return
        drafted = self._proposed[0]
        self._keep([drafted[b, :acc].tolist() for b, acc in enumerate(accepted)], accepted,
                   next_tokens)

    def commit_path(self, path: Any, lengths: Any, next_tokens: Any) -> None:
        """The path runs down the chain and may end on a sibling leaf: the cache keeps the
        chain nodes on it, and the row gains every kept token."""
        from thrifty.speculative.tree import kept_on_path

        kept, chain = kept_on_path(path, lengths, *self._tree)
        self._keep(kept, chain, next_tokens.tolist())

    def _keep(self, kept: list[list[int]], chain: list[int], next_tokens: list[int]) -> None:
        """Row b gains ``kept[b]`` and ``next_tokens[b]``; its cache keeps the first
        ``chain[b]`` proposals it was fed (the rest become holes) and the other kept tokens
        wait to be fed with the next proposal."""
        cache = self._cache
        drafted, first = self._proposed
        fed = drafted.shape[1] - 1  # the last proposal was sampled, never fed
        for b, (toks, c, nxt) in enumerate(zip(kept, chain, next_tokens)):
            cached = min(c, fed)
            cache.mask[b, first + cached: first + fed] = 0
            cache.positions[b] -= fed - cached
            self._pending[b] = toks[cached:] + [int(nxt)]
        self._proposed = self._tree = None
        wasted = cache.wasted()
        if wasted >= self.compact_after and 4 * wasted >= cache.length:
            cache.compact()

    # -- one graph step ----------------------------------------------------------------------------
    def forward(self, tokens: np.ndarray, real: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Run the graph on ``tokens`` [B, S] (``real`` marks non-padding); append their slots to
        the cache and return float32 logits [B, len(columns), V] of those columns, as numpy."""
        cache = self._cache
        width = tokens.shape[1]
        mask = np.concatenate([cache.mask, real.astype(np.int64)], 1)
        positions = cache.positions[:, None] + np.arange(width, dtype=np.int64)[None, :]
        binding = self.session.io_binding()
        binding.bind_cpu_input(INPUT_IDS, np.ascontiguousarray(tokens, dtype=np.int64))
        binding.bind_cpu_input(ATTENTION_MASK, mask)
        binding.bind_cpu_input(POSITION_IDS, positions)
        binding.bind_cpu_input(LOGITS_INDEX, np.ascontiguousarray(columns, dtype=np.int64))
        for name, value in zip(self._past, cache.values):
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(LOGITS, "cpu")  # sampling happens in torch on the host
        for name in self._present:
            binding.bind_output(name, self._ort_device)
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        cache.values = outputs[1:]
        cache.mask = mask
        cache.positions = cache.positions + real.sum(1)
        return outputs[0].numpy()

    def _pick(self, logits: np.ndarray, sampling: Any, generator: Any):
        """The next proposal per row and the q it was drawn from (None under greedy)."""
        import torch

        from thrifty.speculative import sample, warp

        if sampling.greedy:
            return logits.argmax(-1).astype(np.int64), None
        q = warp(torch.from_numpy(logits).to(generator.device), sampling)
        return sample(q, generator).cpu().numpy().astype(np.int64), q
