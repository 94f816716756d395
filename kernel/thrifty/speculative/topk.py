"""The ``k`` largest of many values, in few short kernels.

Growing a token tree takes the few likeliest of tens of thousands of scores at every depth
(a draft's vocabulary, times the nodes it extends). On a GPU, ``torch.topk`` over one long row
is a radix selection of several passes over the whole row (multi-block) or one block that
walks it alone (a row per block): either costs tens of microseconds, more than the one-layer
draft step whose scores it ranks. Splitting the row into blocks of about its square root
turns it into a max per block (one wide reduction) and two ``topk`` over a few hundred values.
"""

from __future__ import annotations


def top_k(values, k: int):
    """``values.topk(k, -1)`` (largest first): the same values, and indices of entries that
    hold them, for a float tensor [..., M].

    Exact: row r's ``k`` largest lie in the ``k`` blocks whose maxima are the largest (a value
    in any other block is beaten by those ``k`` maxima, one per block), so the top ``k`` of
    those blocks' entries are the row's. Among equal values the index may differ from
    ``torch.topk``'s, which makes no promise of its own. NaN is not a score here. Values past
    the last whole block are candidates as they are (no padding, so every index is real).
    """
    import torch

    *lead, m = values.shape
    block = 1 << ((max(m, 1).bit_length() + 1) // 2)  # a power of two near sqrt(m)
    blocks, span = m // block, k * block
    if not 0 < k < blocks:  # no block to leave out: rank the row whole
        return values.topk(k, -1)
    full = blocks * block
    grid = values[..., :full].reshape(-1, blocks, block)
    chosen = grid.amax(-1).topk(k, -1).indices  # [R, k]: the blocks that hold the answer
    found = grid.gather(1, chosen[..., None].expand(-1, k, block)).flatten(1)
    if full < m:  # the last few values, in no block, are candidates too
        found = torch.cat([found, values[..., full:].reshape(-1, m - full)], 1)
    best, at = found.topk(k, -1)
    index = chosen.gather(1, (at // block).clamp(max=k - 1)) * block + at % block
    if full < m:
        index = torch.where(at < span, index, at - span + full)
    return best.reshape(*lead, k), index.reshape(*lead, k)
