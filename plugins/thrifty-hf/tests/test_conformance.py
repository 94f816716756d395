"""The core's conformance suites on the real SmolLM2: the `hf` verifier and the 2-layer HF draft,
and the fast path (`hf-fast`, eager on the CPU) with a token draft and the shipped feature
draft."""

from __future__ import annotations

import pytest
import torch

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


def _fast(name, **options):
    """A factory of fast-path drafts named ``name`` around the verifier's weights."""
    from thrifty_hf.fast import fast_draft
    from thrifty_hf.loading import load_draft_named

    return lambda verifier: fast_draft(load_draft_named(name, verifier.model), max_len=256,
                                       graphs=False, **options)


class TestFastDraft(_OnFastVerifier, DraftModelSuite):
    @pytest.fixture
    def make_draft(self, small_draft_dir):
        return _fast(str(small_draft_dir))


class TestExpandingFastDraft(_OnFastVerifier, DraftModelSuite):
    """A token draft growing EAGLE-2 trees (``trees="expand"``)."""

    @pytest.fixture
    def make_draft(self, small_draft_dir):
        return _fast(str(small_draft_dir), trees="expand")


class TestFastFeatureDraft(_OnFastVerifier, DraftModelSuite):
    @pytest.fixture
    def make_draft(self):
        return _fast("smollm2-draft-feat")


class TestExpandingFeatureDraft(_OnFastVerifier, DraftModelSuite):
    """The shipped feature draft growing EAGLE-2 trees (``trees="expand"``)."""

    @pytest.fixture
    def make_draft(self):
        return _fast("smollm2-draft-feat", trees="expand")


def _narrow_window():
    """A Mistral whose 3-token window is shorter than the suite's deepest tree path, so that
    tree nodes fall out of each other's windows (counted by position, not slot)."""
    import families
    import transformers

    cfg = families.make_config("mistral-window")
    cfg.sliding_window = 3
    torch.manual_seed(3)
    return families.perturb(transformers.MistralForCausalLM(cfg), 3).eval()


FAMILY_VERIFIERS = {"llama": "llama", "qwen2": "qwen2", "gemma2": "gemma2",
                    "mistral-window": "mistral-window", "qwen2-moe": "qwen2-moe",
                    "narrow-window": _narrow_window}
"""Tiny verifiers of both bodies: the fused one (Llama), and the generic one with biases
(Qwen2), soft-capped local and global layers (Gemma 2), a 16-token window (Mistral), experts
(Qwen2-MoE) and a window shorter than a tree's depth."""


class TestFastFamilyVerifier(VerifierSuite):
    """The verifier suite (token trees included) on tiny models of both bodies, with prompts
    long enough that every window cuts into them."""

    @pytest.fixture(params=sorted(FAMILY_VERIFIERS))
    def verifier(self, request, family_tokenizer):
        import families
        from transformers import AutoTokenizer

        from thrifty_hf.fast import FastVerifier

        make = FAMILY_VERIFIERS[request.param]
        model = families.make_model(make) if isinstance(make, str) else make()
        verifier = FastVerifier(model, AutoTokenizer.from_pretrained(family_tokenizer),
                                max_len=128, graphs=False)
        assert verifier.lm.body.kind == ("fused" if request.param == "llama" else "generic")
        return verifier

    @pytest.fixture
    def prompts(self, verifier):
        g = torch.Generator().manual_seed(7)
        return [torch.randint(1, verifier.vocab_size, (n,), generator=g).tolist()
                for n in (40, 1, 19, 3)]


# -- the same drafts over the toy verifier, which scores token trees: the suites' end-to-end tree
# test runs with them (a tiny draft over the toy's vocabulary, its biases and norms perturbed)
@pytest.fixture(scope="module")
def toy_sized_draft():
    """A perturbed one-layer Qwen2 (biased q/k/v) over the 40 tokens of the toy verifier."""
    import families
    import torch
    from transformers import AutoModelForCausalLM

    config = families.make_config("qwen2", layers=1)
    config.vocab_size = 40
    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return families.perturb(model, 3).eval()


class _OnToyVerifier:
    @pytest.fixture
    def verifier(self):
        from thrifty.testing.toy import ToyVerifier

        return ToyVerifier(vocab=40, seed=0)


class TestHFDraftOnToy(_OnToyVerifier, DraftModelSuite):
    @pytest.fixture
    def make_draft(self, toy_sized_draft):
        from thrifty_hf.models import HFDraft

        return lambda verifier: HFDraft(toy_sized_draft, "tiny-qwen2")


class TestFastDraftOnToy(_OnToyVerifier, DraftModelSuite):
    @pytest.fixture
    def make_draft(self, toy_sized_draft):
        from thrifty_hf.fast import FastDraft

        return lambda verifier: FastDraft(toy_sized_draft, max_len=128, graphs=False)


class TestExpandingFastDraftOnToy(_OnToyVerifier, DraftModelSuite):
    @pytest.fixture
    def make_draft(self, toy_sized_draft):
        from thrifty_hf.fast import FastDraft

        return lambda verifier: FastDraft(toy_sized_draft, max_len=128, graphs=False,
                                          trees="expand")
