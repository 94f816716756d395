"""Draft models distilled for one verifier: the module that runs them and the format on disk.

A draft shares its verifier's token embedding and LM head (for SmolLM2 the two are one tied
matrix of 49,152 x 576 = 28 M parameters, far more than a draft's own layers), so a draft file
holds only what is its own and is rebuilt around the verifier's embedding when loaded.

A draft is built from the verifier's own family: its layers are the verifier's decoder-layer
type (Qwen2's qkv biases, Qwen3's q/k norms, Gemma's (1+w) norms and scaled embedding, Phi-3's
fused projections, GPT-NeoX's parallel residual, an MoE's experts, ...), because its inner
model is the family's own base model (``AutoModel.from_config`` of the verifier's config with
``num_hidden_layers`` = the draft's depth). Nothing of a family is re-implemented here, so
every norm, bias and rotary detail is the family's own, and ``--init select`` copies verifier
layers key for key. Architecture (``ThriftyDraftForCausalLM``)::

    ids -> verifier embedding [E] -> proj_in [E -> W]? -> family base model, n layers [W]
        (its own final norm) -> proj_out [W -> E]? -> verifier LM head (+ the family's
        final logit soft-capping) -> logits

``proj_in``/``proj_out`` exist only when the draft's width W differs from the verifier's E: that
is how a shallow-and-wide (W = 2E) or deep-and-narrow (W = E/2) draft reuses the shared
embedding; the narrower or wider layers are the same family's, at W.

A *feature draft* (``thrifty_features`` in its config; EAGLE, Li et al. 2024) also reads the
verifier's final hidden state, the vector its LM head turns into logits::

    (token x_j, verifier feature f_{j-1}) -> fc [2E -> W] -> layers -> final norm -> proj_out?
        -> predicted feature f_j -> verifier LM head -> logits for x_{j+1}

The verifier has already computed f for every token it scored, so the draft starts each
proposal from the verifier's own view of the text instead of re-deriving it from tokens with a
layer or two; after its first proposal it feeds its own predicted features back in. That is
why one layer can agree with 30 far more often than a token-only draft of the same cost.

The module is a Hugging Face ``PreTrainedModel`` with the usual causal-LM forward
(``input_ids, attention_mask, position_ids``, the KV cache, ``use_cache`` -> ``.logits`` and the
cache, under the name of :func:`~thrifty_hf.cached.cache_name`), so the HF adapter, ``generate``
and transformers' assisted generation can all drive it; :func:`standalone` turns a token draft
into the family's own ``*ForCausalLM`` with the embedding and head inside, which loads without
thrifty.

A draft directory holds:

``thrifty.json``
    format version, the verifier it was made for (name, vocabulary, width, depth), the
    architecture (width, depth, how layers were initialised), the exact ``thrifty distill``
    command line and the training statistics.
``config.json``
    the verifier family's configuration of the draft's own layers (``model_type`` of the
    family, ``hidden_size`` = W, ``num_hidden_layers`` = depth) plus ``thrifty_embed_size`` = E
    and ``thrifty_features``.
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

FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3", "gpt_neox",
            "qwen2_moe", "mixtral")
"""Verifier families a draft is built from (``model_type``), each checked by the tests: a draft
of all the verifier's layers, copied, computes the verifier's own logits. A family outside the
list may keep its logits in a place the draft does not know of (a scale in its LM-head class,
say), so it is refused rather than distilled into a draft that is wrong without a word."""

_CLASS = None


def check_family(config) -> None:
    """Refuse a verifier whose family is not in :data:`FAMILIES`, naming it and the way out."""
    family = getattr(config, "model_type", None)
    if family not in FAMILIES:
        raise IncompatibleModelsError(
            f"thrifty distill builds drafts from the verifier's own layers for the families "
            f"{', '.join(FAMILIES)}; this verifier is {family!r} "
            f"({', '.join(getattr(config, 'architectures', None) or ['no architecture'])}). "
            f"Use an existing Hugging Face model of its tokenizer as the draft (draft 'hf', "
            f"model = its folder) instead")


def draft_class():
    """The ``ThriftyDraftForCausalLM`` class (built on first use: it imports transformers)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _build_class()
    return _CLASS


def soft_cap(config, logits):
    """The family's final-logit soft-capping (Gemma 2/3: ``cap * tanh(logits / cap)``), applied
    where the family's ``*ForCausalLM`` applies it: after the LM head."""
    import torch

    cap = getattr(config, "final_logit_softcapping", None)
    return logits if cap is None else torch.tanh(logits / cap) * cap


