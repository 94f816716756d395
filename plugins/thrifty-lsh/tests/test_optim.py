"""The row-sparse optimiser and the sparse input layer's coalesced gradient."""

import math

import torch
import torch.nn.functional as F

from thrifty_lsh.model import BagSum, group_by_feature
from thrifty_lsh.optim import RowAdam, unique_rows


def _adam_reference(p, grads, lr=0.01, b1=0.9, b2=0.999, eps=1e-8):
    """RowAdam's update written out, one touched row at a time, for a list of gradients."""
    p, m, v = p.clone(), torch.zeros_like(p), torch.zeros_like(p)
    for t, (rows, values) in enumerate(grads, 1):
        step = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        for r, g in zip(rows.tolist(), values):
            m[r] = b1 * m[r] + (1 - b1) * g
            v[r] = b2 * v[r] + (1 - b2) * g * g
            p[r] -= step * m[r] / (v[r].sqrt() + eps)
    return p


def test_row_adam_moves_only_touched_rows_like_the_formula():
    g = torch.Generator().manual_seed(0)
    start = torch.randn(10, 3, generator=g)
    p = torch.nn.Parameter(start.clone())
    opt = RowAdam([p], lr=0.01)
    grads = [(torch.tensor([1, 4, 7]), torch.randn(3, 3, generator=g)),
             (torch.tensor([4, 8]), torch.randn(2, 3, generator=g))]
    for rows, values in grads:
        p.grad = torch.sparse_coo_tensor(rows[None], values, p.shape, check_invariants=True)
        opt.step()
    assert torch.allclose(p.detach(), _adam_reference(start, grads), atol=1e-6)
    untouched = [0, 2, 3, 5, 6, 9]
    assert torch.equal(p.detach()[untouched], start[untouched])


def test_row_adam_dense_gradient_updates_every_row_like_the_formula():
    g = torch.Generator().manual_seed(1)
    start = torch.randn(4, 2, generator=g)
    p = torch.nn.Parameter(start.clone())
    opt = RowAdam([p], lr=0.01)
    grads = [torch.randn(4, 2, generator=g) for _ in range(3)]
    for grad in grads:
        p.grad = grad.clone()
        opt.step()
    expect = _adam_reference(start, [(torch.arange(4), grad) for grad in grads])
    assert torch.allclose(p.detach(), expect, atol=1e-6)


def test_unique_rows_sums_repeated_rows_and_passes_sorted_ones_through():
    values = torch.arange(8.0).view(4, 2)
    repeated = torch.sparse_coo_tensor(torch.tensor([[3, 1, 3, 0]]), values, (5, 2),
                                       check_invariants=True)
    rows, summed = unique_rows(repeated)
    assert rows.tolist() == [0, 1, 3]
    assert summed.tolist() == [[6, 7], [2, 3], [0 + 4, 1 + 5]]
    sorted_grad = torch.sparse_coo_tensor(torch.tensor([[0, 2, 4]]), values[:3], (5, 2),
                                          check_invariants=True)
    rows, same = unique_rows(sorted_grad)
    assert rows.tolist() == [0, 2, 4]
    assert same.data_ptr() == sorted_grad._values().data_ptr()  # no copy, no sort


def test_group_by_feature():
    rows, occurrences, starts = group_by_feature(torch.tensor([4, 1, 4, 2, 1, 4]))
    assert rows.tolist() == [1, 2, 4]
    assert occurrences.tolist() == [1, 4, 3, 0, 2, 5] and starts.tolist() == [0, 2, 3]


def test_bag_sum_matches_embedding_bag_with_one_gradient_row_per_feature():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(30, 4, generator=g)
    indices = torch.tensor([3, 7, 3, 0, 7, 7, 29])
    offsets = torch.tensor([0, 2, 2, 5])  # the third point has no feature
    values = torch.rand(7, generator=g)
    grad_out = torch.randn(4, 4, generator=g)
    a, b = weight.clone().requires_grad_(), weight.clone().requires_grad_()
    ours = BagSum.apply(a, indices, offsets, values)
    ref = F.embedding_bag(indices, b, offsets, mode="sum", per_sample_weights=values)
    assert torch.allclose(ours, ref)
    ours.backward(grad_out)
    ref.backward(grad_out)
    assert a.grad.is_sparse and a.grad._indices()[0].tolist() == [0, 3, 7, 29]
    assert torch.allclose(a.grad.to_dense(), b.grad, atol=1e-6)
