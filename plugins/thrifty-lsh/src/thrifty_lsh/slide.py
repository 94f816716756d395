"""The SLIDE output layer: a wide softmax layer that, per training step, computes only the
neurons its LSH tables retrieve for the batch plus the batch's true labels.

Why one active set per batch (the union) rather than SLIDE's per-sample sets: on a CPU running
torch, one ``[batch, active]`` matrix product over rows gathered with ``embedding`` is far faster
than per-sample gathers, and each sample then also gets the others' candidates as extra
negatives. Only the active rows are read, and only they receive gradients: the weight and bias
are gathered with ``embedding(sparse=True)``, so the optimiser (``SparseAdam``) touches only
those rows.

Hash tables go stale as the weights move. The layer refills them (same hash functions, new
weights) and rebuilds them (new hash functions) either on SLIDE's fixed schedule - every
``refill_every`` and ``rebuild_every`` training samples - or when measured drift demands it:
every ``drift_check_every`` samples it measures the recall of the exact top-k neurons of a few
inputs and refills when it falls below ``drift_threshold``.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from .diagnostics import topk_recall


@attrs.define
class SparseLogits:
    """Logits of a training step over the active neurons only."""

    logits: torch.Tensor
    """``[batch, n_active]``"""
    active: torch.Tensor
    """``[n_active]`` sorted global neuron ids; column ``j`` of ``logits`` is neuron ``active[j]``"""

    def columns(self, labels: torch.Tensor) -> torch.Tensor:
        """Column of each label (``[batch, m]``, -1 padded) in ``logits``; -1 where absent."""
        pos = torch.searchsorted(self.active, labels.clamp(min=0))
        pos = pos.clamp(max=max(self.active.numel() - 1, 0))
        found = (labels >= 0) & (self.active[pos] == labels)
        return torch.where(found, pos, torch.full_like(pos, -1))


def softmax_loss(logits: torch.Tensor, columns: torch.Tensor,
                 log_norm: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy against a uniform target over each sample's labels.

    ``columns [batch, m]`` are the label columns (-1 padded); samples without labels do not
    count. ``log_norm`` replaces the local log-sum-exp (distributed SLIDE passes the global one).
    """
    valid = columns >= 0
    n_labels = valid.sum(1)
    if log_norm is None:
        log_norm = logsumexp_rows(logits)
    picked = logits.gather(1, columns.clamp(min=0)) * valid
    per_sample = log_norm - picked.sum(1) / n_labels.clamp(min=1)
    has = n_labels > 0
    return (per_sample * has).sum() / has.sum().clamp(min=1)


def logsumexp_rows(x: torch.Tensor) -> torch.Tensor:
    """``torch.logsumexp(x, 1)`` whose backward reuses the softmax of the forward: torch's
    exponentiates the ``[batch, active]`` logits a second time, a sizeable share of a step."""
    if x.shape[1] == 0:
        return torch.logsumexp(x, 1)
    return _LogSumExp.apply(x)


class _LogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        top = x.amax(1, keepdim=True)
        top = torch.where(top.isfinite(), top, torch.zeros_like(top))
        p = (x - top).exp_()
        total = p.sum(1, keepdim=True)
        ctx.save_for_backward(p.div_(total))
        return (total.log_() + top).squeeze(1)

    @staticmethod
    def backward(ctx, grad):
        (softmax,) = ctx.saved_tensors
        return softmax * grad.unsqueeze(1)


