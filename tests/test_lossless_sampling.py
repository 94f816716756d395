"""Sampled speculative output has exactly the target's distribution.

On a 3-token trigram model the exact distribution of a 3-token continuation is enumerable
(27 outcomes): a chi-square test compares thousands of speculative samples against it, for
several lookaheads and sampling transforms, and for token trees of a sampled chain with
deterministic siblings. The same test must reject a deliberately broken acceptance rule (and
siblings reported as sampled), which shows it has the power to notice.
"""

from __future__ import annotations

import itertools
from collections import Counter

import attrs
import pytest
import torch
from scipy.stats import chi2

from thrifty.speculative import (Sampling, SpeculativeDecoder, TreeShape, acceptance, engine, tree,
                                 warp)
from thrifty.speculative.sampling import sample
from thrifty.testing.toy import ToyDraft, ToyVerifier

VOCAB, NEW, SAMPLES = 3, 3, 6000
PROMPT = [0, 2]


def exact_distribution(verifier: ToyVerifier, sampling: Sampling) -> dict[tuple, float]:
    """P(continuation) under the target with the sampling transform, by enumeration."""
    out = {}
    for seq in itertools.product(range(VOCAB), repeat=NEW):
        prob, ctx = 1.0, list(PROMPT)
        for tok in seq:
            prob *= float(warp(verifier.logits_after(ctx), sampling)[tok])
            ctx.append(tok)
        out[seq] = prob
    return out


def chi_square_pvalue(samples: list[tuple], expected: dict[tuple, float]) -> float:
    counts = Counter(samples)
    n = len(samples)
    support = [k for k, p in expected.items() if p > 0]
    assert all(k in expected and expected[k] > 0 for k in counts), "sampled an impossible output"
    stat = sum((counts.get(k, 0) - n * expected[k]) ** 2 / (n * expected[k]) for k in support)
    return float(chi2.sf(stat, df=len(support) - 1))


def speculative_samples(gamma: int, sampling: Sampling, seed: int = 0) -> list[tuple]:
    verifier, draft = ToyVerifier(vocab=VOCAB, seed=11), ToyDraft(vocab=VOCAB, seed=12)
    out = SpeculativeDecoder(verifier, draft, gamma).generate(
        [PROMPT] * SAMPLES, max_new_tokens=NEW, sampling=sampling, seed=seed)
    return [tuple(t) for t in out.token_ids]


SAMPLINGS = {
    "t1": Sampling(temperature=1.0),
    "t0.7-topk2": Sampling(temperature=0.7, top_k=2),
    "t1.3-topp0.8": Sampling(temperature=1.3, top_p=0.8),
}


@pytest.mark.parametrize("gamma", [1, 3, 5])
@pytest.mark.parametrize("name", list(SAMPLINGS))
def test_speculative_samples_follow_target_distribution(gamma, name):
    sampling = SAMPLINGS[name]
    expected = exact_distribution(ToyVerifier(vocab=VOCAB, seed=11), sampling)
    p = chi_square_pvalue(speculative_samples(gamma, sampling), expected)
    assert p > 1e-3, f"speculative samples differ from the target distribution (p={p:.2e})"


def _broken_accept(p, tokens, lengths, q=None, generator=None, greedy=False):
    """The classic mistake: on rejection, sample from p instead of the residual max(0, p - q)."""
    accepted, _ = acceptance.accept(p, tokens, lengths, q, generator, greedy)
    rows = torch.arange(len(accepted))
    return accepted, sample(p[rows, accepted], generator)


def test_chi_square_catches_a_broken_acceptance_rule(monkeypatch):
    monkeypatch.setattr(engine, "accept", _broken_accept)
    sampling = SAMPLINGS["t1"]
    expected = exact_distribution(ToyVerifier(vocab=VOCAB, seed=11), sampling)
    p = chi_square_pvalue(speculative_samples(3, sampling), expected)
    assert p < 1e-6, "the test failed to notice sampling from p instead of the residual"


def test_target_only_sampling_follows_target_distribution():
    sampling = SAMPLINGS["t1"]
    verifier = ToyVerifier(vocab=VOCAB, seed=11)
    out = SpeculativeDecoder(verifier).generate([PROMPT] * SAMPLES, max_new_tokens=NEW,
                                                sampling=sampling, seed=3)
    p = chi_square_pvalue([tuple(t) for t in out.token_ids],
                          exact_distribution(verifier, sampling))
    assert p > 1e-3


# -- token trees ------------------------------------------------------------------------------
class _PointMassDraft(ToyDraft):
    """Samples its tree as ToyDraft does but reports every node as a point mass (q=None), as
    a draft of deterministic candidates does: acceptance must stay exact all the same."""

    def propose_tree(self, shape, sampling, generator):
        return attrs.evolve(super().propose_tree(shape, sampling, generator), q=None)


