"""The hand-written Llama body of the fast path, and the allow-list that guards it.

Why it exists beside the generic body (:mod:`thrifty_hf.generic`): it fuses q|k|v and gate|up
into one projection each, rotates q and k in one pass and normalises with one fused kernel, so
a pass launches about half the kernels of transformers' own modules. That matters for small
models on a GPU, where launches, not arithmetic, decide the speed.

Why it is fenced: it computes a Llama and nothing else. A model with biases, another activation,
another rotary scheme or a sliding window would get different logits without a word, so
:func:`fused_refusal` checks every assumption at load and the fast path takes the generic body
(transformers' own modules) for anything it names.
"""

from __future__ import annotations

FUSED_TYPES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral"}
"""Model classes (and their ``model_type``) whose forward this body reproduces."""

FUSED_ROPE = ("default", "linear", "llama3")
"""Rotary types whose whole effect is ``inv_freq`` and ``attention_scaling``, fixed at load
(``dynamic`` and ``longrope`` change them with the sequence length)."""


def rope_types(config) -> set[str]:
    """The rotary types of ``config`` (``default`` where it names none), one per layer type
    when the parameters are given per layer type (Gemma 3)."""
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None)
    if not params:
        return {"default"}
    if "rope_type" not in params and "type" not in params \
            and all(isinstance(v, dict) for v in params.values()):
        return {p.get("rope_type", p.get("type", "default")) for p in params.values()}
    return {params.get("rope_type", params.get("type", "default"))}


def fused_refusal(model, max_len: int) -> str | None:
    """Why the fused Llama body cannot run ``model`` exactly, or None when it can.

    A thrifty draft qualifies when its own layers are Llama layers; a Hugging Face model when it
    is a Llama or Mistral with no biases, SiLU, a rotary type of :data:`FUSED_ROPE`, full
    attention over the ``max_len`` slots and the plain RMSNorm and LM head."""
    name = type(model).__name__
    if name == "ThriftyDraftForCausalLM":
        inner = type(model.model).__name__
        if inner != "LlamaModel":
            return f"its layers are {inner}, not LlamaModel"
        config = model.model.config
    elif name in FUSED_TYPES:
        config = model.config
        if config.model_type != FUSED_TYPES[name]:
            return f"model_type {config.model_type!r} is not {FUSED_TYPES[name]!r}"
    else:
        return f"{name} is not one of {sorted(FUSED_TYPES)} or a thrifty draft"
    checks = [
        (getattr(config, "attention_bias", False), "attention projections carry biases"),
        (getattr(config, "mlp_bias", False), "MLP projections carry biases"),
        (getattr(config, "hidden_act", "silu") != "silu",
         f"activation {getattr(config, 'hidden_act', None)!r} is not silu"),
        (not rope_types(config) <= set(FUSED_ROPE),
         f"rotary type {'/'.join(sorted(rope_types(config)))} is not one of {FUSED_ROPE}"),
        ((getattr(config, "sliding_window", None) or max_len) < max_len,
         f"its sliding window {getattr(config, 'sliding_window', None)} is shorter than "
         f"max_len {max_len}"),
        (any(t != "full_attention" for t in getattr(config, "layer_types", None) or ()),
         "some layers are not full attention"),
        (getattr(config, "pretraining_tp", 1) not in (None, 1),
         "pretraining_tp splits its projections"),
        (getattr(config, "final_logit_softcapping", None) is not None,
         "its logits are soft-capped"),
    ]
    for failed, why in checks:
        if failed:
            return why
    return None


