"""The network of extreme classification: sparse features -> hidden (ReLU) -> wide output.

The first layer reads a sparse input (Amazon-670K has 135,909 features, ~76 non-zero per point)
with ``embedding_bag`` and per-sample weights - a sparse-dense product that touches only the
rows of present features and gives a sparse gradient. The output layer is either SLIDE's
(:class:`~thrifty_lsh.slide.SlideLayer`) or a dense ``nn.Linear`` with a full softmax, the
baseline.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from .slide import SlideLayer, SparseLogits, softmax_loss


@attrs.define
class Batch:
    """A batch of sparse points: CSR features and -1 padded labels."""

    indices: torch.Tensor
    offsets: torch.Tensor
    values: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]


class SparseInput(nn.Module):
    """``relu(x @ W + b)`` for sparse ``x`` given as CSR (indices, offsets, values)."""

    def __init__(self, in_features: int, out_features: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        bound = 1.0 / 8.0
        self.weight = nn.Parameter(torch.rand(in_features, out_features, generator=g)
                                   * 2 * bound - bound)
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, batch: Batch) -> torch.Tensor:
        x = BagSum.apply(self.weight, batch.indices, batch.offsets, batch.values)
        return torch.relu(x + self.bias)


class BagSum(torch.autograd.Function):
    """``embedding_bag(indices, weight, offsets, per_sample_weights=values, mode="sum")`` whose
    weight gradient is sparse and already coalesced: one row per distinct feature.

    ``embedding_bag(sparse=True)`` gives one gradient row per feature *occurrence* (~19K rows
    of 128 for a batch of 256 Amazon-like points, ~10K distinct) that the optimiser must then
    sum by row. Here the backward is itself an embedding bag - one bag per distinct feature,
    gathering the rows of ``grad_output`` of the points that hold it - so the summed rows come
    out directly, with no per-occurrence intermediate."""

    @staticmethod
    def forward(ctx, weight, indices, offsets, values):
        ctx.save_for_backward(indices, offsets, values)
        ctx.weight_shape = weight.shape
        return F.embedding_bag(indices, weight, offsets, mode="sum", per_sample_weights=values)

    @staticmethod
    def backward(ctx, grad_output):
        indices, offsets, values = ctx.saved_tensors
        rows, occurrences, starts = group_by_feature(indices)
        sizes = torch.diff(offsets, append=offsets.new_tensor([indices.numel()]))
        point = torch.repeat_interleave(torch.arange(offsets.numel()), sizes,
                                        output_size=indices.numel())
        grad = F.embedding_bag(point[occurrences], grad_output, starts, mode="sum",
                               per_sample_weights=values[occurrences])
        return (torch.sparse_coo_tensor(rows[None], grad, ctx.weight_shape, is_coalesced=True,
                                        check_invariants=False), None, None, None)


def group_by_feature(indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(rows, occurrences, starts)``: the distinct ``indices`` (sorted), the positions of
    ``indices`` grouped by value (in order within a group), and where each group starts."""
    ordered, occurrences = torch.sort(indices, stable=True)
    rows, counts = torch.unique_consecutive(ordered, return_counts=True)
    return rows, occurrences, torch.cumsum(counts, 0) - counts


class DenseOutput(nn.Module):
    """The baseline: every neuron computed, full softmax."""

    def __init__(self, in_features: int, out_features: int, seed: int = 0) -> None:
        from .slide import init_rows

        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(init_rows(seed, 0, out_features, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, h: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.addmm(self.bias, h, self.weight.T)

    @torch.no_grad()
    def topk(self, h: torch.Tensor, k: int = 5):
        return self.forward(h).topk(k, dim=1)


class XCNet(nn.Module):
    """Sparse features -> hidden -> output, with the loss that fits the output layer."""

    def __init__(self, n_features: int, hidden: int, output: nn.Module, seed: int = 0) -> None:
        super().__init__()
        self.hidden = SparseInput(n_features, hidden, seed)
        self.output = output

    def loss(self, batch: Batch) -> torch.Tensor:
        out = self.output(self.hidden(batch), batch.labels)
        if isinstance(out, SparseLogits):
            return softmax_loss(out.logits, out.columns(batch.labels))
        return softmax_loss(out, batch.labels)

    @torch.no_grad()
    def predict(self, batch: Batch, k: int = 5) -> torch.Tensor:
        """Ids ``[batch, k]`` of the top-k labels."""
        return self.output.topk(self.hidden(batch), k)[1]


def build_net(n_features: int, n_labels: int, hidden: int = 128, layer: str = "slide",
              seed: int = 0, **slide_options) -> XCNet:
    """The network with a SLIDE (``layer="slide"``) or dense (``"dense"``) output layer."""
    if layer == "dense":
        return XCNet(n_features, hidden, DenseOutput(hidden, n_labels, seed), seed)
    return XCNet(n_features, hidden, SlideLayer(hidden, n_labels, seed=seed, **slide_options),
                 seed)


def make_optimizers(net: nn.Module, lr: float = 1e-3) -> list[torch.optim.Optimizer]:
    """:class:`~thrifty_lsh.optim.RowAdam` (updates only touched rows) for the sparse layers;
    plain ``torch.optim.Adam`` for a dense output layer - as a plain PyTorch model would be."""
    from .optim import RowAdam

    sparse = [p for m in net.modules() if isinstance(m, (SparseInput, SlideLayer))
              for p in m.parameters(recurse=False)]
    taken = {id(p) for p in sparse}
    dense = [p for p in net.parameters() if id(p) not in taken]
    opts: list[torch.optim.Optimizer] = [RowAdam(sparse, lr=lr)]
    if dense:
        opts.append(torch.optim.Adam(dense, lr=lr))
    return opts
