"""Drafts for any verifier: ``thrifty distill`` builds drafts from the verifier's own layers.

For every family of ``families.py`` (tiny perturbed random models, so that a draft ignoring a
bias, a norm offset or a soft cap shows): a draft of all the verifier's layers, copied, computes
the verifier's logits exactly; a few distillation steps save a draft that loads again and runs
with a cache; and on Qwen2 and Gemma verifiers, greedy speculative decoding with a distilled
draft reproduces target-only decoding and transformers' own ``generate`` token for token.
"""

from __future__ import annotations

import argparse
import json

import families
import pytest
import torch

from thrifty.errors import ConfigError, IncompatibleModelsError, ModelFormatError
from thrifty.speculative import SpeculativeDecoder
from thrifty_hf.distill import configure, init_draft, run
from thrifty_hf.drafts import CONFIG, MANIFEST, WEIGHTS, load_draft

SMOKE = ["--corpus", "code", "--code-tokens", "1200", "--batch", "2", "--seq-len", "16",
         "--steps", "2", "--device", "cpu", "--teacher-dtype", "float32", "--quiet"]


def _distill(*argv):
    p = argparse.ArgumentParser()
    configure(p)
    return run(p.parse_args(list(argv)))


def _verifier(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


@pytest.mark.parametrize("family", list(families.FAMILIES))
def test_draft_of_every_verifier_layer_is_the_verifier(family):
    """Copying all the layers (and everything else of the base model but the embedding) must
    give the verifier's own logits: every family detail is the family's own code."""
    verifier = families.make_model(family)
    ids = torch.randint(1, families.VOCAB, (2, 11), generator=torch.Generator().manual_seed(0))
    draft, layers = init_draft(verifier, depth=2, width=64, init="select")
    assert layers == [0, 1]
    with torch.no_grad():
        expect, got = verifier(input_ids=ids).logits, draft(input_ids=ids).logits
    assert torch.allclose(got, expect, atol=1e-5, rtol=0)
    assert type(draft.model).__name__ == type(verifier.base_model).__name__


@pytest.mark.parametrize("family", ["gemma3", "qwen2-moe", "gpt-neox"])
def test_one_selected_layer_keeps_its_own_kind_and_weights(family):
    """Layer 1 copied alone keeps what makes it layer 1 (Gemma 3's global attention), with its
    weights key for key, and a narrower or wider draft is the same family at its own width."""
    verifier = families.make_model(family)
    draft, _ = init_draft(verifier, depth=1, width=64, init="select", layers=[1])
    types = getattr(verifier.config, "layer_types", None)
    if types:
        assert draft.config.layer_types == [types[1]]
    src = verifier.base_model.state_dict()
    for key, value in draft.model.state_dict().items():
        if key.startswith(("layers.0.", "h.0.")):
            assert torch.equal(value, src[key.replace(".0.", ".1.", 1)])
    wide, _ = init_draft(verifier, depth=1, width=128, init="fresh")
    assert type(wide.model) is type(draft.model) and wide.config.hidden_size == 128
    assert wide.proj_in.weight.shape == (128, 64)


def test_refuses_a_family_outside_the_allow_list_before_building_a_corpus(family_tokenizer,
                                                                         tmp_path):
    """GPT-2 is not an allowed family: the refusal names it and the way out, and comes before
    the corpus (whose chat part would fail otherwise: the tokenizer has no chat template)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=families.VOCAB, n_embd=32, n_layer=2,
                                      n_head=4))
    with pytest.raises(IncompatibleModelsError, match="'gpt2'.*draft 'hf'"):
        init_draft(gpt2, depth=1, width=32, init="select")
    gpt2.save_pretrained(tmp_path / "gpt2")
    for f in family_tokenizer.iterdir():
        (tmp_path / "gpt2" / f.name).write_bytes(f.read_bytes())
    with pytest.raises(IncompatibleModelsError, match="'gpt2'"):
        _distill("--verifier", str(tmp_path / "gpt2"), "--out", str(tmp_path / "d"),
                 "--corpus", "code,chat", "--self-generate", "2", "--device", "cpu", "--quiet")


@pytest.mark.parametrize("family,features", [
    (name, name in ("qwen2", "gemma2", "gpt-neox")) for name in families.FAMILIES])
def test_distill_saves_a_draft_that_loads_and_caches(family, features, tiny_family, tmp_path):
    folder = tiny_family(family)
    out = tmp_path / "draft"
    _distill("--verifier", str(folder), "--out", str(out), "--depth", "1",
             *(["--features", "--init", "fresh"] if features else []), *SMOKE)
    config = json.loads((out / CONFIG).read_text())
    manifest = json.loads((out / MANIFEST).read_text())
    assert config["model_type"] == families.manifest(folder)["model_type"]
    assert config["num_hidden_layers"] == 1 and config["thrifty_features"] == features
    assert manifest["training"]["steps"] == 2 and "expected_tar" in manifest["training"]
    assert manifest["architecture"]["family"] == config["model_type"]
    verifier = _verifier(folder)
    draft = load_draft(out, verifier, dtype=torch.float32)
    assert draft.get_input_embeddings().weight is verifier.get_input_embeddings().weight
    ids = torch.tensor([[3, 14, 15, 92, 65, 35]])
    extra = {"features": torch.randn(1, 6, 64)} if features else {}
    with torch.no_grad():
        full = draft(input_ids=ids, **extra).logits
        first = draft(input_ids=ids[:, :4], use_cache=True,
                      **{k: v[:, :4] for k, v in extra.items()})
        cache = first.past_key_values
        step = draft(input_ids=ids[:, 4:], past_key_values=cache, use_cache=True,
                     **{k: v[:, 4:] for k, v in extra.items()})
    assert torch.allclose(step.logits, full[:, 4:], atol=1e-4)


# -- end to end: greedy speculative == target-only == transformers ----------------------------
NEW = 12
TEXTS = ("def fibonacci(n):", "The capital of France is Paris, and", "for i in range(10):")


@pytest.fixture(scope="module")
def distilled(tiny_family, tmp_path_factory):
    """``distilled(family) -> (verifier folder, token draft, feature draft)``, made once."""
    made = {}

    def get(family):
        if family not in made:
            folder, root = tiny_family(family), tmp_path_factory.mktemp(f"distilled-{family}")
            _distill("--verifier", str(folder), "--out", str(root / "token"), "--depth", "1",
                     *SMOKE)
            _distill("--verifier", str(folder), "--out", str(root / "feature"), "--depth", "1",
                     "--init", "fresh", "--features", "--unroll", "2", *SMOKE)
            made[family] = folder, root / "token", root / "feature"
        return made[family]

    return get


def _transformers_greedy(model, prompt):
    out = model.generate(torch.tensor([prompt]), max_new_tokens=NEW, do_sample=False,
                         pad_token_id=families.EOS)
    return out[0, len(prompt):].tolist()


def _check(verifier, drafts, model, prompts):
    """Each draft's greedy speculative output, one ragged batch, equals target-only decoding
    one prompt at a time, which equals transformers' ``generate`` (up to its end of text)."""
    target = [SpeculativeDecoder(verifier, None, 3).generate([p], max_new_tokens=NEW)
              .token_ids[0] for p in prompts]
    for p, t in zip(prompts, target):
        assert t == _transformers_greedy(model, p)[:len(t)]
    for draft in drafts:
        got = SpeculativeDecoder(verifier, draft, 3).generate(prompts, max_new_tokens=NEW)
        assert got.token_ids == target


def test_greedy_speculative_with_a_distilled_draft_on_hf_is_target_only(distilled):
    from thrifty.testing import fresh_registry

    folder, token, _ = distilled("qwen2")
    reg = fresh_registry()
    verifier = reg.get("verifiers", "hf").build(model=str(folder), device="cpu",
                                                dtype="float32")
    draft = reg.get("draft_models", "hf").build(verifier, model=str(token))
    prompts = [verifier.tokenizer.encode(t) for t in TEXTS]
    _check(verifier, [draft], verifier.model, prompts)


@pytest.mark.parametrize("family", ["qwen2", "gemma2"])
def test_greedy_speculative_with_distilled_drafts_on_hf_fast_is_target_only(family,
                                                                            distilled):
    """Token and feature drafts of the verifier's family on the fast path (its generic body:
    the family's own modules over the static cache), a ragged batch of three."""
    from transformers import AutoTokenizer

    from thrifty_hf.fast import FastVerifier, fast_draft

    folder, token, feature = distilled(family)
    model = _verifier(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    verifier = FastVerifier(model, tok, max_len=64, graphs=False)
    drafts = [fast_draft(load_draft(d, model), max_len=64, graphs=False)
              for d in (token, feature)]
    assert type(drafts[1]).__name__ == "FastFeatureDraft"
    _check(verifier, drafts, model, [tok.encode(t) for t in TEXTS])


# -- distill's errors ----------------------------------------------------------------------------
def test_distill_on_a_verifier_without_chat_template_is_a_clear_error(tiny_family, tmp_path):
    with pytest.raises(ConfigError, match="no chat template.*--corpus code"):
        _distill("--verifier", str(tiny_family("qwen2")), "--out", str(tmp_path / "d"),
                 "--corpus", "code,chat", "--self-generate", "2", "--device", "cpu", "--quiet")


def test_malicious_corpus_cache_runs_nothing_and_names_the_file(tiny_family, tmp_path):
    import pickle

    witness = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {witness}",))

    cache = tmp_path / "corpus.cache"
    cache.write_bytes(pickle.dumps({"seq_len": 16, "train": Exploit()}))
    with pytest.raises(ConfigError, match=str(cache)):
        _distill("--verifier", str(tiny_family("qwen2")), "--out", str(tmp_path / "d"),
                 "--corpus-cache", str(cache), *SMOKE)
    assert not witness.exists()


def test_corpus_cache_round_trips_without_pickle(tiny_family, tmp_path):
    cache = tmp_path / "corpus.cache"
    args = ["--verifier", str(tiny_family("qwen2")), "--corpus-cache", str(cache), *SMOKE]
    _distill("--out", str(tmp_path / "a"), *args)
    assert cache.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle
    _distill("--out", str(tmp_path / "b"), *args)
    runs = [json.loads((tmp_path / d / MANIFEST).read_text())["training"] for d in "ab"]
    assert runs[0]["corpus"] == runs[1]["corpus"] and runs[0]["corpus"]["code_tokens"] > 0


def test_corpus_cache_of_another_seq_len_is_refused_and_kept(tiny_family, tmp_path):
    cache = tmp_path / "corpus.cache"
    args = ["--verifier", str(tiny_family("qwen2")), "--corpus-cache", str(cache), *SMOKE]
    _distill("--out", str(tmp_path / "a"), *args)
    before = cache.read_bytes()
    with pytest.raises(ConfigError, match=r"holds sequences of 16 tokens, not --seq-len 32.*"
                                          r"--seq-len 16"):
        _distill("--out", str(tmp_path / "b"), *args, "--seq-len", "32")  # the last one counts
    assert cache.read_bytes() == before and not (tmp_path / "b").exists()


CHAT_TEMPLATE = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}<|endoftext|>{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


def test_self_generated_conversations_answer_each_follow_up_in_turn(tiny_family):
    """``--chat-turns 3``: every conversation holds its request, two follow-ups and three
    answers, the first the same answer a one-turn run samples (same seed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thrifty_hf.distill import FOLLOW_UPS, self_generated

    folder = tiny_family("qwen2")
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = CHAT_TEMPLATE
    prompts = ["Explain sorting.", "Write a poem.", "Name a planet."]
    kw = dict(new_tokens=6, batch=2, temperature=0.8, seed=3, progress=False)
    one, three = (self_generated(model, tok, prompts, turns=t, **kw) for t in (1, 3))
    for i, (a, b) in enumerate(zip(one, three)):
        first = tok.decode(a).removesuffix("<|endoftext|>")
        text = tok.decode(b)
        assert first.startswith(f"<user>{prompts[i]}<|endoftext|><assistant>")
        assert text.startswith(first) and text.count("<assistant>") == 3
        follow = [FOLLOW_UPS[(i + t) % len(FOLLOW_UPS)] for t in (0, 1)]
        assert text.index(f"<user>{follow[0]}") < text.index(f"<user>{follow[1]}")
        assert len(b) > len(a) + 6  # two more answers and requests


def test_self_generated_at_temperature_zero_are_the_verifiers_greedy_answers(tiny_family):
    """``--gen-temperature 0``: each answer is the verifier's greedy continuation of its
    request, whatever the seed, as transformers' greedy ``generate`` gives it alone."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thrifty_hf.distill import self_generated

    folder = tiny_family("qwen2")
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = CHAT_TEMPLATE
    prompts = ["Explain sorting.", "Write a poem, please.", "Name a planet."]
    kw = dict(new_tokens=6, batch=2, temperature=0.0, progress=False)
    greedy = [self_generated(model, tok, prompts, seed=s, **kw) for s in (1, 2)]
    sampled = self_generated(model, tok, prompts, seed=1, **(kw | dict(temperature=5.0)))
    assert greedy[0] == greedy[1] and sampled != greedy[0]
    for prompt, ids in zip(prompts, greedy[0]):
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            alone = model.generate(**enc, do_sample=False, max_new_tokens=6,
                                   pad_token_id=tok.pad_token_id)[0].tolist()
        if tok.eos_token_id in alone[enc["input_ids"].shape[1]:]:
            alone = alone[: alone.index(tok.eos_token_id, enc["input_ids"].shape[1]) + 1]
        assert ids == alone


def test_a_negative_or_nan_gen_temperature_is_refused_before_the_verifier_loads(tmp_path):
    for bad in ("-0.5", "nan"):
        with pytest.raises(ConfigError, match=f"--gen-temperature must be >= 0.*got {bad}"):
            _distill("--verifier", str(tmp_path / "no-such-model"), "--out",
                     str(tmp_path / "d"), "--gen-temperature", bad, *SMOKE)


def test_distill_trains_on_multi_turn_conversations(tiny_family, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    folder = shutil.copytree(tiny_family("qwen2"), tmp_path / "chatty")
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(folder)
    cache = tmp_path / "corpus.cache"
    requests = tmp_path / "requests.txt"
    requests.write_text("Tell me a joke.\nHow far is the moon?\nName three birds.\n",
                        encoding="utf-8")
    _distill("--verifier", str(folder), "--out", str(tmp_path / "d"), "--corpus", "chat",
             "--self-generate", "6", "--chat-turns", "2", "--gen-tokens", "4",
             "--chat-prompts", str(requests), "--corpus-cache", str(cache), *SMOKE[2:])
    corpus = json.loads((tmp_path / "d" / MANIFEST).read_text())["training"]["corpus"]
    assert corpus["chat_turns"] == 2 and corpus["chat_sequences"] == 6
    assert corpus["chat_temperature"] == 0.8
    assert corpus["chat_prompts"] == "requests.txt: 3 requests"
    from thrifty_hf.distill import FOLLOW_UPS, load_corpus

    data = load_corpus(cache)
    text, held = (tok.decode(data[k].flatten()) for k in ("train", "heldout"))
    # the first request and both its answers are held out, the other two trained on
    assert "Tell me a joke." in held and "Tell me a joke." not in text
    assert "How far is the moon?" in text and "Name three birds." in text
    assert all(f"<user>{FOLLOW_UPS[i]}<|endoftext|><assistant>" in text for i in (1, 2))


def test_chat_turns_below_one_are_refused(tiny_family, tmp_path):
    with pytest.raises(ConfigError, match="--chat-turns"):
        _distill("--verifier", str(tiny_family("qwen2")), "--out", str(tmp_path / "d"),
                 "--chat-turns", "0", *SMOKE)


def test_collapsed_acceptance_is_reported():
    from thrifty_hf.distill import collapse_warning, expected_tar

    assert expected_tar(0.0) == 1.0 and expected_tar(0.5) == pytest.approx(1.9375)
    assert expected_tar(0.5, later=0.0) == pytest.approx(1.5)  # a feature draft's own features
    warning = collapse_warning({"expected_tar": expected_tar(0.02), "heldout_top1": 0.02})
    assert "collapsed" in warning and "--steps" in warning
    assert collapse_warning({"expected_tar": expected_tar(0.6), "heldout_top1": 0.6}) is None


@pytest.fixture(scope="module")
def saved_draft(tmp_path_factory):
    verifier = families.make_model("qwen2")
    draft, _ = init_draft(verifier, depth=1, width=64, init="select")
    from thrifty_hf.drafts import save_draft

    folder = tmp_path_factory.mktemp("saved")
    save_draft(draft, folder, verifier={"name": "tiny"}, architecture={}, command="",
               training={})
    return verifier, folder


@pytest.mark.parametrize("name,content", [
    (MANIFEST, b'{"format": 1, "verifier": '), (MANIFEST, b"[1, 2]"), (MANIFEST, b"\xff\xfe{"),
    (CONFIG, b"{not json"), (CONFIG, b'{"model_type": "bert", "thrifty_embed_size": 64}'),
    (CONFIG, b'{"model_type": "qwen2"}'),
    (WEIGHTS, b"garbage, not safetensors"), (WEIGHTS, None)])
def test_damaged_draft_files_are_errors_naming_the_file(saved_draft, tmp_path, name, content):
    verifier, folder = saved_draft
    for f in folder.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    target = tmp_path / name
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2] if content is None else content)  # None: truncated
    with pytest.raises(ModelFormatError, match=str(target)):
        load_draft(tmp_path, verifier)


@pytest.mark.parametrize("family", ["qwen2", "gemma2", "gpt-neox"])
def test_standalone_is_the_familys_own_checkpoint_with_the_drafts_logits(family, tmp_path):
    """What ``export-draft`` writes: the family's ``*ForCausalLM`` with the verifier's embedding
    and head inside, saved and loaded by transformers alone, computing the draft's logits."""
    from transformers import AutoModelForCausalLM

    from thrifty_hf.drafts import standalone

    verifier = families.make_model(family)
    draft, _ = init_draft(verifier, depth=1, width=64, init="select", layers=[1])
    standalone(draft).save_pretrained(tmp_path)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert type(plain).__name__ == type(verifier).__name__
    ids = torch.tensor([[3, 14, 15, 92, 65, 35, 89]])
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, draft(input_ids=ids).logits,
                              atol=1e-5, rtol=0)


def test_standalone_refuses_what_no_plain_checkpoint_holds():
    from thrifty_hf.drafts import standalone

    verifier = families.make_model("qwen2")
    for options, why in ((dict(width=128), "width 128"), (dict(width=64, features=True),
                                                          "feature draft")):
        draft, _ = init_draft(verifier, depth=1, init="fresh", **options)
        with pytest.raises(ModelFormatError, match=why):
            standalone(draft)
