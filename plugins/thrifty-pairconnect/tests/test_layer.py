"""The PairConnect layer: its hashing, its definition, and incremental == full computation."""

import pytest
import torch

from thrifty_pairconnect.hashing import distance_buckets, hash_coefficients, pair_ids
from thrifty_pairconnect.layer import PairConnect


def test_buckets_exact_when_enough():
    assert distance_buckets(5, 8).tolist() == [0, 1, 2, 3, 4]


def test_buckets_near_exact_far_shared_and_monotone():
    b = distance_buckets(64, 8)
    assert b[:4].tolist() == [0, 1, 2, 3]
    assert (b[1:] >= b[:-1]).all() and b.max() == 7 and b.min() == 0
    assert len(set(b[4:].tolist())) == 4  # the far half uses all far buckets


def test_pair_ids_range_padding_and_seed():
    coef = hash_coefficients(2, seed=3)
    prev = torch.tensor([[5, -1, 7]])
    ids = pair_ids(torch.tensor([4]), prev, distance_buckets(3, 3), coef, 100)
    assert ids.shape == (1, 6)
    assert ids[0, 2:4].tolist() == [100, 100]  # the missing token hits the padding row
    assert ((ids[0, [0, 1, 4, 5]] >= 0) & (ids[0, [0, 1, 4, 5]] < 100)).all()
    other = pair_ids(torch.tensor([4]), prev, distance_buckets(3, 3), hash_coefficients(2, 4), 100)
    assert not torch.equal(ids, other)


def test_pair_ids_spread_over_table():
    """Distinct pairs fill a table about as uniformly as random ids would."""
    cur = torch.arange(200).repeat_interleave(50)
    prev = torch.arange(50).repeat(200)[:, None]
    ids = pair_ids(cur, prev, torch.tensor([0]), hash_coefficients(1, 0), 1024).flatten()
    counts = torch.bincount(ids, minlength=1024).float()
    assert (counts > 0).float().mean() > 0.99  # 10,000 pairs cover a 1,024-row table
    assert counts.std() < 2 * counts.mean().sqrt()  # about Poisson


def _layer(**kw):
    torch.manual_seed(0)
    opts = dict(table_size=64, window=4, buckets=3, hashes=2, depth=1)
    opts.update(kw)
    return PairConnect(11, 8, **opts)


@pytest.mark.parametrize("weighting", ["sum", "distance"])
def test_matches_definition(weighting):
    """u_i = E[x_i] + Σ_δ α_δ Σ_r P[h_r(x_i, x_{i−δ}, β(δ))], computed here by hand."""
    layer = _layer(weighting=weighting)
    if layer.distance_weight is not None:
        with torch.no_grad():
            layer.distance_weight.copy_(torch.tensor([0.5, 2.0, -1.0, 3.0]))
    x = torch.tensor([[3, 1, 4, 1, 5, 9, 2]])
    got = layer.embed(x) + layer.pair_features(x)
    P, coef = layer.pairs.weight, layer.coef
    for i in range(x.shape[1]):
        want = layer.embed.weight[x[0, i]].clone()
        for delta in range(1, min(4, i) + 1):
            alpha = 1.0 if layer.distance_weight is None else layer.distance_weight[delta - 1]
            for r in range(2):
                off, a, b, c = coef[r].tolist()
                row = (off + a * int(x[0, i]) + b * int(x[0, i - delta])
                       + c * int(layer.bucket[delta - 1])) % (2**31 - 1) % 64
                want = want + alpha * P[row]
        torch.testing.assert_close(got[0, i], want)


def test_incremental_equals_full_and_past_continues():
    layer = _layer().eval()
    x = torch.randint(0, 11, (3, 10))
    with torch.no_grad():
        full = layer(x)
        past, steps = layer.empty_past(3), []
        for t in range(10):
            steps.append(layer(x[:, t:t + 1], past))
            past = layer.next_past(past, x[:, t:t + 1])
        torch.testing.assert_close(torch.cat(steps, 1), full)
        # a chunk continued from the state of the first six tokens equals the full tail
        tail = layer(x[:, 6:], layer.next_past(layer.empty_past(3), x[:, :6]))
        torch.testing.assert_close(tail, full[:, 6:])
    assert past.shape == (3, 4) and past.tolist() == x[:, -4:].flip(1).tolist()  # newest first


@pytest.mark.parametrize("weighting,hashes", [("sum", 1), ("sum", 3), ("distance", 1),
                                              ("distance", 3)])
