"""Tiny exact models for tests: a trigram table verifier and a trigram table draft.

Their next-token distributions are explicit tables, so a test can enumerate the exact
distribution of any short continuation and compare speculative samples against it. They follow
the Verifier and DraftModel protocols exactly as a real adapter must (ragged rows, rollback).
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..protocols import Proposal
from ..speculative.sampling import Sampling, sample, warp


class ToyTokenizer:
    """Token i is the letter chr(97 + i); no special tokens."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) - 97 for c in text]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return "".join(chr(97 + int(i)) for i in ids)


def trigram_table(vocab: int, seed: int, sharpness: float = 2.0) -> torch.Tensor:
    """Random logits [V, V, V]: next-token logits given the two previous tokens."""
    g = torch.Generator().manual_seed(seed)
    return sharpness * torch.randn(vocab, vocab, vocab, generator=g)


class _History:
    """Per-row token history, which is all the 'cache' a table model needs."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table
        self.rows: list[list[int]] = []

    def logits_after(self, row: list[int]) -> torch.Tensor:
        a = row[-2] if len(row) > 1 else 0
        return self.table[a, row[-1]]


class ToyVerifier(_History):
    """A trigram-table target model over a ``vocab``-letter alphabet."""

    def __init__(self, vocab: int = 4, seed: int = 0, eos: int | None = None,
                 table: torch.Tensor | None = None) -> None:
        super().__init__(trigram_table(vocab, seed) if table is None else table)
        self.name = "toy-verifier"
        self.vocab_size = vocab
        self.eos_token_ids = frozenset() if eos is None else frozenset({eos})
        self.tokenizer = ToyTokenizer()
        self.device = torch.device("cpu")
        self.passes = 0
        self._before: list[int] = []

    def start(self, prompts) -> None:
        self.rows = [list(p[:-1]) for p in prompts]

    def score(self, tokens, lengths):
        self.passes += 1
        self._before = [len(r) for r in self.rows]
        out = torch.zeros(*tokens.shape, self.vocab_size)
        for b, (row, n) in enumerate(zip(self.rows, lengths.tolist())):
            for i in range(n):
                row.append(int(tokens[b, i]))
                out[b, i] = self.logits_after(row)
        return out

    def keep(self, lengths) -> None:
        for b, n in enumerate(lengths.tolist()):
            del self.rows[b][self._before[b] + n:]


class ToyDraft(_History):
    """A trigram-table draft that samples from its own (different) table and reports q."""

    def __init__(self, vocab: int = 4, seed: int = 1, table: torch.Tensor | None = None) -> None:
        super().__init__(trigram_table(vocab, seed) if table is None else table)
        self.name = "toy-draft"
        self.vocab_size = vocab

    def start(self, prompts) -> None:
        self.rows = [list(p) for p in prompts]
        self._last = torch.zeros(len(self.rows), 0, dtype=torch.long)

    def propose(self, gamma: int, sampling: Sampling, generator) -> Proposal:
        batch = len(self.rows)
        tokens = torch.zeros(batch, gamma, dtype=torch.long)
        q = torch.zeros(batch, gamma, self.vocab_size)
        for b, row in enumerate(self.rows):
            ctx = list(row)
            for i in range(gamma):
                q[b, i] = warp(self.logits_after(ctx), sampling)
                tokens[b, i] = sample(q[b, i], generator)
                ctx.append(int(tokens[b, i]))
        self._last = tokens
        return Proposal(tokens, torch.full((batch,), gamma), q)

    def commit(self, accepted, next_tokens) -> None:
        for b, row in enumerate(self.rows):
            row.extend(int(t) for t in self._last[b, : int(accepted[b])])
            row.append(int(next_tokens[b]))
        self._last = torch.zeros(len(self.rows), 0, dtype=torch.long)
