"""A draft that proposes from its N most frequent tokens (``vocab=N``; :mod:`thrifty_hf.ranking`):
the ranking and its file, the restricted head against the full one (both bodies, soft-capping
included), proposals that are the argmax among those tokens, output identical to target-only
for chains, trees and continuous batching, a sampled q over token ids, and every refusal. CPU;
tiny random models with norm weights and biases perturbed."""

from __future__ import annotations

import types

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import families  # noqa: E402
from thrifty.errors import ConfigError, ModelFormatError  # noqa: E402
from thrifty.speculative import Sampling, SpeculativeDecoder, TreeShape  # noqa: E402
from thrifty.testing.toy import ToyTokenizer  # noqa: E402
from thrifty_hf import ranking  # noqa: E402
from thrifty_hf.drafts import shared_names  # noqa: E402
from thrifty_hf.fast import FastVerifier, StaticLM, fast_draft  # noqa: E402

PROMPTS = [[1, 5, 9, 2], [3, 3], [7, 1, 2, 3, 4, 5, 6], [8]]
VOCAB = 384
"""The tiny family models' vocabulary."""


@pytest.fixture(scope="module")
def verifier():
    """A perturbed random Llama (families.py) whose greedy text varies from token to token."""
    return families.make_model("llama")


@pytest.fixture(scope="module")
def target(verifier):
    """The verifier's greedy continuations of PROMPTS, 20 tokens each."""
    return SpeculativeDecoder(fast(verifier)).generate(PROMPTS, max_new_tokens=20).token_ids


@pytest.fixture(scope="module")
def ids(target):
    """The proposable tokens: the verifier's output ranked by count, less its last 12 distinct
    tokens (which a restricted draft can then never propose), and 40 tokens it never writes."""
    order, counts = ranking.rank(torch.tensor(target), VOCAB)
    seen = int((counts > 0).sum())
    assert seen > 30
    return torch.cat([order[: seen - 12], order[seen: seen + 40]])


@pytest.fixture(scope="module", params=[False, True], ids=["token-draft", "feature-draft"])
def draft(request, verifier, tiny_draft):
    """The token draft is the verifier's two layers and final norm, so that it proposes the
    verifier's own tokens (every one the restriction lets it); the feature draft is random,
    with its norms perturbed."""
    if request.param:
        return _perturbed(tiny_draft(verifier, 64, features=True), 5)
    d = tiny_draft(verifier, 64, depth=2)
    d.model.load_state_dict({k: v for k, v in verifier.model.state_dict().items()
                             if not k.startswith("embed_tokens.")}, strict=False)
    return d


def _perturbed(draft, seed: int):
    """``draft`` with its own parameters perturbed (families.perturb), not the embedding and
    head it shares with its verifier."""
    return families.perturb(draft, seed, skip=shared_names(draft)).eval()


def _outside(ids):
    """bool [VOCAB]: the tokens not in ``ids``."""
    return torch.ones(VOCAB, dtype=torch.bool).index_fill_(0, ids, False)


def fast(model):
    return FastVerifier(model, ToyTokenizer(), max_len=128, graphs=False, eos_token_ids=())


def test_a_ranking_orders_tokens_by_count_and_equal_counts_by_id():
    train = torch.tensor([[5, 3, 5, 9], [3, 5, 0, 9]])
    tokens, counts = ranking.rank(train, 12)
    assert tokens.tolist() == [5, 3, 9, 0, 1, 2, 4, 6, 7, 8, 10, 11]
    assert counts.tolist() == [3, 2, 2, 1] + [0] * 8
    with pytest.raises(ConfigError, match="outside the vocabulary of 8"):
        ranking.rank(train, 8)
    # of [5, 9, 1, 5]: 5 and 5 are among the first 1, 9 too among the first 3, 1 among 5
    shares = ranking.coverage(tokens, torch.tensor([5, 9, 1, 5]), [1, 3, 5])
    assert shares == {1: 0.5, 3: 0.75, 5: 1.0}


@pytest.mark.parametrize("body", ["fused", "generic"])
def test_restricted_logits_are_the_full_heads_columns_of_those_tokens(verifier, tiny_draft,
                                                                     ids, body):
    draft = _perturbed(tiny_draft(verifier, 64, features=True), 7)
    full = StaticLM(draft, max_len=32, graphs=False, body=body)
    cut = StaticLM(draft, max_len=32, graphs=False, body=body, vocab=ids)
    feats = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(1))
    for lm in (full, cut):
        lm.reset(2)
    tokens = torch.tensor([[3, 4, 5, 9, 10], [6, 11, 12, 1, 2]])
    n = torch.zeros(2, dtype=torch.long)
    (h_full, l_full), (h_cut, l_cut) = (lm.forward(tokens, n, feats) for lm in (full, cut))
    assert torch.equal(h_cut, h_full)
    assert l_cut.shape == (2, 5, len(ids))
    assert torch.allclose(l_cut, l_full[..., ids], atol=1e-5)
    widened = cut.full_logits(l_cut)
    assert torch.allclose(widened[..., ids], l_full[..., ids], atol=1e-5)
    assert torch.isneginf(widened[..., _outside(ids)]).all()
    assert torch.equal(cut.tokens_of(torch.tensor([0, len(ids) - 1])), ids[[0, -1]])


