"""Protocols of the sparse families: LSH samplers and sparse layers (refined by their work)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Sampler(Protocol):
    """LSH tables over a layer's neuron weights: ``build(weights)`` hashes the neurons,
    ``query(x, budget)`` returns, per input, the ids of neurons likely to have large activation."""

    def build(self, weights: Any) -> None: ...

    def query(self, x: Any, budget: int) -> Any: ...


@runtime_checkable
class SparseLayer(Protocol):
    """A ``torch.nn.Module`` that computes only part of a dense layer's work."""

    in_features: int
    out_features: int

    def forward(self, *args: Any, **kwargs: Any) -> Any: ...
