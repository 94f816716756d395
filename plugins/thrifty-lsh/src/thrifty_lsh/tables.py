"""L hash tables with bounded buckets, stored flat (CSR) so build and query are a few sorts.

A bucket keeps at most ``bucket_size`` neurons: those with the smallest *priority*, a fixed
pseudo-random function of the neuron's global id and the table seed. Priorities (rather than
arrival order or reservoir sampling) make the tables a pure function of (weights, seed), so a
neuron's fate never depends on which other neurons were inserted with it, and the same ranking
breaks ties when a query has more candidates than its budget - which keeps distributed SLIDE
independent of the number of shards.

Memory: ``L * (kept + n_buckets + 1)`` integers - no empty slots as in SLIDE's fixed arrays.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:  # pragma: no cover
    import torch

PRIORITY_BITS = 24


def priority(ids: "torch.Tensor", seed: int) -> "torch.Tensor":
    """A fixed pseudo-random priority in ``[0, 2**24)`` per global neuron id (lower wins)."""
    h = (ids.long() * 0x9E3779B1 + (seed * 0x85EBCA6B + 0x165667B1)) & 0xFFFFFFFF
    h = ((h ^ (h >> 15)) * 0x2C1B3C6D) & 0xFFFFFFFF
    h = ((h ^ (h >> 12)) * 0x297A2D39) & 0xFFFFFFFF
    return (h ^ (h >> 15)) & ((1 << PRIORITY_BITS) - 1)


@attrs.define
class BucketLoad:
    """How full the tables are: used to size buckets and to spot a skewed hash."""

    mean_nonempty: float
    max: int
    full_share: float
    """share of non-empty buckets that reached ``bucket_size``"""
    dropped: int
    """neuron entries (summed over tables) that did not fit their bucket"""


class HashTables:
    """``n_tables`` tables of ``n_buckets`` bounded buckets over neuron ids."""

    def __init__(self, n_tables: int, n_buckets: int, bucket_size: int) -> None:
        self.n_tables, self.n_buckets, self.bucket_size = n_tables, n_buckets, bucket_size
        self.ids = None  # int32 [kept] local neuron indices, grouped by (table, bucket)
        self.offsets = None  # int64 [n_tables * n_buckets + 1]
        self.dropped = 0
        self.n_items = 0

    def fill(self, buckets: "torch.Tensor", priorities: "torch.Tensor") -> None:
        """Replace the contents with neurons ``0..n-1`` hashed to ``buckets [n, L]``; a full
        bucket keeps the neurons of lowest ``priorities [n]``."""
        import torch

        n, L = buckets.shape
        # neurons by priority (ties by index), then a stable sort by (table, bucket): one
        # sort of small int32 keys orders every bucket by priority
        by_priority = torch.sort(priorities, stable=True).indices
        key = (buckets[by_priority] + torch.arange(L) * self.n_buckets).T.reshape(-1)
        key, order = torch.sort(key.int(), stable=True)
        key, item = key.long(), by_priority.repeat(L)[order]
        counts = torch.bincount(key, minlength=L * self.n_buckets)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(key.numel()) - starts[key]
        keep = rank < self.bucket_size
        kept_counts = counts.clamp(max=self.bucket_size)
        self.ids = item[keep].to(torch.int32)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(kept_counts, 0)])
        self.dropped = int(key.numel() - keep.sum())
        self.n_items = n

    def lookup(self, buckets: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        """Contents of the query buckets ``[B, L]``: ``(row, neuron)`` pairs, one per entry."""
        import torch

        B, L = buckets.shape
        key = (buckets + torch.arange(L) * self.n_buckets).reshape(-1)
        start, lens = self.offsets[key], self.offsets[key + 1] - self.offsets[key]
        which = torch.repeat_interleave(torch.arange(B * L), lens)
        first = torch.cumsum(lens, 0) - lens
        pos = torch.arange(which.numel()) - first[which] + start[which]
        return which // L, self.ids[pos].long()

    def hits(self, buckets: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        """Contents of the query buckets ``[B, L]`` without the rows: ``(neuron, hits)``, one
        entry per neuron of each distinct bucket, ``hits`` the number of queries that fell into
        that bucket. Summing ``hits`` per neuron counts the same collisions as :meth:`lookup`,
        but a bucket shared by many queries of a batch is read once."""
        import torch

        B, L = buckets.shape
        key = (buckets + torch.arange(L) * self.n_buckets).reshape(-1)
        key, queries = torch.unique(key, return_counts=True)
        start, lens = self.offsets[key], self.offsets[key + 1] - self.offsets[key]
        total = int(lens.sum())
        shift = torch.repeat_interleave(start - (torch.cumsum(lens, 0) - lens), lens,
                                        output_size=total)
        pos = torch.arange(total) + shift
        return self.ids[pos], torch.repeat_interleave(queries, lens, output_size=total)

    def load(self) -> BucketLoad:
        sizes = self.offsets[1:] - self.offsets[:-1]
        nonempty = sizes[sizes > 0]
        if nonempty.numel() == 0:
            return BucketLoad(0.0, 0, 0.0, self.dropped)
        return BucketLoad(float(nonempty.float().mean()), int(nonempty.max()),
                          float((nonempty >= self.bucket_size).float().mean()), self.dropped)

    def nbytes(self) -> int:
        return int(self.ids.numel() * self.ids.element_size()
                   + self.offsets.numel() * self.offsets.element_size())
