"""Lossless greedy decoding on the real SmolLM2-135M (float32, CPU).

The reference is the engine's target-only greedy output at batch 1, which must itself equal
``model.generate(do_sample=False)``. Speculative decoding with the 2-layer HF draft and with the
n-gram draft must reproduce it token for token at batch 1 and at batch 4 (ragged prompts).
"""

from __future__ import annotations

import pytest
import torch

from thrifty.speculative import SpeculativeDecoder
from thrifty.testing import fresh_registry

NEW = 24
GAMMA = 4


def _batches(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


def _decode(verifier, draft, prompts, batch):
    """Greedy outputs and summed metrics for ``prompts`` decoded ``batch`` at a time."""
    decoder = SpeculativeDecoder(verifier, draft, GAMMA)
    outputs, passes, accepted = [], 0, 0
    for chunk in _batches(prompts, batch):
        gen = decoder.generate(chunk, max_new_tokens=NEW)
        outputs += gen.token_ids
        passes += gen.metrics.target_passes
        accepted += sum(gen.metrics.accepted_at)
    return outputs, passes, accepted


@pytest.fixture(scope="session")
def reference(smollm2, prompt_ids):
    """Target-only greedy output through the engine, one prompt at a time."""
    return _decode(smollm2, None, prompt_ids, 1)[0]


@pytest.fixture(scope="session")
def drafts(smollm2, small_draft_dir):
    """Drafts by name, built through the plugin registry as a pipeline would build them."""
    reg = fresh_registry()
    made = {"hf-l2": lambda: reg.get("draft_models", "hf").build(smollm2,
                                                                  model=str(small_draft_dir))}
    if "ngram" in reg.names("draft_models"):
        made["ngram"] = lambda: reg.get("draft_models", "ngram").build(smollm2)
    return made


def test_enough_prompts_of_both_kinds(prompt_ids, reference):
    assert len(prompt_ids) >= 20
    assert len({len(p) for p in prompt_ids}) >= 10  # ragged
    assert all(len(out) >= 1 for out in reference)


def test_target_only_equals_model_generate(smollm2, prompt_ids, reference):
    """The adapter's cached, masked scoring reproduces transformers' own greedy decoding
    (on every third prompt: code and prose, short and long, to keep CI time down)."""
    eos = sorted(smollm2.eos_token_ids)
    for ids, ours in list(zip(prompt_ids, reference))[::3]:
        out = smollm2.model.generate(torch.tensor([ids]), max_new_tokens=NEW, do_sample=False,
                                     eos_token_id=eos, pad_token_id=eos[0])
        assert out[0, len(ids):].tolist() == ours


def test_target_only_batch_of_four_equals_batch_of_one(smollm2, prompt_ids, reference):
    assert _decode(smollm2, None, prompt_ids, 4)[0] == reference


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("name", ["hf-l2", "ngram"])
def test_speculative_greedy_equals_target_only(smollm2, prompt_ids, reference, drafts, name,
                                                batch):
    if name not in drafts:
        pytest.skip("thrifty-ngram is not installed")
    outputs, passes, accepted = _decode(smollm2, drafts[name](), prompt_ids, batch)
    assert outputs == reference
    # the draft really drafted (some proposals were accepted), and never cost extra target
    # passes over target-only decoding, which takes as many as a batch's longest output; the
    # n-gram draft, on these code-heavy prompts, must save passes outright. (The 2-layer draft
    # is SmolLM2 cut after its second layer: exact, but it rarely agrees with all 30 layers.)
    base = sum(max(map(len, chunk)) for chunk in _batches(reference, batch))
    assert accepted > 0
    assert passes <= base
    if name == "ngram":
        assert passes < base


@pytest.mark.parametrize("batch", [1, 4])
def test_shipped_feature_draft_equals_target_only(smollm2, fast_smollm2, prompt_ids, reference,
                                                   batch):
    """The fast-path verifier reproduces the `hf` verifier's greedy output, and speculative
    decoding with the shipped feature draft (which reads the verifier's hidden states)
    reproduces it too, while saving target passes."""
    from thrifty_hf.fast import FastFeatureDraft
    from thrifty_hf.loading import load_draft_named

    net = load_draft_named("smollm2-draft-feat", smollm2.model)
    draft = FastFeatureDraft(net, max_len=256, graphs=False)
    outputs, passes, accepted = _decode(fast_smollm2, draft, prompt_ids, batch)
    assert outputs == reference
    base = sum(max(map(len, chunk)) for chunk in _batches(reference, batch))
    assert passes < base