def _unchosen(config) -> None:
    """Clear the attention and experts implementations a model class chose for ``config``
    (the verifier's, or this draft class's): the family's base model then chooses its own, as
    from a fresh config (Gemma 2 takes no SDPA; this class's generic choice would fail it)."""
    for key in ("_attn_implementation_internal", "_experts_implementation_internal"):
        if hasattr(config, key):
            setattr(config, key, None)


def layer_list(base) -> tuple[str, Any]:
    """(name, ModuleList) of a base model's decoder layers: the outermost list of
    ``num_hidden_layers`` modules (``layers`` in most families; outermost, so that a list of
    as many experts inside a layer is never taken for it)."""
    from torch import nn

    n = base.config.num_hidden_layers
    found = [(name, m) for name, m in base.named_modules()
             if isinstance(m, nn.ModuleList) and len(m) == n]
    depth = min((name.count(".") for name, _ in found), default=0)
    found = [(name, m) for name, m in found if name.count(".") == depth]
    if len(found) != 1:
        raise ModelFormatError(f"cannot tell the decoder layers of {type(base).__name__}: "
                               f"{len(found)} module lists of {n}")
    return found[0]


def _build_class():
    import torch
    from torch import nn
    from transformers import AutoModel, GenerationMixin, PretrainedConfig, PreTrainedModel
    from transformers.modeling_outputs import CausalLMOutputWithPast

    from .cached import cache_name

    cache_key = cache_name()  # the adapters and generate run drafts, and neither warns

    class ThriftyDraftForCausalLM(PreTrainedModel, GenerationMixin):
        """A few of the verifier family's layers of width W around its embedding of width E.

        ``model`` is the family's base model (``Qwen2Model``, ``GPTNeoXModel``, ...); its input
        embedding and this module's ``lm_head`` start as placeholders, and
        :func:`attach_embedding` puts the verifier's in both (one tensor, not a copy, when
        device and dtype agree).
        """

        config_class = PretrainedConfig
        base_model_prefix = "model"
        _supports_sdpa = True
        _supports_flash_attn = True
        _supports_flex_attn = True
        _supports_attention_backend = True

        def __init__(self, config) -> None:
            super().__init__(config)
            embed, width = config.thrifty_embed_size, config.hidden_size
            # The family's base model must not allocate a [V, W] embedding of its own.
            inner = copy.deepcopy(config)
            inner.vocab_size, inner.pad_token_id = 1, None
            inner.architectures = None
            _unchosen(inner)
            self.model = AutoModel.from_config(inner)
            features = bool(getattr(config, "thrifty_features", False))
            self.fc = nn.Linear(2 * embed, width, bias=False) if features else None
            self.proj_in = nn.Linear(embed, width, bias=False) \
                if width != embed and not features else None
            self.proj_out = nn.Linear(width, embed, bias=False) if width != embed else None
            self.lm_head = nn.Linear(embed, 1, bias=False)
            self.post_init()

        def _init_weights(self, module) -> None:
            """Nothing: the family's base model initialised its own layers (Gemma's norms
            start at 0, Llama's at 1), and ``init_draft`` sets the projections."""

        def get_input_embeddings(self):
            return self.model.get_input_embeddings()

        def set_input_embeddings(self, value) -> None:
            self.model.set_input_embeddings(value)

        def get_output_embeddings(self):
            return self.lm_head

        def hidden(self, input_ids, features=None, past_key_values=None, **kwargs):
            """Final hidden states at the verifier's width E, and the layers' cache.

            ``features`` [B, T, E] (feature drafts only): the verifier's feature of the token
            before each input token (zeros before the first)."""
            x = self.get_input_embeddings()(input_ids)
            if self.fc is not None:
                if features is None:
                    raise ModelFormatError(
                        "this is a feature draft: it reads the verifier's hidden states, which "
                        "only the 'hf-fast' verifier and draft pass on (they run on the CPU too)")
                x = self.fc(torch.cat([x, features.to(x.dtype)], -1))
            elif self.proj_in is not None:
                x = self.proj_in(x)
            if past_key_values is not None:
                kwargs[cache_key] = past_key_values
            out = self.model(inputs_embeds=x, **kwargs)
            h = out.last_hidden_state
            if self.proj_out is not None:
                h = self.proj_out(h)
            return h, getattr(out, cache_key)

        def forward(self, input_ids=None, attention_mask=None, position_ids=None,
                    past_key_values=None, use_cache=None, logits_to_keep=0, labels=None,
                    features=None, **kwargs):
            kwargs.pop("inputs_embeds", None)
            if past_key_values is None:  # transformers from 5.2x passes it as `cache`
                past_key_values = kwargs.pop("cache", None)
            h, cache = self.hidden(input_ids, features, attention_mask=attention_mask,
                                   position_ids=position_ids, past_key_values=past_key_values,
                                   use_cache=use_cache, **kwargs)
            keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) \
                else logits_to_keep
            logits = self.lm_head(h[:, keep, :])
            return CausalLMOutputWithPast(logits=logits, **{cache_key: cache})

    ThriftyDraftForCausalLM.__module__ = __name__
    return ThriftyDraftForCausalLM


