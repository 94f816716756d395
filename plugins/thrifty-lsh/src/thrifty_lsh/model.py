"""The network of extreme classification: sparse features -> hidden (ReLU) -> wide output.

The first layer reads a sparse input (Amazon-670K has 135,909 features, ~76 non-zero per point)
with ``embedding_bag`` and per-sample weights - a sparse-dense product that touches only the
rows of present features and gives a sparse gradient. The output layer is a registered sparse
layer, picked by name: SLIDE's (:class:`~thrifty_lsh.slide.SlideLayer`), the dense baseline
(:class:`DenseOutput`, a full softmax) or a third party's.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from .slide import SparseLogits, softmax_loss


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
        self.work_fraction = 1.0

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
        """Ids ``[batch, k]`` of the top-k labels (fewer when there are fewer labels; a layer
        without ``topk`` ranks its eval output)."""
        h = self.hidden(batch)
        k = min(k, self.output.out_features)
        if hasattr(self.output, "topk"):
            return self.output.topk(h, k)[1]
        return self.output(h).topk(k, dim=1).indices


def layer_options(layer: str, options: dict, seed: int = 0) -> dict:
    """The options of the registered sparse layer ``layer`` (``thrifty_sparse_layers``),
    checked against its declaration and completed with its defaults; the run's seed goes to a
    layer that declares one unless ``options`` sets it."""
    from thrifty import registry
    from thrifty.records import check_options

    spec = registry().sparse_layer(layer)
    if "seed" in spec.options:
        options = {"seed": seed, **options}
    return check_options(f"sparse layer {layer!r}", spec.options, options)


def build_net(n_features: int, n_labels: int, hidden: int = 128, layer: str = "slide",
              seed: int = 0, **options) -> XCNet:
    """The network whose output layer is the registered sparse layer ``layer`` (``"slide"``,
    ``"dense"`` - the full-softmax baseline - or a third party's), built with ``options``.

    A layer serves as the output layer when, given hidden vectors ``[n, hidden]``, its eval
    forward returns logits ``[n, n_labels]`` and its training forward ``layer(h, labels)``
    returns logits or :class:`~thrifty_lsh.slide.SparseLogits`. One eval forward on a zero
    input checks that before training starts."""
    from thrifty import registry
    from thrifty.errors import ConfigError

    output = registry().sparse_layer(layer).factory(hidden, n_labels,
                                                    **layer_options(layer, options, seed))
    try:
        with torch.no_grad():
            shape = tuple(output.eval()(torch.zeros(1, hidden)).shape)
    except Exception as exc:  # noqa: BLE001 - a third party's layer may fail in any way
        shape = f"an error ({type(exc).__name__}: {exc})"
    if shape != (1, n_labels):
        raise ConfigError(f"sparse layer {layer!r} cannot be the output layer: for hidden vectors "
                          f"[1, {hidden}] it returned {shape}, not logits [1, {n_labels}]")
    return XCNet(n_features, hidden, output.train(), seed)


def make_optimizers(net: nn.Module, lr: float = 1e-3) -> list[torch.optim.Optimizer]:
    """:class:`~thrifty_lsh.optim.RowAdam` (updates only touched rows, and takes dense
    gradients too) for every layer but the dense baseline, which gets plain
    ``torch.optim.Adam`` - as a plain PyTorch model would."""
    from .optim import RowAdam

    dense = [p for m in net.modules() if isinstance(m, DenseOutput) for p in m.parameters()]
    taken = {id(p) for p in dense}
    sparse = [p for p in net.parameters() if id(p) not in taken]
    opts: list[torch.optim.Optimizer] = [RowAdam(sparse, lr=lr)]
    if dense:
        opts.append(torch.optim.Adam(dense, lr=lr))
    return opts
