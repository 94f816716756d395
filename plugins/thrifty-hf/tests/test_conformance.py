"""The core's conformance suites on the real SmolLM2: the `hf` verifier and the 2-layer HF draft,
and the fast path (`hf-fast`, eager on the CPU) with a token draft and the shipped feature
draft."""

from __future__ import annotations

import pytest

from thrifty.testing.drafts import DraftModelSuite, VerifierSuite


class TestHFVerifier(VerifierSuite):
    @pytest.fixture
    def verifier(self, smollm2):
        return smollm2


class TestHFDraft(DraftModelSuite):
    @pytest.fixture
    def verifier(self, smollm2):
        return smollm2

    @pytest.fixture
    def make_draft(self, small_draft_dir):
        from thrifty_hf.models import make_draft

        return lambda verifier: make_draft(verifier, model=str(small_draft_dir))


class _OnFastVerifier:
    """The suites' verifier is the fast path's (eager on the CPU)."""

    @pytest.fixture
    def verifier(self, fast_smollm2):
        return fast_smollm2


class TestFastVerifier(_OnFastVerifier, VerifierSuite):
    pass


def _fast(name):
    """A factory of fast-path drafts named ``name`` around the verifier's weights."""
    from thrifty_hf.fast import fast_draft
    from thrifty_hf.loading import load_draft_named

    return lambda verifier: fast_draft(load_draft_named(name, verifier.model), max_len=256,
                                       graphs=False)


class TestFastDraft(_OnFastVerifier, DraftModelSuite):
    @pytest.fixture
    def make_draft(self, small_draft_dir):
        return _fast(str(small_draft_dir))


class TestFastFeatureDraft(_OnFastVerifier, DraftModelSuite):
    @pytest.fixture
    def make_draft(self):
        return _fast("smollm2-draft-feat")
