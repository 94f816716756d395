"""The fast path's static forward against transformers' own full forward, family by family (CPU).

Each tiny random model (families.py: biases and norm weights perturbed) runs over a ragged batch
of three rows: a prefill, three steps of three tokens that keep different counts per row (the
rollback of speculative decoding), one admission of a new prompt into a running row, and a last
step. Every step's logits and hidden states must equal those of transformers' forward over the
whole sequence so far; the sequences outgrow every sliding window. Which body runs each model
(fused or generic) is checked too, as is the allow-list of the fused body, condition by
condition, and the refusal of what neither body runs.
"""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import families  # noqa: E402
from thrifty.errors import ConfigError, ModelFormatError  # noqa: E402
from thrifty.speculative import TreeShape  # noqa: E402
from thrifty_hf.fast import FastVerifier, StaticLM  # noqa: E402
from thrifty_hf import generic  # noqa: E402
from thrifty_hf.fused import WHOLE_LAYERS, fused_refusal  # noqa: E402

FUSED = {"llama", "llama3-rope"}
"""The families whose tiny models the fused Llama body may run; the rest take the generic body."""


def qwen2_moe_window():
    """A perturbed tiny Qwen2-MoE with one layer of a 16-token window: its attention passes
    no ``sliding_window``, so the window must come from the layer itself."""
    torch.manual_seed(8)
    kwargs = {**families.COMMON, **families.FAMILIES["qwen2-moe"][1], "use_sliding_window": True,
              "sliding_window": 16, "max_window_layers": 1}
    cfg = transformers.Qwen2MoeConfig(**{k: v for k, v in kwargs.items() if v is not None})
    assert sorted(cfg.layer_types) == ["full_attention", "sliding_attention"]
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    return families.perturb(model, 8).eval()


MODELS = {**{name: (lambda name=name: families.make_model(name)) for name in families.FAMILIES},
          "qwen2-moe-window": qwen2_moe_window}


def _close(got, want, what):
    """Equal up to float32 summation order: 1e-5 of the reference's largest magnitude."""
    scale = want.abs().max().item()
    err = (got - want).abs().max().item()
    assert err <= 1e-5 * scale, f"{what}: max error {err:.3g} at scale {scale:.3g}"


def _check(lm, model, seqs, tokens, n, what):
    """One step of ``tokens`` [3, k] at counts ``n`` against the full forward of each row."""
    k = tokens.shape[1]
    hidden, logits = lm.forward(tokens, n)
    for b, seq in enumerate(seqs):
        full = torch.tensor([seq + tokens[b].tolist()])
        ref = model(full)
        _close(logits[b], ref.logits[0, -k:].float(), f"{what}, row {b} logits")
        base = model.base_model(full).last_hidden_state[0, -k:]
        _close(hidden[b], base, f"{what}, row {b} hidden states")


@pytest.mark.parametrize("family", sorted(MODELS))
def test_static_forward_equals_transformers_over_ragged_steps_and_an_admission(family):
    model = MODELS[family]()
    lm = StaticLM(model, max_len=64, graphs=False)
    assert lm.body.kind == ("fused" if family in FUSED else "generic")
    _ragged_steps(lm, model, family)


def _ragged_steps(lm, model, family):
    """Prefill, three ragged steps and an admission, each checked by :func:`_check`."""
    gen = torch.Generator().manual_seed(3)
    vocab = lm.vocab_size

    def draw(*shape):
        return torch.randint(1, vocab, shape, generator=gen)

    seqs = [draw(length).tolist() for length in (30, 9, 17)]
    n, _ = lm.prefill(seqs)
    for i, keep in enumerate(([3, 1, 2], [2, 3, 1], [1, 2, 3])):
        tokens = draw(3, 3)
        _check(lm, model, seqs, tokens, n, f"{family} step {i}")
        for b in range(3):
            seqs[b] += tokens[b, : keep[b]].tolist()
        n = n + torch.tensor(keep)
    assert max(len(s) for s in seqs) > max(families.WINDOWS.values())
    # continuous batching: a new prompt replaces row 1; the other rows go on as they were
    seqs[1] = draw(12).tolist()
    lm.prefill([seqs[1]], row=1)
    n = torch.tensor([len(s) for s in seqs])
    _check(lm, model, seqs, draw(3, 2), n, f"{family} after admission")


