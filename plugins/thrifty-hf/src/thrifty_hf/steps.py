"""One forward of the fast path over its static cache: where the tokens go, at which positions,
and which cached slots each of them sees.

Both bodies (:mod:`.fused`, :mod:`.generic`) take their cache writes and reads, rotary
positions and attention masks from one :class:`Step`, so that a chain and a token tree differ in
nothing but it.

Row b's k tokens are written at slots ``n[b] .. n[b]+k-1`` in column order. A chain's token i
sits at position ``n[b] + i`` and sees every slot up to its own. A tree's column j sits at
position ``n[b] + depth(j)`` and sees the cached slots ``< n[b]`` and the slots of its ancestors
and itself; the other branches, written in the same pass, stay hidden. Sliding windows count
positions, not slots: a tree slot's key position is its node's.

Attention reads only the first S slots of each row (``slots`` holds S indices), S chosen by the
caller to cover the longest row after the step: its cost follows the tokens in use, not the
cache's size.
"""

from __future__ import annotations


class Step:
    """A step of ``k`` tokens per row at counts ``n`` [B] over ``cache`` (``[layer, key |
    value, row, kv head, slot, head dim]``), reading the slots ``slots`` [S].

    ``parents`` [B, k] (each column's parent column, -1 for the root) makes it a tree step,
    ``None`` a chain; the tree's ancestry [B, k, k] (as
    :func:`thrifty.speculative.tree.ancestors` gives) may stand for its parents, from a caller
    that keeps it as the tree grows (deriving it costs a dozen small kernels a step). ``at``
    [B]: the cache rows to use, when not all of them (an admission).
    ``fresh``: every row's ``n`` is 0 (a prefill or an admission), so a chain's attention may
    read the step's own keys under a causal mask (``causal``) instead of the cache.
    Pure tensor work with no value read on the host, so it builds inside a captured graph.
    """

    def __init__(self, cache, slots, n, k: int, parents=None, at=None,
                 fresh: bool = False) -> None:
        import torch

        self.cache, self.slots, self.at = cache, slots, at
        self.causal = fresh and parents is None
        """The step's attention is causal over its own tokens, which a fused kernel (flash
        attention) computes without reading a mask or scoring the masked half: attention
        through a [k, S] mask scores every query against every slot, which for a prompt of
        thousands of tokens is most of the prefill. Padded columns come after every row's
        real tokens, so no real token sees one."""
        batch, s = len(n), slots.shape[0]
        self.where = n[:, None] + slots[:k]  # [B, k]: the slot each token is written at
        rows = torch.arange(batch, device=n.device) if at is None else at
        self.rows = rows[:, None].expand(batch, k)
        if parents is None:
            # the same values as ``where`` but not the same tensor: a graph that torch.compile
            # traced for a chain would otherwise take them for one and serve trees wrongly
            self.pos = n[:, None] + slots[:k]
            self.visible = slots[None, None, :] <= self.pos[:, :, None]  # [B, k, S]
            self.key_pos = slots[None, :]
        else:
            from thrifty.speculative.tree import ancestors

            seen = parents if parents.dim() == 3 else ancestors(parents)  # [B, k, k]
            self.pos = n[:, None] + seen.sum(-1) - 1
            cached = slots[None, None, :] < n[:, None, None]
            self.visible = cached.expand(batch, k, s).scatter(
                2, self.where[:, None, :].expand(batch, k, k), seen)
            self.key_pos = slots.expand(batch, s).scatter(1, self.where, self.pos)
        self._masks: dict = {}

    def store(self, layer: int, kv) -> None:
        """Write the layer's keys and values of this step, ``kv`` [B, k, 2, kv heads, hd]."""
        self.cache[layer][:, self.rows, :, self.where] = kv

    def read(self, layer: int):
        """(keys, values) [B, kv heads, S, hd] of the layer, over the slots read."""
        span = self.cache[layer, :, :, :, : self.slots.shape[0]]
        if self.at is not None:
            span = span[:, self.at]
        return span[0], span[1]

    def mask(self, group: int, window=None):
        """[B, 1, group * k, S]: which slots each query row sees, for grouped-query attention
        that stacks each key/value head's ``group`` query heads as extra query rows
        (``window``: the last ``window`` positions only, as transformers' sliding-window
        mask). Built once per step and shape."""
        key = (group, window)
        if key not in self._masks:
            m = self.visible
            if window is not None:
                m = m & (self.key_pos[:, None, :] > self.pos[:, :, None] - window)
            b, k, s = m.shape
            self._masks[key] = m[:, None, None].expand(b, 1, group, k, s).reshape(
                b, 1, group * k, s)
        return self._masks[key]

    def bias(self, group: int, dtype, window=None):
        """:meth:`mask` as the additive mask attention adds to its scores in ``dtype``, built
        once per step: 0 where a query sees a slot, the dtype's most negative value where not
        (finite, as PyTorch itself hands cuDNN's attention a boolean mask). Given the boolean
        mask, ``scaled_dot_product_attention`` converts it in every layer it runs in (on a GPU
        a fill and a select per layer: kernels a small model's pass waits on). Every query
        sees at least its own slot, so each hidden slot's weight underflows to exactly 0 and
        the softmax is the one the boolean mask gives."""
        import torch

        key = ("bias", group, window, dtype)
        if key not in self._masks:
            seen = self.mask(group, window)
            self._masks[key] = torch.zeros(seen.shape, dtype=dtype, device=seen.device
                                           ).masked_fill(~seen, torch.finfo(dtype).min)
        return self._masks[key]


def compiled(forward, *, fuse_one_row_products: bool = False):
    """``forward`` compiled by ``torch.compile`` for the fast path's fixed step shapes.

    ``fuse_one_row_products`` turns on inductor's ``coordinate_descent_tuning``, under which a
    matrix product of one row becomes a multiply-and-sum inductor generates and tunes (as
    gpt-fast does) instead of a library call: a product over weights gathered by index (the
    experts of :func:`thrifty_hf.generic.gathered_experts`) then reads them in place rather
    than from a copy. Bodies with experts compile with it; the others keep inductor's
    defaults, under which their compiled speeds in docs/benchmarks/architectures.md were
    measured (the tuning also makes compilation longer)."""
    import torch

    options = {"coordinate_descent_tuning": True} if fuse_one_row_products else {}
    return torch.compile(forward, dynamic=False, options=options)