def _rms(x, weight, eps):
    """Llama RMSNorm as transformers computes it (normalised in float32, cast back, then
    scaled), with the normalisation as one fused kernel instead of six: two norms per layer
    were half of a pass's kernel launches. Only the float32 reduction order differs."""
    import torch

    return weight * torch.nn.functional.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def rope_tables(inv_freq, scale: float, max_len: int, heads: int, kv_heads: int, dtype):
    """Rotary tables per position and fused q|k|v head, [max_len, heads + 2 kv_heads, head_dim].

    They let one contiguous pass, ``x * cos + swap_halves(x) * sin``, rotate the q and k heads
    of a fused projection and leave its v heads as they are (cos 1, sin 0; exact). The sign of
    transformers' ``rotate_half`` (``cat(-x2, x1)``) lives in ``sin`` (``-sin`` on the first
    half), which gives the same numbers: ``(-a) * b == a * (-b)``."""
    import torch

    freqs = torch.outer(torch.arange(max_len, device=inv_freq.device, dtype=torch.float32),
                        inv_freq.float())
    emb = torch.cat((freqs, freqs), -1)
    cos, sin = ((f(emb) * scale).to(dtype) for f in (torch.cos, torch.sin))
    sin = torch.cat((-sin[:, : sin.shape[1] // 2], sin[:, sin.shape[1] // 2:]), -1)
    rotated, kept = heads + kv_heads, kv_heads
    cos = torch.cat((cos[:, None].expand(-1, rotated, -1),
                     cos.new_ones(max_len, kept, cos.shape[-1])), 1)
    sin = torch.cat((sin[:, None].expand(-1, rotated, -1),
                     sin.new_zeros(max_len, kept, sin.shape[-1])), 1)
    return cos.contiguous(), sin.contiguous()


def _swap_halves(x):
    import torch

    half = x.shape[-1] // 2
    return torch.cat((x[..., half:], x[..., :half]), -1)


def model_parts(model) -> dict:
    """The tensors of a Llama-style causal LM or thrifty draft that the fused forward uses."""
    import torch

    inner = model.model
    cfg = inner.config
    layers = []
    for layer in inner.layers:
        a, m = layer.self_attn, layer.mlp
        layers.append(dict(
            ln1=layer.input_layernorm.weight.detach(),
            ln2=layer.post_attention_layernorm.weight.detach(),
            qkv=torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).detach(),
            o=a.o_proj.weight.detach(),
            gate_up=torch.cat([m.gate_proj.weight, m.up_proj.weight]).detach(),
            down=m.down_proj.weight.detach()))
    rotary = inner.rotary_emb
    extra = {name: getattr(model, name, None) for name in ("proj_in", "proj_out", "fc")}
    return dict(
        embed=model.get_input_embeddings().weight.detach(),
        head=model.get_output_embeddings().weight.detach(),
        **{name: None if m is None else m.weight.detach() for name, m in extra.items()},
        norm=inner.norm.weight.detach(), layers=layers, eps=cfg.rms_norm_eps,
        heads=cfg.num_attention_heads, kv_heads=cfg.num_key_value_heads,
        head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
        inv_freq=rotary.inv_freq.detach().float(), rope_scale=float(rotary.attention_scaling))


def layer_halves(eps: float, heads: int, kv_heads: int, head_dim: int):
    """The two halves of a fused Llama layer around its attention, as functions of tensors
    (the layer's weights among them), so that one compiled graph serves every layer.

    ``attend_in(h, delta, ln1, qkv, cos, sin)``: the residual stream ``h + delta``, the
    rotated queries [B, kv heads, group * k, hd] (each key/value head's group of query heads
    stacked as extra query rows: grouped-query attention without copying keys and values) and
    the step's keys and values [B, k, 2, kv heads, hd]. ``attend_out(h, o, wo, ln2, gate_up,
    down)``: the residual stream after attention and the MLP's output, which the next
    ``attend_in`` (or the final norm) adds."""
    import torch.nn.functional as F

    group = heads // kv_heads

    def attend_in(h, delta, ln1, qkv, cos, sin):
        h = h + delta
        batch, k = h.shape[:2]
        # every operand below is contiguous whatever k is: a pass over several tokens costs
        # the same kernels as a pass over one (strided views of a split projection made each
        # multi-token pass slower per layer)
        t = F.linear(_rms(h, ln1, eps), qkv).view(batch, k, heads + 2 * kv_heads, head_dim)
        t = t * cos + _swap_halves(t) * sin
        q = t[:, :, :heads].transpose(1, 2).reshape(batch, kv_heads, group * k, head_dim)
        return h, q, t[:, :, heads:].view(batch, k, 2, kv_heads, head_dim)

    def attend_out(h, o, wo, ln2, gate_up, down):
        batch, k = h.shape[:2]
        o = o.reshape(batch, heads, k, head_dim).transpose(1, 2).reshape(batch, k, -1)
        h = h + F.linear(o, wo)
        gate, up = F.linear(_rms(h, ln2, eps), gate_up).chunk(2, -1)
        return h, F.linear(F.silu(gate) * up, down)

    return attend_in, attend_out


def causal_attention(q, kv, group: int):
    """Causal attention of a step over its own keys and values (``kv`` [B, k, 2, kv heads,
    hd]; ``q`` stacked as :func:`layer_halves` gives it), for a step whose rows hold nothing
    before it: [B, heads, k, hd]. Each key/value head is repeated for its group of query heads,
    so the kernel needs no grouped-query support of its own."""
    import torch.nn.functional as F

    b, kv_heads, rows, hd = q.shape
    k = rows // group
    q = q.view(b, kv_heads * group, k, hd)  # head kv * group + g, as the stacking orders them

    def repeated(t):
        return t.transpose(1, 2)[:, :, None].expand(b, kv_heads, group, k, hd).reshape(
            b, kv_heads * group, k, hd)

    return F.scaled_dot_product_attention(q, repeated(kv[:, :, 0]), repeated(kv[:, :, 1]),
                                          is_causal=True)


WHOLE_LAYERS = 4
"""The most layers of a fused body that ``compile`` compiles as one forward (see
:meth:`FusedBody.compile`): every shipped draft's."""


class FusedBody:
    """The fused Llama forward over a :class:`thrifty_hf.fast.StaticLM`'s cache."""

    kind = "fused"

    def __init__(self, model, max_len: int, vocab=None) -> None:
        self.p = p = model_parts(model)
        self.layers, self.kv_heads, self.head_dim = len(p["layers"]), p["kv_heads"], p["head_dim"]
        self.dtype = p["layers"][0]["qkv"].dtype
        self.vocab_size, self.width = p["head"].shape
        if vocab is not None:  # the head's rows of the tokens a draft may propose (a copy)
            p["head"] = p["head"][vocab.to(p["head"].device)]
        self.reads_features = p["fc"] is not None
        self.cos, self.sin = rope_tables(p["inv_freq"].to(p["embed"].device), p["rope_scale"],
                                         max_len, p["heads"], p["kv_heads"], self.dtype)
        self.attend_in, self.attend_out = layer_halves(p["eps"], p["heads"], p["kv_heads"],
                                                       p["head_dim"])

    def compile(self) -> None:
        """Compile with ``torch.compile`` (norms, rotary, activation and residual adds fused
        around the projections); CUDA graphs then capture the compiled kernels.

        A deep model compiles the two halves of a layer: a layer's weights are inputs, so one
        compilation per step shape serves every layer, where compiling the whole forward cost
        about a minute per shape (30 layers traced and scheduled), and speculative decoding
        meets a dozen shapes (prefill buckets, attention spans, chains and trees, the draft's
        own). A model of at most :data:`WHOLE_LAYERS` layers (a draft) compiles its whole
        forward in seconds a shape: what surrounds its layers (the step's mask and positions,
        the rotary gather, embedding and ``fc``, the final norm and head) is most of its
        kernels, and a draft runs it γ times a step."""
        from .steps import compiled

        if self.layers <= WHOLE_LAYERS:
            self.forward = compiled(self.forward)
        else:
            self.attend_in, self.attend_out = map(compiled, (self.attend_in, self.attend_out))

    def forward(self, cache, slots, tokens, n, features, logits: bool, at, parents, fresh):
        import torch
        import torch.nn.functional as F

        from .steps import Step

        p = self.p
        group = p["heads"] // p["kv_heads"]
        step = Step(cache, slots, n, tokens.shape[1], parents, at, fresh)
        cos, sin = self.cos[step.pos], self.sin[step.pos]  # [B, k, q|k|v heads, hd]
        h = F.embedding(tokens, p["embed"])
        mask = None if step.causal else step.bias(group, h.dtype)
        if p["fc"] is not None:
            h = F.linear(torch.cat([h, features.to(h.dtype)], -1), p["fc"])
        elif p["proj_in"] is not None:
            h = F.linear(h, p["proj_in"])
        # ``delta``: the last MLP's output, added to the residual stream by the next half that
        # normalises it (one fused kernel when compiled); the first layer's is zero (exact)
        delta = torch.zeros_like(h)
        for i, w in enumerate(p["layers"]):
            h, q, kv = self.attend_in(h, delta, w["ln1"], w["qkv"], cos, sin)
            step.store(i, kv)
            if step.causal:
                o = causal_attention(q, kv, group)
            else:
                keys, values = step.read(i)
                o = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
            h, delta = self.attend_out(h, o, w["o"], w["ln2"], w["gate_up"], w["down"])
        h = h + delta
        h = _rms(h, p["norm"], p["eps"])
        if p["proj_out"] is not None:
            h = F.linear(h, p["proj_out"])
        return h, F.linear(h, p["head"]).float() if logits else None
