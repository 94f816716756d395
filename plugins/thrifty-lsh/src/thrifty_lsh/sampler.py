"""The LSH neuron sampler: a hash family, K x L bounded tables, and the query that ranks what
they return.

``build(weights)`` hashes every neuron (row of ``weights``); ``query(x, budget)`` returns, per
input, up to ``budget`` neuron ids, ranked by the number of tables in which they collide with
the input (more collisions = more similar) and then by a fixed priority. ``refill`` re-hashes
changed weights with the same functions; ``rebuild`` draws new hash functions (a new seed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .hashing import bucket_ids, make_family
from .tables import PRIORITY_BITS, HashTables, priority

if TYPE_CHECKING:  # pragma: no cover
    import torch

_SCORE_BITS = PRIORITY_BITS + 8  # collision count (< 256 tables) above the priority


class LSHSampler:
    """Neuron sampler over ``dim``-dimensional weights with ``k`` hashes per table and ``l``
    tables of at most ``n_buckets`` buckets holding at most ``bucket_size`` neurons each."""

    def __init__(self, dim: int, family: str = "simhash", k: int = 6, l: int = 50,
                 bucket_size: int = 128, n_buckets: int = 1 << 15, seed: int = 0,
                 **family_params) -> None:
        from thrifty.errors import ConfigError

        if not (1 <= l < 256 and k >= 1 and bucket_size >= 1 and n_buckets >= 2):
            raise ConfigError(f"LSH sampler needs 1 <= l < 256, k >= 1, bucket_size >= 1 and "
                              f"n_buckets >= 2; got k={k}, l={l}, bucket_size={bucket_size}, "
                              f"n_buckets={n_buckets}")
        self.dim, self.family_name, self.k, self.l = dim, family, k, l
        self.family_params = family_params
        self.seed = seed
        self.family = make_family(family, dim, k * l, seed, **family_params)
        self.n_buckets = min(n_buckets, self.family.code_range ** k)
        self.tables = HashTables(l, self.n_buckets, bucket_size)
        self._ids = self._priority = None

    @property
    def bucket_size(self) -> int:
        return self.tables.bucket_size

    def hash(self, x: "torch.Tensor", chunk: int = 8192) -> "torch.Tensor":
        """Bucket ids ``[n, L]`` of vectors ``x [n, dim]``, ``chunk`` rows at a time so that
        the codes of a refill (all neurons) stay in cache between hashing and combining."""
        import torch

        x = x.detach()
        out = torch.empty(x.shape[0], self.l, dtype=torch.long)
        for a in range(0, x.shape[0], chunk):
            codes = self.family.codes(x[a:a + chunk])
            out[a:a + chunk] = bucket_ids(codes, self.k, self.family.code_range, self.n_buckets)
        return out

    def build(self, weights: "torch.Tensor", ids: "torch.Tensor | None" = None) -> None:
        """Hash the neurons ``weights [n, dim]``; ``ids`` are their global ids (default
        ``0..n-1``; a shard of a distributed layer passes its own range)."""
        import torch

        self._ids = torch.arange(weights.shape[0]) if ids is None else ids.long()
        self._set_priority()
        self.tables.fill(self.hash(weights), self._priority)

    def _set_priority(self) -> None:
        """Cache each neuron's priority (a function of global id and seed): a training step
        scores nearly every neuron, and hashing the ids again costs more than the scoring."""
        self._priority = priority(self._ids, self.seed)

    def refill(self, weights: "torch.Tensor") -> None:
        """Re-hash updated weights with the same hash functions."""
        self.build(weights, self._ids)

    def rebuild(self, weights: "torch.Tensor", seed: int | None = None) -> None:
        """Draw new hash functions (``seed``, default the next one) and re-hash."""
        self.seed = self.seed + 1 if seed is None else seed
        self.family = make_family(self.family_name, self.dim, self.k * self.l, self.seed,
                                  **self.family_params)
        self.build(weights, self._ids)

    def _score(self, count: "torch.Tensor", local: "torch.Tensor") -> "torch.Tensor":
        """Rank key of the candidates ``local`` (indices into this sampler's neurons): collision
        count first, then the fixed priority (a function of the global id, so that shards of
        one layer rank alike)."""
        return (count << PRIORITY_BITS) + ((1 << PRIORITY_BITS) - 1 - self._priority[local])

    def ranked(self, x: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
        """All distinct candidates of each input, best first: ``(row, id, score)`` sorted by row,
        then by score (collision count, then priority) descending."""
        import torch

        row, local = self.tables.lookup(self.hash(x))
        pair, count = torch.unique(row * (1 << 32) + local, return_counts=True)
        row, local = pair >> 32, pair & 0xFFFFFFFF
        ids, score = self._ids[local], self._score(count, local)
        order = torch.argsort(row * (1 << _SCORE_BITS) + ((1 << _SCORE_BITS) - 1 - score))
        return row[order], ids[order], score[order]

    def query(self, x: "torch.Tensor", budget: int) -> "torch.Tensor":
        """Up to ``budget`` neuron ids per input, best first, ``[n, budget]`` padded with -1."""
        row, ids, _ = self.ranked(x)
        return pad_ranked(row, ids, x.shape[0], budget)

    def batch_scores(self, x: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        """Candidates of a whole batch, ``(ids, score)``: every neuron found for any input, scored
        by its total collisions over the batch (then priority). One bincount, no per-input sort:
        what a training step needs when the batch shares one active set. Buckets that several
        inputs of the batch share are read once (:meth:`HashTables.hits`)."""
        import torch

        neuron, hits = self.tables.hits(self.hash(x))
        count = torch.bincount(neuron, hits.double(), minlength=self._ids.numel()).long()
        found = count.nonzero().squeeze(1)
        return self._ids[found], self._score(count[found], found)

    def query_batch(self, x: "torch.Tensor", budget: int) -> "torch.Tensor":
        """The at most ``budget`` best neurons for the batch as a whole (sorted ids)."""
        ids, score = self.batch_scores(x)
        if ids.numel() > budget:
            ids = ids[score.topk(budget).indices]
        return ids.sort().values

    def state(self) -> dict:
        """What a checkpoint needs to restore the tables exactly (seed and contents)."""
        t = self.tables
        return {"seed": self.seed, "ids": self._ids, "table_ids": t.ids,
                "offsets": t.offsets, "dropped": t.dropped}

    def load_state(self, state: dict) -> None:
        self.seed = state["seed"]
        self.family = make_family(self.family_name, self.dim, self.k * self.l, self.seed,
                                  **self.family_params)
        self._ids = state["ids"]
        self._set_priority()
        t = self.tables
        t.ids, t.offsets, t.dropped = state["table_ids"], state["offsets"], state["dropped"]
        t.n_items = self._ids.numel()

    def nbytes(self) -> int:
        """Memory of the tables (what SLIDE adds on top of the layer's weights)."""
        return self.tables.nbytes()

    def load(self):
        return self.tables.load()


def pad_ranked(row: "torch.Tensor", ids: "torch.Tensor", n: int, budget: int) -> "torch.Tensor":
    """Keep the first ``budget`` entries of each row of a row-sorted list, as ``[n, budget]``
    padded with -1."""
    import torch

    counts = torch.bincount(row, minlength=n)
    rank = torch.arange(row.numel()) - (torch.cumsum(counts, 0) - counts)[row]
    keep = rank < budget
    out = torch.full((n, budget), -1, dtype=torch.long)
    out[row[keep], rank[keep]] = ids[keep]
    return out
