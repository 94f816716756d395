"""The PairConnect layer: pairwise word embeddings looked up from a hashed table, then an MLP.

Definition (``docs/pairconnect.md`` gives the reasoning). For tokens x_1 … x_n, window W,
distance buckets β(δ), k hash functions h_r and per-distance weights α (all 1 in ``sum`` mode):

    u_i = E[x_i] + Σ_{δ=1}^{min(W, i−1)} α_δ Σ_{r=1}^{k} P[h_r(x_i, x_{i−δ}, β(δ))]
    y_i = LN(MLP_depth(u_i)),   MLP block: u ← u + W₂ GELU(W₁ LN(u))

The pair sum over a sequence is one ``torch.nn.EmbeddingBag`` call (``per_sample_weights`` = α in
``distance`` mode). Position i reads only x_{i−W} … x_i, so incremental decoding keeps the last
W tokens (newest first: column δ−1 holds x_{i−δ}) as its whole state and pays W·k lookups plus
the MLP per token, whatever the context length. One new token takes the lean path of
:meth:`PairConnect.step`: its W·k ids in a few integer ops on [B, W, k] (only pairs with the new
token are new, and they line up with the per-distance constants without any reordering), one
row gather and one batched matrix product for the weighted sum.
"""

from __future__ import annotations

import torch
from thrifty.errors import ConfigError
from torch import nn

from .hashing import PRIME, distance_buckets, hash_coefficients, pair_ids

WEIGHTINGS = ("sum", "distance")


