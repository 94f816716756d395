"""The two language models: incremental decoding equals full computation; accounting adds up."""

import torch

from thrifty_pairconnect.lm import PairConnectLM, TransformerLM, count_parameters


def test_transformer_kv_cache_equals_full():
    torch.manual_seed(0)
    model = TransformerLM(30, 16, layers=2, heads=2, max_len=32).eval()
    x = torch.randint(0, 30, (2, 12))
    with torch.no_grad():
        full = model(x)
        cache = model.start(2)
        out = [model.step(x[:, :5], cache)[0]]  # prefill with a mask, then single tokens
        for t in range(5, 12):
            out.append(model.step(x[:, t:t + 1], cache)[0])
    torch.testing.assert_close(torch.cat(out, 1), full, atol=1e-5, rtol=1e-4)
    assert cache.length == 12


def test_pairconnect_lm_incremental_equals_full():
    torch.manual_seed(0)
    model = PairConnectLM(30, 16, table_size=64, window=3, buckets=2).eval()
    x = torch.randint(0, 30, (2, 9))
    with torch.no_grad():
        full = model(x)
        state, out = model.start(2), []
        for t in range(9):
            logits, state = model.step(x[:, t:t + 1], state)
            out.append(logits)
    torch.testing.assert_close(torch.cat(out, 1), full)


def test_config_round_trip_and_tied_head():
    model = PairConnectLM(30, 16, table_size=64, window=3, buckets=2, hash_seed=5)
    again = PairConnectLM.from_config(model.config())
    again.load_state_dict(model.state_dict())
    x = torch.randint(0, 30, (1, 6))
    torch.testing.assert_close(again(x), model(x))
    assert model.head.weight is model.layer.embed.weight


def test_footprints_count_tables_and_caches():
    pc = PairConnectLM(30, 16, table_size=64, window=3, buckets=2, depth=1)
    fp = pc.footprint()
    assert fp.parameters == count_parameters(pc)
    assert fp.table_parameters == 64 * 16
    # embedding (tied), table (+ zero padding row), per-distance weights, one block, final norm
    expected = 30 * 16 + 65 * 16 + 3 + (2 * 16 + 16 * 64 + 64 + 64 * 16 + 16) + 2 * 16
    assert fp.parameters == expected
    tf = TransformerLM(30, 16, layers=2, heads=2, max_len=32)
    assert tf.footprint(10).cache_bytes == 2 * 2 * 10 * 16 * 4
    assert tf.footprint(10).table_parameters == 0
    assert tf.flops_per_token(20) > tf.flops_per_token(10)
    assert pc.flops_per_token(20) == pc.flops_per_token(10)
