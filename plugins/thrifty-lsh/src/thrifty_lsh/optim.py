"""Adam that updates only the rows a sparse gradient touches ("lazy" Adam, as in SLIDE).

``torch.optim.SparseAdam`` does the same through sparse-tensor algebra (``sparse_mask``,
coalesced COO adds), which costs more than the arithmetic on a CPU. Here a sparse gradient is
reduced to unique rows once; the weights and moments of those rows are gathered with
``index_select``, updated by torch's fused Adam kernel in one pass (instead of a dozen
elementwise passes), and written back with ``index_copy_``: work proportional to the rows
touched, not to the layer. Dense gradients get the same update on whole tensors.
"""

from __future__ import annotations

import math

import torch


class RowAdam(torch.optim.Optimizer):
    """Adam with the bias-corrected step ``lr * sqrt(1 - b2**t) / (1 - b1**t)`` and ``eps``
    added to ``sqrt(v)`` (as in the Adam paper and SLIDE); ``t`` counts the optimiser's steps,
    not a row's updates."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                grad = p.grad
                if not grad.is_sparse:
                    adam_update(p, grad, state["m"], state["v"], state["step"], group)
                    continue
                rows, values = unique_rows(grad)
                full = (p, state["m"], state["v"])
                w, m, v = (t.index_select(0, rows) for t in full)
                adam_update(w, values.contiguous(), m, v, state["step"], group)
                for t, part in zip(full, (w, m, v)):
                    t.index_copy_(0, rows, part)


def adam_update(p: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, t: int,
                group: dict) -> None:
    """One in-place Adam step of ``p`` and its moments ``m``, ``v`` (step number ``t``).

    Torch's fused kernel (one pass over the four tensors) steps by
    ``lr / (1 - b1**t) * m / (sqrt(v) / sqrt(1 - b2**t) + eps')``; with
    ``eps' = eps / sqrt(1 - b2**t)`` that is :class:`RowAdam`'s update, up to rounding."""
    from torch.optim.adam import adam

    b1, b2 = group["betas"]
    adam([p], [grad], [m], [v], [], [torch.tensor(float(t - 1))], fused=True, amsgrad=False,
         beta1=b1, beta2=b2, lr=group["lr"], weight_decay=0.0,
         eps=group["eps"] / math.sqrt(1 - b2 ** t), maximize=False)


def unique_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct row ids of a sparse COO gradient and their summed values."""
    idx, val = grad._indices()[0], grad._values()
    if bool((idx[1:] > idx[:-1]).all()):
        return idx, val  # already distinct (e.g. the sorted active rows of a SLIDE layer)
    rows, inverse = torch.unique(idx, return_inverse=True)
    summed = torch.zeros(rows.numel(), *val.shape[1:], dtype=val.dtype)
    return rows, summed.index_add_(0, inverse, val)