class MLPBlock(nn.Module):
    """Pre-norm residual MLP block (shared by PairConnect and the Transformer baseline)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)

    def forward(self, x):
        # functional calls on the submodules' weights: the same kernels as calling the
        # submodules, without three module dispatches, which dominate at decoding sizes
        F, norm = nn.functional, self.norm
        h = F.linear(F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps),
                     self.up.weight, self.up.bias)
        return x + F.linear(F.gelu(h), self.down.weight, self.down.bias)


class PairConnect(nn.Module):
    """Token ids [B, L] (plus the W tokens before them) → features [B, L, out_features].

    ``in_features`` is the vocabulary size (the range of token ids), ``out_features`` the width
    of the embeddings and of the output.
    """

    def __init__(self, in_features: int, out_features: int, *, table_size: int = 1 << 16,
                 window: int = 16, buckets: int = 8, hashes: int = 1, hash_seed: int = 0,
                 weighting: str = "distance", hidden: int = 0, depth: int = 2) -> None:
        super().__init__()
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {WEIGHTINGS}; got {weighting!r}")
        for key, value in (("in_features", in_features), ("out_features", out_features),
                           ("table_size", table_size), ("window", window),
                           ("buckets", buckets), ("hashes", hashes)):
            if value < 1:
                raise ConfigError(f"{key} must be >= 1; got {value}")
        self.in_features, self.out_features = in_features, out_features
        self.table_size, self.window, self.buckets = table_size, window, buckets
        self.hashes, self.hash_seed, self.weighting = hashes, hash_seed, weighting
        self.hidden, self.depth = hidden or 4 * out_features, depth
        self.embed = nn.Embedding(in_features, out_features)
        # row table_size is the all-zero padding row that missing tokens (before the start) hit
        self.pairs = nn.EmbeddingBag(table_size + 1, out_features, mode="sum",
                                     padding_idx=table_size)
        self.distance_weight = nn.Parameter(torch.ones(window)) if weighting == "distance" \
            else None
        self.blocks = nn.ModuleList(MLPBlock(out_features, self.hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(out_features)
        self.register_buffer("bucket", distance_buckets(window, buckets), persistent=False)
        self.register_buffer("coef", hash_coefficients(hashes, hash_seed), persistent=False)
        # the terms of each hash that one decoding step does not change: (offset + c·β(δ)) mod
        # PRIME [W, k], and the multipliers of the current and the previous token [k]
        off, a, b, c = self.coef.unbind(1)
        self.register_buffer("distance_term", (off + c * self.bucket[:, None]) % PRIME,
                             persistent=False)
        self.register_buffer("current_mul", a.clone(), persistent=False)
        self.register_buffer("previous_mul", b.clone(), persistent=False)
        nn.init.normal_(self.embed.weight, std=0.02)
        with torch.no_grad():
            self.pairs.weight.normal_(std=0.02)
            self.pairs.weight[table_size].zero_()

    # -- state for incremental decoding ------------------------------------------------------
    def empty_past(self, batch: int, device=None):
        """The state before any token: W slots of "no token" (−1)."""
        return torch.full((batch, self.window), -1, dtype=torch.long, device=device)

    def next_past(self, past, tokens):
        """The state after ``tokens`` [B, L] were read: the last W tokens, newest first."""
        return torch.cat([tokens.flip(1), past], 1)[:, :self.window]

    # -- computation -------------------------------------------------------------------------
    def previous(self, tokens, past=None):
        """long [B, L, W]: column δ−1 holds x_{i−δ} (−1 where there is none)."""
        batch, length = tokens.shape
        if past is None:
            past = self.empty_past(batch, tokens.device)
        full = torch.cat([past.flip(1), tokens], 1)  # [B, W + L], oldest first
        windows = full.unfold(1, self.window, 1)[:, :length]  # [B, L, W]: x_{i−W} … x_{i−1}
        return windows.flip(-1)

    def pair_features(self, tokens, past=None):
        """Σ_δ α_δ Σ_r P[h_r(x_i, x_{i−δ}, β(δ))]: float [B, L, out_features]."""
        ids = pair_ids(tokens, self.previous(tokens, past), self.bucket, self.coef,
                       self.table_size)
        flat = ids.reshape(-1, ids.shape[-1])
        weights = None
        if self.distance_weight is not None:
            weights = self.distance_weight.repeat_interleave(self.hashes).expand(flat.shape)
        return self.pairs(flat, per_sample_weights=weights).view(*tokens.shape, -1)

    def forward(self, tokens, past=None):
        """Features of ``tokens`` [B, L], continuing after ``past`` [B, W] (None: at the start)."""
        if tokens.shape[1] == 1 and past is not None:
            return self.step(tokens, past)[0]
        u = self.embed(tokens) + self.pair_features(tokens, past)
        for block in self.blocks:
            u = block(u)
        return self.norm(u)

    def step(self, tokens, past):
        """(features [B, L, out_features], next past) of ``tokens`` [B, L] after ``past``.

        One token per row (L = 1, the decoding step) takes the lean path: its ids are
        (a·x_i + b·x_{i−δ} + offset + c·β(δ)) mod PRIME mod T on [B, W, k] in place — the same
        integers :func:`pair_ids` computes, without building windows — and the weighted sum is a
        gather of W·k rows and one ``baddbmm`` that also adds E[x_i]. The MLP runs on [B, d].
        """
        if tokens.shape[1] != 1:
            return self(tokens, past), self.next_past(past, tokens)
        features = self.step_features(tokens, self.step_ids(tokens, past))
        return features, torch.cat([tokens, past[:, :-1]], 1)

    def step_ids(self, tokens, past):
        """long [B, W, k]: the table rows a new token [B, 1] pairs with ``past`` [B, W], the
        padding row where the past has no token (in place on one fresh tensor)."""
        ids = torch.addcmul(self.distance_term, past[..., None], self.previous_mul)
        ids = ids.addcmul_(tokens[..., None], self.current_mul).remainder_(PRIME)
        return ids.remainder_(self.table_size).masked_fill_(past[..., None] < 0,
                                                            self.table_size)

    def step_features(self, tokens, ids):
        """Features [B, 1, out_features] of tokens [B, 1] from their pair ids [B, W, k]."""
        batch = tokens.shape[0]
        rows = nn.functional.embedding(ids.view(batch, -1), self.pairs.weight,
                                       padding_idx=self.table_size)  # [B, W·k, d]
        if self.distance_weight is None:
            u = self.embed(tokens).add_(rows.sum(1, keepdim=True))
        else:
            alpha = self.distance_weight
            if self.hashes > 1:
                alpha = alpha.repeat_interleave(self.hashes)
            u = torch.baddbmm(self.embed(tokens), alpha.expand(batch, 1, -1), rows)
        u = u.view(batch, -1)
        for block in self.blocks:
            u = block(u)
        return self.norm(u).view(batch, 1, -1)

    # -- accounting ----------------------------------------------------------------------------
    def table_parameters(self) -> int:
        """Parameters of the pair table (its padding row excluded: it is fixed at zero)."""
        return self.table_size * self.out_features

    def flops_per_token(self) -> int:
        """FLOPs of one position: W·k row additions (×2 when weighted), the MLP's matmuls.

        Hashing costs about 8 integer operations per id; elementwise work (LayerNorm, GELU) is
        left out here as it is for the Transformer.
        """
        d, lookups = self.out_features, self.window * self.hashes
        bag = lookups * d * (2 if self.distance_weight is not None else 1)
        mlp = self.depth * 2 * 2 * d * self.hidden
        return bag + 8 * lookups + mlp

    def dense_flops_per_token(self) -> int:
        """FLOPs of the dense layer PairConnect stands for: self-attention of the same width
        over the same window (Q, K, V and output projections, scores and mixing), then the
        same MLP."""
        d = self.out_features
        return 2 * 4 * d * d + 2 * 2 * self.window * d + self.depth * 2 * 2 * d * self.hidden

    @property
    def work_fraction(self) -> float:
        """Share of that dense layer's FLOPs one position costs here (the same every forward)."""
        return self.flops_per_token() / self.dense_flops_per_token()