def test_step_equals_full_forward(weighting, hashes):
    """The one-token decoding path (its own hashing, gather and baddbmm) gives the full
    forward's features and states, from the very first token (a past of missing tokens) on."""
    layer = _layer(weighting=weighting, hashes=hashes, depth=2).eval()
    if layer.distance_weight is not None:
        with torch.no_grad():
            layer.distance_weight.uniform_(-2, 2)
    x = torch.randint(0, 11, (3, 10))
    with torch.no_grad():
        full = layer(x)
        past, steps = layer.empty_past(3), []
        for t in range(10):
            y, nxt = layer.step(x[:, t:t + 1], past)
            assert torch.equal(nxt, layer.next_past(past, x[:, t:t + 1]))
            steps.append(y)
            past = nxt
        torch.testing.assert_close(torch.cat(steps, 1), full)
        # a multi-token step (a prefill) continues the same way
        y, state = layer.step(x[:, 4:], layer.next_past(layer.empty_past(3), x[:, :4]))
        torch.testing.assert_close(y, full[:, 4:])
        assert torch.equal(state, past)


def test_step_gradients_equal_full_and_skip_padding_row():
    """Trained through the decoding path (here on the third token: two of its four pairs are
    missing), the gradients are those of the full forward, and the padding row gets none."""
    x = torch.tensor([[3, 1, 4]])
    grads = []
    for lean in (True, False):
        layer = _layer()
        past = layer.next_past(layer.empty_past(1), x[:, :2])
        out = layer.step(x[:, 2:], past)[0] if lean else layer(x)[:, 2:]
        (out * torch.arange(8.0)).sum().backward()
        grads.append({n: p.grad.clone() for n, p in layer.named_parameters()})
        assert torch.count_nonzero(layer.pairs.weight.grad[64]) == 0
    for name, g in grads[0].items():
        torch.testing.assert_close(g, grads[1][name], msg=name)


def test_output_depends_only_on_window():
    layer = _layer().eval()
    a = torch.randint(0, 11, (1, 9))
    b = a.clone()
    b[0, 0] = (a[0, 0] + 1) % 11  # 8 positions before the last, outside the window of 4
    with torch.no_grad():
        assert torch.equal(layer(a)[0, -1], layer(b)[0, -1])
        assert not torch.equal(layer(a)[0, 1], layer(b)[0, 1])


def test_padding_row_stays_zero_after_training_step():
    layer = _layer()
    opt = torch.optim.Adam(layer.parameters(), lr=0.1)
    layer(torch.randint(0, 11, (2, 6))).sum().backward()
    opt.step()
    assert torch.count_nonzero(layer.pairs.weight[64]) == 0


@pytest.fixture
def registry():
    """A registry with only this plugin, so that other plugins' state cannot interfere."""
    from thrifty.testing import fresh_registry
    from thrifty_pairconnect import plugin

    return fresh_registry(load_entry_points=False, plugins={"pairconnect": plugin})


def test_registered_as_sparse_layer(registry):
    spec = registry.sparse_layer("pairconnect")
    layer = spec.build(50, 16, table_size=128, window=8)
    assert (layer.in_features, layer.out_features, layer.window) == (50, 16, 8)
    assert layer(torch.randint(0, 50, (2, 5))).shape == (2, 5, 16)


def test_bad_options_fail_clearly(registry):
    from thrifty.errors import ConfigError

    spec = registry.sparse_layer("pairconnect")
    with pytest.raises(ConfigError, match="weighting"):
        spec.build(50, 16, weighting="mean")


from thrifty.testing.sparse_layers import SparseLayerSuite  # noqa: E402


class TestSparseLayerConformance(SparseLayerSuite):
    @pytest.fixture
    def make_layer(self):
        from thrifty.testing import fresh_registry
        from thrifty_pairconnect import plugin

        reg = fresh_registry(load_entry_points=False, plugins={"pairconnect": plugin})

        def make():
            torch.manual_seed(0)
            return reg.sparse_layer("pairconnect").build(40, 16, table_size=256, window=4,
                                                         buckets=4, depth=1)
        return make

    @pytest.fixture
    def example_input(self):
        return torch.randint(0, 40, (4, 12), generator=torch.Generator().manual_seed(1))


def test_work_fraction_is_below_dense():
    layer = PairConnect(1024, 128, table_size=4096, window=32, buckets=12, depth=2, hidden=384)
    assert 0 < layer.work_fraction < 1
    assert layer.work_fraction == layer.flops_per_token() / layer.dense_flops_per_token()
