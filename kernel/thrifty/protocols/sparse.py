"""Protocols of the sparse families: LSH neuron samplers and sparse layers."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Sampler(Protocol):
    """Hash tables over a layer's neurons (the rows of its weight matrix) that answer "which
    neurons are likely to have a large activation for this input?".

    * ``build(weights)`` hashes the neurons ``weights [n, dim]`` into the tables;
    * ``query(x, budget)`` returns ``[len(x), budget]`` neuron ids per input, best first, padded
      with -1 when fewer were found;
    * ``refill(weights)`` re-hashes updated weights with the same hash functions (cheap upkeep
      as training moves the weights); ``rebuild(weights, seed=None)`` draws new hash functions;
    * ``nbytes()`` is the memory the tables take (what sparsity costs on top of the weights).
    """

    def build(self, weights: Any) -> None: ...

    def query(self, x: Any, budget: int) -> Any: ...

    def refill(self, weights: Any) -> None: ...

    def rebuild(self, weights: Any, seed: int | None = None) -> None: ...

    def nbytes(self) -> int: ...


@runtime_checkable
class SparseLayer(Protocol):
    """A ``torch.nn.Module`` that does part of a dense layer's work.

    ``in_features``/``out_features`` describe the dense layer it stands for (for a layer fed
    with token ids, ``in_features`` is the vocabulary size). In eval mode ``layer(x)`` returns
    the dense result, a tensor whose last dimension is ``out_features``; in training mode
    ``layer(x, *extra)`` may return something sparse (SLIDE's logits over its active neurons) -
    the layer's own loss knows how to read it. ``work_fraction`` is the share of the dense
    layer's multiply-adds that the last forward did (1.0 when it did all of them).
    """

    in_features: int
    out_features: int
    work_fraction: float

    def forward(self, x: Any, *args: Any) -> Any: ...
