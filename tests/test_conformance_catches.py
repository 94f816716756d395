"""The conformance suites fail broken implementations: a suite that passes everything checks
nothing. Each broken part here breaks one promise of its protocol."""

from __future__ import annotations

import pytest
import torch

from thrifty.speculative import Sampling, TreeShape
from thrifty.testing.commands import CommandSuite
from thrifty.testing.drafts import DraftModelSuite, VerifierSuite
from thrifty.testing.toy import ToyDraft, ToyTokenizer, ToyVerifier


class NoRollbackDraft(ToyDraft):
    """Keeps every proposed token whatever the verifier accepted: it never rolls back."""

    def commit(self, accepted, next_tokens) -> None:
        super().commit(torch.full_like(accepted, self._last.shape[1]), next_tokens)


class LeafLosingDraft(ToyDraft):
    """Forgets the last node of every path it keeps (a sibling leaf, say)."""

    def commit_path(self, path, lengths, next_tokens) -> None:
        super().commit_path(path, (lengths - 1).clamp(min=1), next_tokens)


class BushyDraft(ToyDraft):
    """Gives a node one child more than the tree's branch allows."""

    def propose_tree(self, shape, sampling, generator):
        wider = TreeShape(shape.depth, shape.branch + 1, shape.nodes)
        return super().propose_tree(wider, sampling, generator)


class LossyTokenizer(ToyTokenizer):
    """Decodes every text to the empty string."""

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return ""


def _fixtures(suite):
    verifier = ToyVerifier(vocab=8, seed=0)
    g = torch.Generator().manual_seed(7)
    prompts = [torch.randint(1, 8, (n,), generator=g).tolist() for n in (5, 1, 9, 3)]
    return verifier, prompts


def test_draft_suite_catches_a_draft_that_never_rolls_back():
    suite = DraftModelSuite()
    verifier, prompts = _fixtures(suite)
    good = lambda v: ToyDraft(vocab=v.vocab_size, seed=3)  # noqa: E731
    suite.test_commit_equals_fresh_start(good, verifier, prompts)  # the honest draft passes
    broken = lambda v: NoRollbackDraft(vocab=v.vocab_size, seed=3)  # noqa: E731
    with pytest.raises(AssertionError, match="rollback"):
        suite.test_commit_equals_fresh_start(broken, verifier, prompts)


def test_draft_suite_catches_an_ngram_draft_that_never_rolls_back():
    """A prompt-lookup draft often finds nothing to propose on short random prompts, so one
    step cannot tell whether it rolled back; several steps can."""
    from thrifty_ngram.draft import NgramDraft

    class NoRollbackNgram(NgramDraft):
        def commit(self, accepted, next_tokens) -> None:
            super().commit(torch.full_like(accepted, self._last.shape[1]), next_tokens)

    suite = DraftModelSuite()
    verifier, prompts = _fixtures(suite)
    suite.test_commit_equals_fresh_start(lambda v: NgramDraft(), verifier, prompts)
    with pytest.raises(AssertionError, match="rollback"):
        suite.test_commit_equals_fresh_start(lambda v: NoRollbackNgram(), verifier, prompts)


def test_draft_suite_catches_a_tree_draft_that_loses_a_kept_leaf():
    suite = DraftModelSuite()
    verifier, prompts = _fixtures(suite)
    good = lambda v: ToyDraft(vocab=v.vocab_size, seed=3)  # noqa: E731
    suite.test_commit_path_equals_fresh_start(good, verifier, prompts)
    broken = lambda v: LeafLosingDraft(vocab=v.vocab_size, seed=3)  # noqa: E731
    with pytest.raises(AssertionError, match="commit_path is not exact"):
        suite.test_commit_path_equals_fresh_start(broken, verifier, prompts)


def test_draft_suite_catches_a_tree_wider_than_its_branch():
    suite = DraftModelSuite()
    verifier, prompts = _fixtures(suite)
    suite.test_tree_shapes(ToyDraft(vocab=8, seed=3), verifier, prompts, Sampling())
    with pytest.raises(AssertionError, match="children per node"):
        suite.test_tree_shapes(BushyDraft(vocab=8, seed=3), verifier, prompts, Sampling())


def test_verifier_suite_catches_a_tokenizer_that_loses_text():
    suite = VerifierSuite()
    verifier, _ = _fixtures(suite)
    suite.test_protocol(verifier)
    verifier.tokenizer = LossyTokenizer()
    with pytest.raises(AssertionError, match="round trip"):
        suite.test_protocol(verifier)


def test_command_suite_catches_a_command_without_help():
    from thrifty.records import CommandSpec

    silent = CommandSpec(name="silent", configure=lambda p: None, run=lambda a: 0,
                         plugin="p", distribution="d")
    with pytest.raises(AssertionError, match="description"):
        CommandSuite().test_record(silent)


class ChainTreeVerifier(ToyVerifier):
    """Scores a token tree as a chain: each column after the column before it."""

    def score_tree(self, tokens, parents, lengths):
        chain = torch.arange(-1, tokens.shape[1] - 1).expand_as(parents)
        return super().score_tree(tokens, chain, lengths)


class ColumnsKeptVerifier(ToyVerifier):
    """Keeps the first columns of its last tree, whatever path acceptance took."""

    def keep_path(self, path, lengths) -> None:
        super().keep_path(torch.arange(path.shape[1]).expand_as(path), lengths)


def test_verifier_suite_catches_trees_scored_as_chains_and_columns_kept_for_paths():
    suite = VerifierSuite()
    verifier, prompts = _fixtures(suite)
    suite.test_score_tree_equals_each_path_scored_as_a_chain(verifier, prompts)
    suite.test_keep_path_continues_as_a_fresh_start(verifier, prompts)
    with pytest.raises(AssertionError, match="node"):
        suite.test_score_tree_equals_each_path_scored_as_a_chain(
            ChainTreeVerifier(vocab=8, seed=0), prompts)
    with pytest.raises(AssertionError):
        suite.test_keep_path_continues_as_a_fresh_start(ColumnsKeptVerifier(vocab=8, seed=0),
                                                        prompts)