def draft_config(verifier_config, *, width: int, depth: int, intermediate_size: int | None = None,
                 head_dim: int | None = None, num_kv_heads: int | None = None,
                 features: bool = False, layers: list[int] | None = None):
    """The verifier family's config for a draft of ``depth`` layers at ``width``
    (``features``: a feature draft, which also reads the verifier's hidden states).

    ``layers``: the verifier layers the draft's layers stand for (default: evenly spread), so
    that what differs by layer (Gemma's local and global attention, Qwen2-MoE's dense layers)
    follows them. Heads keep the verifier's head size (so W = 2E doubles the heads); the MLP
    and expert sizes keep the verifier's ratio to width unless ``intermediate_size`` is given.
    """
    check_family(verifier_config)
    v = verifier_config
    embed, n = v.hidden_size, v.num_hidden_layers
    layers = list(layers) if layers is not None else select_layers(n, depth)
    cfg = copy.deepcopy(v)
    cfg.num_hidden_layers = depth
    _unchosen(cfg)
    for key, value in v.to_dict().items():  # per-layer lists follow the layers they stand for
        if isinstance(value, list) and len(value) == n and key != "mlp_only_layers":
            setattr(cfg, key, [value[i] for i in layers])
    if getattr(v, "mlp_only_layers", None) is not None:  # Qwen2-MoE: which layers are dense
        step = getattr(v, "decoder_sparse_step", 1)
        dense = [i in v.mlp_only_layers or (i + 1) % step != 0 for i in layers]
        cfg.mlp_only_layers = [j for j, d in enumerate(dense) if d]
        cfg.decoder_sparse_step = 1
    hd = head_dim or getattr(v, "head_dim", None) or embed // v.num_attention_heads
    if width != embed or head_dim or num_kv_heads or intermediate_size:
        if width % hd:
            raise ModelFormatError(f"draft width {width} is not a multiple of the head size "
                                   f"{hd}; pick a width divisible by {hd} or pass head_dim")
        heads = width // hd
        group = v.num_attention_heads // getattr(v, "num_key_value_heads", v.num_attention_heads)
        kv = num_kv_heads or max(1, heads // group)
        if heads % kv:
            raise ModelFormatError(f"{heads} attention heads cannot be split into {kv} KV groups")
        ratio = intermediate_size / v.intermediate_size if intermediate_size else width / embed
        cfg.hidden_size, cfg.num_attention_heads = width, heads
        if hasattr(v, "num_key_value_heads"):
            cfg.num_key_value_heads = kv
        if "head_dim" in v.to_dict() or head_dim:
            cfg.head_dim = hd
        for key in ("intermediate_size", "moe_intermediate_size",
                    "shared_expert_intermediate_size"):
            if getattr(v, key, None):
                setattr(cfg, key, round(getattr(v, key) * ratio))
    cfg.tie_word_embeddings = False
    cfg.thrifty_embed_size = embed
    cfg.thrifty_features = bool(features)
    cfg.architectures = ["ThriftyDraftForCausalLM"]
    return cfg


def select_layers(n_verifier: int, depth: int) -> list[int]:
    """``depth`` verifier layers spread evenly, first and last included."""
    if depth == 1:
        return [0]
    return [round(i * (n_verifier - 1) / (depth - 1)) for i in range(depth)]


def new_draft(config):
    """An untrained draft (placeholder embedding; call :func:`attach_embedding`)."""
    return draft_class()(config)


def _shared_copy(module, ref):
    """``module`` (the verifier's embedding or LM head, whatever its class: Gemma's scales its
    output) as the draft's own module object whose parameters are the verifier's tensors when
    device and dtype agree with ``ref``, else frozen converted copies. Buffers (a scale) are
    copied; the verifier's module is never moved or changed."""
    import torch
    from torch import nn

    def share(t):
        if t.device == ref.device and t.dtype == ref.dtype:
            return t if isinstance(t, nn.Parameter) else nn.Parameter(t, requires_grad=False)
        return nn.Parameter(t.detach().to(ref.device, ref.dtype), requires_grad=False)

    memo = {id(p): share(p) for p in module.parameters()}
    with torch.no_grad():
        clone = copy.deepcopy(module, memo)
    for name, buf in list(clone.named_buffers(recurse=False)):
        setattr(clone, name, buf.to(ref.device))
    return clone


def attach_embedding(draft, verifier_model) -> None:
    """Make the verifier's input embedding and LM head the draft's.

    The tensors are shared when device and dtype agree (no extra memory); otherwise the draft
    gets a converted, frozen copy. Either way they are never trained by the draft.
    """
    emb_module = verifier_model.get_input_embeddings()
    emb = emb_module.weight
    head_module = verifier_model.get_output_embeddings()
    ref = next(p for n, p in draft.named_parameters() if n not in shared_names(draft))
    e_embed, e_draft = emb.shape[1], draft.config.thrifty_embed_size
    if emb.shape[0] != draft.config.vocab_size or e_embed != e_draft:
        raise IncompatibleModelsError(
            f"draft expects a verifier embedding of {draft.config.vocab_size} x {e_draft}, the "
            f"verifier has {tuple(emb.shape)}; load the draft with the verifier it was distilled "
            f"for (see thrifty.json) or distil a new one with `thrifty distill`")
    embed = _shared_copy(emb_module, ref)
    if head_module is None or head_module.weight is emb:  # tied: one tensor for both
        from torch import nn

        head = nn.Linear(e_embed, emb.shape[0], bias=False, device="meta")
        head.weight = embed.weight
    else:
        head = _shared_copy(head_module, ref)
    if getattr(draft.config, "final_logit_softcapping", None) is not None:
        # the family's head is the matrix *and* the cap: on the module itself, every caller of
        # the draft's head (its forward, distill, the fast path) gets the family's logits
        head.register_forward_hook(lambda module, args, out: soft_cap(draft.config, out))
    draft.set_input_embeddings(embed)
    draft.lm_head = head


def shared_names(draft) -> set[str]:
    """State-dict keys of what the draft shares with its verifier (embedding, LM head)."""
    prefixes = [name + "." for name, m in draft.named_modules()
                if m is draft.get_input_embeddings() or m is draft.lm_head]
    return {k for k in draft.state_dict() if any(k.startswith(p) for p in prefixes)}


def own_state(draft) -> dict:
    """The draft's own parameters (everything but the shared embedding and LM head)."""
    shared = shared_names(draft)
    return {k: v for k, v in draft.state_dict().items() if k not in shared}


def save_draft(draft, directory, *, verifier: dict, architecture: dict, command: str,
               training: dict) -> Path:
    """Write ``draft`` in the draft format (fp16 weights, no shared embedding). Each file is
    replaced atomically and durably, the manifest last: a draft folder that a crash or a full
    disk interrupts keeps its previous complete files (distill saves over its draft as it
    trains)."""
    from safetensors.torch import save_file

    from thrifty.atomic import atomic_path, write_atomically

    out = Path(directory)
    state = {k: v.detach().to("cpu").half().contiguous() for k, v in own_state(draft).items()}
    with atomic_path(out / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    cfg = draft.config.to_dict()
    cfg.pop("torch_dtype", None), cfg.pop("dtype", None)
    write_atomically(out / CONFIG, json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    manifest = {"format": FORMAT_VERSION, "verifier": verifier, "architecture": architecture,
                "command": command, "training": training,
                "parameters": sum(v.numel() for v in state.values())}
    write_atomically(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return out


def _json_object(path: Path) -> dict:
    """A JSON object from a draft's file, or a :class:`ModelFormatError` naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path} is not valid JSON ({exc}); re-create the draft with "
                               f"`thrifty distill`") from exc
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path} holds a JSON {type(data).__name__}, not an object; "
                               f"re-create the draft with `thrifty distill`")
    return data


def read_manifest(directory) -> dict:
    """``thrifty.json`` of a draft directory, checked for the format version."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ModelNotFoundError(f"{directory} is not a thrifty draft: it has no {MANIFEST}; "
                                 f"make one with `thrifty distill`")
    manifest = _json_object(path)
    if manifest.get("format") != FORMAT_VERSION:
        raise ModelFormatError(f"{path} has format {manifest.get('format')!r}; this thrifty "
                               f"reads format {FORMAT_VERSION}. Re-distil the draft")
    if not isinstance(manifest.get("verifier"), dict):
        raise ModelFormatError(f"{path} lacks the 'verifier' it was made for; re-create the "
                               f"draft with `thrifty distill`")
    return manifest


def read_config(directory):
    """The draft's ``config.json`` as its family's config class, checked for what a draft
    needs; a :class:`ModelFormatError` naming the file otherwise."""
    from transformers import CONFIG_MAPPING

    path = Path(directory) / CONFIG
    raw = _json_object(path)
    family = raw.get("model_type")
    if family not in FAMILIES:
        raise ModelFormatError(f"{path} has model_type {family!r}; a thrifty draft is one of "
                               f"{', '.join(FAMILIES)}. Re-create the draft")
    embed = raw.get("thrifty_embed_size")
    if not isinstance(embed, int) or embed < 1:
        raise ModelFormatError(f"{path} lacks a positive integer thrifty_embed_size (the "
                               f"verifier's width); re-create the draft")
    try:
        config = CONFIG_MAPPING[family].from_dict(raw)
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelFormatError(f"{path} is not a valid {family} configuration ({exc}); "
                               f"re-create the draft") from exc
    config.thrifty_embed_size = embed
    config.thrifty_features = bool(raw.get("thrifty_features", False))
    return config


def read_weights(path: Path) -> dict:
    """The tensors of a draft's safetensors file, or a :class:`ModelFormatError` naming it
    (truncated, garbage, or not safetensors at all)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFormatError(f"{path} is not a readable safetensors file ({exc}); it is "
                               f"truncated or damaged: re-create the draft") from exc


def load_draft(directory, verifier_model, device=None, dtype=None):
    """Load a draft directory around ``verifier_model`` (a Hugging Face causal LM).

    The draft's own weights go to ``device``/``dtype`` (default: the verifier's); its embedding
    and LM head are the verifier's. Raises :class:`IncompatibleModelsError` when the verifier's
    vocabulary or width is not the one the draft was made for.
    """
    import torch

    directory = Path(directory)
    manifest = read_manifest(directory)
    for name in (CONFIG, WEIGHTS):
        if not (directory / name).is_file():
            raise ModelNotFoundError(f"draft {directory} lacks {name}; re-create it with "
                                     f"`thrifty distill`")
    config = read_config(directory)
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
    state = read_weights(directory / WEIGHTS)
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


def standalone(draft):
    """A token draft as its family's own ``*ForCausalLM`` (float32, on the CPU) with the
    verifier's embedding and LM head inside: a model that ``save_pretrained`` writes and
    ``AutoModelForCausalLM.from_pretrained`` loads without thrifty, computing the draft's
    logits. Only a draft at the verifier's width has that form (``proj_in``/``proj_out`` sit
    between the embedding and the layers, where a plain checkpoint has nothing), and a feature
    draft reads the verifier's hidden states, which no plain causal LM is given."""
    import torch
    from transformers import AutoModelForCausalLM

    if draft.fc is not None or draft.proj_in is not None or draft.proj_out is not None:
        kind = "a feature draft" if draft.fc is not None else \
            f"width {draft.config.hidden_size}, not the verifier's {draft.config.thrifty_embed_size}"
        raise ModelFormatError(
            f"this draft ({kind}) has no plain Hugging Face form: only a token draft at the "
            f"verifier's width does. Distil one with `thrifty distill --width "
            f"{draft.config.thrifty_embed_size}` (no --features)")
    cfg = copy.deepcopy(draft.config)
    for key in ("thrifty_embed_size", "thrifty_features"):
        delattr(cfg, key)
    cfg.architectures = None
    cfg.tie_word_embeddings = draft.lm_head.weight is draft.get_input_embeddings().weight
    _unchosen(cfg)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():
        # the base model (embedding included) key for key, then the head, whatever the family
        # names them (GPT-NeoX: gpt_neox, embed_out)
        model.base_model.load_state_dict(
            {k: v.detach().to("cpu", torch.float32) for k, v in draft.model.state_dict().items()})
        if not cfg.tie_word_embeddings:
            model.get_output_embeddings().load_state_dict(
                {k: v.detach().to("cpu", torch.float32)
                 for k, v in draft.lm_head.state_dict().items()})
    return model.eval()


def draft_bytes(directory) -> int:
    """Bytes of a draft's files (what the 64 MB budget of the shipped drafts counts)."""
    return sum(f.stat().st_size for f in Path(directory).iterdir() if f.is_file())
