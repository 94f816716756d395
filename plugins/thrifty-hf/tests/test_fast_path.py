"""The static-cache fast path against Hugging Face's own forward, on tiny random models (CPU).

CUDA graphs are not exercised here (no GPU in CI); the graph replays the very ``forward`` these
tests check, and bench/gpu_speed.py checks fp32 greedy identity on the GPU.
"""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from thrifty.speculative import SpeculativeDecoder  # noqa: E402
from thrifty.testing.toy import ToyTokenizer  # noqa: E402
from thrifty_hf.fast import FastDraft, FastVerifier, StaticLM  # noqa: E402


def test_static_forward_matches_hf_with_ragged_rows_and_rollback(tiny_llama):
    model = tiny_llama()
    lm = StaticLM(model, max_len=64, graphs=False)
    prompts = [[1, 2, 3, 4, 5, 6], [7, 8, 9]]
    n, _ = lm.prefill([p[:-1] for p in prompts])
    # append 3 tokens per row (row 1 pads its last), keep 2 and 1, then append again
    step1 = torch.tensor([[6, 11, 12], [9, 13, 0]])
    out1 = lm.forward(step1, n)[1]
    n = n + torch.tensor([2, 1])
    step2 = torch.tensor([[20, 21], [22, 23]])
    out2 = lm.forward(step2, n)[1]
    seqs = [[1, 2, 3, 4, 5, 6, 11, 20, 21], [7, 8, 9, 22, 23]]
    for b, seq in enumerate(seqs):
        ref = model(torch.tensor([seq])).logits[0].float()
        tail = len(seq) - 2
        assert torch.allclose(out2[b], ref[tail:], atol=1e-4), b
    ref0 = model(torch.tensor([[1, 2, 3, 4, 5, 6, 11, 12]])).logits[0]
    assert torch.allclose(out1[0], ref0[5:], atol=1e-4)


@pytest.mark.parametrize("width", [32, 64, 16])
def test_fast_draft_module_matches_its_hf_forward(width, tiny_llama, tiny_draft):
    verifier = tiny_llama()
    draft = tiny_draft(verifier, width, depth=2)
    lm = StaticLM(draft, max_len=32, graphs=False)
    n, _ = lm.prefill([[3, 4, 5], [6]])
    out = lm.forward(torch.tensor([[9, 10], [11, 12]]), n)[1]
    for b, seq in enumerate([[3, 4, 5, 9, 10], [6, 11, 12]]):
        ref = draft(input_ids=torch.tensor([seq])).logits[0]
        assert torch.allclose(out[b], ref[-2:], atol=1e-4)


def speculative_equals_hf_greedy(verifier, draft, prompts, new: int):
    """Greedy speculative decoding with ``verifier`` and ``draft`` on the fast path (eager)
    equals the verifier's own ``generate``, in fewer passes than tokens; returns the fast
    verifier and draft."""
    fv = FastVerifier(verifier, ToyTokenizer(), max_len=128, graphs=False, eos_token_ids=())
    fd = FastDraft(draft, max_len=128, graphs=False)
    spec = SpeculativeDecoder(fv, fd, 3).generate(prompts, max_new_tokens=new)
    for prompt, got in zip(prompts, spec.token_ids):
        ref = verifier.generate(torch.tensor([prompt]), max_new_tokens=new, do_sample=False,
                                min_new_tokens=new)
        assert got == ref[0, len(prompt):].tolist()
    assert spec.metrics.target_passes < new * len(prompts)
    return fv, fd


def test_speculative_with_fast_models_equals_hf_greedy(tiny_llama, tiny_draft):
    verifier = tiny_llama()
    speculative_equals_hf_greedy(verifier, tiny_draft(verifier, 64),
                                 [[1, 5, 9, 2], [3, 3], [7, 1, 2, 3, 4, 5, 6]], 20)


@pytest.mark.parametrize("bucket", [4, 16])
def test_padded_prefill_changes_nothing_but_the_shape(bucket, tiny_llama, tiny_draft):
    """On CUDA prefills are padded to a bucket of lengths (so that a few graphs serve every
    prompt); the padding's cache slots must never be read: same features, same generation."""
    verifier = tiny_llama()
    draft = tiny_draft(verifier, 32)
    prompts = [[1, 5, 9, 2, 7], [3, 3], [7, 1, 2]]
    runs = []
    for b in (1, bucket):
        fv = FastVerifier(verifier, ToyTokenizer(), max_len=64, graphs=False, eos_token_ids=())
        fd = FastDraft(draft, max_len=64, graphs=False)
        fv.lm.prefill_bucket = fd.lm.prefill_bucket = b
        fv.start(prompts)
        features = fv.features.clone()
        out = SpeculativeDecoder(fv, fd, 3).generate(prompts, max_new_tokens=12)
        runs.append((features, out.token_ids))
    assert runs[0][0].shape == runs[1][0].shape == (3, 4, 32)
    assert torch.allclose(runs[0][0], runs[1][0], atol=1e-5)
    assert runs[0][1] == runs[1][1]


