"""Export: the graph's names, dynamic axes and metadata, its equivalence with PyTorch, the cache,
and the ``export-onnx`` command and ``onnx`` draft factory driven through a registry."""

from __future__ import annotations

import json
from types import SimpleNamespace

import onnx
import pytest

import thrifty
from thrifty import hookimpl
from thrifty.cli import main
from thrifty.errors import ModelFormatError
from thrifty.records import REQUIRED, DraftModelSpec, Option, VerifierSpec
from thrifty.speculative import SpeculativeDecoder
from thrifty.testing.toy import ToyVerifier
from thrifty_onnx import export
from thrifty_onnx.layout import tokenizer_fingerprint


def dims(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_graph_layout_and_metadata(graph96):
    model = onnx.load(str(graph96))
    onnx.checker.check_model(model)
    inputs = {v.name: dims(v) for v in model.graph.input}
    outputs = {v.name: dims(v) for v in model.graph.output}
    assert inputs == {"input_ids": ["batch", "seq"], "attention_mask": ["batch", "total"],
                      "position_ids": ["batch", "seq"], "logits_index": ["kept"],
                      **{f"past_{kv}.{i}": ["batch", 2, "past", 8]
                         for i in range(2) for kv in ("key", "value")}}
    assert outputs == {"logits": ["batch", "kept", 96],
                       **{f"present_{kv}.{i}": ["batch", 2, "total", 8]
                          for i in range(2) for kv in ("key", "value")}}
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["thrifty.vocab_size"] == "96"
    assert meta["thrifty.verifier"] == "toy-verifier"
    assert meta["thrifty.draft"] == "llama96"
    assert meta["thrifty.tokenizer_sha256"] == tokenizer_fingerprint(ToyVerifier(96).tokenizer, 96)
    assert meta["thrifty.thrifty_version"] == thrifty.__version__


def test_onnxruntime_matches_pytorch(llama96, graph96):
    assert export.export_error(llama96, graph96) < 1e-4


def test_non_hf_module_is_refused(tmp_path):
    import torch

    with pytest.raises(ModelFormatError, match="does not follow the HF-style signature"):
        export.export_draft(torch.nn.Linear(3, 3), tmp_path / "x.onnx")


def test_cache_is_keyed_by_weights(make_llama, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(export, "cache_dir", lambda: tmp_path)
    model = make_llama(16, layers=1)
    first = export.cached_export(model, source="tiny")
    stamp = first.stat().st_mtime_ns
    assert export.cached_export(model, source="tiny") == first
    assert first.stat().st_mtime_ns == stamp  # a hit: not exported again
    with torch.no_grad():
        model.model.norm.weight.mul_(2)
    second = export.cached_export(model, source="tiny")
    assert second != first and second.exists() and first.name.startswith("tiny-")


class Fakes:
    """A registry's worth of parts: the toy verifier, and a draft plugin whose product keeps
    an HF-style torch module in ``.model`` (as the hf drafts do), or none."""

    def __init__(self, module):
        self.module = module

    @hookimpl
    def thrifty_verifiers(self):
        return [VerifierSpec(name="toy", factory=lambda model: ToyVerifier(vocab=96),
                             options={"model": Option(str, "")})]

    @hookimpl
    def thrifty_draft_models(self):
        def make(verifier, model):
            return SimpleNamespace(model=self.module if model == "tiny" else None)

        return [DraftModelSpec(name="torchy", factory=make,
                               options={"model": Option(str, REQUIRED)})]


def test_export_command_writes_a_checked_graph(llama96, use_plugins, tmp_path, capsys):
    use_plugins(fakes=Fakes(llama96))
    out = tmp_path / "tiny.onnx"
    code = main(["export-onnx", "tiny", "--source", "torchy", "--verifier", "toy", "-o",
                 str(out), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["path"] == str(out) and report["max_abs_logit_error"] < 1e-4
    pipe = thrifty.pipeline("toy", [("onnx", {"model": str(out), "intra_op_threads": 1})])
    prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9]]
    spec = pipe.generate(prompts, max_new_tokens=10)
    assert spec.token_ids == SpeculativeDecoder(pipe.verifier).generate(
        prompts, max_new_tokens=10).token_ids


def test_export_command_explains_a_draft_it_cannot_export(llama96, use_plugins, capsys):
    use_plugins(fakes=Fakes(llama96))
    assert main(["export-onnx", "other", "--source", "torchy", "--verifier", "toy"]) == 2
    assert "without an HF-style torch module in .model" in capsys.readouterr().err


def test_draft_factory_exports_on_first_use(llama96, use_plugins, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "cache_dir", lambda: tmp_path)
    reg = use_plugins(fakes=Fakes(llama96))
    draft = reg.get("draft_models", "onnx").build(ToyVerifier(vocab=96), model="tiny",
                                                   source="torchy")
    assert draft.name == "onnx:tiny" and draft.vocab_size == 96
    assert [p.name for p in tmp_path.iterdir()] == [draft.layout.source.split("/")[-1]]