def test_a_soft_capped_familys_restricted_head_is_capped(tiny_draft, ids):
    """Gemma 2 caps its final logits (a hook on the full head); the generic body applies the
    cap to the restricted head's product itself."""
    gemma = families.make_model("gemma2")
    draft = _perturbed(tiny_draft(gemma, gemma.config.hidden_size), 9)
    full = StaticLM(draft, max_len=32, graphs=False)
    cut = StaticLM(draft, max_len=32, graphs=False, vocab=ids)
    assert cut.body.kind == "generic"
    tokens, n = torch.tensor([[3, 4, 5]]), torch.zeros(1, dtype=torch.long)
    for lm in (full, cut):
        lm.reset(1)
    draft.config.final_logit_softcapping = None
    _, raw = full.forward(tokens, n)
    # a cap at the largest logit bends every large one
    draft.config.final_logit_softcapping = float(raw.abs().max())
    _, want = full.forward(tokens, n)
    _, got = cut.forward(tokens, n)
    assert not torch.allclose(want, raw, atol=1e-2)
    assert torch.allclose(got, want[..., ids], atol=1e-5)


def _started(draft_model, verifier, prompts, **options):
    ver = fast(verifier)
    ver.start(prompts)
    d = fast_draft(draft_model, max_len=128, graphs=False, **options)
    if hasattr(d, "observe"):
        d.observe(ver.features)
    d.start(prompts)
    return d


def _masked(draft, ids):
    """The draft with its head's logits pushed down by 1e4 outside ``ids`` (a bias on a copy of
    its head): its unrestricted argmax is the argmax among ``ids``, an oracle for ``vocab``."""
    import copy

    ref = copy.deepcopy(draft)
    head = torch.nn.Linear(64, VOCAB, bias=True)
    head.weight = ref.lm_head.weight
    with torch.no_grad():
        head.bias.fill_(-1e4).index_fill_(0, ids, 0.0)
    ref.lm_head = head
    return ref


def test_a_restricted_chain_is_the_argmax_among_the_kept_tokens(verifier, draft, ids):
    """Every token of a restricted chain is the likeliest of the ``ids`` tokens, at each depth:
    the chain equals that of the full draft whose head is masked outside them (the generic
    body, which applies the head's bias), and differs from the unrestricted one."""
    cut = _started(draft, verifier, PROMPTS, vocab=ids).propose(5, Sampling(), None).tokens
    oracle = _started(_masked(draft, ids), verifier, PROMPTS, body="generic").propose(
        5, Sampling(), None).tokens
    free = _started(draft, verifier, PROMPTS).propose(5, Sampling(), None).tokens
    assert torch.equal(cut, oracle)
    assert not torch.equal(cut, free)
    assert torch.isin(cut, ids).all() and not torch.isin(free, ids).all()


@pytest.mark.parametrize("lookahead", ["3", "3x2:5", "expand 3x3:8"])
@pytest.mark.parametrize("batch_size", [None, 2], ids=["one-batch", "two-rows-refilled"])
def test_a_restricted_draft_keeps_output_identical_to_target_only(verifier, draft, ids, target,
                                                                  lookahead, batch_size):
    trees = "expand" if lookahead.startswith("expand") else "siblings"
    text = lookahead.split()[-1]
    la = TreeShape.parse(text) if "x" in text else int(text)
    d = fast_draft(draft, max_len=128, graphs=False, trees=trees, vocab=ids)
    spec = SpeculativeDecoder(fast(verifier), d, la).generate(PROMPTS, max_new_tokens=20,
                                                              batch_size=batch_size)
    assert spec.token_ids == target
    m = spec.metrics
    if draft.fc is None:  # the verifier's own layers: kept unless the restriction forbids
        assert 1.5 < m.tar and sum(m.accepted_at) < sum(m.proposed_at)


@pytest.mark.parametrize("trees", ["siblings", "expand"])
def test_a_tree_wider_than_the_proposable_tokens_is_refused(verifier, draft, ids, trees):
    d = _started(draft, verifier, PROMPTS, vocab=ids[:2], trees=trees)
    with pytest.raises(ConfigError, match="3 branches.*proposes 2.*raise vocab"):
        d.propose_tree(TreeShape(2, 3, 5), Sampling(), None)
    assert d.propose_tree(TreeShape(2, 2, 4), Sampling(), None).tokens.shape == (4, 4)


def test_a_sampled_restricted_proposal_is_a_distribution_over_the_kept_tokens(verifier, draft,
                                                                              ids):
    d = _started(draft, verifier, PROMPTS, vocab=ids)
    prop = d.propose(3, Sampling(temperature=0.9), torch.Generator().manual_seed(0))
    assert prop.q.shape == (4, 3, VOCAB)
    assert torch.allclose(prop.q.sum(-1), torch.ones(4, 3), atol=1e-5)
    assert (prop.q[..., _outside(ids)] == 0).all() and (prop.q[..., ids] > 0).any(-1).all()
    assert torch.isin(prop.tokens, ids).all()
    assert (prop.q.gather(-1, prop.tokens[..., None]) > 0).all()


