"""Choosing K (hashes per table) and L (tables) from a target sparsity.

A neuron unrelated to the input collides on one hash with the family's background probability
``p0`` (1/2 for SimHash, 1/window for WTA); one that the input should find collides with
``p_near``. With K hashes per table and L tables the first is retrieved with probability
``1 - (1 - p0**K)**L`` - the share of the layer computed - and the second with
``1 - (1 - p_near**K)**L`` - the recall. :func:`auto_size` takes the (K, L) with the best recall
whose background share stays within the target.
"""

from __future__ import annotations

import attrs

from .hashing import retrieval_probability


@attrs.frozen
class Sizing:
    k: int
    l: int
    recall: float
    """predicted retrieval probability of a neuron that collides with ``p_near`` per hash"""
    sparsity: float
    """predicted share of unrelated neurons retrieved"""


def auto_size(target_sparsity: float, p0: float, p_near: float, max_k: int = 32,
              max_l: int = 64, n_buckets: int | None = None) -> Sizing:
    """The (K, L) with the highest predicted recall whose background share is at most
    ``target_sparsity``; ties go to fewer hashes. ``n_buckets`` (if the bucket ids are folded
    into fewer buckets than ``code_range**K``) adds its ``1/n_buckets`` spurious collisions."""
    from thrifty.errors import ConfigError

    if not (0 < target_sparsity < 1 and 0 < p0 < p_near <= 1):
        raise ConfigError(f"auto_size needs 0 < target_sparsity < 1 and 0 < p0 < p_near <= 1; "
                          f"got target_sparsity={target_sparsity}, p0={p0}, p_near={p_near}")
    best = None
    for k in range(1, max_k + 1):
        q0 = p0 ** k + (1.0 / n_buckets if n_buckets else 0.0)
        for l in range(1, max_l + 1):
            share = 1.0 - (1.0 - min(q0, 1.0)) ** l
            if share > target_sparsity:
                break
            recall = retrieval_probability(p_near, k, l)
            cand = Sizing(k, l, recall, share)
            if best is None or (recall, -k * l) > (best.recall, -best.k * best.l):
                best = cand
    if best is None:
        raise ConfigError(f"no K <= {max_k}, L <= {max_l} reaches sparsity {target_sparsity} "
                          f"(p0={p0}); raise max_k or the target")
    return best