def test_overflow_is_refused_before_decoding(tiny_llama, tiny_draft):
    """The context window is the static cache or the model's positions, whichever is smaller,
    for the verifier and the draft; a run that would pass it is refused before any pass."""
    from thrifty.errors import ConfigError

    verifier = tiny_llama()  # max_position_embeddings = 128
    fv = FastVerifier(verifier, ToyTokenizer(), max_len=8, graphs=False, eos_token_ids=())
    assert fv.max_context == 8
    with pytest.raises(ConfigError, match=r"= 23 tokens exceed the context window of verifier "
                                          r"'hf-fast' \(8 tokens\)"):
        SpeculativeDecoder(fv).generate([[1, 2, 3]], max_new_tokens=20)
    assert fv.n is None  # nothing was prefilled
    wide = FastVerifier(verifier, ToyTokenizer(), max_len=256, graphs=False, eos_token_ids=())
    fd = FastDraft(tiny_draft(verifier, 32), max_len=64, graphs=False)
    assert (wide.max_context, fd.max_context) == (128, 64)
    decoder = SpeculativeDecoder(wide, fd, 4)
    with pytest.raises(ConfigError, match=r"= 65 tokens exceed the context window of draft "
                                          r"'hf-fast' \(64 tokens\)"):
        decoder.generate([[1, 2, 3]], max_new_tokens=58)
    assert len(decoder.generate([[1, 2, 3]], max_new_tokens=57).token_ids[0]) == 57


def test_decoding_builds_no_autograd_graph_and_frees_the_models(tiny_llama, tiny_draft):
    """A model's parameters require grad; decoding must not record autograd nodes, whose
    tensor <-> node cycles kept every cache and model alive after the decoder was dropped."""
    import gc
    import weakref

    verifier = tiny_llama()
    assert any(p.requires_grad for p in verifier.parameters())
    fv = FastVerifier(verifier, ToyTokenizer(), max_len=64, graphs=False, eos_token_ids=())
    fd = FastDraft(tiny_draft(verifier, 64), max_len=64, graphs=False)
    SpeculativeDecoder(fv, fd, 3).generate([[1, 5, 9, 2], [3, 3]], max_new_tokens=8)
    for lm in (fv.lm, fd.lm):
        assert not lm.cache.requires_grad and lm.cache.grad_fn is None
    cache = weakref.ref(fv.lm.cache)
    del fv, fd, verifier
    gc.collect()
    assert cache() is None


def test_fast_and_hf_paths_stop_at_the_same_tokens(tiny_llama):
    """Without an eos id in the generation or model config, both paths fall back to the
    tokenizer's, so neither stops where the other goes on."""
    from thrifty_hf.models import eos_token_ids

    class EosTokenizer(ToyTokenizer):
        eos_token_id = 7

    model = tiny_llama()
    fv = FastVerifier(model, EosTokenizer(), max_len=16, graphs=False)
    assert fv.eos_token_ids == eos_token_ids(model, EosTokenizer()) == {7}
    model.generation_config.eos_token_id = [3, 5]
    assert FastVerifier(model, EosTokenizer(), max_len=16, graphs=False).eos_token_ids == {3, 5}


# -- attention over the slots in use -------------------------------------------------------------
@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_a_step_reads_only_the_slots_of_its_span(family):
    """With a span, attention never touches the slots past it: NaN there (which reading them,
    even masked, would spread) changes nothing; the fused body (Llama) and the generic one
    (Gemma 2: soft-capped scores, windows)."""
    import families

    lm = StaticLM(families.make_model(family), max_len=64, graphs=False)
    n, _ = lm.prefill([list(range(1, 12)), [1, 2, 3]])
    tokens = torch.tensor([[4, 5, 6], [7, 8, 9]])
    _, want = lm.forward(tokens, n)
    lm.cache[..., 16:, :] = float("nan")
    _, got = lm.forward(tokens, n, span=16)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.isfinite(lm.forward(tokens, n)[1]).all()  # the poison is there to see


def test_span_is_the_next_bucket_of_the_rows_reach(tiny_llama):
    lm = StaticLM(tiny_llama(), max_len=40, graphs=False)
    lm.span_bucket = 16
    assert [lm.span(r) for r in (0, 1, 16, 17, 33, 40)] == [16, 16, 16, 32, 40, 40]
    assert lm.span(None) == 40


