"""The generic body of the fast path: the model's own transformers modules over thrifty's cache.

Why: a hand-written forward is exact only for the one family it copies; every other family
(biases, q/k norms, Gemma's ``(1 + w)`` norms and soft-capping, sliding windows, partial rotary,
parallel residual, fused projections, mixtures of experts) needs its own code. Running the
model's own modules makes each family cost nothing but a test, and keeps its arithmetic
transformers' by construction.

How: transformers looks its attention function up by name (``AttentionInterface``) and calls it
with each layer's queries, keys and values after their projections, norms and rotary. Thrifty
registers one such function, ``thrifty-static``, and runs the model without a transformers
cache: the function writes the step's keys and values into the per-row static cache (row b's
token i at slot ``n[b] + i``) and attends over the row's slots in use with thrifty's own masks
(:class:`thrifty_hf.steps.Step`): causal over each row's valid slots (or a token tree's
ancestors), and windowed for layers that pass ``sliding_window`` (Mistral, Qwen2, Phi-3, and
Gemma 2/3's local layers). Soft-capped layers (Gemma 2) take the eager
formula, as transformers' own eager attention does; the rest take SDPA. The model gets the
positions of every row and a ready 4-D mask, so transformers builds no mask of its own.

Everything is tensor arithmetic with no host synchronisation, so the forward captures as a CUDA
graph, with two exceptions. Rotary types that change with the sequence length (``dynamic``,
``longrope``) read the longest position on the host and depend on the batch, so they are
refused. The experts of a mixture-of-experts layer are computed by an implementation the fast
path picks (:func:`experts_for`) while it runs: transformers' ``eager`` loop reads which
experts were hit on the host (``nonzero``), and its ``grouped_mm`` runs on the device only in
torch's bfloat16 kernel for compute capability 9.x and 10.x; for every other dtype or GPU,
torch's grouped product loops over the groups, copying their bounds to the host, which a CUDA
graph capture refuses. So on CUDA the fast path runs ``grouped_mm`` where that kernel applies
and :func:`dense_experts` (every expert over every token, weighted by the routing weights:
E / top-k times the expert arithmetic, in a fixed sequence of batched products) everywhere
else; on the CPU, where no graph is captured, it replaces only the ``eager`` loop, by
``grouped_mm``. A compiled body (``compile=True``) runs steps of no more (token, expert) pairs
than experts — decoding, short verifications — through :func:`gathered_experts`, which reads
only the chosen experts' weights in fused products (:func:`thrifty_hf.steps.compiled`), and
larger steps as above.

The families :data:`FAMILIES` are the ones the test suite checks against transformers' own
forward; any other model is refused at load, naming the exact ``hf`` path as the way out.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial

from thrifty.errors import ConfigError, ModelFormatError

from .drafts import soft_cap
from .fused import rope_types

ATTENTION = "thrifty-static"
"""The name of thrifty's attention function in transformers' ``AttentionInterface``."""

EXPERTS = "thrifty-dense"
"""The name of :func:`dense_experts` in transformers' ``ExpertsInterface``."""

GATHERED = "thrifty-gathered"
"""The prefix of :func:`fitted_experts`' names in ``ExpertsInterface``: ``GATHERED + "+" +
fallback``, one for each experts implementation a step too large for gathering runs."""

FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3", "gpt_neox",
            "qwen2_moe", "mixtral")
"""``model_type`` values the generic body runs (each is checked by tests/test_fast_families.py
against transformers' own forward)."""

SHIFTING_ROPE = ("dynamic", "longrope")

_step = None
"""The step in flight (a :class:`thrifty_hf.steps.Step`) that :func:`attend` reads; set only
inside :meth:`GenericBody.forward`."""


