"""Shared fixtures: tiny Llama drafts exported once per session, and a registry with this
plugin loaded (and nothing else, so other plugins' state cannot break these tests)."""

from __future__ import annotations

import importlib

import pytest
import torch

from thrifty.testing import fresh_registry
from thrifty.testing.toy import ToyVerifier


def tiny_llama(vocab: int, seed: int = 0, layers: int = 2):
    """A random Llama shaped like SmolLM2 in miniature (grouped KV heads, tied embedding).

    A wide initialisation keeps the top logits well apart, so that float rounding between two
    runtimes cannot flip an argmax.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=48, intermediate_size=96,
                         num_hidden_layers=layers, num_attention_heads=6, num_key_value_heads=2,
                         initializer_range=0.4, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy machine two OpenMP threads waiting
    on each other slow them down many times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def make_llama():
    return tiny_llama


@pytest.fixture(scope="session")
def llama96():
    return tiny_llama(96)


@pytest.fixture(scope="session")
def graph96(llama96, tmp_path_factory):
    from thrifty_onnx.export import export_draft

    path = tmp_path_factory.mktemp("onnx") / "llama96.onnx"
    export_draft(llama96, path, verifier=ToyVerifier(vocab=96), source="llama96")
    return path


@pytest.fixture(scope="session")
def llama8():
    return tiny_llama(8, seed=1)


@pytest.fixture(scope="session")
def graph8(llama8, tmp_path_factory):
    from thrifty_onnx.export import export_draft

    path = tmp_path_factory.mktemp("onnx") / "llama8.onnx"
    export_draft(llama8, path, verifier=ToyVerifier(vocab=8), source="llama8")
    return path


@pytest.fixture
def use_plugins(monkeypatch):
    """``use_plugins(**objects)``: make a registry of this plugin plus ``objects`` the
    process-wide one for this test."""
    import thrifty_onnx.plugin

    def install(**objects):
        reg = fresh_registry(load_entry_points=False,
                             plugins={"onnx": thrifty_onnx.plugin, **objects})
        monkeypatch.setattr(importlib.import_module("thrifty.registry"), "_default", reg)
        return reg

    return install
