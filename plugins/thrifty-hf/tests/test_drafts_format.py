"""The draft format: save without the shared embedding, load around a verifier, errors."""

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from thrifty.errors import IncompatibleModelsError, ModelNotFoundError  # noqa: E402
from thrifty_hf.cached import cache_name  # noqa: E402
from thrifty_hf.distill import init_draft, kl_loss, lr_scale  # noqa: E402
from thrifty_hf.drafts import load_draft, save_draft  # noqa: E402


def tiny_llama(hidden=32, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=40, hidden_size=hidden, intermediate_size=64,
                                   num_hidden_layers=3, num_attention_heads=4,
                                   num_key_value_heads=2, head_dim=8,
                                   max_position_embeddings=64, tie_word_embeddings=True)
    return transformers.LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("width,init", [(32, "select"), (64, "fresh"), (16, "fresh")])
def test_round_trip_shares_embedding_and_reproduces_logits(tmp_path, width, init):
    verifier = tiny_llama()
    draft, layers = init_draft(verifier, depth=2, width=width, init=init)
    save_draft(draft, tmp_path, verifier={"name": "tiny"}, architecture={"width": width},
               command="thrifty distill ...", training={"steps": 0})
    saved = json.loads((tmp_path / "thrifty.json").read_text())
    assert saved["command"] == "thrifty distill ..."
    from safetensors.torch import load_file

    keys = load_file(str(tmp_path / "model.safetensors"))
    assert not any("embed_tokens" in k or "lm_head" in k for k in keys)
    assert all(v.dtype == torch.float16 for v in keys.values())
    loaded = load_draft(tmp_path, verifier, dtype=torch.float32)
    assert loaded.get_input_embeddings().weight is verifier.get_input_embeddings().weight
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    expect = draft(input_ids=ids).logits
    got = loaded(input_ids=ids).logits
    assert torch.allclose(got, expect, atol=5e-2)  # fp16 storage rounding only
    if init == "select":  # copied verifier layers, not random ones
        src = verifier.model.layers[layers[1]].mlp.down_proj.weight
        assert torch.allclose(loaded.model.layers[1].mlp.down_proj.weight, src, atol=1e-2)


def test_incremental_cache_matches_full_forward(tmp_path):
    verifier = tiny_llama()
    draft, _ = init_draft(verifier, depth=1, width=64, init="fresh")
    ids = torch.tensor([[5, 6, 7, 8]])
    full = draft(input_ids=ids).logits
    out = draft(input_ids=ids[:, :3], use_cache=True)
    cache = {cache_name(): getattr(out, cache_name())}
    step = draft(input_ids=ids[:, 3:], use_cache=True, **cache)
    assert torch.allclose(step.logits[0, -1], full[0, -1], atol=1e-5)


def test_wrong_verifier_and_missing_folder_are_clear_errors(tmp_path):
    draft, _ = init_draft(tiny_llama(), depth=1, width=32, init="select")
    save_draft(draft, tmp_path, verifier={"name": "tiny"}, architecture={}, command="",
               training={})
    with pytest.raises(IncompatibleModelsError, match="distil"):
        load_draft(tmp_path, tiny_llama(hidden=48))
    with pytest.raises(ModelNotFoundError, match="thrifty distill"):
        load_draft(tmp_path / "nope", tiny_llama())


def test_kl_loss_is_zero_only_for_equal_distributions():
    a = torch.randn(2, 3, 10)
    assert float(kl_loss(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(kl_loss(a, torch.randn(2, 3, 10))) > 0.01


def test_learning_rate_warms_up_then_anneals_by_the_budget_that_ends_first():
    assert lr_scale(0, 0.0, 1000, 0.0, 10) == pytest.approx(0.1)
    assert lr_scale(9, 0.0, 1000, 0.0, 10) == pytest.approx(1.0, abs=1e-3)
    assert lr_scale(500, 0.0, 1000, 0.0, 10) == pytest.approx(0.5)
    # a time budget half spent at 10% of the steps: the cosine is halfway down, by time
    assert lr_scale(100, 30.0, 1000, 60.0, 10) == pytest.approx(0.5)
    # the run cut at its time budget ends annealed, not at its peak rate
    assert lr_scale(200, 60.0, 1000, 60.0, 10) == pytest.approx(0.0, abs=1e-12)
    assert lr_scale(1000, 0.0, 1000, 0.0, 10) == pytest.approx(0.0, abs=1e-12)


def test_shipped_drafts_fit_the_budget_and_load_around_the_verifier(smollm2):
    """Every draft in the zoo loads around SmolLM2's embedding; together they stay under the
    64 MB that keeps them light in the repository and in one transfer to a GPU machine."""
    from thrifty_hf.drafts import draft_bytes
    from thrifty_hf.zoo import names, resolve

    drafts = [n for n in names() if resolve(n).kind == "draft"]
    assert {"smollm2-draft-l1", "smollm2-draft-l2", "smollm2-draft-l4", "smollm2-draft-wide",
            "smollm2-draft-feat"} <= set(drafts)
    assert sum(draft_bytes(resolve(n).path) for n in drafts) < 64_000_000
    for name in drafts:
        draft = load_draft(resolve(name).path, smollm2.model)
        assert draft.get_input_embeddings().weight is smollm2.model.get_input_embeddings().weight