def generic_refusal(model) -> str | None:
    """Why the generic body cannot run ``model`` exactly, or None when it can."""
    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        return f"{type(model).__name__} is an encoder-decoder model"
    if type(model).__name__ not in _causal_lms():
        return f"{type(model).__name__} is not a causal language model"
    inner = decoder_config(model)
    if inner.model_type not in FAMILIES:
        return (f"model_type {inner.model_type!r} is not one of the families the fast path is "
                f"tested on ({', '.join(FAMILIES)})")
    shifting = rope_types(inner) & set(SHIFTING_ROPE)
    if shifting:
        return (f"its rotary type {'/'.join(sorted(shifting))} changes with the longest "
                f"position in the batch")
    return None


def _causal_lms() -> set[str]:
    """The class names transformers lists as causal LMs, and thrifty's drafts."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    names = {"ThriftyDraftForCausalLM"}
    for value in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
        names.update((value,) if isinstance(value, str) else value)
    return names


def decoder_config(model):
    """The config of the model's decoder layers (a thrifty draft's own, inner config)."""
    return model.base_model.config


def attend(module, query, key, value, attention_mask, scaling=None, dropout=0.0, softcap=None,
           sliding_window=None, **kwargs):
    """transformers' attention-function contract over thrifty's static cache.

    ``query`` [B, H, k, hd], ``key``/``value`` [B, KV, k, hd] as the layer computed them;
    returns ([B, k, H, hd], None). The layer's keys and values are stored at their rows' slots
    first; the mask transformers passes is ignored for thrifty's per-layer one."""
    import torch
    import torch.nn.functional as F

    step = _step
    if step is None:
        raise ModelFormatError("the thrifty-static attention runs only inside the fast path's "
                               "forward; load the model with another attn_implementation")
    if kwargs.get("s_aux") is not None:
        raise ModelFormatError("attention sinks (s_aux) are not supported by the fast path; "
                               "use the 'hf' verifier")
    if isinstance(step, dict):  # measuring: the layer's key/value shape sizes the cache
        step[module.layer_idx] = (key.shape[1], key.shape[-1], value.shape[-1])
        return query.new_zeros(query.transpose(1, 2).shape), None
    layer = module.layer_idx
    cache = step.cache[layer]  # [key | value, row, kv head, slot, head dim]
    batch, heads, k, hd = query.shape
    kv = key.shape[1]
    if (kv, key.shape[-1], value.shape[-1]) != (cache.shape[2], cache.shape[4], cache.shape[4]):
        raise ModelFormatError(
            f"layer {layer} has {kv} key/value heads of size {key.shape[-1]}, the cache was "
            f"sized for {cache.shape[2]} of {cache.shape[4]}; use the 'hf' verifier")
    step.store(layer, torch.stack((key, value), 1).permute(0, 3, 1, 2, 4))
    keys, values = step.read(layer)
    group = heads // kv
    # grouped-query attention without copying K/V: each KV head's group of query heads becomes
    # extra query rows (query head h reads KV head h // group, as transformers' repeat_kv)
    q = query.reshape(batch, kv, group * k, hd)
    # the window: what the layer passes, or (Qwen2-MoE passes none) the layer's own attribute,
    # which transformers sets exactly on the layers it gives a sliding-window mask
    window = sliding_window if sliding_window is not None else getattr(module, "sliding_window",
                                                                       None)
    scale = hd ** -0.5 if scaling is None else scaling
    if softcap is None:
        o = F.scaled_dot_product_attention(q, keys, values, scale=scale,
                                           attn_mask=step.bias(group, q.dtype, window))
    else:  # transformers' eager formula: cap the scores, then mask, softmax in float32
        w = torch.matmul(q, keys.transpose(2, 3)) * scale
        w = torch.tanh(w / softcap) * softcap
        w = w.masked_fill(~step.mask(group, window), float("-inf"))
        o = torch.matmul(torch.softmax(w, -1, dtype=torch.float32).to(q.dtype), values)
    return o.reshape(batch, heads, k, hd).transpose(1, 2).contiguous(), None