@pytest.fixture(scope="module")
def distilled(small_draft_dir, tmp_path_factory):
    """A feature draft distilled for 2 steps on a cached corpus, and that cache."""
    from thrifty.cli import main

    root = tmp_path_factory.mktemp("ranked")
    cache = root / "corpus.safetensors"
    assert main(["distill", "--out", str(root / "draft"), "--depth", "1", "--init", "fresh",
                 "--features", "--steps", "2", "--verifier", str(small_draft_dir), "--corpus",
                 "code", "--code-tokens", "3000", "--batch", "2", "--seq-len", "32",
                 "--device", "cpu", "--corpus-cache", str(cache), "--quiet"]) == 0
    return root / "draft", cache


def test_distill_ranks_the_tokens_of_its_training_corpus(distilled):
    from safetensors import safe_open

    from thrifty_hf.distill import load_corpus

    folder, cache = distilled
    train = load_corpus(cache)["train"]
    with safe_open(str(folder / ranking.RANKING), "pt") as f:
        tokens, counts = f.get_tensor("tokens"), f.get_tensor("counts")
        assert '"code_tokens"' in f.metadata()["thrifty_ranking"]
    assert int(counts.sum()) == train.numel()
    assert torch.equal(counts.long(),
                       torch.bincount(train.flatten(), minlength=49152)[tokens.long()])
    assert (counts[:-1] >= counts[1:]).all()
    assert torch.equal(ranking.proposable(folder, 49152, 100), tokens[:100].long())


def test_rank_tokens_writes_the_ranking_of_a_corpus_cache(distilled, tmp_path, capsys):
    import shutil

    from thrifty.cli import main

    folder, cache = distilled
    copy = tmp_path / "draft"
    shutil.copytree(folder, copy)
    (copy / ranking.RANKING).unlink()
    with pytest.raises(ConfigError, match="thrifty rank-tokens --draft"):
        ranking.proposable(copy, 49152, 10)
    assert main(["rank-tokens", "--draft", str(copy), "--corpus-cache", str(cache)]) == 0
    assert "N=4096: " in capsys.readouterr().out
    from safetensors.torch import load_file

    written, by_distill = (load_file(str(f / ranking.RANKING)) for f in (copy, folder))
    assert written.keys() == by_distill.keys() == {"tokens", "counts"}
    assert all(torch.equal(written[k], by_distill[k]) for k in written)
    with pytest.raises(ConfigError, match="does not exist"):
        ranking.run(types.SimpleNamespace(draft=str(copy), corpus_cache=str(tmp_path / "no")))


def test_a_damaged_or_foreign_ranking_is_refused(distilled, tmp_path):
    import shutil

    from safetensors.torch import save_file

    folder, _ = distilled
    copy = tmp_path / "draft"
    shutil.copytree(folder, copy)
    (copy / ranking.RANKING).write_bytes(b"not safetensors")
    with pytest.raises(ModelFormatError, match="not a token ranking"):
        ranking.proposable(copy, 49152, 10)
    save_file({"tokens": torch.zeros(49152, dtype=torch.long)}, str(copy / ranking.RANKING))
    with pytest.raises(ModelFormatError, match="once each"):
        ranking.proposable(copy, 49152, 10)
    save_file({"tokens": torch.arange(40)}, str(copy / ranking.RANKING))
    with pytest.raises(ModelFormatError, match="once each"):
        ranking.proposable(copy, 49152, 10)
    for n in (-1, 49153):
        with pytest.raises(ConfigError, match="from 1 to 49152"):
            ranking.proposable(folder, 49152, n)


def test_the_plugin_option_loads_the_ranking_or_refuses(distilled, small_draft_dir):
    from thrifty_hf.fast_plugin import make_fast_draft, make_fast_verifier

    folder, _ = distilled
    ver = make_fast_verifier(str(small_draft_dir), device="cpu", dtype="float32", max_len=64)
    d = make_fast_draft(ver, str(folder), device="cpu", max_len=64, vocab=300)
    assert torch.equal(d.lm.proposable, ranking.proposable(folder, 49152, 300))
    assert d.vocab_size == 49152 and d.lm.body.p["head"].shape[0] == 300
    assert make_fast_draft(ver, str(folder), device="cpu", max_len=64).lm.proposable is None
    with pytest.raises(ConfigError, match="is a Hugging Face model: pass vocab=0"):
        make_fast_draft(ver, str(small_draft_dir), device="cpu", max_len=64, vocab=300)


def test_a_hugging_face_model_has_no_proposable_vocabulary(verifier, ids):
    with pytest.raises(ConfigError, match="not one: pass vocab=0"):
        StaticLM(verifier, max_len=32, graphs=False, body="generic", vocab=ids)
