"""Training and held-out evaluation of token-level language models (either kind in :mod:`.lm`).

Batches are random windows of a 1-D token stream; evaluation reads the held-out stream in
non-overlapping chunks of ``seq_len`` tokens, each starting from an empty context, identically
for every model, so perplexities are comparable.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import torch
from torch import nn


def random_windows(stream, batch: int, length: int, generator) -> torch.Tensor:
    """``batch`` random windows of ``length`` tokens from a 1-D LongTensor: [batch, length]."""
    start = torch.randint(0, len(stream) - length, (batch,), generator=generator)
    return stream[start[:, None] + torch.arange(length)]


def lr_at(step: int, steps: int, lr: float, warmup: int, spent: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to a tenth of ``lr`` over ``steps``, or faster when
    ``spent`` (the fraction of a time budget used so far) is further along, so that a run ended
    by its time budget still ends annealed."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = max((step - warmup) / max(steps - warmup, 1), spent)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def train_lm(model: nn.Module, stream, *, steps: int, batch: int, seq_len: int, lr: float,
             seed: int = 0, weight_decay: float = 0.0,
             log: Callable[[int, float], None] | None = None) -> dict:
    """Next-token cross-entropy with AdamW; returns the final training loss and the seconds."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    begin, ema = time.perf_counter(), None
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, max(steps // 20, 1))
        x = random_windows(stream, batch, seq_len + 1, g)
        logits = model(x[:, :-1])
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if log is not None and (step % 50 == 0 or step == steps - 1):
            log(step, ema)
    model.eval()
    return {"train_loss": ema, "train_seconds": time.perf_counter() - begin}


@torch.inference_mode()
def mean_nll(model: nn.Module, stream, seq_len: int, batch: int = 32) -> float:
    """Mean next-token negative log-likelihood (nats) over non-overlapping held-out chunks."""
    model.eval()
    n = (len(stream) - 1) // seq_len
    x = stream[: n * seq_len + 1]
    inputs, targets = x[:-1].view(n, seq_len), x[1:].view(n, seq_len)
    total = 0.0
    for i in range(0, n, batch):
        logits = model(inputs[i:i + batch])
        total += nn.functional.cross_entropy(logits.flatten(0, 1), targets[i:i + batch].flatten(),
                                             reduction="sum").item()
    return total / (n * seq_len)
