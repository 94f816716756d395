"""The n-gram (prompt-lookup) draft.

For each row it keeps the committed tokens and an index from every n-gram seen to the positions
right after its few latest occurrences. To propose, it looks up the row's current suffix, longest
n-gram first, and copies up to γ tokens that followed its latest occurrence. A row with no match
proposes nothing, and the engine then scores only the rows' real proposals: on a CPU every
scored token costs, so the draft proposes only what a match supports (a unigram match is too
weak to pay for itself: ``min_ngram`` defaults to 2, which measured faster than 1 on the bundled
prompts). Lookups cost O(1) per n, updates O(new tokens); nothing is recomputed. Proposals are
deterministic (q is a point mass), which the engine's acceptance rule handles exactly, so
decoding stays lossless under sampling too.

A token tree merges several continuations into a trie: those of the suffix's latest occurrences,
longest n-gram first, the most recent first, so that where they part the most recent is tried
first (and the tree's first path is the chain proposal).
"""

from __future__ import annotations

import torch
from thrifty.errors import ConfigError
from thrifty.protocols import Proposal, TreeProposal


MATCHES = 4
"""How many latest occurrences of each n-gram the index keeps: the continuations a tree can
branch into, besides those of shorter n-grams (a chain copies the latest alone)."""


class _RowIndex:
    """Committed tokens of one row and where each n-gram was last followed."""

    def __init__(self, tokens, sizes: range) -> None:
        self.tokens: list[int] = []
        self.sizes = sizes
        self.follows: dict[tuple[int, ...], list[int]] = {}  # oldest first, MATCHES at most
        self.extend(tokens)

    def extend(self, tokens) -> None:
        for tok in tokens:
            t = len(self.tokens)  # the position ``tok`` takes: it follows each n-gram ending at t-1
            for n in self.sizes:
                if t >= n:
                    seen = self.follows.setdefault(tuple(self.tokens[t - n: t]), [])
                    seen.append(t)
                    if len(seen) > MATCHES:
                        del seen[0]
            self.tokens.append(int(tok))

    def _starts(self):
        """Where the continuations of the current suffix start: the longest n-gram's
        occurrences first, the latest of each first."""
        for n in reversed(self.sizes):
            if len(self.tokens) >= n:
                yield from reversed(self.follows.get(tuple(self.tokens[-n:]), ()))

    def lookup(self, gamma: int) -> list[int]:
        start = next(self._starts(), None)
        return [] if start is None else self.tokens[start: start + gamma]

    def trie(self, shape) -> tuple[list[int], list[int]]:
        """The continuations (up to ``shape.depth`` tokens each) merged into a trie of at most
        ``shape.nodes`` nodes and ``shape.branch`` children a node, in the order of
        :meth:`_starts`: (tokens, parents) of its nodes 1.. in order of creation, which is
        topological, with each node's children in the order they are to be tried."""
        tokens: list[int] = []
        parents: list[int] = []
        children: dict[int, dict[int, int]] = {}  # node -> token -> child node
        for start in dict.fromkeys(self._starts()):  # one start may follow several n-grams
            node = 0
            for tok in self.tokens[start: start + shape.depth]:
                kids = children.setdefault(node, {})
                if tok not in kids:
                    if len(kids) >= shape.branch or len(tokens) >= shape.nodes:
                        break
                    tokens.append(tok)
                    parents.append(node)
                    kids[tok] = len(tokens)
                node = kids[tok]
            if len(tokens) >= shape.nodes:
                break
        return tokens, parents


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

    def propose_tree(self, shape, sampling, generator) -> TreeProposal:
        """The trie of each row's continuations (see :meth:`_RowIndex.trie`); q is None under
        sampling too: every node is a deterministic candidate."""
        grown = [row.trie(shape) for row in self.rows]
        tokens = torch.zeros(len(grown), shape.nodes, dtype=torch.long)
        parents = torch.zeros_like(tokens)
        for b, (toks, pars) in enumerate(grown):
            tokens[b, : len(toks)] = torch.tensor(toks, dtype=torch.long)
            parents[b, : len(pars)] = torch.tensor(pars, dtype=torch.long)
        self._last = tokens
        return TreeProposal(tokens, parents, torch.tensor([len(t) for t, _ in grown],
                                                          dtype=torch.long))

    def commit_path(self, path, lengths, next_tokens) -> None:
        nodes = torch.cat([torch.zeros_like(self._last[:, :1]), self._last], 1)
        kept = nodes.gather(1, path.cpu()).tolist()
        for b, row in enumerate(self.rows):
            row.extend(kept[b][1: int(lengths[b])] + [int(next_tokens[b])])
        self._last = self._last[:, :0]

    def commit(self, accepted, next_tokens) -> None:
        for b, row in enumerate(self.rows):
            row.extend(self._last[b, : int(accepted[b])].tolist() + [int(next_tokens[b])])
        self._last = self._last[:, :0]
