"""Conformance suite for sparse layers (``thrifty_sparse_layers``).

Subclass :class:`SparseLayerSuite` and override the ``make_layer`` and ``example_input``
fixtures; a layer whose training forward needs more than the input (SLIDE needs the labels)
overrides ``train_args``, and one whose training output is not a plain tensor overrides
``loss``::

    import pytest
    import torch
    from thrifty.testing.sparse_layers import SparseLayerSuite

    class TestMyLayer(SparseLayerSuite):
        @pytest.fixture
        def make_layer(self, thrifty_registry):
            return lambda: thrifty_registry.sparse_layer("my-layer").build(16, 40)

        @pytest.fixture
        def example_input(self):
            return torch.randn(8, 16)

Needs torch.
"""

from __future__ import annotations

import pytest

from ..protocols import SparseLayer


class SparseLayerSuite:
    """Contract tests for one sparse layer: the :class:`thrifty.protocols.SparseLayer`
    protocol, a dense and deterministic eval output, gradients that flow and are finite,
    ``work_fraction`` in (0, 1], and a few SGD steps that lower the loss.

    Fixtures to override: ``make_layer`` (required) returns a function that builds a fresh
    layer; ``example_input`` (required) is an input batch; ``train_args`` (default ``()``) the
    extra positional arguments of the training forward; ``loss`` a function
    ``(layer, x, output) -> scalar`` (the default compares a dense output with a fixed random
    target). ``lr`` and ``steps`` set the SGD check."""

    lr = 0.5
    steps = 30

    @pytest.fixture
    def make_layer(self):  # pragma: no cover - overridden
        raise NotImplementedError("override the make_layer fixture in your test class")

    @pytest.fixture
    def example_input(self):  # pragma: no cover - overridden
        raise NotImplementedError("override the example_input fixture in your test class")

    @pytest.fixture
    def train_args(self) -> tuple:
        return ()

    @pytest.fixture
    def loss(self):
        import torch

        def mse_to_random_target(layer, x, output):
            g = torch.Generator().manual_seed(0)
            target = torch.randn(output.shape, generator=g)
            return ((output - target) ** 2).mean()

        return mse_to_random_target

    def test_follows_protocol(self, make_layer):
        import torch

        layer = make_layer()
        assert isinstance(layer, torch.nn.Module)
        assert isinstance(layer, SparseLayer)
        assert isinstance(layer.in_features, int) and isinstance(layer.out_features, int)

    def test_eval_output_is_dense_and_deterministic(self, make_layer, example_input):
        import torch

        layer = make_layer().eval()
        with torch.no_grad():
            a, b = layer(example_input), layer(example_input)
        assert a.shape[-1] == layer.out_features
        assert torch.isfinite(a).all()
        assert torch.equal(a, b)

    def test_gradients_flow_and_work_is_reported(self, make_layer, example_input, train_args,
                                                 loss):
        import torch

        layer = make_layer().train()
        out = layer(example_input, *train_args)
        loss(layer, example_input, out).backward()
        grads = [p.grad for p in layer.parameters() if p.grad is not None]
        assert grads, "no parameter received a gradient"
        for g in grads:
            values = g.coalesce().values() if g.is_sparse else g
            assert torch.isfinite(values).all()
        assert 0.0 < float(layer.work_fraction) <= 1.0

    def test_sgd_lowers_the_loss(self, make_layer, example_input, train_args, loss):
        import torch

        torch.manual_seed(0)
        layer = make_layer().train()
        opt = torch.optim.SGD(layer.parameters(), lr=self.lr)
        losses = []
        for _ in range(self.steps):
            value = loss(layer, example_input, layer(example_input, *train_args))
            opt.zero_grad()
            value.backward()
            opt.step()
            losses.append(float(value.detach()))
        assert losses[-1] < 0.9 * losses[0], f"loss did not fall: {losses[0]} -> {losses[-1]}"
