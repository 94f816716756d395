"""Adam that updates only the rows a sparse gradient touches ("lazy" Adam, as in SLIDE).

``torch.optim.SparseAdam`` does the same through sparse-tensor algebra (``sparse_mask``,
coalesced COO adds), which costs more than the arithmetic on a CPU. Here a sparse gradient is
reduced to unique rows once, and the moments and weights of those rows are read with
``index_select`` and written with ``index_copy_``: work proportional to the rows touched, not
to the layer. Dense gradients get ordinary Adam.
"""

from __future__ import annotations

import math

import torch


class RowAdam(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                lr = group["lr"] * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                grad = p.grad
                if grad.is_sparse:
                    rows, values = unique_rows(grad)
                    m = state["m"].index_select(0, rows).mul_(b1).add_(values, alpha=1 - b1)
                    v = state["v"].index_select(0, rows).mul_(b2).addcmul_(values, values,
                                                                           value=1 - b2)
                    state["m"].index_copy_(0, rows, m)
                    state["v"].index_copy_(0, rows, v)
                    update = m.div_(v.sqrt_().add_(group["eps"])).mul_(-lr)
                    p.index_add_(0, rows, update)
                else:
                    state["m"].mul_(b1).add_(grad, alpha=1 - b1)
                    state["v"].mul_(b2).addcmul_(grad, grad, value=1 - b2)
                    p.addcdiv_(state["m"], state["v"].sqrt().add_(group["eps"]), value=-lr)


def unique_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct row ids of a sparse COO gradient and their summed values."""
    idx, val = grad._indices()[0], grad._values()
    if bool((idx[1:] > idx[:-1]).all()):
        return idx, val  # already distinct (e.g. the sorted active rows of a SLIDE layer)
    rows, inverse = torch.unique(idx, return_inverse=True)
    summed = torch.zeros(rows.numel(), *val.shape[1:], dtype=val.dtype)
    return rows, summed.index_add_(0, inverse, val)
