"""The PairConnect draft: protocol conformance, distillation from a verifier, saved weights."""

import pytest
import torch

from thrifty.errors import IncompatibleModelsError, ModelNotFoundError
from thrifty.speculative import Sampling, SpeculativeDecoder
from thrifty.testing.drafts import DraftModelSuite
from thrifty.testing.toy import ToyVerifier
from thrifty_pairconnect.distill import distill, evaluate, teacher_logits
from thrifty_pairconnect.draft import PairConnectDraft, load_draft, save_draft
from thrifty_pairconnect.lm import PairConnectLM


def small_lm(vocab, seed=0, **kw):
    torch.manual_seed(seed)
    opts = dict(table_size=512, window=3, buckets=3, hashes=2, hidden=64, depth=1)
    opts.update(kw)
    return PairConnectLM(vocab, 32, **opts)


class TestPairConnectDraft(DraftModelSuite):
    @pytest.fixture
    def make_draft(self):
        return lambda verifier: PairConnectDraft(small_lm(verifier.vocab_size))


def test_teacher_logits_follow_the_verifier():
    verifier = ToyVerifier(vocab=6, seed=0)
    x = torch.tensor([[1, 2, 3, 4, 5], [0, 0, 1, 1, 2]])
    got = teacher_logits(verifier, x)
    assert got.shape == (2, 4, 6)
    for b in range(2):
        for i in range(4):  # logits after x[b, i + 1] depend on (x[b, i], x[b, i + 1])
            torch.testing.assert_close(got[b, i], verifier.table[x[b, i], x[b, i + 1]])


@pytest.fixture(scope="module")
def distilled():
    """A draft distilled from the toy trigram verifier on random text (40 short steps)."""
    verifier = ToyVerifier(vocab=8, seed=0)
    stream = torch.randint(0, 8, (4000,), generator=torch.Generator().manual_seed(0))
    student = small_lm(8)
    before = evaluate(verifier, student, stream, batch=4, seq_len=32)
    distill(verifier, student, stream, steps=40, batch=8, seq_len=24, lr=2e-2)
    after = evaluate(verifier, student, stream, batch=4, seq_len=32, seed=5)
    return verifier, student, before, after


def test_distillation_stops_at_its_time_budget_with_the_rate_annealed():
    from thrifty_pairconnect.training import lr_at

    verifier = ToyVerifier(vocab=8, seed=0)
    stream = torch.randint(0, 8, (4000,), generator=torch.Generator().manual_seed(0))
    result = distill(verifier, small_lm(8), stream, steps=10**6, batch=4, seq_len=16,
                     max_seconds=0.3)
    assert 1 <= result["steps"] < 10**6
    # past warm-up the rate follows the budget spent when time runs out before the steps do
    assert lr_at(100, 10**6, 1.0, 10, spent=1.0) == pytest.approx(0.1)
    assert lr_at(100, 10**6, 1.0, 10, spent=0.5) == pytest.approx(0.55)
    assert lr_at(100, 10**6, 1.0, 10) > 0.99


def test_distillation_learns_the_teacher(distilled):
    _, _, before, after = distilled
    assert after["kl"] < 0.25 * before["kl"]
    assert after["agreement"] > 0.9 > before["agreement"]


def test_distilled_draft_is_lossless_and_accepted(distilled):
    """Greedy speculative output equals target-only output, and the distilled draft is accepted
    far more often than an untrained one."""
    verifier, trained, _, _ = distilled
    prompts = [[1, 2, 3], [4], [5, 6, 7, 0, 1]]
    base = SpeculativeDecoder(verifier).generate(prompts, max_new_tokens=24)
    runs = {}
    for name, lm in (("trained", trained), ("untrained", small_lm(8, seed=3))):
        out = SpeculativeDecoder(verifier, PairConnectDraft(lm), 4).generate(
            prompts, max_new_tokens=24)
        assert out.token_ids == base.token_ids
        runs[name] = out.metrics.tar
    assert runs["trained"] > 3.5 > runs["untrained"]