def dense_experts(module, hidden_states, top_k_index, top_k_weights):
    """transformers' experts-function contract computed by every expert for every token.

    ``hidden_states`` [T, H], ``top_k_index``/``top_k_weights`` [T, top-k]; returns [T, H]: the
    sum over experts of each expert's gated MLP, weighted by the token's routing weight for it
    (zero for the experts it did not pick), the arithmetic of the ``eager`` loop of Mixtral and
    Qwen2-MoE. Two batched products over all experts and no host read, so it captures as a
    CUDA graph on any dtype and GPU; only the gated, unbiased, untransposed layout of those
    families is computed, any other is refused."""
    import torch

    gate_up, down = _gated_layout(module)
    experts = gate_up.shape[0]
    weights = torch.zeros(hidden_states.shape[0], experts, dtype=top_k_weights.dtype,
                          device=top_k_weights.device).scatter_(1, top_k_index, top_k_weights)
    gate, up = torch.matmul(hidden_states, gate_up.transpose(1, 2)).chunk(2, dim=-1)
    out = torch.matmul(module.act_fn(gate) * up, down.transpose(1, 2))  # [E, T, H]
    return (out * weights.T[:, :, None]).sum(0).to(hidden_states.dtype)


def gathered_experts(module, hidden_states, top_k_index, top_k_weights):
    """transformers' experts-function contract computed pair by pair: each (token, chosen
    expert) pair's gated MLP as batched matrix-vector products over that expert's weights,
    gathered by index, then each token's sum weighted by its routing weights. It reads the
    chosen experts' weights only; compiled (:func:`thrifty_hf.steps.compiled`), a product reads
    its gathered weights in place, with nothing copied, so a decoding step costs what its
    experts weigh. The layout checks of :func:`dense_experts` apply."""
    import torch

    gate_up, down = _gated_layout(module)
    tokens, top_k = top_k_index.shape
    ids = top_k_index.reshape(-1)
    x = hidden_states.repeat_interleave(top_k, 0)[:, :, None]  # [pairs, H, 1]
    gate, up = torch.bmm(gate_up[ids], x)[..., 0].chunk(2, dim=-1)
    out = torch.bmm(down[ids], (module.act_fn(gate) * up)[:, :, None])[..., 0]  # [pairs, H]
    return (out.view(tokens, top_k, -1) * top_k_weights[..., None]).sum(1).to(hidden_states.dtype)


def fitted_experts(fallback: str, module, hidden_states, top_k_index, top_k_weights):
    """A compiled step's experts: :func:`gathered_experts` when the step has no more (token,
    expert) pairs than the layer has experts (gathering then reads no more weights than a
    grouped product, and decoding steps read only what they route to), else the experts
    implementation named ``fallback``. The step's shape is fixed when it compiles, so the
    choice is made once per shape."""
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    few = top_k_index.numel() <= module.gate_up_proj.shape[0]
    run = gathered_experts if few else ALL_EXPERTS_FUNCTIONS[fallback]
    return run(module, hidden_states, top_k_index, top_k_weights)


