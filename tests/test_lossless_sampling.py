"""Sampled speculative output has exactly the target's distribution.

On a 3-token trigram model the exact distribution of a 3-token continuation is enumerable
(27 outcomes): a chi-square test compares thousands of speculative samples against it, for
several lookaheads and sampling transforms. The same test must reject a deliberately broken
acceptance rule, which shows it has the power to notice.
"""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import torch
from scipy.stats import chi2

from thrifty.speculative import Sampling, SpeculativeDecoder, acceptance, engine, warp
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
    from thrifty.speculative.sampling import sample

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
