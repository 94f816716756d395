"""Where the PyTorch side of an ONNX draft comes from: any draft a plugin can load.

A draft plugin whose product keeps its HF-style ``torch.nn.Module`` in ``.model`` (the ``hf``
drafts, the PairConnect drafts) can be exported; the module is loaded on CPU in float32, the
precision the graph is exported in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thrifty.errors import ModelFormatError


def build_part(family: str, name: str, *args: Any, **options: Any) -> Any:
    """Build a registered part, asking for CPU float32 where it declares device/dtype options."""
    from thrifty import registry

    spec = registry().get(family, name)
    for key, value in (("device", "cpu"), ("dtype", "float32")):
        if key in spec.options:
            options.setdefault(key, value)
    return spec.build(*args, **options)


def load_torch_draft(verifier: Any, model: str, source: str = "hf") -> Any:
    """The HF-style torch module of draft ``model`` as draft plugin ``source`` loads it."""
    import torch

    draft = build_part("draft_models", source, verifier, model=model)
    module = getattr(draft, "model", None)
    if not isinstance(module, torch.nn.Module):
        raise ModelFormatError(
            f"draft plugin {source!r} loads {model!r} as a {type(draft).__name__} without an "
            f"HF-style torch module in .model, so it cannot be exported to ONNX; use a draft "
            f"plugin that keeps one (e.g. source = \"hf\")")
    return module


def label(model: str) -> str:
    """Short name of a model reference: a zoo name as is, a path by its last part."""
    path = Path(model)
    return path.stem if len(path.parts) > 1 or path.suffix else model
