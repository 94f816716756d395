"""Conformance suite for sparse layers (``thrifty_sparse_layers``).

Subclass :class:`SparseLayerSuite` and override :meth:`make_layer` and :meth:`example_input`;
a layer whose training forward needs more than the input (SLIDE needs the labels) overrides
:meth:`train_args`, and one whose training output is not a plain tensor overrides
:meth:`loss`::

    class TestMyLayer(SparseLayerSuite):
        def make_layer(self):
            return thrifty.registry().sparse_layer("my-layer").build(16, 40)
        def example_input(self):
            return torch.randn(8, 16)

Needs torch. The suite checks the structural contract, determinism in eval mode, that
gradients flow, that ``work_fraction`` is reported, and that a few SGD steps lower the loss.
"""

from __future__ import annotations

from ..protocols import SparseLayer


class SparseLayerSuite:
    lr = 0.5
    steps = 30

    def make_layer(self):  # pragma: no cover - overridden
        raise NotImplementedError("override make_layer() in your test class")

    def example_input(self):  # pragma: no cover - overridden
        raise NotImplementedError("override example_input() in your test class")

    def train_args(self, x) -> tuple:
        """Extra positional arguments of the training forward (e.g. labels)."""
        return ()

    def loss(self, layer, x, output):
        """A scalar to minimise from the training output; by default a fixed random linear
        read-out of a dense output, so that there is something to learn."""
        import torch

        g = torch.Generator().manual_seed(0)
        target = torch.randn(output.shape, generator=g)
        return ((output - target) ** 2).mean()

    def test_follows_protocol(self):
        import torch

        layer = self.make_layer()
        assert isinstance(layer, torch.nn.Module)
        assert isinstance(layer, SparseLayer)
        assert isinstance(layer.in_features, int) and isinstance(layer.out_features, int)

    def test_eval_output_is_dense_and_deterministic(self):
        import torch

        layer = self.make_layer().eval()
        x = self.example_input()
        with torch.no_grad():
            a, b = layer(x), layer(x)
        assert a.shape[-1] == layer.out_features
        assert torch.isfinite(a).all()
        assert torch.equal(a, b)

    def test_gradients_flow_and_work_is_reported(self):
        import torch

        layer = self.make_layer().train()
        x = self.example_input()
        out = layer(x, *self.train_args(x))
        self.loss(layer, x, out).backward()
        grads = [p.grad for p in layer.parameters() if p.grad is not None]
        assert grads, "no parameter received a gradient"
        for g in grads:
            values = g.coalesce().values() if g.is_sparse else g
            assert torch.isfinite(values).all()
        assert 0.0 < float(layer.work_fraction) <= 1.0

    def test_sgd_lowers_the_loss(self):
        import torch

        torch.manual_seed(0)
        layer = self.make_layer().train()
        x = self.example_input()
        opt = torch.optim.SGD(layer.parameters(), lr=self.lr)
        losses = []
        for _ in range(self.steps):
            loss = self.loss(layer, x, layer(x, *self.train_args(x)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        assert losses[-1] < 0.9 * losses[0], f"loss did not fall: {losses[0]} -> {losses[-1]}"