def test_sampled_speculative_decoding_runs_with_exact_q():
    verifier = ToyVerifier(vocab=8, seed=0)
    draft = PairConnectDraft(small_lm(8))
    out = SpeculativeDecoder(verifier, draft, 3).generate(
        [[1, 2], [3]], max_new_tokens=10, sampling=Sampling(temperature=0.9, top_p=0.9), seed=1)
    assert [len(t) for t in out.token_ids] == [10, 10]


def test_save_load_round_trip_fp16(tmp_path):
    from thrifty.testing.toy import ToyTokenizer

    model = small_lm(8)
    path = tmp_path / "d.safetensors"
    size = save_draft(model, path, tokenizer=ToyTokenizer(), steps=1)
    again = load_draft(path, tokenizer=ToyTokenizer(), vocab_size=8)
    x = torch.randint(0, 8, (2, 7))
    torch.testing.assert_close(again(x), model.half().float()(x), atol=1e-3, rtol=1e-3)
    params = sum(p.numel() for p in model.parameters())
    assert size < 2 * params + 4096  # fp16, tied head stored once


def test_load_rejects_missing_and_mismatched(tmp_path):
    from thrifty.testing.toy import ToyTokenizer

    with pytest.raises(ModelNotFoundError, match="distill-pairconnect"):
        load_draft(tmp_path / "nope.safetensors")
    path = tmp_path / "d.safetensors"
    save_draft(small_lm(8), path, tokenizer=ToyTokenizer())
    with pytest.raises(IncompatibleModelsError, match="vocabulary of 8"):
        load_draft(path, vocab_size=9)

    class Shifted(ToyTokenizer):
        def encode(self, text, add_special_tokens=False):
            return [i + 1 for i in super().encode(text)]

    with pytest.raises(IncompatibleModelsError, match="different tokenizer"):
        load_draft(path, tokenizer=Shifted())


def test_registered_draft_builds_from_weights(tmp_path):
    from thrifty.testing import fresh_registry
    from thrifty.testing.toy import ToyTokenizer
    from thrifty_pairconnect import plugin

    reg = fresh_registry(load_entry_points=False, plugins={"pairconnect": plugin})
    path = tmp_path / "d.safetensors"
    save_draft(small_lm(8), path, tokenizer=ToyTokenizer())
    verifier = ToyVerifier(vocab=8)
    draft = reg.draft_model("pairconnect").build(verifier, weights=str(path))
    assert draft.vocab_size == 8 and draft.name == "pairconnect"
    from thrifty.errors import ConfigError

    with pytest.raises(ConfigError, match="weights"):
        reg.draft_model("pairconnect").build(verifier)


def test_greedy_proposals_follow_the_full_forward_across_commits():
    """What the draft proposes (one lean step per token over its newest-first state) is the
    greedy continuation that the LM's full forward gives for the committed text, also after
    a commit that keeps some proposals and rolls the others back."""
    lm = small_lm(9, seed=2).eval()
    draft = PairConnectDraft(lm)

    def greedy(seq, n):
        seq = list(seq)
        with torch.no_grad():
            for _ in range(n):
                seq.append(int(lm(torch.tensor([seq]))[0, -1].argmax()))
        return seq[-n:]

    texts = [[1, 2, 3, 4, 5, 6], [7]]
    draft.start(texts)
    first = draft.propose(4, Sampling(), None).tokens
    assert first.tolist() == [greedy(t, 4) for t in texts]
    accepted, bonus = torch.tensor([2, 0]), torch.tensor([8, 0])
    draft.commit(accepted, bonus)
    texts = [t + first[b, :int(accepted[b])].tolist() + [int(bonus[b])]
             for b, t in enumerate(texts)]
    again = draft.propose(3, Sampling(), None).tokens
    assert again.tolist() == [greedy(t, 3) for t in texts]
