"""Tiny exact models for tests: a trigram-table verifier and a trigram-table draft.

Their next-token distributions are explicit tables, so a test can enumerate the exact
distribution of any short continuation and compare speculative samples against it. They follow
the Verifier and DraftModel protocols exactly as a real adapter must (ragged rows, rollback), and
are vectorised over rows so that statistical tests can run thousands of rows at once.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..protocols import Proposal, TreeProposal
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
    """Per-row token histories in one padded tensor: all the 'cache' a table model needs."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table
        self.tokens = torch.zeros(0, 0, dtype=torch.long)
        self.lens = torch.zeros(0, dtype=torch.long)

    def reset(self, rows: Sequence[Sequence[int]]) -> None:
        self.lens = torch.tensor([len(r) for r in rows], dtype=torch.long)
        self.tokens = torch.zeros(len(rows), max(int(self.lens.max()), 1) + 16, dtype=torch.long)
        for b, r in enumerate(rows):
            self.tokens[b, : len(r)] = torch.tensor(list(r), dtype=torch.long)

    def _room(self, need: int) -> None:
        """Make every row hold at least ``need`` tokens."""
        if need > self.tokens.shape[1]:
            grown = torch.zeros(len(self.lens), 2 * need, dtype=torch.long)
            grown[:, : self.tokens.shape[1]] = self.tokens
            self.tokens = grown

    def append(self, new: torch.Tensor, counts: torch.Tensor) -> None:
        """Append the first ``counts[b]`` tokens of ``new[b]`` to row b."""
        self._room(int((self.lens + counts).max()) if len(self.lens) else 0)
        rows = torch.arange(len(self.lens))
        for i in range(new.shape[1]):
            live = counts > i
            self.tokens[rows[live], self.lens[live] + i] = new[live, i]
        self.lens = self.lens + counts

    def place(self, row: int, tokens: Sequence[int]) -> None:
        """Replace row ``row``'s history with ``tokens`` (a new prompt mid-batch)."""
        self._room(len(tokens))
        self.tokens[row, : len(tokens)] = torch.tensor(list(tokens), dtype=torch.long)
        self.lens = self.lens.clone()
        self.lens[row] = len(tokens)

    def last(self, offset: int = 1) -> torch.Tensor:
        """Token ``offset`` places from the end of each row (0 before the start)."""
        idx = self.lens - offset
        got = self.tokens.gather(1, idx.clamp(min=0)[:, None])[:, 0]
        return torch.where(idx >= 0, got, torch.zeros_like(got))

    def logits_after(self, row: Sequence[int]) -> torch.Tensor:
        """Next-token logits after one explicit token sequence (for exact enumeration)."""
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
        self._before = self.lens

    def start(self, prompts) -> None:
        self.reset([p[:-1] for p in prompts])

    def admit(self, row: int, prompt) -> None:
        self.place(row, prompt[:-1])

    def score(self, tokens, lengths):
        self.passes += 1
        self._before = self.lens.clone()
        prev = self.last()
        out = torch.zeros(*tokens.shape, self.vocab_size)
        for i in range(tokens.shape[1]):
            cur = tokens[:, i]
            out[:, i] = self.table[prev, cur]
            prev = cur
        self.append(tokens, lengths)
        return out

    def keep(self, lengths) -> None:
        self.lens = self._before + lengths

    def score_tree(self, tokens, parents, lengths):
        """Each node's logits from its parent's token (the last cached one for the root)."""
        self.passes += 1
        self._tree = tokens
        prev = torch.where(parents < 0, self.last()[:, None],
                           tokens.gather(1, parents.clamp(min=0)))
        return self.table[prev, tokens]

    def keep_path(self, path, lengths) -> None:
        self.append(self._tree.gather(1, path), lengths)


class ToyDraft(_History):
    """A trigram-table draft that samples from its own (different) table and reports q."""

    def __init__(self, vocab: int = 4, seed: int = 1, table: torch.Tensor | None = None) -> None:
        super().__init__(trigram_table(vocab, seed) if table is None else table)
        self.name = "toy-draft"
        self.vocab_size = vocab
        self._last = torch.zeros(0, 0, dtype=torch.long)

    def start(self, prompts) -> None:
        self.reset(prompts)
        self._last = torch.zeros(len(prompts), 0, dtype=torch.long)

    def admit(self, row: int, prompt) -> None:
        self.place(row, prompt)

    def propose(self, gamma: int, sampling: Sampling, generator) -> Proposal:
        batch = len(self.lens)
        tokens = torch.zeros(batch, gamma, dtype=torch.long)
        q = torch.zeros(batch, gamma, self.vocab_size)
        a, c = self.last(2), self.last(1)
        for i in range(gamma):
            q[:, i] = warp(self.table[a, c], sampling)
            tokens[:, i] = sample(q[:, i], generator)
            a, c = c, tokens[:, i]
        self._last = tokens
        return Proposal(tokens, torch.full((batch,), gamma), q)

    def propose_tree(self, shape, sampling: Sampling, generator) -> TreeProposal:
        """A chain whose every node has up to ``shape.branch`` children, the first of which
        the chain continues from: siblings drawn independently from the parent's q (top-k
        candidates under greedy decoding), the deepest levels losing siblings first when
        ``shape.nodes`` is short of depth * branch."""
        batch = len(self.lens)
        extra = shape.nodes - shape.depth
        per = [min(shape.branch - 1, max(extra - (shape.branch - 1) * d, 0))
               for d in range(shape.depth)]
        tokens, parents, qs = [], [], []
        a, c, at = self.last(2), self.last(1), 0
        for d in range(shape.depth):
            dist = warp(self.table[a, c], sampling)
            if sampling.greedy:
                kids = torch.topk(self.table[a, c], 1 + per[d]).indices
            else:
                kids = torch.stack([sample(dist, generator) for _ in range(1 + per[d])], 1)
            for k in range(kids.shape[1]):
                tokens.append(kids[:, k])
                parents.append(torch.full((batch,), at, dtype=torch.long))
                qs.append(dist)
            a, c, at = c, kids[:, 0], len(tokens) - kids.shape[1] + 1
        self._tree = torch.stack(tokens, 1)
        q = None if sampling.greedy else torch.stack(qs, 1)
        return TreeProposal(self._tree, torch.stack(parents, 1),
                            torch.full((batch,), len(tokens)), q)

    def commit_path(self, path, lengths, next_tokens) -> None:
        nodes = torch.cat([torch.zeros(len(self.lens), 1, dtype=torch.long), self._tree], 1)
        new = torch.cat([nodes.gather(1, path)[:, 1:], torch.zeros_like(path[:, :1])], 1)
        new[torch.arange(len(self.lens)), lengths - 1] = next_tokens
        self.append(new, lengths)

    def commit(self, accepted, next_tokens) -> None:
        rows = torch.arange(len(self.lens))
        new = torch.cat([self._last, torch.zeros(len(rows), 1, dtype=torch.long)], 1)
        new[rows, accepted] = next_tokens
        self.append(new, accepted + 1)
        self._last = self._last[:, :0]
