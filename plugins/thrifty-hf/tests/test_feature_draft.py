"""Feature drafts (EAGLE-style: they read the verifier's final hidden states) on tiny random
Llama models, CPU. The fast path runs eagerly here; the GPU replays the same forward."""

import types

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from thrifty.errors import ConfigError, IncompatibleModelsError, ModelFormatError  # noqa: E402
from thrifty.speculative import SpeculativeDecoder  # noqa: E402
from thrifty.speculative.record import record, replay  # noqa: E402
from thrifty.testing.toy import ToyTokenizer, ToyVerifier  # noqa: E402
from thrifty_hf.distill import evaluate, step_loss  # noqa: E402
from thrifty_hf.drafts import load_draft, save_draft  # noqa: E402
from thrifty_hf.fast import FastFeatureDraft, FastVerifier, StaticLM  # noqa: E402

PROMPTS = [[1, 5, 9, 2], [3, 3], [7, 1, 2, 3, 4, 5, 6], [8]]


@pytest.fixture(scope="module")
def verifier(tiny_llama):
    return tiny_llama()


@pytest.fixture(scope="module")
def texts(verifier):
    """Text the verifier itself writes (sampled), split 80/20 into training and held-out."""
    torch.manual_seed(0)
    starts = torch.randint(0, 40, (80, 2))
    out = verifier.generate(starts, do_sample=True, max_new_tokens=30, min_new_tokens=30,
                            temperature=0.7, pad_token_id=0)
    return out[:64], out[64:]


@pytest.fixture(scope="module")
def trained(verifier, texts, tiny_draft):
    """A one-layer feature draft after 150 short distillation steps (unroll 2)."""
    train, held = texts
    draft = tiny_draft(verifier, 32, features=True).train()
    for p in draft.parameters():
        p.data.div_(4.0)  # the default init: trains faster than the sharpened one
    params = [p for p in draft.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    off = torch.autocast("cpu", enabled=False)
    before = evaluate(draft.eval(), verifier, held, "cpu", off, batches=2)
    gen = torch.Generator().manual_seed(0)
    draft.train()
    for _ in range(150):
        ids = train[torch.randint(0, len(train), (16,), generator=gen)]
        loss = step_loss(draft, verifier, ids, off, unroll=2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    draft.eval()
    return draft, before, evaluate(draft, verifier, held, "cpu", off, batches=2)


def fast(model, **kw):
    return FastVerifier(model, ToyTokenizer(), max_len=128, graphs=False, eos_token_ids=(), **kw)


def test_static_forward_with_features_matches_the_hf_forward(verifier, tiny_draft):
    draft = tiny_draft(verifier, 32, depth=2, features=True)
    lm = StaticLM(draft, max_len=32, graphs=False)
    torch.manual_seed(3)
    feats = torch.randn(2, 5, 32)
    n, _ = lm.prefill([[3, 4, 5], [6]], feats[:, :3])
    hidden, out = lm.forward(torch.tensor([[9, 10], [11, 12]]), n,
                             torch.stack([feats[0, 3:5], feats[1, 1:3]]))
    for b, (seq, f) in enumerate([([3, 4, 5, 9, 10], feats[0]),
                                  ([6, 11, 12], feats[1, [0, 1, 2]])]):
        ref_h, _ = draft.hidden(torch.tensor([seq]), f[None], use_cache=False)
        ref = draft(input_ids=torch.tensor([seq]), features=f[None]).logits[0]
        assert torch.allclose(out[b], ref[-2:], atol=1e-4)
        assert torch.allclose(hidden[b], ref_h[0, -2:], atol=1e-4)


def test_distillation_teaches_the_draft_to_agree_with_the_verifier(trained):
    _, before, after = trained
    assert after["heldout_top1"] > before["heldout_top1"] + 0.3
    assert after["heldout_top1"] >= 0.6
    # reading its own features is harder than reading the verifier's, but far from chance
    assert 0.3 <= after["heldout_top1_own"] <= after["heldout_top1"] + 0.05


@pytest.mark.parametrize("gamma", [1, 3, 5])
def test_speculative_with_a_feature_draft_equals_greedy(verifier, trained, gamma):
    draft = FastFeatureDraft(trained[0], max_len=128, graphs=False)
    spec = SpeculativeDecoder(fast(verifier), draft, gamma).generate(PROMPTS, max_new_tokens=20)
    for prompt, got in zip(PROMPTS, spec.token_ids):
        ref = verifier.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False,
                                min_new_tokens=20)
        assert got == ref[0, len(prompt):].tolist()
    m = spec.metrics
    assert m.target_passes < 20  # the draft was right often enough to save passes
    assert sum(m.accepted_at) > 0


@pytest.mark.parametrize("batch_size", [None, 2], ids=["one-batch", "two-rows-refilled"])
def test_padded_prefills_keep_a_feature_draft_exact(verifier, trained, batch_size):
    """Prefills padded to a bucket (as on CUDA) feed a feature draft the same features, also
    when a row takes the next prompt mid-batch (continuous batching)."""
    ver, draft = fast(verifier), FastFeatureDraft(trained[0], max_len=128, graphs=False)
    ver.lm.prefill_bucket = draft.lm.prefill_bucket = 8
    spec = SpeculativeDecoder(ver, draft, 3).generate(PROMPTS, max_new_tokens=20,
                                                      batch_size=batch_size)
    for prompt, got in zip(PROMPTS, spec.token_ids):
        ref = verifier.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False,
                                min_new_tokens=20)
        assert got == ref[0, len(prompt):].tolist()
    assert spec.metrics.target_passes < 20


