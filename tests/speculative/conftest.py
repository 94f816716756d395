"""Toy models for the draft-selection tests: exact, tiny, and with a draft that agrees with the
verifier often enough for lookahead to matter."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")

from thrifty import DraftModelSpec, Option, VerifierSpec, hookimpl  # noqa: E402
from thrifty.testing.toy import ToyDraft, ToyVerifier  # noqa: E402

VOCAB = 6


def close_draft(verifier: ToyVerifier, noise: float = 1.5, seed: int = 5) -> ToyDraft:
    """A draft whose table is the verifier's plus noise, so it is right most of the time."""
    g = torch.Generator().manual_seed(seed)
    return ToyDraft(vocab=verifier.vocab_size,
                    table=verifier.table + noise * torch.randn(verifier.table.shape, generator=g))


@pytest.fixture
def toys():
    verifier = ToyVerifier(vocab=VOCAB, seed=0)
    return verifier, close_draft(verifier)


@pytest.fixture
def toy_prompts():
    rng = random.Random(0)
    return [[rng.randrange(VOCAB) for _ in range(rng.randrange(2, 6))] for _ in range(6)]


class ToyPlugin:
    """Registers verifier ``toy`` and draft ``toy-draft`` for the command tests."""

    @hookimpl
    def thrifty_verifiers(self):
        return [VerifierSpec(name="toy", factory=lambda **o: ToyVerifier(vocab=VOCAB),
                             options={"model": Option(str, "toy", "ignored")})]

    @hookimpl
    def thrifty_draft_models(self):
        return [DraftModelSpec(name="toy-draft", factory=lambda v, **o: close_draft(v))]


@pytest.fixture
def toy_registry(monkeypatch):
    """``toy_registry(plugin=ToyPlugin())``: until the test ends, the process-wide registry
    (what the CLI sees) holds the draft-selection commands and ``plugin``."""
    import importlib

    from thrifty.speculative import commands
    from thrifty.testing import fresh_registry

    def install(plugin=None):
        reg = fresh_registry(load_entry_points=False,
                             plugins={"speculative": commands, "toy": plugin or ToyPlugin()})
        monkeypatch.setattr(importlib.import_module("thrifty.registry"), "_default", reg)
        return reg
    return install
