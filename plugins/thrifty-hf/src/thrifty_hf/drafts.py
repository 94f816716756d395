"""Draft models distilled for one verifier: the module that runs them and the format on disk.

A draft shares its verifier's token embedding and LM head (for SmolLM2 the two are one tied
matrix of 49,152 x 576 = 28 M parameters, far more than a draft's own layers), so a draft file
holds only what is its own and is rebuilt around the verifier's embedding when loaded.

Architecture (``ThriftyDraftForCausalLM``)::

    ids -> verifier embedding [E] -> proj_in [E -> W]? -> n Llama decoder layers [W]
        -> RMSNorm [W] -> proj_out [W -> E]? -> verifier LM head -> logits

``proj_in``/``proj_out`` exist only when the draft's width W differs from the verifier's E: that
is how a shallow-and-wide (W = 2E) or deep-and-narrow (W = E/2) draft reuses the shared
embedding.

A *feature draft* (``thrifty_features`` in its config; EAGLE, Li et al. 2024) also reads the
verifier's final hidden state, the vector its LM head turns into logits::

    (token x_j, verifier feature f_{j-1}) -> fc [2E -> W] -> layers -> RMSNorm -> proj_out?
        -> predicted feature f_j -> verifier LM head -> logits for x_{j+1}

The verifier has already computed f for every token it scored, so the draft starts each
proposal from the verifier's own view of the text instead of re-deriving it from tokens with a
layer or two; after its first proposal it feeds its own predicted features back in. That is
why one layer can agree with 30 far more often than a token-only draft of the same cost.

The module is a Hugging Face ``PreTrainedModel`` with the usual causal-LM forward
(``input_ids, attention_mask, position_ids``, the KV cache, ``use_cache`` -> ``.logits`` and the
cache, under the name of :func:`~thrifty_hf.cached.cache_name`), so the HF adapter, ``generate``
and transformers' assisted generation can all drive it.

A draft directory holds:

``thrifty.json``
    format version, the verifier it was made for (name, vocabulary, width, depth), the
    architecture (width, depth, how layers were initialised), the exact ``thrifty distill``
    command line and the training statistics.
``config.json``
    the Llama configuration of the draft's own layers (``hidden_size`` = W) plus
    ``thrifty_embed_size`` = E.
``model.safetensors``
    the draft's own weights in float16, without the shared embedding and LM head.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from thrifty.errors import IncompatibleModelsError, ModelFormatError, ModelNotFoundError

FORMAT_VERSION = 1
MANIFEST = "thrifty.json"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
SHARED_KEYS = ("embed_tokens.weight", "lm_head.weight")
"""Parameters that belong to the verifier and are never written to a draft file."""

_CLASS = None


def draft_class():
    """The ``ThriftyDraftForCausalLM`` class (built on first use: it imports transformers)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _build_class()
    return _CLASS


def _build_class():
    import torch
    from torch import nn
    from transformers import GenerationMixin
    from transformers.modeling_outputs import CausalLMOutputWithPast
    from transformers.models.llama.modeling_llama import LlamaModel, LlamaPreTrainedModel

    from .cached import cache_name

    class ThriftyDraftForCausalLM(LlamaPreTrainedModel, GenerationMixin):
        """A few Llama layers of width W around a verifier's embedding of width E.

        ``embed_tokens`` and ``lm_head`` start as placeholders; :func:`attach_embedding` puts
        the verifier's matrix in both (one tensor, not a copy, when device and dtype agree).
        """

        def __init__(self, config) -> None:
            super().__init__(config)
            embed, width = config.thrifty_embed_size, config.hidden_size
            # The layers' own LlamaModel must not allocate a [V, W] embedding of its own.
            inner = copy.deepcopy(config)
            inner.vocab_size, inner.pad_token_id = 1, None
            self.model = LlamaModel(inner)
            self.model.embed_tokens = None
            features = bool(getattr(config, "thrifty_features", False))
            self.fc = nn.Linear(2 * embed, width, bias=False) if features else None
            self.proj_in = nn.Linear(embed, width, bias=False) \
                if width != embed and not features else None
            self.proj_out = nn.Linear(width, embed, bias=False) if width != embed else None
            self.embed_tokens = nn.Embedding(1, embed)
            self.lm_head = nn.Linear(embed, 1, bias=False)
            self.post_init()

        def get_input_embeddings(self):
            return self.embed_tokens

        def set_input_embeddings(self, value) -> None:
            self.embed_tokens = value

        def get_output_embeddings(self):
            return self.lm_head

        def hidden(self, input_ids, features=None, **kwargs):
            """Final hidden states at the verifier's width E, and the layers' cache.

            ``features`` [B, T, E] (feature drafts only): the verifier's feature of the token
            before each input token (zeros before the first)."""
            x = self.embed_tokens(input_ids)
            if self.fc is not None:
                if features is None:
                    raise ModelFormatError(
                        "this is a feature draft: it reads the verifier's hidden states, which "
                        "only the 'hf-fast' verifier and draft pass on (they run on the CPU too)")
                x = self.fc(torch.cat([x, features.to(x.dtype)], -1))
            elif self.proj_in is not None:
                x = self.proj_in(x)
            out = self.model(inputs_embeds=x, **kwargs)
            h = out.last_hidden_state
            if self.proj_out is not None:
                h = self.proj_out(h)
            return h, getattr(out, cache_name())

        def forward(self, input_ids=None, attention_mask=None, position_ids=None,
                    use_cache=None, logits_to_keep=0, labels=None, features=None, **kwargs):
            """The causal-LM forward; the KV cache passes through ``kwargs`` to the layers
            under whichever name this transformers uses (:func:`cache_name`)."""
            kwargs.pop("inputs_embeds", None)
            h, cache = self.hidden(input_ids, features, attention_mask=attention_mask,
                                   position_ids=position_ids, use_cache=use_cache, **kwargs)
            keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) \
                else logits_to_keep
            logits = self.lm_head(h[:, keep, :])
            return CausalLMOutputWithPast(logits=logits, **{cache_name(): cache})

    ThriftyDraftForCausalLM.__module__ = __name__
    return ThriftyDraftForCausalLM


