"""Model-parallel SLIDE: each rank owns a contiguous shard of the output layer and its tables.

Every rank reads the same batch and computes the same hidden layer (replicated: on sparse
inputs it costs less to recompute it than to ship its activations or its sparse gradients).
Per step only these cross the network:

1. the top-``budget`` candidate keys of each rank (``budget`` int64): every rank then keeps
   exactly the neurons that a single process would have kept - the global top-``budget`` by
   (collision count, priority, id);
2. each rank's log-sum-exp over its active neurons (``batch`` floats): with them every rank
   normalises its softmax exactly, as if it held the whole layer;
3. the gradient of the hidden activations (``batch x hidden`` floats, all-reduced): each rank
   contributes the part its neurons produce, and every rank applies the same sum - so the
   replicated layer stays identical without ever sending its gradients;
4. for evaluation, each rank's top-5 (scores and ids) per point.

The wide layer's gradient never leaves its rank: no dense all-reduce. With one rank this is
the single-process SLIDE step, which is why the result does not depend on the number of ranks
beyond floating-point order (and bucket overflow: a shard's buckets hold at most
``bucket_size`` of *its* neurons).
"""

from __future__ import annotations

import torch

from ..model import SparseInput, make_optimizers
from ..slide import SlideLayer
from .wire import Wire

_ID_BITS = 30


def shard_range(n: int, rank: int, world: int) -> tuple[int, int]:
    """``[first, end)`` of rank's neurons: contiguous, sizes differing by at most one."""
    per, extra = divmod(n, world)
    first = rank * per + min(rank, extra)
    return first, first + per + (rank < extra)


class ShardedNet(torch.nn.Module):
    def __init__(self, n_features: int, n_labels: int, hidden: int, wire: Wire, rank: int,
                 seed: int = 0, lr: float = 1e-3, **slide_options) -> None:
        super().__init__()
        self.wire, self.rank = wire, rank
        first, end = shard_range(n_labels, rank, wire.world)
        self.hidden = SparseInput(n_features, hidden, seed)
        self.output = SlideLayer(hidden, end - first, seed=seed, first_id=first,
                                 n_total=n_labels, **slide_options)
        self.optimizers = make_optimizers(self, lr)

    def _global_active(self, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = self.output
        ids, score = out.candidates(h)
        key = score * (1 << _ID_BITS) + ids
        top = key.topk(min(out.budget, key.numel())).values
        padded = torch.full((out.budget,), -1, dtype=torch.long)
        padded[: top.numel()] = top
        everyone = self.wire.all_gather(padded).reshape(-1)
        if (everyone >= 0).sum() >= out.budget:
            cut = everyone.topk(out.budget).values[-1]
            ids = ids[key >= cut]
        return out.with_labels(ids, labels)

    def step(self, batch) -> float:
        """One training step; returns the global loss (identical on every rank)."""
        self.train()
        out = self.output
        h = self.hidden(batch)
        h_leaf = h.detach().requires_grad_()
        out.samples_seen += len(batch)
        sparse = out.sparse_logits(h_leaf, self._global_active(h_leaf, batch.labels))
        cols = sparse.columns(batch.labels)
        valid = cols >= 0
        local_lse = torch.logsumexp(sparse.logits, 1) if sparse.logits.shape[1] else \
            torch.full((len(batch),), float("-inf"))
        gathered = self.wire.all_gather(local_lse.detach())
        # only this rank's share carries a gradient here; the others are constants
        lses = torch.stack([local_lse if r == self.rank else gathered[r]
                            for r in range(self.wire.world)])
        log_norm = torch.logsumexp(lses, 0)
        n_labels = (batch.labels >= 0).sum(1)
        has = n_labels > 0
        picked = (sparse.logits.gather(1, cols.clamp(min=0)) * valid).sum(1)
        per_sample = log_norm - picked / n_labels.clamp(min=1)
        weight = has.float() / has.sum().clamp(min=1)
        local = (per_sample * weight).sum()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        local.backward()
        dh = self.wire.all_reduce(h_leaf.grad)
        h.backward(dh)
        for opt in self.optimizers:
            opt.step()
        # loss for reporting: log-normaliser once, label logits summed over owners
        picked_all = self.wire.all_reduce(picked.detach())
        return float(((log_norm.detach() - picked_all / n_labels.clamp(min=1)) * weight).sum())

    @torch.no_grad()
    def predict(self, batch, k: int = 5) -> torch.Tensor:
        """Global top-k ids: each rank's top-k, gathered and merged."""
        self.eval()
        v, i = self.output.topk(self.hidden(batch), k)
        vs, ids = self.wire.all_gather(v), self.wire.all_gather(i)
        merged_v = vs.permute(1, 0, 2).reshape(len(batch), -1)
        merged_i = ids.permute(1, 0, 2).reshape(len(batch), -1)
        return merged_i.gather(1, merged_v.topk(k, dim=1).indices)