def test_generic_body_equals_fused_body_on_llama(tiny_llama, tiny_draft):
    """The two bodies side by side on a model both may run, and on a thrifty feature draft."""
    model = tiny_llama()
    draft = tiny_draft(model, 64, depth=2, features=True)
    for m, feats in ((model, None), (draft, torch.randn(2, 4, 32))):
        runs = []
        for body in ("fused", "generic"):
            lm = StaticLM(m, max_len=32, graphs=False, body=body)
            assert lm.body.kind == body
            pre = None if feats is None else feats[:, :3]
            n, _ = lm.prefill([[3, 4, 5], [6, 7, 8]], pre)
            step = None if feats is None else feats[:, 3:]
            runs.append(lm.forward(torch.tensor([[9], [10]]), n, step))
        _close(runs[1][0], runs[0][0], f"{type(m).__name__} hidden states")
        _close(runs[1][1], runs[0][1], f"{type(m).__name__} logits")


FUSED_BREAKERS = {
    "attention bias": dict(attention_bias=True),
    "mlp bias": dict(mlp_bias=True),
    "activation": dict(hidden_act="gelu"),
    "rotary type": dict(rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=2.0,
                                             original_max_position_embeddings=64)),
    "sliding window": dict(sliding_window=16),
    "layer types": dict(layer_types=["full_attention", "sliding_attention"]),
    "pretraining_tp": dict(pretraining_tp=2),
    "logit soft-capping": dict(final_logit_softcapping=30.0),
}


@pytest.mark.parametrize("condition", sorted(FUSED_BREAKERS))
def test_every_condition_of_the_fused_allow_list_sends_the_model_to_the_generic_body(condition):
    cfg = families.make_config("llama")
    assert fused_refusal(transformers.LlamaForCausalLM(cfg), 64) is None
    for key, value in FUSED_BREAKERS[condition].items():
        setattr(cfg, key, value)
    model = transformers.LlamaForCausalLM(cfg).eval()
    why = fused_refusal(model, 64)
    assert why is not None
    with pytest.raises(ConfigError, match="fused Llama body cannot run"):
        StaticLM(model, max_len=64, graphs=False, body="fused")
    if condition in ("pretraining_tp", "logit soft-capping", "layer types"):
        return  # attributes a Llama ignores; the fused body refuses them all the same
    assert StaticLM(model, max_len=64, graphs=False).body.kind == "generic"


def test_a_window_longer_than_the_cache_keeps_the_fused_body():
    cfg = families.make_config("mistral-window")
    cfg.sliding_window = 64
    model = transformers.MistralForCausalLM(cfg).eval()
    assert StaticLM(model, max_len=64, graphs=False).body.kind == "fused"
    assert StaticLM(model, max_len=65, graphs=False).body.kind == "generic"


def test_a_model_type_other_than_its_class_leaves_the_fused_body():
    cfg = families.make_config("llama")
    model = transformers.LlamaForCausalLM(cfg).eval()
    model.config.model_type = "not-llama"
    assert "model_type" in fused_refusal(model, 64)


def _gpt2():
    cfg = transformers.GPT2Config(vocab_size=families.VOCAB, n_embd=32, n_layer=1, n_head=2)
    return transformers.GPT2LMHeadModel(cfg).eval()


def _t5():
    cfg = transformers.T5Config(vocab_size=families.VOCAB, d_model=32, d_ff=64, num_layers=1,
                                num_heads=2, d_kv=16)
    return transformers.T5ForConditionalGeneration(cfg).eval()


def _llama_dynamic():
    cfg = families.make_config("llama")
    cfg.rope_parameters = dict(rope_type="dynamic", rope_theta=10000.0, factor=2.0)
    return transformers.LlamaForCausalLM(cfg).eval()


def _classifier():
    cfg = families.make_config("llama")
    cfg.num_labels = 2
    return transformers.LlamaForSequenceClassification(cfg).eval()


@pytest.mark.parametrize("make, what", [
    (_t5, "encoder-decoder"), (_gpt2, "not one of the families"),
    (_llama_dynamic, "dynamic changes with the longest position"),
    (_classifier, "not a causal language model")])
def test_what_neither_body_runs_is_refused_at_load_naming_the_hf_path(make, what):
    with pytest.raises(ModelFormatError, match=what) as caught:
        FastVerifier(make(), None, max_len=32, graphs=False, eos_token_ids=())
    assert "'hf' verifier" in str(caught.value)
    assert type(make()).__name__ in str(caught.value)