def _gated_layout(module):
    """(gate_up [E, 2 x inner, H], down [E, H, inner]) of an experts module of the gated,
    unbiased, untransposed layout of Mixtral and Qwen2-MoE, the one thrifty's experts
    functions compute; any other is refused."""
    gate_up, down = module.gate_up_proj, module.down_proj
    experts, inner2, width = gate_up.shape
    if getattr(module, "has_bias", False) or getattr(module, "is_transposed", False) or \
            not getattr(module, "has_gate", True) or down.shape != (experts, width, inner2 // 2):
        raise ModelFormatError(
            f"{type(module).__name__} is not a gated, unbiased [experts, 2 x inner, hidden] "
            f"layout, the one the fast path's experts functions compute; use the 'hf' verifier")
    return gate_up, down


def experts_for(dtype, capability) -> str:
    """The experts implementation a CUDA graph can capture on a GPU of compute ``capability``
    (major, minor) for weights of ``dtype``: ``grouped_mm`` where torch's grouped product runs
    on the device (its bfloat16 kernel, compute capability 9.x or 10.x), :data:`EXPERTS`
    elsewhere (torch's fallback copies the group bounds to the host)."""
    import torch

    on_device = dtype == torch.bfloat16 and capability[0] in (9, 10) and \
        hasattr(torch.nn.functional, "grouped_mm")
    return "grouped_mm" if on_device else EXPERTS


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    AttentionInterface.register(ATTENTION, attend)
    ALL_EXPERTS_FUNCTIONS.register(EXPERTS, dense_experts)
    for fallback in ("grouped_mm", EXPERTS):
        ALL_EXPERTS_FUNCTIONS.register(f"{GATHERED}+{fallback}", partial(fitted_experts, fallback))


class GenericBody:
    """The model's own forward (embedding, decoder, LM head) over a static cache.

    A thrifty draft runs through its own ``hidden`` (which applies ``fc`` to the verifier's
    features, or ``proj_in``) and LM head; a Hugging Face model through its full causal-LM
    forward, so that whatever its head does (Gemma's final soft-capping) is applied exactly,
    with the decoder's output caught on the way as the hidden states feature drafts read."""

    kind = "generic"

    def __init__(self, model, max_len: int, vocab=None) -> None:
        why = generic_refusal(model)
        if why is not None:
            raise ModelFormatError(
                f"the hf-fast path cannot run {type(model).__name__} exactly: {why}; use the "
                f"'hf' verifier or draft, which runs it with transformers' own cache")
        _register()
        self.model = model
        head = model.get_output_embeddings()
        self.vocab_size, self.width = head.weight.shape
        self.dtype = next(model.base_model.parameters()).dtype
        self.draft = type(model).__name__ == "ThriftyDraftForCausalLM"
        self.head = None
        """(weight, bias) of the head's rows of ``vocab``, a draft's proposable tokens."""
        if vocab is not None:
            if not self.draft:
                raise ConfigError(f"a vocabulary of proposable tokens is a thrifty draft's (its "
                                  f"token ranking); {type(model).__name__} is not one: pass "
                                  f"vocab=0")
            rows = vocab.to(head.weight.device)
            self.head = (head.weight[rows],
                         None if getattr(head, "bias", None) is None else head.bias[rows])
        self.reads_features = getattr(model, "fc", None) is not None
        self.configs = _configs(model)
        self.experts = self._experts()
        self._caught: list = []  # the decoder's output, from a hook during ``run``
        self.layers, self.kv_heads, self.head_dim = self._measure()

    def _experts(self) -> str | None:
        """The experts implementation to run (the module docstring says why), or None to keep
        the model's own (a model without experts, or one not on ``eager`` on the CPU). Experts
        are found by their stacked weights: every config names an experts implementation,
        a dense model's too."""
        import torch

        if not any(isinstance(getattr(m, "gate_up_proj", None), torch.nn.Parameter)
                   for m in self.model.modules()):
            return None
        own = {getattr(c, "_experts_implementation", None) for c in self.configs} - {None}
        device = self.model.device
        if own and device.type == "cuda":
            return experts_for(self.dtype, torch.cuda.get_device_capability(device))
        return "grouped_mm" if "eager" in own else None

    def _measure(self) -> tuple[int, int, int]:
        """(layers, key/value heads, head size) as the layers compute them, from one token
        through the model: configs name these fields differently (GPT-NeoX has no KV heads
        of its own), and the cache must be sized as the keys really are."""
        import torch

        shapes: dict[int, tuple] = {}
        tokens = torch.zeros(1, 1, dtype=torch.long, device=self.model.device)
        features = torch.zeros(1, 1, self.width, dtype=self.dtype, device=tokens.device) \
            if self.reads_features else None
        mask = torch.ones(1, 1, 1, 1, dtype=torch.bool, device=tokens.device)
        self._call(shapes, tokens, features,
                   dict(attention_mask=mask, position_ids=tokens, use_cache=False), False)
        if sorted(shapes) != list(range(len(shapes))) or len(set(shapes.values())) != 1 or \
                len({*next(iter(shapes.values()))[1:]}) != 1:
            raise ModelFormatError(
                f"the hf-fast path needs every layer to cache keys and values of one shape; "
                f"{type(self.model).__name__}'s layers cache {shapes}; use the 'hf' verifier")
        kv, hd, _ = shapes[0]
        return len(shapes), kv, hd

    def forward(self, cache, slots, tokens, n, features, logits: bool, at, parents, fresh):
        from .steps import Step

        step = Step(cache, slots, n, tokens.shape[1], parents, at, fresh)
        mask = step.visible[:, None]  # [B, 1, k, S]: a ready mask, so transformers builds none
        args = dict(attention_mask=mask, position_ids=step.pos, use_cache=False)
        return self._call(step, tokens, features, args, logits)

    def _call(self, step, tokens, features, args, logits: bool):
        """``run`` with ``step`` in flight, thrifty's attention selected and the decoder's
        output caught (all host-side set-up, outside what ``torch.compile`` may compile)."""
        global _step
        _step = step
        hook = None if self.draft else self.model.base_model.register_forward_hook(
            lambda module, inputs, out: self._caught.append(out[0]))
        try:
            with _implementations(self.configs, self.experts):
                return self.run(tokens, features, args, logits)
        finally:
            _step = None
            self._caught.clear()  # nothing of a failed forward reaches the next one
            if hook is not None:
                hook.remove()

    def compile(self) -> None:
        """Compile ``run`` (fused elementwise work, fewer kernels; experts of small steps
        gathered, see the module docstring); CUDA graphs then capture the compiled kernels."""
        from .steps import compiled

        if self.experts is not None:
            self.experts = f"{GATHERED}+{self.experts}"
        self.run = compiled(self.run, fuse_one_row_products=self.experts is not None)

    def run(self, tokens, features, args, logits: bool):
        """(hidden states, float32 logits or None) by the model's own forward: tensor work only,
        which is what ``StaticLM(compile=True)`` compiles."""
        import torch.nn.functional as F

        if self.draft:
            h, _ = self.model.hidden(tokens, features, **args)
            if not logits:
                return h, None
            if self.head is None:
                return h, self.model.lm_head(h).float()
            # the head's own forward, on its rows of the proposable tokens (and the family's
            # soft-capping, which a hook on the full head applies)
            return h, soft_cap(self.model.config, F.linear(h, *self.head)).float()
        embeds = self.model.get_input_embeddings()(tokens)
        out = self.model(inputs_embeds=embeds, logits_to_keep=0 if logits else 1, **args)
        return self._caught.pop(), out.logits.float() if logits else None


def _configs(model) -> list:
    """Every distinct config the model's modules read (a thrifty draft's layers keep their own)."""
    seen: dict[int, object] = {}
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            seen.setdefault(id(config), config)
    return list(seen.values())


@contextmanager
def _implementations(configs, experts):
    """Point every config at thrifty's attention (and the configs of experts at ``experts``, if
    given) for the duration, and restore what they had: the same model also serves
    transformers' own paths."""
    saved = [(c, c._attn_implementation_internal,
              getattr(c, "_experts_implementation_internal", None)) for c in configs]
    try:
        for c, _, old_experts in saved:
            c._attn_implementation_internal = ATTENTION
            if experts is not None and old_experts is not None:
                c._experts_implementation_internal = experts
        yield
    finally:
        for c, attn, old_experts in saved:
            c._attn_implementation_internal = attn
            if old_experts is not None:
                c._experts_implementation_internal = old_experts
