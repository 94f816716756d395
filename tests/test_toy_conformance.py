"""The conformance suites run on the toy models: the suites themselves must pass on a correct
implementation (and fail on a broken one: see test_conformance_catches.py)."""

import pytest

from thrifty.testing.commands import CommandSuite
from thrifty.testing.drafts import DraftModelSuite, VerifierSuite
from thrifty.testing.toy import ToyDraft


class TestToyVerifier(VerifierSuite):
    pass


class TestToyDraft(DraftModelSuite):
    @pytest.fixture
    def make_draft(self):
        return lambda verifier: ToyDraft(vocab=verifier.vocab_size, seed=3)


class TestGenerateCommand(CommandSuite):
    command = "generate"
    argv = ["def fib(n):", "--draft", "ngram,max_ngram=4"]


class TestHwCommand(CommandSuite):
    command = "hw"
    argv = ["read", "batch-size", "-o", "values=1,4,16"]
