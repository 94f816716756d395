"""How well a sampler does its job: recall of the true top-k neurons, and the share of true
labels it retrieves (what the output layer's gradient needs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def true_topk(x: "torch.Tensor", weights: "torch.Tensor", k: int,
              chunk: int = 1 << 16) -> "torch.Tensor":
    """Ids ``[n, k]`` of the neurons with the largest inner product ``<x, w>`` (exact)."""
    import torch

    best_v = torch.full((x.shape[0], k), float("-inf"))
    best_i = torch.zeros((x.shape[0], k), dtype=torch.long)
    for a in range(0, weights.shape[0], chunk):
        scores = x @ weights[a:a + chunk].T
        v, i = scores.topk(min(k, scores.shape[1]), dim=1)
        allv, alli = torch.cat([best_v, v], 1), torch.cat([best_i, i + a], 1)
        top = allv.topk(k, dim=1).indices
        best_v, best_i = allv.gather(1, top), alli.gather(1, top)
    return best_i


def share_found(retrieved: "torch.Tensor", wanted: "torch.Tensor") -> float:
    """Share of the non-negative entries of ``wanted [n, m]`` that appear in the same row of
    ``retrieved [n, budget]`` (-1 entries are padding in both)."""
    hit = (wanted.unsqueeze(-1) == retrieved.unsqueeze(1)).any(-1)
    valid = wanted >= 0
    total = int(valid.sum())
    return float((hit & valid).sum()) / total if total else float("nan")


def topk_recall(retrieved: "torch.Tensor", x: "torch.Tensor", weights: "torch.Tensor",
                k: int = 10) -> float:
    """Share of each input's true top-k neurons that the sampler retrieved."""
    return share_found(retrieved, true_topk(x, weights, k))


def label_share(retrieved: "torch.Tensor", labels: "torch.Tensor") -> float:
    """Share of the true labels (``[n, m]``, -1 padded) that the sampler retrieved."""
    return share_found(retrieved, labels)
