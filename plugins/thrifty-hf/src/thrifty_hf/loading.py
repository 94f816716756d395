"""Load a verifier (zoo name or Hugging Face folder) and drafts around it, for the fast path,
distillation, auditing and benchmarks."""

from __future__ import annotations

from thrifty.errors import ConfigError

DTYPES = ("float32", "bfloat16", "float16")


def torch_dtype(name: str):
    import torch

    if name not in DTYPES:
        raise ConfigError(f"dtype must be one of {list(DTYPES)}; got {name!r}")
    return getattr(torch, name)


def load_hf(model: str, *, device, dtype):
    """(model, tokenizer, name) of a verifier given by zoo name or Hugging Face folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .zoo import resolve

    where = resolve(model)
    if where.kind != "hf":
        raise ConfigError(f"{model!r} is a thrifty draft, not a verifier; give the verifier's "
                          f"zoo name or Hugging Face folder")
    lm = AutoModelForCausalLM.from_pretrained(where.path, dtype=dtype).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(where.path)
    return lm, tokenizer, model


def load_draft_named(model: str, verifier_model, *, device=None, dtype=None):
    """A draft given by zoo name or folder: a thrifty draft around ``verifier_model``'s
    embedding, or any Hugging Face causal LM folder."""
    from transformers import AutoModelForCausalLM

    from .drafts import load_draft
    from .zoo import resolve

    where = resolve(model)
    if where.kind == "draft":
        return load_draft(where.path, verifier_model, device=device, dtype=dtype)
    emb = verifier_model.get_input_embeddings().weight
    return AutoModelForCausalLM.from_pretrained(where.path, dtype=dtype or emb.dtype).to(
        device or emb.device).eval()