class Cycle:
    """A lookahead policy that walks a fixed list of γ, 0 included."""

    def __init__(self, gammas):
        self.gammas, self.i = gammas, 0

    def gamma(self):
        self.i += 1
        return self.gammas[(self.i - 1) % len(self.gammas)]

    def observe(self, proposed, accepted):
        pass


def test_changing_lookahead_and_skipped_drafting_keep_output_exact(verifier, trained):
    draft = FastFeatureDraft(trained[0], max_len=128, graphs=False)
    target = SpeculativeDecoder(fast(verifier)).generate(PROMPTS, max_new_tokens=24).token_ids
    got = SpeculativeDecoder(fast(verifier), draft, Cycle([2, 0, 4, 1, 0, 0, 3])).generate(
        PROMPTS, max_new_tokens=24).token_ids
    assert got == target


def test_replayed_acceptance_equals_live_acceptance(verifier, trained):
    """Replay feeds the draft the verifier's features of the recorded text; the live engine
    feeds them after each pass. Both must give the draft the same view, hence the same TAR."""
    v = fast(verifier)
    draft = FastFeatureDraft(trained[0], max_len=128, graphs=False)
    rec = record(v, PROMPTS, max_new_tokens=16, horizon=4)
    acc = replay(rec, draft, batch=4, verifier=v)
    tars = []
    for gamma in range(1, 5):
        live = [SpeculativeDecoder(v, draft, gamma).generate([p], max_new_tokens=16).metrics
                for p in PROMPTS]
        live_tar = sum(m.emitted for m in live) / sum(m.row_steps for m in live)
        assert acc.tar(gamma) == pytest.approx(live_tar, abs=1e-12)
        tars.append(live_tar)
    assert len(set(tars)) > 1
    with pytest.raises(ConfigError, match="pass the verifier"):
        replay(rec, draft, batch=4)


def test_sampled_proposals_come_with_their_distribution(verifier, trained):
    from thrifty.speculative import Sampling

    draft = FastFeatureDraft(trained[0], max_len=128, graphs=False)
    v = fast(verifier)
    v.start(PROMPTS)
    draft.observe(v.features)
    draft.start(PROMPTS)
    prop = draft.propose(3, Sampling(temperature=0.8), torch.Generator().manual_seed(0))
    assert prop.q.shape == (4, 3, 40)
    assert torch.allclose(prop.q.sum(-1), torch.ones(4, 3), atol=1e-5)
    picked = prop.q.gather(-1, prop.tokens[..., None])
    assert (picked > 0).all()