def test_speculative_on_the_generic_body_equals_transformers_greedy():
    """Verifier and draft both on the generic body (the draft: the verifier's first layer), over
    a ragged batch whose rows outgrow the window: the verifier's and the draft's rollbacks and
    the draft's pending tokens all go through transformers' modules."""
    from test_fast_path import speculative_equals_hf_greedy

    family = "gemma2"  # soft-capped attention and logits, local and global layers
    verifier = families.make_model(family)
    draft = families.make_model(family, layers=1)
    draft.load_state_dict({k: v for k, v in verifier.state_dict().items()
                           if k in draft.state_dict()})
    prompts = [[5, 9, 2, 7, 30, 31, 32, 40] * 3, [3, 3], [7, 1, 2, 3, 4]]
    fv, fd = speculative_equals_hf_greedy(verifier, draft, prompts, 24)
    assert fv.lm.body.kind == fd.lm.body.kind == "generic"


def test_compiled_generic_body_is_one_graph_per_shape_and_equals_the_eager_one():
    """``compile=True`` compiles the model's forward without graph breaks (the host-side set-up
    stays outside) and without recompiling per step, and changes no logit beyond rounding."""
    import torch._dynamo

    model = families.make_model("qwen2")
    lm = StaticLM(model, max_len=32, graphs=False, compile=True)
    ref = StaticLM(model, max_len=32, graphs=False)
    torch._dynamo.utils.counters.clear()
    prompts = [[1, 2, 3, 4], [5, 6, 7]]
    n, _ = lm.prefill(prompts)
    ref.prefill(prompts)
    for i in range(3):
        tokens = torch.tensor([[9, 10], [11, 12]]) + i
        hidden, logits = lm.forward(tokens, n)
        want_hidden, want_logits = ref.forward(tokens, n)
        _close(hidden, want_hidden, f"step {i} hidden states")
        _close(logits, want_logits, f"step {i} logits")
        n = n + 2
    counters = torch._dynamo.utils.counters
    assert not counters["graph_break"]
    assert counters["stats"]["unique_graphs"] == 2  # the prefill and the step


def test_compiled_experts_equal_the_eager_ones_gathered_or_grouped():
    """A compiled body with experts: a decoding step (one row, one token: 2 pairs of 4
    experts) runs them gathered, a wider step (2 rows x 2 tokens: 8 pairs) grouped; both give
    the eager body's logits, and compile without graph breaks."""
    import torch._dynamo

    model = MODELS["qwen2-moe"]()
    model.set_experts_implementation("eager")
    lm = StaticLM(model, max_len=32, graphs=False, compile=True)
    ref = StaticLM(model, max_len=32, graphs=False)
    torch._dynamo.utils.counters.clear()
    for prompts, tokens in (([[1, 2, 3, 4, 5]], torch.tensor([[9]])),
                            ([[1, 2, 3, 4], [5, 6, 7]], torch.tensor([[9, 10], [11, 12]]))):
        for m in (lm, ref):
            n, _ = m.prefill(prompts)
        _close(lm.forward(tokens, n)[1], ref.forward(tokens, n)[1], f"{len(prompts)}-row step")
    assert not torch._dynamo.utils.counters["graph_break"]


def test_compiled_fused_body_is_one_graph_per_half_and_shape_for_every_layer():
    """The fused Llama body of a deep model compiles the two halves of a layer, not the
    forward: a step shape costs two graphs whatever the depth (a layer's weights are the
    graphs' inputs), with no graph break, and the logits are the eager body's, for chains and
    trees."""
    import torch._dynamo

    model = families.make_model("llama", layers=WHOLE_LAYERS + 1)
    lm = StaticLM(model, max_len=32, graphs=False, compile=True)
    ref = StaticLM(model, max_len=32, graphs=False)
    assert lm.body.kind == "fused"
    torch._dynamo.utils.counters.clear()
    tokens = torch.tensor([[9, 10, 11, 12], [11, 12, 13, 14]])
    for parents in (None, torch.tensor([[-1, 0, 0, 1], [-1, 0, 1, 1]])):
        for m in (lm, ref):
            n, _ = m.prefill([[1, 2, 3, 4, 5], [5, 6, 7]])
        got, want = lm.forward(tokens, n, parents=parents), ref.forward(tokens, n, parents=parents)
        what = "tree" if parents is not None else "chain"
        _close(got[0], want[0], f"{what} hidden states")
        _close(got[1], want[1], f"{what} logits")
    counters = torch._dynamo.utils.counters
    assert not counters["graph_break"]
    assert counters["stats"]["unique_graphs"] == 4  # two halves x (the prefill, the step)


