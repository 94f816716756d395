"""``export-onnx`` of drafts distilled for verifiers beyond Llama: graphs equal to PyTorch, and
a clear refusal where a family cannot be exported (mixture-of-experts routing, sliding windows
the exporter cannot place)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

sys.path.insert(0, str(Path(__file__).parents[2] / "thrifty-hf" / "tests"))
import families  # noqa: E402

from thrifty.errors import ModelFormatError  # noqa: E402
from thrifty_hf.distill import init_draft  # noqa: E402
from thrifty_onnx import export  # noqa: E402


@pytest.mark.parametrize("family,width", [
    ("qwen2", 64), ("gemma3", 64), ("phi3", 128), ("llama-bias", 64), ("mistral-window", 64),
    ("qwen3", 64), ("gemma2", 64), ("gpt-neox", 64)])
def test_onnxruntime_matches_pytorch_on_a_family_draft(family, width, tmp_path):
    """Qwen2's biases, Gemma 3's scaled embedding, (1+w) norms, local/global layers and final
    soft cap, Phi-3's fused projections at a wider width, Llama's attention and MLP biases,
    Qwen3's q/k norms, Gemma 2's attention and final soft caps, GPT-NeoX's partial rotary and
    parallel residual: all in the graph. For the windowed families (Mistral 16, Gemma 2 32,
    Gemma 3 16) ``export_error`` runs both rows past the window with holes in one row's cache
    and compares with the draft's own uncached forward, so the window must count tokens."""
    verifier = families.make_model(family)
    init = "select" if width == 64 else "fresh"
    draft, _ = init_draft(verifier, depth=2, width=width, init=init)
    path = tmp_path / "draft.onnx"
    layout = export.export_draft(draft, path, source=f"{family}-draft")
    assert layout.num_layers == 2 and layout.vocab_size == families.VOCAB
    assert export.export_error(draft, path) < 1e-4


@pytest.mark.parametrize("family,model_type", [("qwen2-moe", "qwen2_moe"),
                                               ("mixtral", "mixtral")])
def test_a_mixture_of_experts_draft_is_refused_naming_its_family(family, model_type, tmp_path):
    draft, _ = init_draft(families.make_model(family), depth=1, width=64, init="select")
    with pytest.raises(ModelFormatError, match=f"'{model_type}'.*'hf-fast'"):
        export.export_draft(draft, tmp_path / "moe.onnx")
    assert not list(tmp_path.iterdir())


def test_windows_the_exporter_cannot_place_are_refused(tmp_path, monkeypatch):
    """Layers of different windows need one mask per layer type; without ``layer_types`` to
    name them (here a Mistral config said to mix windows) the export is refused, not guessed."""
    draft, _ = init_draft(families.make_model("mistral-window"), depth=2, width=64,
                          init="select")
    monkeypatch.setattr(export, "layer_windows", lambda model: [16, None])
    with pytest.raises(ModelFormatError, match="'mistral'.*different sliding windows.*'hf-fast'"):
        export.export_draft(draft, tmp_path / "mixed.onnx")
    assert not list(tmp_path.iterdir())