def test_feature_draft_round_trips_through_the_draft_format(verifier, trained, tmp_path):
    draft = trained[0]
    save_draft(draft, tmp_path / "d", verifier={"name": "tiny"},
               architecture={"features": True}, command="test", training={})
    loaded = load_draft(tmp_path / "d", verifier, dtype=torch.float32)
    assert loaded.fc is not None
    ids, feats = torch.tensor([[1, 2, 3]]), torch.randn(1, 3, 32)
    want = draft(input_ids=ids, features=feats).logits
    assert torch.allclose(loaded(input_ids=ids, features=feats).logits, want, atol=5e-2)


def test_misuse_is_a_clear_error(verifier, trained, tmp_path, tiny_draft):
    draft = FastFeatureDraft(trained[0], max_len=128, graphs=False)
    with pytest.raises(IncompatibleModelsError, match="hf-fast"):
        SpeculativeDecoder(ToyVerifier(vocab=40), draft, 3)
    with pytest.raises(ModelFormatError, match="hf-fast"):
        trained[0](input_ids=torch.tensor([[1, 2]]))
    with pytest.raises(ConfigError, match="not a feature draft"):
        FastFeatureDraft(tiny_draft(verifier, 32), graphs=False)
    with pytest.raises(ConfigError, match="observe"):
        FastFeatureDraft(trained[0], graphs=False).start(PROMPTS)
    from thrifty_hf.models import make_draft

    save_draft(trained[0], tmp_path / "d", verifier={"name": "tiny"},
               architecture={"features": True}, command="test", training={})
    host = types.SimpleNamespace(model=verifier, device=torch.device("cpu"), name="tiny",
                                 vocab_size=40, tokenizer=ToyTokenizer())
    with pytest.raises(IncompatibleModelsError, match="hf-fast"):
        make_draft(host, str(tmp_path / "d"))


def test_profiling_feeds_a_feature_draft_through_the_timing_proxy(verifier, trained):
    """measure() wraps models in a proxy that forwards attributes; the engine must still see a
    feature draft (Python 3.12 protocol checks do not look through such proxies)."""
    from thrifty.speculative.profile import draft_latency, measure

    v = fast(verifier)
    draft = FastFeatureDraft(trained[0], max_len=128, graphs=False)
    m = measure(v, draft, 2, 2, PROMPTS, max_new_tokens=8, repeats=1)
    assert m.tar > 1.0
    ms = draft_latency(draft, PROMPTS, 2, [1, 3], v.device, repeats=1, warmup=0, verifier=v)
    assert set(ms) == {1, 3} and all(t > 0 for t in ms.values())


def _proposal_start(draft, verifier, prompts):
    """``draft`` started on ``prompts`` as the engine starts it (the verifier's prefill
    features first)."""
    ver = fast(verifier)
    ver.start(prompts)
    draft.observe(ver.features)
    draft.start(prompts)
    return draft


def test_an_expanding_tree_of_one_branch_is_the_greedy_chain(verifier, trained):
    """``trees="expand"`` with one child a node grows the draft's greedy chain: the tree
    steps (every node so far at its depth's position, fed its parent's feature) compute what
    the chain's single steps do."""
    from thrifty.speculative import Sampling, TreeShape

    prompts = PROMPTS[:3]
    chain = _proposal_start(FastFeatureDraft(trained[0], max_len=128, graphs=False),
                            verifier, prompts).propose(4, Sampling(), None).tokens
    tree = _proposal_start(FastFeatureDraft(trained[0], max_len=128, graphs=False,
                                            trees="expand"), verifier, prompts).propose_tree(
        TreeShape(4, 1, 4), Sampling(), None)
    assert torch.equal(tree.tokens, chain)
    assert tree.parents.tolist() == [[0, 1, 2, 3]] * len(prompts)


