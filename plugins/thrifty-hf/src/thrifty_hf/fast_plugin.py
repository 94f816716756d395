"""Registers ``hf-fast``: the static-cache, CUDA-graph verifier and draft (:mod:`.fast`).

Same outputs as ``hf`` for the families :mod:`.generic` lists (and refusal at load for the
rest); on CUDA each step is a graph replay instead of hundreds of kernel launches. Nothing heavy
is imported here.
"""

from __future__ import annotations

from thrifty import hookimpl
from thrifty.records import REQUIRED, DraftModelSpec, Option, VerifierSpec

from .export import engine_settings
from .fast import TREES
from .plugin import _common


def _options(model_default, model_help: str) -> dict[str, Option]:
    return {
        **_common(model_default, model_help),
        "max_len": Option(int, 1024, "static cache slots per row (prompt + output + lookahead)"),
        "graphs": Option(bool, True, "replay CUDA graphs on CUDA (False: eager static forward)"),
        "body": Option(str, "auto", "static forward: auto (the fused Llama body where its "
                                    "allow-list holds, else the model's own modules), fused or "
                                    "generic"),
        "compile": Option(bool, False, "torch.compile the static forward before graph capture "
                                       "(fewer, fused kernels; compiles once per step shape; a "
                                       "draft's trees=expand compiles whole)"),
    }


def make_fast_verifier(model="smollm2-135m", device="auto", dtype="auto", max_len=1024,
                       graphs=True, body="auto", compile=False):
    from .fast import FastVerifier
    from .models import load_verifier, resolve_device, resolve_dtype

    dev = resolve_device(device)
    lm, tokenizer = load_verifier(model, dev, resolve_dtype(dtype, dev))
    return FastVerifier(lm, tokenizer, name=f"hf-fast:{model}", max_len=max_len,
                        graphs=graphs and dev.type == "cuda", body=body, compile=compile)


def make_fast_draft(verifier, model, device="auto", dtype="auto", max_len=1024, graphs=True,
                    body="auto", compile=False, trees="siblings", vocab=0):
    from thrifty.errors import IncompatibleModelsError

    from .fast import fast_draft
    from .models import load_draft_for, resolve_device, resolve_dtype
    from .ranking import proposable_for

    base = getattr(verifier, "model", None)
    if base is None or not hasattr(base, "get_input_embeddings"):
        raise IncompatibleModelsError(
            f"the hf-fast draft shares its verifier's embedding, so the verifier must be 'hf' "
            f"or 'hf-fast'; {getattr(verifier, 'name', verifier)!r} is neither")
    emb = base.get_input_embeddings().weight
    dev = emb.device if device == "auto" else resolve_device(device)
    dt = emb.dtype if dtype == "auto" else resolve_dtype(dtype, dev)
    draft = load_draft_for(verifier, model, dev, dt)
    return fast_draft(draft, name=f"hf-fast:{model}", max_len=max_len,
                      graphs=graphs and dev.type == "cuda", body=body, compile=compile,
                      trees=trees, vocab=proposable_for(model, int(draft.config.vocab_size),
                                                        vocab))


@hookimpl
def thrifty_verifiers():
    return [VerifierSpec(
        name="hf-fast", factory=make_fast_verifier,
        description="HF causal LM of a tested family (Llama, Mistral, Qwen2/3, Gemma 2/3, "
                    "Phi-3, GPT-NeoX, Qwen2-MoE, Mixtral) on a static KV cache replayed as "
                    "CUDA graphs (same outputs as 'hf', far less per-pass overhead on a GPU); "
                    "other models are refused at load",
        options=_options("smollm2-135m", "zoo name or Hugging Face causal-LM folder"))]


@hookimpl
def thrifty_draft_models():
    return [DraftModelSpec(
        name="hf-fast", factory=make_fast_draft,
        description="a thrifty-distilled draft (or HF causal LM of a tested family) on a "
                    "static KV cache replayed as CUDA graphs",
        options={**_options(REQUIRED, "zoo draft name (smollm2-draft-l1, ...) or folder"),
                 "trees": Option(str, "siblings", "how the draft grows a token tree: siblings "
                                 "(its chain with runners-up as leaves) or expand (the "
                                 "likeliest nodes of each depth grown further, EAGLE-2)",
                                 choices=TREES),
                 "vocab": Option(int, 0, "propose only the N tokens most frequent in the "
                                 "draft's token ranking (thrifty rank-tokens; its head, logits "
                                 "and argmax or top-k then cover N tokens, not the whole "
                                 "vocabulary; verification is unchanged); 0: every token")},
        export=engine_settings)]