def _as_graphs(lm):
    """Let ``lm`` replay its functions as stand-in CUDA graphs on the CPU: captured once per
    key, their outputs buffers refilled in place at each replay, as a real graph's are."""

    class Replayed:
        def __init__(self, fn, static):
            self.fn, self.static = fn, static
            self.out = fn(*static)

        def replay(self):
            for mine, new in zip(self.out, self.fn(*self.static)):
                if mine is not None:
                    mine.copy_(new)

    def capture(fn, inputs):
        graph = Replayed(fn, tuple(t.clone() for t in inputs))
        return graph, graph.static, graph.out

    lm.graphs_on = True
    lm._capture = capture
    return lm


def test_a_run_captures_one_graph_per_span_and_crosses_buckets_exactly(tiny_llama, tiny_draft):
    """Rows that grow across span buckets mid-run (a prompt that starts in one bucket and a
    longer one) get one step graph per (shape, span), and the same tokens as a verifier that
    reads every slot, target-only and speculative."""
    verifier = tiny_llama()
    prompts = [[1, 5, 9, 2, 7], list(range(1, 14))]
    runs = []
    for bucket in (8, 64):
        fv = FastVerifier(verifier, ToyTokenizer(), max_len=64, graphs=False, eos_token_ids=())
        _as_graphs(fv.lm).span_bucket = bucket
        fd = FastDraft(tiny_draft(verifier, 32), max_len=64, graphs=False)
        _as_graphs(fd.lm).span_bucket = bucket
        alone = SpeculativeDecoder(fv).generate(prompts, max_new_tokens=30).token_ids
        spans = {key[2] for key in fv.lm._graphs if key[0] == "greedy step"}
        spec = SpeculativeDecoder(fv, fd, 3).generate(prompts, max_new_tokens=30).token_ids
        drafted = {key[3] for key in fd.lm._graphs if key[0] == "greedy"}
        runs.append((alone, spec, spans, drafted))
    assert runs[0][2] == {16, 24, 32, 40, 48} and runs[1][2] == {64}
    assert len(runs[0][3]) > 2 and runs[1][3] == {64}  # the draft's proposals read spans too
    assert runs[0][0] == runs[1][0] == runs[0][1] == runs[1][1]


def test_a_path_wider_than_its_tree_keeps_its_nodes_at_the_end_of_the_cache(tiny_llama):
    """The engine's path is as wide as the tree shape's depth + 1, which a draft's tree may be
    narrower than; in the cache's last slots only the tree's own columns may move."""
    model = tiny_llama()
    fv = FastVerifier(model, ToyTokenizer(), max_len=16, graphs=False, eos_token_ids=())
    prompt = list(range(1, 15))  # 13 cached tokens: the tree's 3 columns fill the cache
    fv.start([prompt])
    fv.score_tree(torch.tensor([[14, 20, 21]]), torch.tensor([[-1, 0, 0]]), torch.tensor([3]))
    fv.keep_path(torch.tensor([[0, 2, 0, 0, 0]]), torch.tensor([2]))
    got = fv.score(torch.tensor([[22]]), torch.tensor([1]))[0, 0]
    want = model(torch.tensor([prompt + [21, 22]])).logits[0, -1]
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("depth, prompt_len", [(2, 6), (4, 13)],
                         ids=["mid-cache", "path-wider-than-the-tree-at-the-cache-end"])
def test_keeping_a_greedy_tree_in_one_call_equals_scoring_walking_and_keeping(
        tiny_llama, depth, prompt_len):
    """``keep_greedy_tree`` (one graph on CUDA) keeps what ``score_tree``, greedy
    ``accept_tree`` and ``keep_path`` keep: the same path, counts, next tokens and features,
    and the next step scores the same; also where the shape's depth + 1 is wider than the tree
    and the tree fills the cache."""
    from thrifty.speculative import TreeShape, accept_tree

    model = tiny_llama()
    prompts = [list(range(1, prompt_len + 1)), [7, 3, 9]]
    target = model(torch.tensor([prompts[1]])).logits[0, -1].argmax().item()
    # row 1's node 2 is the verifier's own next token, so its kept path moves column 2
    tokens = torch.tensor([[prompts[0][-1], 20, 21], [prompts[1][-1], target + 1, target]])
    parents = torch.tensor([[-1, 0, 0], [-1, 0, 0]])
    lengths = torch.tensor([3, 3])
    shape = TreeShape(depth, 2, depth)
    kept_by = []
    for one_call in (False, True):
        fv = FastVerifier(model, ToyTokenizer(), max_len=16, graphs=False, eos_token_ids=())
        fv.start(prompts)
        if one_call:
            path, kept, nxt = fv.keep_greedy_tree(tokens, parents, lengths, shape)
        else:
            logits = fv.score_tree(tokens, parents, lengths)
            path, kept, nxt = accept_tree(logits, tokens[:, 1:], parents[:, 1:], lengths - 1,
                                          shape, greedy=True)
            fv.keep_path(path, kept)
        features = fv.features.clone()
        after = fv.score(nxt[:, None], torch.ones_like(kept))
        kept_by.append((path, kept, nxt, fv.n, features, after))
    assert kept_by[0][0][1, :2].tolist() == [0, 2]
    for a, b in zip(*kept_by):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_an_expanding_token_tree_of_one_branch_is_the_greedy_chain(tiny_llama, tiny_draft):
    """A token draft's ``trees="expand"`` with one child a node grows its greedy chain: the
    tree steps (every node so far at its depth's position, attending to its ancestors)
    compute what the chain's single steps do."""
    from thrifty.speculative import Sampling, TreeShape

    verifier = tiny_llama()
    prompts = [[1, 5, 9, 2], [3, 3], [7, 1, 2, 3, 4, 5, 6]]
    chain, tree = (FastDraft(tiny_draft(verifier, 32), max_len=64, graphs=False, trees=trees)
                   for trees in ("siblings", "expand"))
    chain.start(prompts)
    tree.start(prompts)
    tokens = chain.propose(4, Sampling(), None).tokens
    grown = tree.propose_tree(TreeShape(4, 1, 4), Sampling(), None)
    assert torch.equal(grown.tokens, tokens)
    assert grown.parents.tolist() == [[0, 1, 2, 3]] * len(prompts)


