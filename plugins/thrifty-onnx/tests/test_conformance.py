"""The draft-model conformance suite of thrifty.testing, run on an exported graph."""

from __future__ import annotations

import pytest

from thrifty.testing.drafts import DraftModelSuite
from thrifty_onnx.draft import OnnxDraft


class TestOnnxDraft(DraftModelSuite):
    @pytest.fixture
    def make_draft(self, graph8):
        return lambda verifier: OnnxDraft(graph8, verifier)


class TestOnnxDraftCompacting(DraftModelSuite):
    """The same, compacting the cache after every rollback that leaves a hole."""

    @pytest.fixture
    def make_draft(self, graph8):
        return lambda verifier: OnnxDraft(graph8, verifier, compact_after=1)