def tree_samples(shape: str, sampling: Sampling, draft_class=ToyDraft, seed: int = 0):
    verifier, draft = ToyVerifier(vocab=VOCAB, seed=11), draft_class(vocab=VOCAB, seed=12)
    out = SpeculativeDecoder(verifier, draft, TreeShape.parse(shape)).generate(
        [PROMPT] * SAMPLES, max_new_tokens=NEW, sampling=sampling, seed=seed)
    return [tuple(t) for t in out.token_ids]


@pytest.mark.parametrize("shape", ["2x2", "3x3:5", "1x3"])
@pytest.mark.parametrize("name", ["t1", "t0.7-topk2"])
def test_tree_samples_follow_target_distribution(shape, name):
    sampling = SAMPLINGS[name]
    expected = exact_distribution(ToyVerifier(vocab=VOCAB, seed=11), sampling)
    p = chi_square_pvalue(tree_samples(shape, sampling), expected)
    assert p > 1e-3, f"tree samples differ from the target distribution (p={p:.2e})"


def test_tree_of_point_masses_follows_target_distribution():
    sampling = SAMPLINGS["t1.3-topp0.8"]
    expected = exact_distribution(ToyVerifier(vocab=VOCAB, seed=11), sampling)
    p = chi_square_pvalue(tree_samples("3x3", sampling, _PointMassDraft), expected)
    assert p > 1e-3, f"point-mass tree samples differ from the target (p={p:.2e})"


def test_chi_square_catches_a_broken_tree_rule(monkeypatch):
    """The multi-candidate mistake: try every child against p itself, never the residual."""

    def broken(r, children, tokens, q, branch, alive, nxt, generator):
        found = torch.zeros_like(alive)
        child = torch.zeros_like(nxt)
        rank = children.long().cumsum(1) * children
        rows = torch.arange(len(r))
        for k in range(1, branch + 1):
            col = (rank == k).long().argmax(1)
            has = (rank == k).any(1) & ~found
            x = tokens[rows, col]
            qk = q[rows, col]
            take = has & (torch.rand(len(r), generator=generator) * qk[rows, x] <= r[rows, x])
            found, child = found | take, torch.where(take, col, child)
        return found, child, torch.where(alive & ~found, sample(r, generator), nxt)

    monkeypatch.setattr(tree, "_sample_children", broken)
    sampling = SAMPLINGS["t1"]
    expected = exact_distribution(ToyVerifier(vocab=VOCAB, seed=11), sampling)
    p = chi_square_pvalue(tree_samples("2x3", sampling), expected)
    assert p < 1e-6, "the test failed to notice children tried against p, not the residual"


class SiblingDraft(ToyDraft):
    """The toy draft's sampled chain with its runners-up as leaf siblings, as the model drafts
    grow trees (:func:`~thrifty.speculative.tree.sibling_tree`)."""

    one_hot_siblings = True

    def propose_tree(self, shape, sampling, generator):
        from thrifty.protocols import TreeProposal
        from thrifty.speculative.tree import sibling_tree

        chain = self.propose(shape.depth, sampling, generator)
        tree, on_chain = sibling_tree(chain.tokens, chain.q, shape, sampled=True)
        self._tree = tree.tokens
        if self.one_hot_siblings:
            return tree
        # the mistake: siblings reported as if drawn from the draft's q, like the chain
        at = on_chain.long().cumsum(1) - 1  # the chain node each column sits beside
        q = chain.q.gather(1, at.clamp(max=shape.depth - 1)[..., None].expand(
            -1, -1, chain.q.shape[-1]))
        return TreeProposal(tree.tokens, tree.parents, tree.lengths, q)


class SiblingsAsSampled(SiblingDraft):
    one_hot_siblings = False


@pytest.mark.parametrize("name", list(SAMPLINGS))
def test_sibling_trees_follow_target_distribution(name):
    """A sampled chain with deterministic siblings (one-hot q rows) is exact."""
    sampling = SAMPLINGS[name]
    expected = exact_distribution(ToyVerifier(vocab=VOCAB, seed=11), sampling)
    p = chi_square_pvalue(tree_samples("3x3:5", sampling, SiblingDraft), expected)
    assert p > 1e-3, f"tree samples differ from the target distribution (p={p:.2e})"


def test_chi_square_catches_siblings_reported_as_sampled():
    sampling = SAMPLINGS["t1"]
    expected = exact_distribution(ToyVerifier(vocab=VOCAB, seed=11), sampling)
    p = chi_square_pvalue(tree_samples("3x3:5", sampling, SiblingsAsSampled), expected)
    assert p < 1e-6, "the test failed to notice siblings reported with the chain's q"
