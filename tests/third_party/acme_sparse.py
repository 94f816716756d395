"""A third-party plugin as a user would write it from docs/hooks: a sampler that follows only
the :class:`thrifty.protocols.Sampler` protocol and a low-rank output layer.

tests/test_third_party_sparse.py installs it into a fake site (its own distribution and entry
point) and trains with it through ``thrifty train``.
"""

import torch
from torch import nn

from thrifty import Option, SamplerSpec, SparseLayerSpec, hookimpl


class BruteSRP:
    """Signed random projections, ``tables`` codes of ``bits`` bits each; a query ranks every
    neuron by the number of tables whose code it shares with the input (brute force: fine for
    a test, and unlike thrifty-lsh's tables)."""

    def __init__(self, dim, tables=4, bits=3, seed=0):
        self.dim, self.tables, self.bits = dim, tables, bits
        self.rebuild_functions(seed)
        self.codes = None

    def rebuild_functions(self, seed):
        self.seed = seed
        g = torch.Generator().manual_seed(seed)
        self.planes = torch.randn(self.dim, self.tables * self.bits, generator=g)

    def _codes(self, x):
        signs = (x.detach() @ self.planes > 0).long().view(x.shape[0], self.tables, self.bits)
        return (signs * (2 ** torch.arange(self.bits))).sum(-1)

    def build(self, weights):
        self.codes = self._codes(weights)

    def refill(self, weights):
        self.build(weights)

    def rebuild(self, weights, seed=None):
        self.rebuild_functions(self.seed + 1 if seed is None else seed)
        self.build(weights)

    def query(self, x, budget):
        hits = (self._codes(x)[:, None, :] == self.codes[None]).sum(-1)
        score, ids = (hits * (self.codes.shape[0] + 1) - torch.arange(self.codes.shape[0])
                      ).topk(min(budget, self.codes.shape[0]), dim=1)
        ids = torch.where(score > 0, ids, torch.full_like(ids, -1))
        out = torch.full((x.shape[0], budget), -1, dtype=torch.long)
        out[:, :ids.shape[1]] = ids
        return out

    def nbytes(self):
        return self.codes.numel() * self.codes.element_size()


class LowRank(nn.Module):
    """An output layer ``x @ (U V)^T + b`` of rank ``rank``: dense logits, fewer multiply-adds."""

    def __init__(self, in_features, out_features, rank=4, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.in_features, self.out_features = in_features, out_features
        self.v = nn.Parameter(torch.randn(rank, in_features, generator=g) / in_features ** 0.5)
        self.u = nn.Parameter(torch.randn(out_features, rank, generator=g) / rank ** 0.5)
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.work_fraction = min(1.0, rank * (in_features + out_features)
                                 / (in_features * out_features))

    def forward(self, x, labels=None):
        return (x @ self.v.T) @ self.u.T + self.bias


@hookimpl
def thrifty_samplers():
    return [SamplerSpec(name="acme-srp", factory=BruteSRP,
                        description="brute-force signed random projections",
                        options={"tables": Option(int, 4, "tables"),
                                 "bits": Option(int, 3, "bits per table"),
                                 "seed": Option(int, 0, "seed of the projections")})]


@hookimpl
def thrifty_sparse_layers():
    return [SparseLayerSpec(name="acme-lowrank", factory=LowRank,
                            description="low-rank output layer",
                            options={"rank": Option(int, 4, "rank of the weight"),
                                     "seed": Option(int, 0, "seed of the weights")})]
