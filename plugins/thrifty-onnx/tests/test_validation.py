"""Graphs that do not fit the contract, or the verifier, are refused with a ThriftyError that
names the problem and the fix."""

from __future__ import annotations

import onnx
import pytest

from thrifty.errors import ConfigError, IncompatibleModelsError, ModelFormatError
from thrifty.testing.toy import ToyTokenizer, ToyVerifier
from thrifty_onnx.draft import OnnxDraft
from thrifty_onnx.session import SessionSettings, resolve_providers


def edited(graph8, tmp_path, edit):
    """A copy of the tiny graph after ``edit(model_proto)``."""
    model = onnx.load(str(graph8))
    edit(model)
    path = tmp_path / "edited.onnx"
    onnx.save(model, str(path))
    return path


def rename_input(old, new):
    def edit(model):
        for value in model.graph.input:
            if value.name == old:
                value.name = new
        for node in model.graph.node:
            node.input[:] = [new if name == old else name for name in node.input]
    return edit


def test_missing_input_is_named(graph8, tmp_path):
    path = edited(graph8, tmp_path, rename_input("position_ids", "positions"))
    with pytest.raises(ModelFormatError) as err:
        OnnxDraft(path, ToyVerifier(vocab=8))
    msg = str(err.value)
    assert "missing input(s) ['position_ids']" in msg
    assert "unexpected input(s) ['positions']" in msg
    assert "thrifty export-onnx" in msg


def test_misnamed_cache_input_is_named(graph8, tmp_path):
    path = edited(graph8, tmp_path, rename_input("past_value.1", "past_key_values.1.value"))
    with pytest.raises(ModelFormatError, match=r"missing input\(s\) \['past_value.1'\]"):
        OnnxDraft(path, ToyVerifier(vocab=8))


def test_graph_without_cache_inputs_is_refused(graph8, tmp_path):
    path = edited(graph8, tmp_path, rename_input("past_key.0", "cache"))
    with pytest.raises(ModelFormatError, match="no KV-cache input past_key.0"):
        OnnxDraft(path, ToyVerifier(vocab=8))


def test_other_vocabulary_is_incompatible(graph8):
    with pytest.raises(IncompatibleModelsError, match="vocabulary of 8 tokens but verifier"):
        OnnxDraft(graph8, ToyVerifier(vocab=9))


def test_other_tokenizer_is_incompatible(graph8):
    class Shifted(ToyTokenizer):
        def decode(self, ids, skip_special_tokens=False):
            return "".join(chr(98 + int(i)) for i in ids)

    verifier = ToyVerifier(vocab=8)
    verifier.tokenizer = Shifted()
    with pytest.raises(IncompatibleModelsError, match="maps token ids differently"):
        OnnxDraft(graph8, verifier)


def test_metadata_that_contradicts_the_graph_is_refused(graph8, tmp_path):
    def edit(model):
        for prop in model.metadata_props:
            if prop.key == "thrifty.vocab_size":
                prop.value = "9"
    with pytest.raises(ModelFormatError, match="metadata says a vocabulary of 9"):
        OnnxDraft(edited(graph8, tmp_path, edit), ToyVerifier(vocab=8))


def test_opset_onnxruntime_cannot_run(graph8, tmp_path):
    def edit(model):
        model.opset_import[0].version = 40
    with pytest.raises(ModelFormatError) as err:
        OnnxDraft(edited(graph8, tmp_path, edit), ToyVerifier(vocab=8))
    assert "opset 40" in str(err.value) and "--opset 17" in str(err.value)


def test_truncated_file_is_refused(graph8, tmp_path):
    path = tmp_path / "cut.onnx"
    path.write_bytes(graph8.read_bytes()[:5000])
    with pytest.raises(ModelFormatError):
        OnnxDraft(path, ToyVerifier(vocab=8))


def test_provider_resolution():
    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers("auto", available) == available
    assert resolve_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert resolve_providers("cpu", available) == ["CPUExecutionProvider"]
    assert resolve_providers("cuda", available) == available
    with pytest.raises(ConfigError, match="'tensorrt' is not available.*cuda, cpu"):
        resolve_providers("tensorrt,cuda", available)


def test_bad_session_settings():
    with pytest.raises(ConfigError, match="optimization must be one of"):
        SessionSettings(optimization="max")
    with pytest.raises(ConfigError, match="intra_op_threads must be >= 0"):
        SessionSettings(intra_op_threads=-1)
