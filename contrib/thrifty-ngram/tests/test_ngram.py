"""The n-gram draft passes the draft conformance suite and proposes what prompt lookup should."""

import pytest
import torch
from thrifty.errors import ConfigError
from thrifty.speculative import Sampling, SpeculativeDecoder
from thrifty.testing.drafts import DraftModelSuite
from thrifty.testing.toy import ToyVerifier
from thrifty_ngram.draft import NgramDraft


class TestNgramConformance(DraftModelSuite):
    @pytest.fixture
    def make_draft(self):
        return lambda verifier: NgramDraft()

    @pytest.fixture
    def prompts(self):
        # repetitive prompts, so that lookups hit and the rollback path is exercised
        return [[1, 2, 3, 1, 2, 3, 1, 2], [4], [5, 6, 5, 6, 5], [1, 1, 1]]


def test_copies_continuation_of_latest_match():
    d = NgramDraft(max_ngram=2)
    d.start([[7, 1, 2, 9, 1, 2, 5, 6, 1, 2]])
    prop = d.propose(3, Sampling(), None)
    assert prop.lengths.tolist() == [3]
    assert prop.tokens[0].tolist() == [5, 6, 1]  # after the latest earlier "1 2"


def test_short_and_missing_continuations_are_ragged():
    d = NgramDraft()
    d.start([[3, 4, 3], [8, 9]])
    prop = d.propose(4, Sampling(), None)
    assert prop.lengths.tolist() == [4, 0]  # "3" was followed by "4 3", then the period repeats
    assert prop.tokens[0].tolist() == [4, 3, 4, 3]  # "9" was never followed: nothing proposed


def test_invalid_sizes_rejected():
    with pytest.raises(ConfigError, match="min_ngram"):
        NgramDraft(max_ngram=1, min_ngram=2)


def test_saves_passes_on_repetitive_text():
    verifier = ToyVerifier(vocab=3, seed=5, table=torch.zeros(3, 3, 3).index_fill_(2,
                           torch.tensor([1]), 5.0))  # the target always says 1: very repetitive
    spec = SpeculativeDecoder(verifier, NgramDraft(), 4).generate([[0, 1, 1]], max_new_tokens=20)
    base = SpeculativeDecoder(verifier).generate([[0, 1, 1]], max_new_tokens=20)
    assert spec.token_ids == base.token_ids
    assert spec.metrics.target_passes < base.metrics.target_passes / 2
