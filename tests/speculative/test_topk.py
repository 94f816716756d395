"""top_k: torch.topk's answer from block maxima, for rows of every length a tree grows over."""

import pytest
import torch

from thrifty.speculative.topk import top_k


@pytest.mark.parametrize("m, k", [(m, k) for m in (1, 5, 64, 1000, 16384, 16385, 70001)
                                  for k in (1, 4, 16) if k <= m])
def test_same_values_and_indices_as_torch_topk(m, k):
    x = torch.randn(2, 3, m, generator=torch.Generator().manual_seed(m * 31 + k))
    best, index = top_k(x, k)
    want = x.topk(k, -1)
    # distinct random floats: one right answer, indices included
    assert torch.equal(best, want.values) and torch.equal(index, want.indices)


def test_a_winner_in_the_values_past_the_last_whole_block():
    x = torch.zeros(1, 16385)
    x[0, -1], x[0, 3] = 5.0, 4.0  # 16,385 values: blocks of 128 leave the last one out
    best, index = top_k(x, 2)
    assert best.tolist() == [[5.0, 4.0]] and index.tolist() == [[16384, 3]]


def test_ties_and_minus_infinity_give_real_distinct_indices():
    x = torch.randint(0, 3, (4, 20000), generator=torch.Generator().manual_seed(0)).float()
    x[0] = float("-inf")
    x[0, 7] = 1.0
    best, index = top_k(x, 8)
    assert torch.equal(best, x.topk(8, -1).values)
    assert torch.equal(x.gather(1, index), best)  # each index holds its value
    assert ((index >= 0) & (index < 20000)).all()
    assert all(len(set(row)) == 8 for row in index.tolist())


def test_zero_k_is_empty():
    best, index = top_k(torch.randn(3, 5000), 0)
    assert best.shape == (3, 0) and index.shape == (3, 0)
