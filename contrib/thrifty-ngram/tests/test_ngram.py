"""The n-gram draft passes the draft conformance suite and proposes what prompt lookup should."""

import pytest
import torch
from thrifty.errors import ConfigError
from thrifty.speculative import Sampling, SpeculativeDecoder, TreeShape
from thrifty.testing.drafts import DraftModelSuite
from thrifty.testing.toy import ToyVerifier
from thrifty_ngram.draft import NgramDraft


class TestNgramConformance(DraftModelSuite):
    @pytest.fixture
    def make_draft(self):
        return lambda verifier: NgramDraft()

    @pytest.fixture
    def prompts(self):
        # repetitive prompts, so that lookups hit and the rollback path is exercised; "1 2" was
        # followed by two different tokens, so that trees branch
        return [[1, 2, 3, 1, 2, 4, 1, 2], [4], [5, 6, 5, 6, 5], [1, 1, 1]]


def test_copies_continuation_of_latest_match():
    d = NgramDraft(max_ngram=2)
    d.start([[7, 1, 2, 9, 1, 2, 5, 6, 1, 2]])
    prop = d.propose(3, Sampling(), None)
    assert prop.lengths.tolist() == [3]
    assert prop.tokens[0].tolist() == [5, 6, 1]  # after the latest earlier "1 2"


def test_short_and_missing_continuations_are_ragged():
    d = NgramDraft()
    d.start([[3, 4, 5, 3, 4], [8, 9, 8], [1, 2, 1, 2, 7, 1, 2]])
    prop = d.propose(4, Sampling(), None)
    # "3 4" was followed by "5 3 4"; "9 8" never; "1 2" latest followed by "7 1 2"
    assert prop.lengths.tolist() == [3, 0, 3]
    assert prop.tokens[0, :3].tolist() == [5, 3, 4]
    assert prop.tokens[2, :3].tolist() == [7, 1, 2]


def _tree(draft, shape, sampling=Sampling()):
    prop = draft.propose_tree(TreeShape.parse(shape), sampling, None)
    m = int(prop.lengths[0])
    return prop.tokens[0, :m].tolist(), prop.parents[0, :m].tolist(), prop.q


def test_tree_merges_continuations_latest_first():
    d = NgramDraft()
    d.start([[7, 1, 2, 9, 1, 2, 5, 6, 1, 2, 5, 8, 1, 2]])
    # "1 2" was followed by "5 8 1", then "5 6 1", then "9 1 2": one trie, latest first
    assert _tree(d, "3x2:8")[:2] == ([5, 8, 1, 6, 1, 9, 1, 2], [0, 1, 2, 1, 4, 0, 6, 7])
    assert _tree(d, "3x2:4")[:2] == ([5, 8, 1, 6], [0, 1, 2, 1])  # the budget runs out
    assert _tree(d, "3x1:8")[0] == d.propose(3, Sampling(), None).tokens[0].tolist()


def test_tree_is_deterministic_under_sampling():
    d = NgramDraft()
    d.start([[3, 4, 5, 3, 4, 6, 3, 4], [8, 9]])
    sampled = d.propose_tree(TreeShape(2, 2, 4), Sampling(temperature=0.7), None)
    assert sampled.q is None
    assert sampled.lengths.tolist() == [4, 0]  # a row with no match grows no tree
    assert sampled.tokens[0].tolist() == [6, 3, 5, 3]


def test_unigram_matches_only_when_asked():
    prompt = [[6, 1, 5, 2, 1]]
    strict, loose = NgramDraft(), NgramDraft(min_ngram=1)
    strict.start(prompt)
    loose.start(prompt)
    assert strict.propose(2, Sampling(), None).lengths.tolist() == [0]
    assert loose.propose(2, Sampling(), None).tokens[0].tolist() == [5, 2]


def test_invalid_sizes_rejected():
    with pytest.raises(ConfigError, match="min_ngram"):
        NgramDraft(max_ngram=1, min_ngram=2)


def test_saves_passes_on_repetitive_text():
    cycle = torch.zeros(3, 3, 3)
    for c in range(3):
        cycle[:, c, (c + 1) % 3] = 5.0  # the target counts 0, 1, 2, 0, 1, 2, ...
    verifier = ToyVerifier(vocab=3, table=cycle)
    spec = SpeculativeDecoder(verifier, NgramDraft(), 4).generate([[0, 1, 2]], max_new_tokens=24)
    base = SpeculativeDecoder(verifier).generate([[0, 1, 2]], max_new_tokens=24)
    assert spec.token_ids == base.token_ids
    assert spec.metrics.target_passes < base.metrics.target_passes / 2


def test_select_exports_vllm_and_transformers_prompt_lookup(register_plugin):
    from thrifty.speculative.commands import engine_settings
    from thrifty_ngram import plugin

    register_plugin(plugin, name="ngram")
    found = engine_settings({"name": "ngram", "options": {"max_ngram": 4}},
                            [[1, 4, 5], [5, 32, 2]])
    assert found["vllm"] == {"method": "ngram", "prompt_lookup_max": 4, "prompt_lookup_min": 2,
                             "num_speculative_tokens": 5,
                             "num_speculative_tokens_per_batch_size": [[1, 4, 5], [5, 32, 2]]}
    assert found["transformers"] == {"max_matching_ngram_size": 4, "prompt_lookup_num_tokens": 5}
