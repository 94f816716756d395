"""CachedLM's bookkeeping: holes, counts and the cropping that keeps the cache from growing."""

from __future__ import annotations

import torch

from thrifty_hf.cached import attention_mask


def test_mask_hides_holes_and_the_future():
    valid = torch.tensor([[True, False, True, True, False]])
    causal = torch.ones(2, 2, dtype=torch.bool).tril()[None]
    mask = attention_mask(valid, causal, dtype=torch.float32)[0, 0]
    low = torch.finfo(torch.float32).min
    # query 0 is slot 3: sees real slots 0, 2 and itself; slot 1 is a hole
    assert mask[0].tolist() == [0, low, 0, 0, low]
    # query 1 is slot 4, a padding column: sees the real past, not itself
    assert mask[1].tolist() == [0, low, 0, 0, low]


def test_rollback_crops_trailing_holes(smollm2):
    lm = smollm2.lm
    lm.start([[1, 2, 3, 4], [5, 6]])
    assert lm.slots == 3 and lm.counts.tolist() == [3, 1]
    logits = lm.score(torch.tensor([[4, 7, 8, 9], [6, 7, 0, 0]]), torch.tensor([4, 2]))
    assert torch.isfinite(logits).all()
    assert lm.slots == 7 and lm.counts.tolist() == [7, 3]
    lm.keep(torch.tensor([1, 1]))
    # row 0 keeps slots 0-3; row 1 keeps slot 0 and slot 3; columns 4-6 are holes everywhere
    assert lm.slots == 4 and lm.counts.tolist() == [4, 2]
    lm.truncate(torch.tensor([2, 2]))  # row 1's second token still sits in slot 3
    assert lm.slots == 4 and lm.counts.tolist() == [2, 2]
    lm.truncate(torch.tensor([2, 1]))
    assert lm.slots == 2 and lm.counts.tolist() == [2, 1]


def test_holes_do_not_change_the_logits(smollm2):
    """A row scored after ragged rollbacks equals the same row scored with no holes at all."""
    lm = smollm2.lm
    lm.start([[10, 11, 12], [20, 21, 22, 23, 24, 25]])
    lm.score(torch.tensor([[12, 30, 31], [25, 40, 41]]), torch.tensor([3, 1]))
    lm.keep(torch.tensor([2, 1]))
    holed = lm.score(torch.tensor([[31, 50], [26, 0]]), torch.tensor([2, 1]))
    lm.start([[10, 11, 12, 30, 31]])
    clean = lm.score(torch.tensor([[31, 50]]), torch.tensor([2]))
    torch.testing.assert_close(holed[0], clean[0], atol=1e-4, rtol=1e-4)