def test_a_compiled_draft_is_one_graph_per_shape_writing_the_cache_as_the_eager_one(
        tiny_llama, tiny_draft):
    """A fused body of at most WHOLE_LAYERS layers (a feature draft here) compiles its whole
    forward, the step's mask, rotary gather, embedding, ``fc`` and head included: one graph
    per shape (prefill, chain, tree) with no graph break; its hidden states, logits and the
    keys and values it writes into the cache in place are the eager body's."""
    import torch._dynamo

    draft = tiny_draft(tiny_llama(), 32, features=True)
    lm = StaticLM(draft, max_len=32, graphs=False, compile=True)
    ref = StaticLM(draft, max_len=32, graphs=False)
    assert lm.body.kind == "fused" and lm.body.layers <= WHOLE_LAYERS
    torch._dynamo.utils.counters.clear()
    feats = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(0))
    for m in (lm, ref):
        n, _ = m.prefill([[1, 2, 3, 4, 5], [5, 6, 7]], feats)
    _close(lm.cache, ref.cache, "the prefill's keys and values")
    tokens = torch.tensor([[9, 10, 11, 12], [11, 12, 13, 14]])
    for parents in (None, torch.tensor([[-1, 0, 0, 1], [-1, 0, 1, 1]])):
        got = lm.forward(tokens, n, feats[:, :4], parents=parents)
        want = ref.forward(tokens, n, feats[:, :4], parents=parents)
        what = "tree" if parents is not None else "chain"
        _close(got[0], want[0], f"{what} hidden states")
        _close(got[1], want[1], f"{what} logits")
        _close(lm.cache, ref.cache, f"the {what}'s keys and values")
    counters = torch._dynamo.utils.counters
    assert not counters["graph_break"]
    assert counters["stats"]["unique_graphs"] == 3


def test_a_fresh_prefill_attends_causally_as_the_masked_cache_read_does():
    """A prefill's attention in the fused body is causal over the step's own keys (no mask, no
    cache read): the same hidden states as reading the cache through the step's mask, for
    ragged rows whose padding follows their real tokens, and the same keys and values cached."""
    from thrifty_hf.steps import Step

    model = families.make_model("llama", layers=3)
    lm = StaticLM(model, max_len=32, graphs=False)
    assert lm.body.kind == "fused"
    tokens = torch.tensor([[5, 9, 2, 7, 30, 31], [3, 3, 8, 0, 0, 0]])
    zeros = torch.zeros(2, dtype=torch.long)
    lm.reset(2)
    assert Step(lm.cache, lm.slots, zeros, 6, fresh=True).causal
    assert not Step(lm.cache, lm.slots, zeros, 6, parents=torch.zeros(2, 6), fresh=True).causal
    got, _ = lm.forward(tokens, zeros, logits=False, fresh=True)
    cached = lm.cache.clone()
    want, _ = lm.forward(tokens, zeros, logits=False)
    for row, real in enumerate((6, 3)):
        _close(got[row, :real], want[row, :real], f"row {row} hidden states")
    _close(cached, lm.cache, "the keys and values written")


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_compiled_body_serves_a_tree_after_a_chain_of_the_same_shape(family):
    """A tree step of the shape a chain step compiled for equals the eager tree step: the
    compiled forward reads the step's slots and positions as two inputs even where a chain
    makes them equal (the generic body, and the fused one, whose rotary tables come in)."""
    model = families.make_model(family)
    lm = StaticLM(model, max_len=32, graphs=False, compile=True)
    ref = StaticLM(model, max_len=32, graphs=False)
    tokens = torch.tensor([[9, 10, 11, 12], [11, 12, 13, 14]])
    for parents in (None, torch.tensor([[-1, 0, 0, 1], [-1, 0, 1, 1]])):
        for m in (lm, ref):
            n, _ = m.prefill([[1, 2, 3, 4], [5, 6, 7]])
        got, want = lm.forward(tokens, n, parents=parents), ref.forward(tokens, n, parents=parents)
        _close(got[1], want[1], f"{'tree' if parents is not None else 'chain'} logits")


SYNCING = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique",
           "_unique2", "unique_consecutive", "unique_dim", "equal", "is_nonzero", "bincount",
           "repeat_interleave"}
