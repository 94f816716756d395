import pytest
import torch

from thrifty.errors import ConfigError
from thrifty_lsh.diagnostics import label_share, topk_recall, true_topk
from thrifty_lsh.hashing import retrieval_probability
from thrifty_lsh.sampler import LSHSampler
from thrifty_lsh.sizing import auto_size


def test_auto_size_meets_the_target_and_is_best_in_the_grid():
    s = auto_size(0.01, p0=0.5, p_near=0.9, max_k=20, max_l=40)
    assert 1 - (1 - 0.5 ** s.k) ** s.l <= 0.01 + 1e-12
    assert s.recall == pytest.approx(retrieval_probability(0.9, s.k, s.l))
    for k in range(1, 21):
        for l in range(1, 41):
            if 1 - (1 - 0.5 ** k) ** l <= 0.01:
                assert retrieval_probability(0.9, k, l) <= s.recall + 1e-12


def test_auto_size_rejects_impossible_targets():
    with pytest.raises(ConfigError, match="p0"):
        auto_size(0.01, p0=0.9, p_near=0.5)
    with pytest.raises(ConfigError, match="raise max_k"):
        auto_size(1e-9, p0=0.5, p_near=0.9, max_k=3)


def test_diagnostics_count_what_was_found():
    w = torch.eye(6)
    x = torch.tensor([[0.0, 0, 5, 1, 0, 0]])
    assert true_topk(x, w, 2, chunk=4).tolist() == [[2, 3]]
    assert topk_recall(torch.tensor([[2, -1, -1]]), x, w, k=2) == 0.5
    assert label_share(torch.tensor([[1, 4], [0, -1]]), torch.tensor([[4, -1], [3, 0]])) == 2 / 3


def test_sampler_recall_of_its_own_top_neurons_is_high():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2000, 16, generator=g)
    s = LSHSampler(16, "simhash", k=6, l=24, seed=1)
    s.build(w)
    x = w[:64] + 0.05 * torch.randn(64, 16, generator=g)
    assert topk_recall(s.query(x, 400), x, w, k=1) > 0.9
