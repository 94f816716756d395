import pytest
import torch

from thrifty.errors import ConfigError
from thrifty.speculative import LookaheadPolicy, SpeculativeDecoder
from thrifty.speculative.adaptive import AdaptiveLookahead


def _cost(draft_ms: float, verify_ms: float = 10.0):
    return lambda g, b: g * draft_ms + verify_ms


def _observe(policy, proposed, accepted, times=1):
    for _ in range(times):
        policy.observe(torch.tensor(proposed), torch.tensor(accepted))


def test_it_is_a_lookahead_policy_and_validates_its_settings():
    assert isinstance(AdaptiveLookahead(_cost(1.0)), LookaheadPolicy)
    with pytest.raises(ConfigError):
        AdaptiveLookahead(_cost(1.0), gamma_max=2, gamma_min=3)
    with pytest.raises(ConfigError):
        AdaptiveLookahead(_cost(1.0), prior=1.5)


def test_posterior_counts_each_row_as_one_trial_per_position_reached():
    policy = AdaptiveLookahead(_cost(1.0), gamma_max=4, prior=0.5, prior_strength=2, decay=1.0)
    # row 0 accepted 2 of 4 (positions 0, 1 hit, 2 missed); row 1 accepted all 4
    _observe(policy, [4, 4], [2, 4])
    assert policy.trials == [2, 2, 2, 1]
    assert policy.hits == [2, 2, 1, 1]
    assert policy.conditional == pytest.approx([3 / 4, 3 / 4, 2 / 4, 2 / 3])


def test_gamma_follows_acceptance_and_cost():
    policy = AdaptiveLookahead(_cost(1.0), gamma_max=8, prior=0.5, decay=0.9)
    _observe(policy, [8] * 4, [8] * 4, times=30)          # the draft is always right
    assert policy.gamma() == 8
    _observe(policy, [8] * 4, [0] * 4, times=30)          # now it is always wrong
    assert policy.gamma() == 1
    costly = AdaptiveLookahead(_cost(20.0), gamma_max=8, prior=0.9)
    cheap = AdaptiveLookahead(_cost(0.1), gamma_max=8, prior=0.9)
    assert costly.gamma() < cheap.gamma()


def test_engine_feeds_the_policy_and_output_stays_exact(toys, toy_prompts):
    verifier, draft = toys
    policy = AdaptiveLookahead(_cost(1.0), gamma_max=6, prior=0.5)
    out = SpeculativeDecoder(verifier, draft, policy).generate(toy_prompts, max_new_tokens=24)
    alone = SpeculativeDecoder(verifier, None).generate(toy_prompts, max_new_tokens=24)
    assert out.token_ids == alone.token_ids
    assert len(policy.history) == out.metrics.target_passes
    assert sum(policy.trials) > 0 and policy.batch == len(toy_prompts)
