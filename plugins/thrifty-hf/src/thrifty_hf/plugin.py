"""Registers the ``hf`` verifier and the ``hf`` draft model.

Nothing heavy is imported here: torch and transformers load inside the factories, so
``thrifty plugins`` stays fast and works without them.
"""

from __future__ import annotations

from thrifty import hookimpl
from thrifty.records import REQUIRED, DraftModelSpec, Option, VerifierSpec

from .export import engine_settings

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")


def _common(model_default, model_help: str) -> dict[str, Option]:
    return {
        "model": Option(str, model_default, model_help),
        "device": Option(str, "auto", "where the model runs ('auto': CUDA if present)",
                         choices=DEVICES),
        "dtype": Option(str, "auto", "weights and activations ('auto': float32 on CPU, "
                                     "bfloat16 or float16 on CUDA)", choices=DTYPES),
    }


def _verifier(**options):
    from .models import make_verifier

    return make_verifier(**options)


def _draft(verifier, **options):
    from .models import make_draft

    return make_draft(verifier, **options)


@hookimpl
def thrifty_verifiers():
    return [VerifierSpec(
        name="hf",
        factory=_verifier,
        priority=10,  # the default verifier: exact for any tested family, on any device
        description="any Hugging Face causal LM (zoo name or local folder) with a ragged, "
                    "per-row rollback KV cache",
        options=_common("smollm2-135m", "zoo name (smollm2-135m) or a Hugging Face model folder"),
    )]


@hookimpl
def thrifty_draft_models():
    return [DraftModelSpec(
        name="hf",
        factory=_draft,
        description="a small Hugging Face causal LM or a thrifty-distilled draft sharing the "
                    "verifier's tokenizer",
        options=_common(REQUIRED, "zoo draft name, thrifty draft folder or Hugging Face model "
                                  "folder; 'auto' device/dtype follow the verifier"),
        export=engine_settings,
    )]
