"""The n-gram (prompt-lookup) draft.

For each row it keeps the committed tokens and an index from every n-gram seen to the position
right after its latest occurrence. To propose, it looks up the row's current suffix, longest
n-gram first, and copies up to γ tokens that followed it. A row with no match proposes nothing,
and the engine then scores only the rows' real proposals: on a CPU every scored token costs, so
the draft proposes only what a match supports (a unigram match is too weak to pay for itself:
``min_ngram`` defaults to 2, which measured faster than 1 on the bundled prompts). Lookups cost O(1) per n, updates
O(new tokens); nothing is recomputed. Proposals are deterministic (q is a point mass), which the
engine's acceptance rule handles exactly, so decoding stays lossless under sampling too.
"""

from __future__ import annotations

import torch
from thrifty.errors import ConfigError
from thrifty.protocols import Proposal


class _RowIndex:
    """Committed tokens of one row and where each n-gram was last followed."""

    def __init__(self, tokens, sizes: range) -> None:
        self.tokens: list[int] = []
        self.sizes = sizes
        self.next_after: dict[tuple[int, ...], int] = {}
        self.extend(tokens)

    def extend(self, tokens) -> None:
        for tok in tokens:
            t = len(self.tokens)  # the position ``tok`` takes: it follows each n-gram ending at t-1
            for n in self.sizes:
                if t >= n:
                    self.next_after[tuple(self.tokens[t - n: t])] = t
            self.tokens.append(int(tok))

    def lookup(self, gamma: int) -> list[int]:
        for n in reversed(self.sizes):
            if len(self.tokens) >= n:
                start = self.next_after.get(tuple(self.tokens[-n:]))
                if start is not None:
                    return self.tokens[start: start + gamma]
        return []


class NgramDraft:
    """A weightless draft for any verifier: ``vocab_size`` is None (it only copies tokens)."""

    name = "ngram"
    vocab_size = None

    def __init__(self, max_ngram: int = 3, min_ngram: int = 2) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise ConfigError(
                f"ngram draft needs 1 <= min_ngram <= max_ngram; got min_ngram={min_ngram}, "
                f"max_ngram={max_ngram}")
        self.sizes = range(min_ngram, max_ngram + 1)
        self.rows: list[_RowIndex] = []
        self._last = torch.zeros(0, 0, dtype=torch.long)

    def start(self, prompts) -> None:
        self.rows = [_RowIndex(p, self.sizes) for p in prompts]
        self._last = torch.zeros(len(prompts), 0, dtype=torch.long)

    def admit(self, row: int, prompt) -> None:
        self.rows[row] = _RowIndex(prompt, self.sizes)

    def propose(self, gamma: int, sampling, generator) -> Proposal:
        found = [row.lookup(gamma) for row in self.rows]
        tokens = torch.zeros(len(found), gamma, dtype=torch.long)
        for b, toks in enumerate(found):
            tokens[b, : len(toks)] = torch.tensor(toks, dtype=torch.long)
        self._last = tokens
        return Proposal(tokens, torch.tensor([len(t) for t in found], dtype=torch.long))

    def commit(self, accepted, next_tokens) -> None:
        for b, row in enumerate(self.rows):
            row.extend(self._last[b, : int(accepted[b])].tolist() + [int(next_tokens[b])])
        self._last = self._last[:, :0]
