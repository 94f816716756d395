"""Pure functions that turn (token i, token j, distance bucket of i − j) into table rows.

A pair id is a 2-universal hash (Carter–Wegman over the prime 2^31 − 1) of the three integers,
reduced to the table size. ``hashes`` independent functions give every pair that many rows, so
that two pairs that collide under one function rarely collide under all of them (the hashing
trick of "hash embeddings"). Everything here is integer arithmetic on int64 tensors: products
stay below 2^50, far from overflow.
"""

from __future__ import annotations

import math

from thrifty.errors import ConfigError

PRIME = (1 << 31) - 1
"""Modulus of the universal hash; any token id or bucket must be smaller than this."""


def distance_buckets(window: int, buckets: int):
    """Bucket of each distance δ = 1 … window: LongTensor [window].

    With ``buckets >= window`` every distance has its own bucket. Otherwise the first half of the
    buckets are exact distances and the rest cover the remaining distances in log-spaced ranges
    (T5's relative-position buckets, one-sided): near words are told apart, far words share.
    """
    import torch

    if window < 1 or buckets < 1:
        raise ConfigError(f"window and buckets must be >= 1; got {window}, {buckets}")
    delta = torch.arange(1, window + 1)
    if buckets >= window:
        return delta - 1
    exact = max(buckets // 2, 1)
    if buckets == exact:  # one bucket: every distance shares it
        return torch.zeros(window, dtype=torch.long)
    far = buckets - exact
    # distances exact+1 … window map to exact … buckets-1 by log(δ / exact) / log(window / exact)
    scale = math.log(window / exact)
    logb = (torch.log(delta.double() / exact) / scale * far).long().clamp(max=far - 1)
    return torch.where(delta <= exact, delta - 1, exact + logb)


def hash_coefficients(hashes: int, seed: int):
    """The random coefficients [hashes, 4] (offset, a, b, c) of ``hashes`` universal functions."""
    import torch

    g = torch.Generator().manual_seed(seed)
    coef = torch.randint(1, PRIME, (hashes, 4), generator=g, dtype=torch.long)
    coef[:, 0] -= 1  # the offset may be 0
    return coef


def pair_ids(current, previous, bucket, coef, table_size: int):
    """Table rows of the pairs (current token, previous token, distance bucket).

    Args:
        current: long [...], token i.
        previous: long [..., W], token i − δ for δ = 1 … W; negative where there is no token.
        bucket: long [W], bucket of each δ (from :func:`distance_buckets`).
        coef: long [k, 4] from :func:`hash_coefficients`.
        table_size: rows T of the pair table; ids are in [0, T), and a missing previous token
            gets id T (the table's all-zero padding row).

    Returns:
        long [..., W * k]: the k ids of distance δ sit at columns (δ − 1)·k … δ·k − 1.
    """
    off, a, b, c = (coef[:, n] for n in range(4))  # each [k]
    h = (off + a * current[..., None, None] + b * previous.clamp(min=0)[..., None]
         + c * bucket[:, None]) % PRIME % table_size  # [..., W, k]
    h = h.masked_fill(previous[..., None] < 0, table_size)
    return h.flatten(-2)