def test_an_expanding_tree_keeps_the_likeliest_nodes_parents_first(verifier, trained):
    """With two children a node: every node's parent comes before it, no node has more than
    two children, the first depth holds the draft's two likeliest tokens, and the tree goes
    deeper than a chain with sibling leaves can (a node under a non-chain node)."""
    from thrifty.speculative import Sampling, TreeShape

    shape = TreeShape(4, 2, 7)
    draft = _proposal_start(FastFeatureDraft(trained[0], max_len=128, graphs=False,
                                             trees="expand"), verifier, PROMPTS)
    chain = _proposal_start(FastFeatureDraft(trained[0], max_len=128, graphs=False),
                            verifier, PROMPTS).propose(1, Sampling(), None).tokens
    tree = draft.propose_tree(shape, Sampling(), None)
    assert tree.lengths.tolist() == [7] * len(PROMPTS) and tree.q is None
    deep_under_sibling = False
    for b in range(len(PROMPTS)):
        parents = tree.parents[b].tolist()
        assert all(0 <= p <= j for j, p in enumerate(parents))
        assert max(parents.count(p) for p in set(parents)) <= 2
        roots = [j for j, p in enumerate(parents) if p == 0]
        assert int(chain[b, 0]) in tree.tokens[b, roots].tolist()
        first = roots[0] + 1  # node index of the likeliest first token
        deep_under_sibling |= any(p not in (0, first) for p in parents)
    assert deep_under_sibling


def test_a_compiled_expansion_grows_the_eager_trees_with_no_graph_break(verifier, trained):
    """With ``compile=True`` the whole expansion (five draft steps and the ranking, parents
    and ancestry between them) compiles as one function, with no graph break, and grows the
    trees the eager expansion grows."""
    import torch._dynamo
    from thrifty.speculative import Sampling, TreeShape
    from thrifty_hf.fast import _expanded
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    shape = TreeShape(5, 4, 16)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    trees = [_proposal_start(FastFeatureDraft(trained[0], max_len=128, graphs=False,
                                              trees="expand", compile=compile), verifier,
                             PROMPTS).propose_tree(shape, Sampling(), None)
             for compile in (False, True)]
    assert not torch._dynamo.utils.counters["graph_break"]
    assert len(_debug_get_cache_entry_list(_expanded.__code__)) == 1  # compiled once
    for field in ("tokens", "parents", "lengths"):
        assert torch.equal(getattr(trees[1], field), getattr(trees[0], field)), field


@pytest.mark.parametrize("batch_size", [None, 2], ids=["one-batch", "two-rows-refilled"])
def test_expanding_trees_keep_a_feature_draft_exact(verifier, trained, batch_size):
    from thrifty.speculative import TreeShape

    ver = fast(verifier)
    draft = FastFeatureDraft(trained[0], max_len=128, graphs=False, trees="expand")
    target = SpeculativeDecoder(ver).generate(PROMPTS, max_new_tokens=20).token_ids
    spec = SpeculativeDecoder(ver, draft, TreeShape(3, 3, 8)).generate(
        PROMPTS, max_new_tokens=20, batch_size=batch_size)
    assert spec.token_ids == target
    assert spec.metrics.tar > 1.5


@pytest.mark.parametrize("features", [False, True], ids=["token", "feature"])
def test_an_unknown_way_to_grow_trees_is_refused(tiny_draft, verifier, features):
    from thrifty_hf.fast import fast_draft

    with pytest.raises(ConfigError, match="trees='bushy' is not one of siblings, expand"):
        fast_draft(tiny_draft(verifier, 32, features=features), trees="bushy", max_len=64,
                   graphs=False)


def test_a_pipeline_refuses_an_unknown_way_to_grow_trees_before_loading():
    import thrifty

    with pytest.raises(ConfigError,
                       match=r"option 'trees' must be one of \['siblings', 'expand'\]"):
        thrifty.pipeline("hf-fast", [("hf-fast", {"model": "nowhere", "trees": "bushy"})])
