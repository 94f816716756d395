"""Language models on equal terms: a PairConnect LM and a Transformer baseline with a KV cache.

Both map token ids to next-token logits with a head tied to the input embedding, both decode
incrementally (``start``/``step``), and both report parameters, memory and FLOPs per token the
same way, so that the benchmark compares like with like.
"""

from __future__ import annotations

import math

import attrs
import torch
from thrifty.errors import ConfigError
from torch import nn

from .layer import MLPBlock, PairConnect


@attrs.define
class Footprint:
    """Bytes a model needs to decode one row: weights (tables apart) and the cache."""

    parameters: int
    table_parameters: int
    cache_bytes: int
    bytes_per_parameter: int = 4

    @property
    def non_table_parameters(self) -> int:
        return self.parameters - self.table_parameters

    def as_dict(self) -> dict:
        bpp = self.bytes_per_parameter
        return {"parameters": self.parameters, "table_parameters": self.table_parameters,
                "non_table_parameters": self.non_table_parameters,
                "weights_MB": round(self.parameters * bpp / 1e6, 3),
                "tables_MB": round(self.table_parameters * bpp / 1e6, 3),
                "cache_bytes": self.cache_bytes}


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters, shared (tied) tensors counted once."""
    return sum(p.numel() for p in module.parameters())


class PairConnectLM(nn.Module):
    """PairConnect layer → tied output head. The decoding state is the last W token ids."""

    kind = "pairconnect"

    def __init__(self, vocab_size: int, dim: int, **layer_options) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.layer = PairConnect(vocab_size, dim, **layer_options)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.head.weight = self.layer.embed.weight

    def config(self) -> dict:
        """Everything needed to rebuild this model (weights apart)."""
        layer = self.layer
        return {"vocab_size": self.vocab_size, "dim": layer.out_features,
                "table_size": layer.table_size, "window": layer.window,
                "buckets": layer.buckets, "hashes": layer.hashes,
                "hash_seed": layer.hash_seed, "weighting": layer.weighting,
                "hidden": layer.hidden, "depth": layer.depth}

    @classmethod
    def from_config(cls, config: dict) -> "PairConnectLM":
        config = dict(config)
        return cls(config.pop("vocab_size"), config.pop("dim"), **config)

    def forward(self, tokens, past=None):
        """Logits [B, L, V] for every position of ``tokens`` [B, L], after ``past``."""
        return self.head(self.layer(tokens, past))

    def start(self, batch: int, device=None):
        return self.layer.empty_past(batch, device)

    def step(self, tokens, state):
        """Logits [B, L, V] of ``tokens`` [B, L] and the new state; cost O(W) per token."""
        features, state = self.layer.step(tokens, state)
        return self.head(features), state

    def flops_per_token(self, context: int = 0) -> int:
        """Independent of the context length: the window bounds the work."""
        return self.layer.flops_per_token() + 2 * self.layer.out_features * self.vocab_size

    def footprint(self, context: int = 0) -> Footprint:
        """Weights, the pair table among them, and the state (W int64 token ids)."""
        return Footprint(count_parameters(self), self.layer.table_parameters(),
                         8 * self.layer.window)


class KVCache:
    """Preallocated keys and values [layers, B, heads, capacity, head_dim] and a fill level."""

    def __init__(self, layers, batch, heads, capacity, head_dim, device=None, dtype=None):
        shape = (layers, batch, heads, capacity, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.k.shape[3]


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x, cache: KVCache | None = None, layer: int = 0):
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, self.head_dim) \
            .permute(2, 0, 3, 1, 4)
        if cache is None:
            y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            start, end = cache.length, cache.length + length
            cache.k[layer, :, :, start:end] = k
            cache.v[layer, :, :, start:end] = v
            k, v = cache.k[layer, :, :, :end], cache.v[layer, :, :, :end]
            mask = None
            if length > 1:  # new token t sees the cache and new tokens up to t
                mask = torch.ones(length, end, dtype=torch.bool, device=x.device).tril(start)
            y = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(batch, length, dim))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.mlp = MLPBlock(dim, hidden)

    def forward(self, x, cache=None, layer=0):
        return self.mlp(x + self.attn(self.norm(x), cache, layer))


class TransformerLM(nn.Module):
    """A pre-norm GPT-style decoder with learned positions and a KV cache (the baseline)."""

    kind = "transformer"

    def __init__(self, vocab_size: int, dim: int, layers: int, heads: int, max_len: int,
                 hidden: int = 0) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"dim {dim} must be a multiple of heads {heads}")
        self.vocab_size, self.dim, self.layers, self.heads = vocab_size, dim, layers, heads
        self.max_len, self.hidden = max_len, hidden or 4 * dim
        self.embed = nn.Embedding(vocab_size, dim)
        self.pos = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, self.hidden) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.head.weight = self.embed.weight
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    def forward(self, tokens, cache: KVCache | None = None):
        """Logits [B, L, V]; with a cache, ``tokens`` continue the cached ones and are cached."""
        start = cache.length if cache is not None else 0
        length = tokens.shape[1]
        if start + length > self.max_len:
            raise ConfigError(f"context of {start + length} tokens exceeds max_len {self.max_len}")
        x = self.embed(tokens) + self.pos.weight[start:start + length]
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        if cache is not None:
            cache.length += length
        return self.head(self.norm(x))

    def start(self, batch: int, device=None):
        return KVCache(self.layers, batch, self.heads, self.max_len, self.dim // self.heads,
                       device=device, dtype=self.embed.weight.dtype)

    def step(self, tokens, state: KVCache):
        return self(tokens, state), state

    def flops_per_token(self, context: int) -> int:
        """Matmuls of every layer, attention over ``context`` cached positions, and the head."""
        d, h = self.dim, self.hidden
        per_layer = 2 * (3 * d * d + d * d + 2 * d * h) + 2 * 2 * context * d
        return self.layers * per_layer + 2 * d * self.vocab_size

    def footprint(self, context: int) -> Footprint:
        """Weights (no hashed tables) and the KV cache of ``context`` positions."""
        return Footprint(count_parameters(self), 0, 2 * self.layers * context * self.dim * 4)


def perplexity(mean_nll: float) -> float:
    return math.exp(mean_nll)
