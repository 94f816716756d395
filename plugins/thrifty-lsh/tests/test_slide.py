import pytest
import torch

from thrifty.testing.sparse_layers import SparseLayerSuite
from thrifty_lsh.model import Batch, build_net, make_optimizers
from thrifty_lsh.slide import SlideLayer, softmax_loss

LABELS = torch.tensor([[0, 5], [7, -1], [3, 9], [12, -1]])


class TestSlideConformance(SparseLayerSuite):
    lr = 2.0

    @pytest.fixture
    def make_layer(self, thrifty_registry):
        spec = thrifty_registry.sparse_layer("slide")
        return lambda: spec.build(16, 40, k=3, l=4, budget=8)

    @pytest.fixture
    def example_input(self):
        return torch.randn(4, 16, generator=torch.Generator().manual_seed(0))

    @pytest.fixture
    def train_args(self):
        return (LABELS,)

    @pytest.fixture
    def loss(self):
        return lambda layer, x, out: softmax_loss(out.logits, out.columns(LABELS))


class TestDenseConformance(SparseLayerSuite):
    @pytest.fixture
    def make_layer(self, thrifty_registry):
        return lambda: thrifty_registry.sparse_layer("dense").build(16, 40)

    @pytest.fixture
    def example_input(self):
        return torch.randn(4, 16, generator=torch.Generator().manual_seed(0))


def test_training_computes_only_active_neurons_and_always_the_labels():
    layer = SlideLayer(16, 500, k=4, l=4, budget=20)
    h = torch.randn(4, 16)
    out = layer(h, LABELS)
    assert set(LABELS[LABELS >= 0].tolist()) <= set(out.active.tolist())
    assert out.active.numel() <= 20 + 6 and out.logits.shape == (4, out.active.numel())
    assert layer.work_fraction == out.active.numel() / 500
    softmax_loss(out.logits, out.columns(LABELS)).backward()
    touched = layer.weight.grad.coalesce().indices()[0]
    assert sorted(touched.tolist()) == out.active.tolist()  # gradient on active rows only


def test_sampled_softmax_is_exact_when_every_neuron_is_active():
    layer = SlideLayer(8, 30, k=1, l=1, budget=30, bucket_size=64)
    h = torch.randn(4, 8)
    active = torch.arange(30)
    sparse = layer.sparse_logits(h, active)
    dense = layer.eval()(h)
    assert torch.allclose(sparse.logits, dense, atol=1e-6)
    assert torch.allclose(softmax_loss(sparse.logits, sparse.columns(LABELS)),
                          softmax_loss(dense, LABELS))


def test_lsh_inference_agrees_with_dense_on_clear_winners():
    layer = SlideLayer(16, 300, k=4, l=16, query_budget=64).eval()
    h = layer.weight.detach()[:8] * 10  # each input points at one neuron
    dense_ids = layer.topk(h, 1)[1]
    layer.inference = "lsh"
    assert torch.equal(layer.topk(h, 1)[1], dense_ids)
    assert dense_ids[:, 0].tolist() == list(range(8))


def test_fixed_schedule_refills_and_rebuilds():
    layer = SlideLayer(8, 50, k=2, l=2, refill_every=8, rebuild_every=24).train()
    for _ in range(6):  # 6 batches of 4 = 24 samples: refills at 8, 16; rebuild at 24
        layer(torch.randn(4, 8), LABELS)
    assert (layer.refills, layer.rebuilds) == (2, 1)
    assert layer.sampler.seed == 2  # seed+1 at construction, +1 per rebuild


def test_drift_schedule_refills_only_when_recall_falls():
    layer = SlideLayer(8, 50, k=2, l=4, rebuild="drift", drift_check_every=4,
                       drift_threshold=0.0).train()
    layer(torch.randn(4, 8), LABELS)
    assert layer.refills == 0 and 0.0 <= layer.last_recall <= 1.0
    layer.drift_threshold = 1.01
    layer(torch.randn(4, 8), LABELS)
    assert layer.refills == 1


def test_bad_options_are_config_errors():
    from thrifty.errors import ConfigError

    with pytest.raises(ConfigError, match="inference"):
        SlideLayer(8, 10, inference="exact")


def test_slide_net_learns_a_tiny_task():
    torch.manual_seed(0)
    net = build_net(20, 60, hidden=16, layer="slide", k=3, l=8, budget=12)
    opts = make_optimizers(net, lr=0.05)
    ids = torch.arange(12)
    batch = Batch(ids % 20, torch.arange(12), torch.ones(12), (ids * 5).unsqueeze(1))
    first = None
    for _ in range(25):
        loss = net.loss(batch)
        first = first if first is not None else float(loss)
        for o in opts:
            o.zero_grad()
        loss.backward()
        for o in opts:
            o.step()
    assert float(loss) < 0.3 * first
    assert (net.predict(batch, 1)[:, 0] == batch.labels[:, 0]).float().mean() > 0.9


def test_logsumexp_rows_matches_torch_value_and_gradient():
    from thrifty_lsh.slide import logsumexp_rows

    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(0)) * 30
    x[2] = float("-inf")  # a row with no mass: -inf, not nan
    x[3, :3] = float("-inf")
    weights = torch.arange(5.0)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, ref = logsumexp_rows(a), torch.logsumexp(b, 1)
    assert torch.allclose(ours, ref, atol=1e-5) and ours[2] == float("-inf")
    ours[[0, 1, 3, 4]].mul(weights[[0, 1, 3, 4]]).sum().backward()
    ref[[0, 1, 3, 4]].mul(weights[[0, 1, 3, 4]]).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6, equal_nan=True)  # nan on row 2 in both