@pytest.mark.parametrize("batch_size", [None, 2], ids=["one-batch", "two-rows-refilled"])
def test_expanding_trees_keep_a_token_draft_exact(tiny_llama, batch_size):
    """The verifier's own weights as a token draft growing EAGLE-2 trees: every output equals
    target-only decoding, and the draft's likeliest path is the verifier's greedy one, so
    nearly every pass keeps the tree's whole depth."""
    from thrifty.speculative import TreeShape

    verifier = tiny_llama()
    prompts = [[1, 5, 9, 2], [3, 3], [7, 1, 2, 3, 4, 5, 6], [8]]
    fv = FastVerifier(verifier, ToyTokenizer(), max_len=64, eos_token_ids=(), graphs=False)
    draft = FastDraft(verifier, max_len=64, graphs=False, trees="expand")
    target = SpeculativeDecoder(fv).generate(prompts, max_new_tokens=20).token_ids
    spec = SpeculativeDecoder(fv, draft, TreeShape(3, 2, 5)).generate(
        prompts, max_new_tokens=20, batch_size=batch_size)
    assert spec.token_ids == target
    assert spec.metrics.tar > 3.5


def _eagle2_paths(model, prompt, shape) -> set:
    """The EAGLE-2 tree by its definition, each node scored by the draft run over the prompt and
    the node's path from scratch (no cache, no tree step): each depth keeps the ``branch``
    likeliest children of the last one's nodes by path probability, and the tree the ``nodes``
    likeliest of all. Returns each kept node's path of tokens."""
    frontier, nodes = [(0.0, ())], []
    for d in range(shape.depth):
        children = []
        for score, path in frontier:
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([prompt + list(path)])).logits[0, -1]
            children += [(score + lp - 1e-6, path + (t,))
                         for t, lp in enumerate(logits.log_softmax(-1).tolist())]
        frontier = sorted(children, key=lambda c: -c[0])[: shape.branch]
        nodes += frontier
    return {path for _, path in sorted(nodes, key=lambda c: -c[0])[: shape.nodes]}


def test_an_expanding_tree_is_eagle2s_and_every_step_has_one_shape(tiny_llama, tiny_draft):
    """The tree steps of an expansion are padded to the last one's width (one compilation
    under ``compile=true``), fed the tree's ancestry kept up to date as it grows, and neither
    changes a node: the tree is the one its definition gives with the draft run over every
    path from scratch."""
    from thrifty.speculative import Sampling, TreeShape

    verifier = tiny_llama()
    prompts = [[1, 5, 9, 2], [3, 3], [7, 1, 2, 3, 4, 5, 6]]
    shape = TreeShape(5, 3, 12)
    model = tiny_draft(verifier, 32)
    draft = FastDraft(model, max_len=64, graphs=False, trees="expand")
    draft.start(prompts)
    widths = []
    forward = draft.lm.forward

    def recording(tokens, n, *args, parents=None, **kwargs):
        if parents is not None:
            widths.append(tokens.shape[1])
        return forward(tokens, n, *args, parents=parents, **kwargs)

    draft.lm.forward = recording
    tree = draft.propose_tree(shape, Sampling(), None)
    assert widths == [12] * 4
    for b, prompt in enumerate(prompts):
        paths: dict[int, tuple] = {0: ()}
        for i, (token, parent) in enumerate(zip(tree.tokens[b].tolist(),
                                                tree.parents[b].tolist())):
            assert parent <= i  # parents before children
            paths[i + 1] = paths[parent] + (token,)
        assert set(paths.values()) - {()} == _eagle2_paths(model, prompt, shape)
