"""The core's conformance suites, run on the real SmolLM2 verifier and the 2-layer HF draft."""

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
