"""The ONNX draft against the same draft in PyTorch (fp32), through ragged steps and rollback."""

from __future__ import annotations

import pytest
import torch

from thrifty.speculative import Sampling, SpeculativeDecoder, warp
from thrifty.testing.toy import ToyVerifier
from thrifty_onnx.draft import OnnxDraft

GAMMA = 4


def torch_greedy(model, rows, n):
    """n greedy tokens after each row, recomputed from scratch (no cache): the reference."""
    out = []
    for row in rows:
        ids, new = list(row), []
        for _ in range(n):
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0, -1]
            new.append(int(logits.argmax()))
            ids.append(new[-1])
        out.append(new)
    return out


def prompts(count, vocab, seed=3):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 12, (count,), generator=g).tolist()
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in lengths]


@pytest.mark.parametrize("compact", [False, True], ids=["holes", "compacted"])
def test_greedy_proposals_match_pytorch_over_rollbacks(llama96, graph96, compact):
    """24 ragged prompts, three propose/commit rounds with per-row partial acceptance: every
    proposal equals PyTorch's greedy continuation of the committed tokens, whether rolled-back
    slots stay in the cache as masked holes or are compacted away."""
    rows = prompts(24, 96)
    draft = OnnxDraft(graph96, ToyVerifier(vocab=96), compact_after=10**9)
    draft.start(rows)
    g = torch.Generator().manual_seed(0)
    for step in range(3):
        prop = draft.propose(GAMMA, Sampling(), g)
        assert prop.q is None
        assert prop.tokens.tolist() == torch_greedy(llama96, rows, GAMMA), f"round {step}"
        accepted = torch.randint(0, GAMMA + 1, (len(rows),), generator=g)
        nxt = torch.randint(0, 96, (len(rows),), generator=g)
        draft.commit(accepted, nxt)
        if compact:
            draft._cache.compact()
        rows = [r + prop.tokens[b, : int(accepted[b])].tolist() + [int(nxt[b])]
                for b, r in enumerate(rows)]


def test_sampled_q_is_the_warped_pytorch_distribution(llama96, graph96):
    rows = prompts(5, 96, seed=4)
    sampling = Sampling(temperature=0.7, top_k=20)
    draft = OnnxDraft(graph96, ToyVerifier(vocab=96))
    draft.start(rows)
    prop = draft.propose(3, sampling, torch.Generator().manual_seed(1))
    assert prop.q.shape == (5, 3, 96)
    for b, row in enumerate(rows):
        ids = row + prop.tokens[b].tolist()
        with torch.no_grad():
            logits = llama96(torch.tensor([ids])).logits[0, len(row) - 1: len(ids) - 1]
        torch.testing.assert_close(prop.q[b], warp(logits, sampling), atol=1e-5, rtol=1e-4)
        assert (prop.q[b].gather(-1, prop.tokens[b, :, None]) > 0).all()


def test_step_without_proposals_keeps_the_committed_token(llama96, graph96):
    """γ = 0 steps (a policy may choose them) commit the verifier's token only."""
    rows = prompts(3, 96, seed=5)
    draft = OnnxDraft(graph96, ToyVerifier(vocab=96))
    draft.start(rows)
    empty = draft.propose(0, Sampling(), None)
    assert empty.tokens.shape == (3, 0)
    nxt = torch.tensor([1, 2, 3])
    draft.commit(torch.zeros(3, dtype=torch.long), nxt)
    prop = draft.propose(2, Sampling(), None)
    assert prop.tokens.tolist() == torch_greedy(llama96, [r + [int(t)] for r, t in
                                                          zip(rows, nxt)], 2)


def test_compaction_keeps_every_row_and_drops_every_hole(graph96):
    rows = prompts(4, 96, seed=6)
    draft = OnnxDraft(graph96, ToyVerifier(vocab=96), compact_after=10**9)
    draft.start(rows)
    draft.propose(GAMMA, Sampling(), None)
    draft.commit(torch.tensor([0, 1, 4, 2]), torch.tensor([5, 6, 7, 8]))
    cache = draft._cache
    valid = cache.mask.sum(1).tolist()
    assert cache.wasted() > 0
    old = [v.numpy() for v in cache.values]
    keep = [cache.mask[b].nonzero()[0] for b in range(4)]
    cache.compact()
    assert cache.mask.sum(1).tolist() == valid and cache.length == max(valid)
    assert cache.wasted() == 0
    for before, after in zip(old, cache.values):
        for b, idx in enumerate(keep):
            assert (after.numpy()[b][:, cache.length - len(idx):] == before[b][:, idx]).all()
