"""``export-onnx`` of drafts distilled for verifiers beyond Llama: graphs equal to PyTorch, and
a clear refusal where a family cannot be exported (mixture-of-experts routing)."""

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


@pytest.mark.parametrize("family,width", [("qwen2", 64), ("gemma3", 64), ("phi3", 128)])
def test_onnxruntime_matches_pytorch_on_a_family_draft(family, width, tmp_path):
    """Qwen2's biases, Gemma 3's scaled embedding, (1+w) norms, local/global layers and final
    soft cap, Phi-3's fused projections at a wider width: all in the graph."""
    verifier = families.make_model(family)
    init = "select" if width == 64 else "fresh"
    draft, _ = init_draft(verifier, depth=2, width=width, init=init)
    path = tmp_path / "draft.onnx"
    layout = export.export_draft(draft, path, source=f"{family}-draft")
    assert layout.num_layers == 2 and layout.vocab_size == families.VOCAB
    assert export.export_error(draft, path) < 1e-4


def test_a_mixture_of_experts_draft_is_refused_naming_its_family(tmp_path):
    draft, _ = init_draft(families.make_model("qwen2-moe"), depth=1, width=64, init="select")
    with pytest.raises(ModelFormatError, match="'qwen2_moe'.*'hf-fast'"):
        export.export_draft(draft, tmp_path / "moe.onnx")
    assert not list(tmp_path.iterdir())