def draft_config(verifier_config, *, width: int, depth: int, intermediate_size: int | None = None,
                 head_dim: int | None = None, num_kv_heads: int | None = None,
                 features: bool = False):
    """Llama config of a draft of ``depth`` layers at ``width`` for ``verifier_config``
    (``features``: a feature draft, which also reads the verifier's hidden states).

    Heads keep the verifier's head size (so W = 2E doubles the heads); the MLP keeps the
    verifier's ratio of intermediate size to width unless ``intermediate_size`` is given.
    """
    from transformers import LlamaConfig

    v = verifier_config
    embed = v.hidden_size
    hd = head_dim or getattr(v, "head_dim", None) or embed // v.num_attention_heads
    if width % hd:
        raise ModelFormatError(f"draft width {width} is not a multiple of the head size {hd}; "
                               f"pick a width divisible by {hd} or pass head_dim")
    heads = width // hd
    group = v.num_attention_heads // v.num_key_value_heads
    kv = num_kv_heads or max(1, heads // group)
    if heads % kv:
        raise ModelFormatError(f"{heads} attention heads cannot be split into {kv} KV groups")
    inter = intermediate_size or round(v.intermediate_size * width / embed)
    cfg = LlamaConfig(
        vocab_size=v.vocab_size, hidden_size=width, intermediate_size=inter,
        num_hidden_layers=depth, num_attention_heads=heads, num_key_value_heads=kv,
        head_dim=hd, hidden_act=v.hidden_act, max_position_embeddings=v.max_position_embeddings,
        rms_norm_eps=v.rms_norm_eps, rope_parameters=copy.deepcopy(v.rope_parameters),
        attention_bias=False, mlp_bias=False, tie_word_embeddings=False,
        bos_token_id=v.bos_token_id, eos_token_id=v.eos_token_id, pad_token_id=v.pad_token_id,
    )
    cfg.thrifty_embed_size = embed
    cfg.thrifty_features = bool(features)
    cfg.architectures = ["ThriftyDraftForCausalLM"]
    return cfg


def new_draft(config):
    """An untrained draft (placeholder embedding; call :func:`attach_embedding`)."""
    return draft_class()(config)


def attach_embedding(draft, verifier_model) -> None:
    """Make the verifier's input embedding and LM head the draft's.

    The tensors are shared when device and dtype agree (no extra memory); otherwise the draft
    gets a converted, frozen copy. Either way they are never trained by the draft.
    """
    import torch
    from torch import nn

    emb = verifier_model.get_input_embeddings().weight
    head = verifier_model.get_output_embeddings()
    head = emb if head is None else head.weight
    ref = next(p for n, p in draft.named_parameters() if n not in SHARED_KEYS)
    e_embed, e_draft = emb.shape[1], draft.config.thrifty_embed_size
    if emb.shape[0] != draft.config.vocab_size or e_embed != e_draft:
        raise IncompatibleModelsError(
            f"draft expects a verifier embedding of {draft.config.vocab_size} x {e_draft}, the "
            f"verifier has {tuple(emb.shape)}; load the draft with the verifier it was distilled "
            f"for (see thrifty.json) or distil a new one with `thrifty distill`")

    def share(t):
        if t.device == ref.device and t.dtype == ref.dtype:
            return t if isinstance(t, nn.Parameter) else nn.Parameter(t, requires_grad=False)
        return nn.Parameter(t.detach().to(ref.device, ref.dtype), requires_grad=False)

    with torch.no_grad():
        e = nn.Embedding(emb.shape[0], e_embed, device="meta")
        e.weight = share(emb)
        h = nn.Linear(e_embed, emb.shape[0], bias=False, device="meta")
        h.weight = share(head) if head is not emb else e.weight
    draft.embed_tokens, draft.lm_head = e, h


def own_state(draft) -> dict:
    """The draft's own parameters (everything but the shared embedding and LM head)."""
    return {k: v for k, v in draft.state_dict().items() if k not in SHARED_KEYS}


def save_draft(draft, directory, *, verifier: dict, architecture: dict, command: str,
               training: dict) -> Path:
    """Write ``draft`` in the draft format (fp16 weights, no shared embedding)."""
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").half().contiguous() for k, v in own_state(draft).items()}
    save_file(state, str(out / WEIGHTS), metadata={"format": "pt"})
    cfg = draft.config.to_dict()
    cfg.pop("torch_dtype", None), cfg.pop("dtype", None)
    (out / CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    manifest = {"format": FORMAT_VERSION, "verifier": verifier, "architecture": architecture,
                "command": command, "training": training,
                "parameters": sum(v.numel() for v in state.values())}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def read_manifest(directory) -> dict:
    """``thrifty.json`` of a draft directory, checked for the format version."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ModelNotFoundError(f"{directory} is not a thrifty draft: it has no {MANIFEST}; "
                                 f"make one with `thrifty distill`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{path} is not valid JSON ({exc}); re-create the draft") from exc
    if manifest.get("format") != FORMAT_VERSION:
        raise ModelFormatError(f"{path} has format {manifest.get('format')!r}; this thrifty "
                               f"reads format {FORMAT_VERSION}. Re-distil the draft")
    return manifest


def load_draft(directory, verifier_model, device=None, dtype=None):
    """Load a draft directory around ``verifier_model`` (a Hugging Face causal LM).

    The draft's own weights go to ``device``/``dtype`` (default: the verifier's); its embedding
    and LM head are the verifier's. Raises :class:`IncompatibleModelsError` when the verifier's
    vocabulary or width is not the one the draft was made for.
    """
    import torch
    from safetensors.torch import load_file
    from transformers import LlamaConfig

    directory = Path(directory)
    manifest = read_manifest(directory)
    for name in (CONFIG, WEIGHTS):
        if not (directory / name).is_file():
            raise ModelNotFoundError(f"draft {directory} lacks {name}; re-create it with "
                                     f"`thrifty distill`")
    raw = json.loads((directory / CONFIG).read_text())
    config = LlamaConfig.from_dict(raw)
    config.thrifty_embed_size = raw["thrifty_embed_size"]
    config.thrifty_features = bool(raw.get("thrifty_features", False))
    vcfg = verifier_model.config
    want = manifest["verifier"]
    if vcfg.vocab_size != config.vocab_size or vcfg.hidden_size != config.thrifty_embed_size:
        raise IncompatibleModelsError(
            f"draft {directory.name} was made for {want.get('name')!r} (vocabulary "
            f"{config.vocab_size}, width {config.thrifty_embed_size}); this verifier has "
            f"vocabulary {vcfg.vocab_size}, width {vcfg.hidden_size}. Use that verifier or "
            f"distil a draft for this one with `thrifty distill`")
    emb = verifier_model.get_input_embeddings().weight
    device = torch.device(device) if device is not None else emb.device
    dtype = dtype or emb.dtype
    draft = new_draft(config)
    state = load_file(str(directory / WEIGHTS))
    expected = own_state(draft)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    bad = [k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape]
    if missing or unexpected or bad:
        raise ModelFormatError(f"{directory / WEIGHTS} does not match {CONFIG}: missing "
                               f"{missing[:4]}, unexpected {unexpected[:4]}, wrong shape "
                               f"{bad[:4]}; re-create the draft")
    draft.load_state_dict(state, strict=False)
    draft.to(device=device, dtype=dtype)
    draft.requires_grad_(False)
    attach_embedding(draft, verifier_model)
    draft.eval()
    draft.thrifty_manifest = manifest
    return draft


def weights_bytes(directory) -> int:
    """Bytes of a draft's weight file (what the 64 MB budget of the shipped drafts counts)."""
    return (Path(directory) / WEIGHTS).stat().st_size