"""aten operators whose result size or value the host must read: on CUDA each waits for the
GPU, which a CUDA graph capture refuses (``repeat_interleave`` only with tensor repeats and no
``output_size``, which its Tensor overload is)."""


def _host_reads(fn) -> list[str]:
    """The syncing operators ``fn`` dispatches (CPU tensors dispatch the same ones)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = []

    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func._schema.name.split("::")[-1]
            if name in SYNCING and not (name == "repeat_interleave"
                                        and func._overloadname != "Tensor"):
                seen.append(name)
            return func(*args, **(kwargs or {}))

    with Watch():
        fn()
    return seen


@pytest.mark.parametrize("family", sorted(MODELS))
def test_the_static_forward_never_reads_a_tensor_on_the_host(family):
    """What lets every family capture as a CUDA graph, checked on the CPU: a prefill, a
    multi-token step, a tree step over part of the slots (and an admission) dispatch no
    operator that reads a tensor on the host."""
    model = MODELS[family]()
    lm = StaticLM(model, max_len=32, graphs=False)
    n, _ = lm.prefill([[1, 2, 3], [4, 5]])
    assert _host_reads(lambda: lm.prefill([[1, 2, 3], [4, 5]])) == []
    assert _host_reads(lambda: lm.forward(torch.tensor([[6, 7], [8, 9]]), n)) == []
    parents = torch.tensor([[-1, 0, 0, 1], [-1, 0, 1, 1]])
    assert _host_reads(lambda: lm.forward(torch.tensor([[6, 7, 8, 9]] * 2), n, parents=parents,
                                          span=16)) == []
    assert _host_reads(lambda: lm.prefill([[7, 8, 9]], row=1)) == []


def test_a_tree_step_and_its_compaction_never_read_a_tensor_on_the_host():
    """``score_tree`` and ``keep_path`` as the engine calls them, and ``keep_greedy_tree`` and
    ``keep_greedy_chain`` (a pass, its greedy walk and the keeping, one graph on CUDA), far from
    the cache's end (where the capacity check reads the longest row once)."""
    fv = FastVerifier(families.make_model("gemma2"), None, max_len=32, graphs=False,
                      eos_token_ids=())
    fv.start([[1, 2, 3], [4, 5]])
    tokens = torch.tensor([[3, 7, 8, 9], [5, 1, 2, 3]])
    parents = torch.tensor([[-1, 0, 0, 1], [-1, 0, 1, 1]])
    lengths = torch.tensor([4, 3])
    assert _host_reads(lambda: fv.score_tree(tokens, parents, lengths)) == []
    path, kept = torch.tensor([[0, 1, 3], [0, 2, 0]]), torch.tensor([3, 2])
    assert _host_reads(lambda: fv.keep_path(path, kept)) == []
    shape = TreeShape(2, 2, 3)
    assert _host_reads(lambda: fv.keep_greedy_tree(tokens, parents, lengths, shape)) == []
    assert _host_reads(lambda: fv.keep_greedy_chain(tokens, lengths)) == []


def test_the_eager_experts_loop_reads_the_host_so_the_fast_path_swaps_it():
    """transformers' ``eager`` experts loop finds the experts hit with ``nonzero`` (a host
    read); a model configured with it runs ``grouped_mm`` on the fast path, same logits."""
    model = families.make_model("qwen2-moe")
    model.set_experts_implementation("eager")
    ids = torch.tensor([[1, 2, 3, 4]])
    assert "nonzero" in _host_reads(lambda: model(ids))
    lm = StaticLM(model, max_len=16, graphs=False)
    assert lm.body.experts == "grouped_mm"
    n, _ = lm.prefill([[1, 2]])
    assert _host_reads(lambda: lm.forward(torch.tensor([[3, 4]]), n)) == []
    _close(lm.forward(torch.tensor([[3, 4]]), n)[1][0], model(ids).logits[0, 2:], "logits")
    assert model.config._experts_implementation == "eager"  # restored after each forward


MOE = ("mixtral", "qwen2-moe", "qwen2-moe-window")


@pytest.mark.parametrize("family", MOE)
@pytest.mark.parametrize("name, implementation", [
    (generic.EXPERTS, "dense_experts"),
    (f"{generic.GATHERED}+{generic.EXPERTS}", "gathered_experts")])
