"""Load drafts by name around a verifier's model, for the fast path and benchmarks."""

from __future__ import annotations


def load_draft_named(model: str, verifier_model, *, device=None, dtype=None):
    """A draft given by zoo name or folder: a thrifty draft around ``verifier_model``'s
    embedding, or any Hugging Face causal LM folder."""
    from .drafts import load_draft
    from .models import load_hf
    from .zoo import resolve

    where = resolve(model)
    if where.kind == "draft":
        return load_draft(where.path, verifier_model, device=device, dtype=dtype)
    emb = verifier_model.get_input_embeddings().weight
    return load_hf(where.path, device or emb.device, dtype or emb.dtype, tokenizer=False)[0]