class SlideLayer(nn.Module):
    """Output layer of ``out_features`` neurons over ``in_features`` inputs, trained sparsely.

    Training: ``layer(h, labels)`` returns :class:`SparseLogits`. Inference: ``layer(h)`` returns
    dense logits ``[batch, out_features]`` and ``layer.topk(h, k)`` the best ``k`` labels, by an
    exact dense product (``inference="dense"``) or over the ``query_budget`` best LSH
    candidates of each input (``"lsh"``). ``budget`` bounds the neurons retrieved per training
    batch (true labels come on top).
    """

    def __init__(self, in_features: int, out_features: int, *, family: str = "simhash",
                 k: int = 8, l: int = 16, bucket_size: int = 128, n_buckets: int = 1 << 15,
                 budget: int = 4096, query_budget: int = 256, inference: str = "dense", rebuild: str = "fixed",
                 refill_every: int = 6400, rebuild_every: int = 128_000,
                 drift_check_every: int = 2048, drift_threshold: float = 0.5,
                 seed: int = 0, first_id: int = 0, n_total: int | None = None,
                 sampler_options: dict | None = None) -> None:
        from thrifty.errors import ConfigError

        super().__init__()
        if inference not in ("dense", "lsh") or rebuild not in ("fixed", "drift"):
            raise ConfigError(f"SLIDE layer: inference must be 'dense' or 'lsh' and rebuild "
                              f"'fixed' or 'drift'; got {inference!r}, {rebuild!r}")
        self.in_features, self.out_features = in_features, out_features
        self.first_id = first_id
        self.budget, self.query_budget = budget, query_budget
        self.inference, self.rebuild = inference, rebuild
        self.refill_every, self.rebuild_every = refill_every, rebuild_every
        self.drift_check_every, self.drift_threshold = drift_check_every, drift_threshold
        self.weight = nn.Parameter(init_rows(seed, first_id, out_features, in_features,
                                             n_total or out_features))
        self.bias = nn.Parameter(torch.zeros(out_features, 1))
        self.sampler = make_sampler(family, in_features, dict(
            k=k, l=l, bucket_size=bucket_size, n_buckets=n_buckets, seed=seed + 1),
            sampler_options or {}, query_budget)
        self.ids = torch.arange(first_id, first_id + out_features)
        self.sampler.build(self.weight.detach(), self.ids)
        self.samples_seen = 0
        self.refills = self.rebuilds = 0
        self.last_recall = float("nan")
        self.work_fraction = 1.0

    # -- training -----------------------------------------------------------------------
    def candidates(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Global ids and scores of the neurons the tables retrieve for the batch ``h``."""
        self._maintain(h)
        return self.sampler.batch_scores(h.detach())

    def active_set(self, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Sorted global ids of the neurons to compute: the best ``budget`` retrieved for the
        batch, plus every true label (always active during training)."""
        ids, score = self.candidates(h)
        if ids.numel() > self.budget:
            ids = ids[score.topk(self.budget).indices]
        return self.with_labels(ids, labels)

    def with_labels(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``ids`` plus those labels that belong to this layer (sorted, unique)."""
        lab = labels[(labels >= self.first_id) & (labels < self.first_id + self.out_features)]
        return torch.unique(torch.cat([ids, lab]))

    def sparse_logits(self, h: torch.Tensor, active: torch.Tensor) -> SparseLogits:
        """Logits of the ``active`` global ids only; gradients reach only their rows."""
        local = active - self.first_id
        w = F.embedding(local, self.weight, sparse=True)
        b = F.embedding(local, self.bias, sparse=True).squeeze(1)
        self.work_fraction = active.numel() / self.out_features
        return SparseLogits(torch.addmm(b, h, w.T), active)

    def forward(self, h: torch.Tensor, labels: torch.Tensor | None = None):
        if self.training and labels is not None:
            self.samples_seen += h.shape[0]
            return self.sparse_logits(h, self.active_set(h, labels))
        self.work_fraction = 1.0
        return torch.addmm(self.bias.squeeze(1), h, self.weight.T)

    # -- inference ------------------------------------------------------------------------
    @torch.no_grad()
    def topk(self, h: torch.Tensor, k: int = 5, chunk: int = 1 << 16):
        """``(scores, ids)`` of the ``k`` best neurons per input (ids are global)."""
        if self.inference == "lsh":
            cand = self.sampler.query(h, self.query_budget)
            safe = (cand - self.first_id).clamp(min=0)
            scores = torch.einsum("bd,bcd->bc", h, self.weight[safe]) + self.bias[safe, 0]
            scores = scores.masked_fill(cand < 0, float("-inf"))
            v, i = scores.topk(min(k, scores.shape[1]), dim=1)
            return v, cand.gather(1, i)
        best_v = torch.full((h.shape[0], k), float("-inf"))
        best_i = torch.zeros((h.shape[0], k), dtype=torch.long)
        for a in range(0, self.out_features, chunk):
            s = torch.addmm(self.bias[a:a + chunk, 0], h, self.weight[a:a + chunk].T)
            v, i = s.topk(min(k, s.shape[1]), dim=1)
            allv, alli = torch.cat([best_v, v], 1), torch.cat([best_i, i + a], 1)
            top = allv.topk(k, dim=1).indices
            best_v, best_i = allv.gather(1, top), alli.gather(1, top)
        return best_v, best_i + self.first_id

    # -- table maintenance -----------------------------------------------------------------
    def _maintain(self, h: torch.Tensor) -> None:
        seen, n = self.samples_seen, h.shape[0]
        crossed = lambda every: (every > 0 and seen >= n  # noqa: E731
                                 and seen // every != (seen - n) // every)
        w = self.weight.detach()
        if self.rebuild == "fixed":
            if crossed(self.rebuild_every):
                self.sampler.rebuild(w)
                self.rebuilds += 1
            elif crossed(self.refill_every):
                self.sampler.refill(w)
                self.refills += 1
        elif crossed(self.drift_check_every):
            probe = h.detach()[:16]
            found = self.sampler.query(probe, self.query_budget) - self.first_id
            self.last_recall = topk_recall(found, probe, w, k=min(10, self.out_features))
            if self.last_recall < self.drift_threshold:
                self.sampler.refill(w)
                self.refills += 1

    def table_bytes(self) -> int:
        return self.sampler.nbytes()


def make_sampler(family: str, dim: int, tables: dict, options: dict, query_budget: int):
    """The sampler registered as ``family`` (``thrifty_samplers``), built for SLIDE's tables.

    SLIDE's table settings (``k``, ``l``, ``bucket_size``, ``n_buckets``, ``seed``) go to a
    sampler that declares them; ``options`` are the family's own (e.g. ``window``, ``bits``).
    A sampler that offers only the :class:`thrifty.protocols.Sampler` protocol is read through
    :class:`QuerySampler`."""
    from thrifty import registry

    spec = registry().sampler(family)
    declared = {k: v for k, v in tables.items() if k in spec.options}
    sampler = spec.build(dim, **{**declared, **options})
    return sampler if hasattr(sampler, "batch_scores") else QuerySampler(sampler, query_budget)


class QuerySampler:
    """SLIDE's view of a sampler that follows only the protocol (``build``, ``query``,
    ``refill``, ``rebuild``, ``nbytes``): it maps the sampler's row numbers to the layer's
    global ids, and a batch's candidates are what its inputs' queries return, scored by how
    many inputs retrieved each. Checkpoints need the sampler's ``state()`` and
    ``load_state(state)``; without them the tables cannot be restored exactly."""

    def __init__(self, sampler, query_budget: int) -> None:
        self.inner, self.query_budget = sampler, query_budget
        self.ids = torch.empty(0, dtype=torch.long)

    def build(self, weights: torch.Tensor, ids: torch.Tensor) -> None:
        self.ids = ids
        self.inner.build(weights)

    def query(self, x: torch.Tensor, budget: int) -> torch.Tensor:
        found = self.inner.query(x, budget)
        return torch.where(found >= 0, self.ids[found.clamp(min=0)], found)

    def batch_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        found = self.inner.query(x, self.query_budget)
        rows, counts = torch.unique(found[found >= 0], return_counts=True)
        return self.ids[rows], counts

    def refill(self, weights: torch.Tensor) -> None:
        self.inner.refill(weights)

    def rebuild(self, weights: torch.Tensor, seed: int | None = None) -> None:
        self.inner.rebuild(weights, seed=seed)

    def nbytes(self) -> int:
        return self.inner.nbytes()

    def state(self) -> dict:
        if not hasattr(self.inner, "state"):
            from thrifty.errors import ConfigError

            raise ConfigError(
                f"sampler {type(self.inner).__name__} has no state()/load_state(), so its tables "
                f"cannot be checkpointed and a resumed run would not continue exactly; train "
                f"without --checkpoint or use a sampler that saves its tables")
        return self.inner.state()

    def load_state(self, state: dict) -> None:
        self.inner.load_state(state)


def init_rows(seed: int, first: int, n: int, dim: int, n_total: int,
              block: int = 1 << 14) -> torch.Tensor:
    """Rows ``first..first+n`` of a ``[n_total, dim]`` uniform(-1/sqrt(dim), 1/sqrt(dim)) init,
    drawn block by block from seeds that depend only on the block - so a shard of a
    distributed layer starts with exactly the rows a single process would have."""
    bound = dim ** -0.5
    out = torch.empty(n, dim)
    for blk in range(first // block, (first + n - 1) // block + 1 if n else 0):
        g = torch.Generator().manual_seed(seed * 1_000_003 + blk)
        rows = torch.rand(block, dim, generator=g) * 2 * bound - bound
        a, b = max(first, blk * block), min(first + n, (blk + 1) * block, n_total)
        out[a - first:b - first] = rows[a - blk * block:b - blk * block]
    return out