def test_thriftys_experts_equal_transformers_with_no_host_read(family, name, implementation,
                                                               monkeypatch):
    """The experts implementations of CUDA graphs (dense, on every dtype and GPU) and of
    compiled steps (gathered for steps of few tokens, dense here beyond), run on the CPU: the
    same logits as transformers' own forward over ragged steps, and nothing read on the host."""
    calls, original = [], getattr(generic, implementation)

    def counted(*args):
        calls.append(args[-1].shape[0])  # the step's tokens
        return original(*args)

    monkeypatch.setattr(generic, implementation, counted)  # what the body registers
    model = MODELS[family]()
    lm = StaticLM(model, max_len=64, graphs=False)
    lm.body.experts = name
    _ragged_steps(lm, model, family)
    seq = list(range(1, 25))  # a decoding step: one row, one token (2 pairs of 4 experts)
    n, _ = lm.prefill([seq])
    _check(lm, model, [seq], torch.tensor([[7]]), n, f"{family} decoding step")
    assert 1 in calls
    n, _ = lm.prefill([[1, 2, 3], [4, 5]])
    assert _host_reads(lambda: lm.forward(torch.tensor([[6, 7], [8, 9]]), n)) == []


def test_only_bodies_with_experts_compile_one_row_products_fused(monkeypatch):
    """A compiled body with experts gathers those of small steps and so needs inductor to fuse
    a gathered weight into its product (``coordinate_descent_tuning``); a dense one compiles
    with inductor's defaults."""
    seen = {}

    def compile_(fn, **kwargs):
        seen[type(fn.__self__).__name__ + str(id(fn.__self__))] = kwargs["options"]
        return fn

    monkeypatch.setattr(torch, "compile", compile_)
    model = MODELS["qwen2-moe"]()
    model.set_experts_implementation("eager")  # which the CPU fast path replaces
    moe = StaticLM(model, max_len=16, graphs=False, compile=True)
    dense = StaticLM(MODELS["qwen2"](), max_len=16, graphs=False, compile=True)
    assert moe.body.experts.startswith(generic.GATHERED + "+")
    assert seen[f"GenericBody{id(moe.body)}"] == {"coordinate_descent_tuning": True}
    assert seen[f"GenericBody{id(dense.body)}"] == {}


def test_compiled_steps_gather_the_experts_of_few_tokens_only(monkeypatch):
    """A step of no more (token, expert) pairs than experts runs gathered, a larger one the
    fallback: gathering reads each pair's expert, so it must not serve a prefill."""
    model = MODELS["qwen2-moe"]()
    experts = model.model.layers[0].mlp.experts
    count, top_k = experts.gate_up_proj.shape[0], model.config.num_experts_per_tok
    ran = []
    monkeypatch.setattr(generic, "gathered_experts", lambda *a: ran.append("gathered"))
    monkeypatch.setattr(generic, "dense_experts", lambda *a: ran.append("dense"))
    generic._register()
    h = torch.randn(count // top_k + 1, experts.gate_up_proj.shape[-1])
    for tokens in (1, count // top_k, count // top_k + 1):
        index = torch.zeros(tokens, top_k, dtype=torch.long)
        generic.fitted_experts(generic.EXPERTS, experts, h[:tokens], index, index.float())
    assert ran == ["gathered", "gathered", "dense"]


def test_cuda_graphs_get_grouped_mm_only_where_its_kernel_runs_on_the_device():
    assert generic.experts_for(torch.bfloat16, (9, 0)) == "grouped_mm"
    assert generic.experts_for(torch.bfloat16, (10, 0)) == "grouped_mm"
    for dtype, capability in ((torch.float32, (9, 0)), (torch.float16, (9, 0)),
                              (torch.bfloat16, (8, 0))):
        assert generic.experts_for(dtype, capability) == generic.EXPERTS


def test_dense_experts_refuse_a_layout_they_do_not_compute():
    model = MODELS["mixtral"]()
    experts = model.model.layers[0].mlp.experts
    experts.has_bias = True
    h = torch.randn(3, experts.gate_up_proj.shape[-1])
    with pytest.raises(ModelFormatError, match="gated, unbiased"):
        generic.dense_experts(experts, h, torch.tensor([[0, 1]] * 3), torch.ones(3, 2))


def test_a_draft_whose_layers_are_not_llama_leaves_the_fused_body(tiny_llama, tiny_draft):
    draft = tiny_draft(tiny_llama(), 32)
    assert fused_refusal(draft, 64) is None
    draft.model = transformers.Qwen2Model(families.make_config("qwen2"))
    assert "Qwen2Model" in fused_refusal(draft, 64)
