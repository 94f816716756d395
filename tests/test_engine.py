"""Engine behaviour on the toy models: stopping rules, streaming, metrics, bad input."""

from __future__ import annotations

import pytest
import torch

from thrifty.errors import ConfigError, IncompatibleModelsError
from thrifty.speculative import Sampling, SpeculativeDecoder
from thrifty.testing.toy import ToyDraft, ToyVerifier


def target_only(verifier, prompts, n):
    return SpeculativeDecoder(verifier).generate(prompts, max_new_tokens=n)


def test_max_new_tokens_is_exact_for_every_row():
    v = ToyVerifier(vocab=5)
    out = SpeculativeDecoder(v, ToyDraft(vocab=5), 4).generate([[1, 2], [3], [4, 4, 4]],
                                                               max_new_tokens=7)
    assert [len(t) for t in out.token_ids] == [7, 7, 7]
    assert out.finish_reasons == ["length"] * 3


def test_eos_stops_a_row_and_is_kept_last():
    v = ToyVerifier(vocab=5)
    free = target_only(v, [[1, 2]], 30).token_ids[0]
    eos = free[5]
    first = free.index(eos)
    v_eos = ToyVerifier(vocab=5, eos=eos)
    out = SpeculativeDecoder(v_eos, ToyDraft(vocab=5), 3).generate([[1, 2]], max_new_tokens=30)
    assert out.token_ids[0] == free[: first + 1]
    assert out.finish_reasons == ["eos"]


def test_stop_string_cuts_text_and_tokens():
    v = ToyVerifier(vocab=5)
    free = target_only(v, [[1, 2]], 30)
    text = free.texts[0]
    stop = text[6:8]
    cut = text.find(stop)
    out = SpeculativeDecoder(v, ToyDraft(vocab=5), 3).generate([[1, 2]], max_new_tokens=30,
                                                               stop=[stop])
    assert out.texts[0] == text[:cut]
    assert out.finish_reasons == ["stop"]
    assert v.tokenizer.decode(out.token_ids[0]).startswith(text[:cut])
    assert len(out.token_ids[0]) <= cut + len(stop)


def test_streaming_delivers_every_token_in_order():
    v = ToyVerifier(vocab=5)
    seen: dict[int, list[int]] = {0: [], 1: []}
    texts: dict[int, str] = {0: "", 1: ""}

    def on_tokens(row, tokens, text):
        seen[row].extend(tokens)
        texts[row] += text

    out = SpeculativeDecoder(v, ToyDraft(vocab=5), 3).generate([[1, 2], [3]], max_new_tokens=9,
                                                               stream=on_tokens)
    assert [seen[0], seen[1]] == out.token_ids
    assert [texts[0], texts[1]] == out.texts


def test_metrics_count_passes_and_tokens_per_pass():
    v = ToyVerifier(vocab=4)
    d = ToyDraft(vocab=4, table=v.table)  # a perfect draft: every proposal accepted
    out = SpeculativeDecoder(v, d, 3).generate([[1, 2]], max_new_tokens=12)
    m = out.metrics
    assert m.target_passes == 3 and m.tar == 4.0  # 3 accepted + 1 bonus per pass
    assert m.acceptance == [1.0, 1.0, 1.0]
    assert m.draft_ms > 0 and m.verify_ms > 0 and m.total_ms >= m.draft_ms + m.verify_ms
    assert m.as_dict()["tokens_per_second"] > 0


def test_static_batches_draw_independent_samples():
    """Static batches (models without ``admit``) each get their own random stream: the same
    prompt in two batches is sampled twice, not copied."""

    class NoAdmit(ToyVerifier):
        admit = None  # not callable: the engine runs static batches

    out = SpeculativeDecoder(NoAdmit(vocab=5)).generate(
        [[1, 2]] * 4, max_new_tokens=12, sampling=Sampling(temperature=1.0), batch_size=2)
    assert out.token_ids[:2] != out.token_ids[2:]


def test_a_draft_whose_acceptance_collapses_is_reported():
    """A draft that never proposes the verifier's token leaves the output right and TAR at 1:
    the metrics say so (one line naming the draft) instead of staying silent."""
    v = ToyVerifier(vocab=5)
    never = ToyDraft(vocab=5, table=v.table.roll(1, dims=-1))  # argmax always one letter off
    out = SpeculativeDecoder(v, never, 3).generate([[1, 2], [3]], max_new_tokens=12)
    m = out.metrics
    assert out.token_ids == target_only(v, [[1, 2], [3]], 12).token_ids
    assert sum(m.accepted_at) == 0 and m.tar == 1.0
    assert m.collapsed and m.as_dict()["acceptance_collapsed"]
    assert "'toy-draft'" in m.collapse_warning("toy-draft")
    perfect = SpeculativeDecoder(v, ToyDraft(vocab=5, table=v.table), 3)
    m = perfect.generate([[1, 2], [3]], max_new_tokens=12).metrics
    assert not m.collapsed and m.collapse_warning("toy-draft") is None
    short = SpeculativeDecoder(v, never, 3).generate([[1, 2]], max_new_tokens=3).metrics
    assert not short.collapsed  # three proposing steps are too few to judge


def test_ragged_batch_matches_rows_decoded_alone():
    v = ToyVerifier(vocab=6)
    prompts = [[1, 2, 3, 4, 5], [2], [5, 5]]
    batch = SpeculativeDecoder(v, ToyDraft(vocab=6), 4).generate(prompts, max_new_tokens=15)
    alone = [target_only(v, [p], 15).token_ids[0] for p in prompts]
    assert batch.token_ids == alone


def test_vocabulary_mismatch_is_refused():
    with pytest.raises(IncompatibleModelsError, match="vocabulary"):
        SpeculativeDecoder(ToyVerifier(vocab=5), ToyDraft(vocab=6))


@pytest.mark.parametrize("prompts,match", [
    ("abc", "non-empty list"), ([], "non-empty list"), ([[]], "empty"), ([[1, 99]], "outside"),
])
def test_bad_prompts_are_refused(prompts, match):
    with pytest.raises(ConfigError, match=match):
        SpeculativeDecoder(ToyVerifier(vocab=5)).generate(prompts)


def test_bad_max_new_tokens_is_refused():
    with pytest.raises(ConfigError, match="max_new_tokens"):
        SpeculativeDecoder(ToyVerifier(vocab=5)).generate([[1]], max_new_tokens=0)


def test_sampling_is_reproducible_by_seed():
    from thrifty.speculative import Sampling

    v, s = ToyVerifier(vocab=5), Sampling(temperature=1.0)
    run = lambda seed: SpeculativeDecoder(v, ToyDraft(vocab=5), 2).generate(  # noqa: E731
        [[1, 2]] * 4, max_new_tokens=10, sampling=s, seed=seed).token_ids
    assert run(1) == run(1)
    assert run(1) != run(2)
    assert torch.tensor(run(1)).max() < 5


def test_merged_metrics_are_rates_over_all_runs():
    from thrifty.speculative import Metrics

    v = ToyVerifier(vocab=5)
    runs = [SpeculativeDecoder(v, ToyDraft(vocab=5), 3).generate([p], max_new_tokens=n).metrics
            for p, n in (([1, 2], 6), ([3], 11))]
    m = Metrics.merged(runs)
    assert m.new_tokens == 17 and m.target_passes == sum(r.target_passes for r in runs)
    assert m.tar == sum(r.emitted for r in runs) / sum(r.row_steps for r in runs)
    assert m.total_ms == sum(r.total_ms for r in runs)
    assert m.proposed_at == [a + b for a, b in zip(runs[0].proposed_at, runs[1].proposed_at)]


def _run(overlap, gamma, eos=None, **kwargs):
    v = ToyVerifier(vocab=6, eos=eos)
    streamed: dict[int, list[int]] = {}
    out = SpeculativeDecoder(v, ToyDraft(vocab=6) if gamma else None, gamma,
                             overlap=overlap).generate(
        [[1, 2, 3, 4, 5], [2], [5, 5]], max_new_tokens=15,
        stream=lambda row, new, text: streamed.setdefault(row, []).extend(new), **kwargs)
    return out, streamed, v.passes


@pytest.mark.parametrize("gamma", [0, 3])
@pytest.mark.parametrize("case", ["length", "eos", "stop", "sampled"])
def test_overlapped_commits_give_the_same_generation(gamma, case):
    from thrifty.speculative import Sampling

    base_out, _, _ = _run(False, gamma)
    kwargs = {"eos": base_out.token_ids[1][4]} if case == "eos" else {}
    if case == "stop":
        kwargs["stop"] = [base_out.texts[0][5:7]]
    if case == "sampled":
        kwargs["sampling"] = Sampling(temperature=1.0)
    (plain, plain_seen, plain_passes), (over, over_seen, over_passes) = (
        _run(False, gamma, **kwargs), _run(True, gamma, **kwargs))
    assert over.token_ids == plain.token_ids and over.texts == plain.texts
    assert over.finish_reasons == plain.finish_reasons
    assert over_seen == plain_seen
    assert over.metrics.target_passes == plain.metrics.target_passes
    assert over.metrics.acceptance == plain.metrics.acceptance
    # a step launched before the host saw that every row had ended is the only extra work,
    # and none is launched when the length limit can end every row
    assert over_passes == plain_passes + (case in ("eos", "stop"))


class _StaticDraft(ToyDraft):
    """A draft that cannot take a new prompt mid-batch."""

    admit = None


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("gamma, eos", [(0, None), (0, 4), (3, None), (3, 4)])
def test_continuous_batch_matches_prompts_decoded_alone(overlap, gamma, eos):
    v = ToyVerifier(vocab=6, eos=eos)
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, 4, (n,), generator=g).tolist() for n in (5, 1, 3, 7, 2, 4, 6)]
    alone = [target_only(v, [p], 15) for p in prompts]
    streamed: dict[int, list[int]] = {}
    out = SpeculativeDecoder(v, ToyDraft(vocab=6) if gamma else None, gamma,
                             overlap=overlap).generate(
        prompts, max_new_tokens=15, batch_size=3,
        stream=lambda row, new, text: streamed.setdefault(row, []).extend(new))
    assert out.token_ids == [a.token_ids[0] for a in alone]
    assert out.finish_reasons == [a.finish_reasons[0] for a in alone]
    assert [streamed[i] for i in range(len(prompts))] == out.token_ids
    assert out.metrics.batch_size == 3 and len(v.lens) == 3  # three rows served every prompt


def test_refilled_rows_take_fewer_passes_than_static_batches():
    """Rows whose draft accepts more finish early; refilled at once, they do not wait for the
    slowest row of their batch (a model without ``admit`` falls back to static batches)."""
    v = ToyVerifier(vocab=6, seed=2)
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(0, 6, (4,), generator=g).tolist() for _ in range(12)]
    draft = ToyDraft(vocab=6, table=v.table.clone())
    draft.table[:, :2] = -draft.table[:, :2]  # wrong after tokens 0 and 1: rows differ
    static_draft = _StaticDraft(vocab=6, table=draft.table)
    cont = SpeculativeDecoder(v, draft, 3).generate(prompts, max_new_tokens=24, batch_size=4)
    static = SpeculativeDecoder(v, static_draft, 3).generate(prompts, max_new_tokens=24,
                                                             batch_size=4)
    assert not SpeculativeDecoder(v, static_draft, 3).refills
    assert cont.token_ids == static.token_ids
    assert cont.metrics.target_passes < static.metrics.target_passes


class _BoundedVerifier(ToyVerifier):
    """A verifier whose rows hold at most ``max_context`` tokens, as a static cache does."""

    def __init__(self, max_context: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_context = max_context
        self.most = 0

    def _fits(self, lengths) -> None:
        self.most = max(self.most, int((self.lens + lengths).max()))
        if self.most > self.max_context:
            raise ConfigError(f"a row needs {self.most} tokens; the cache holds "
                              f"{self.max_context}")

    def score(self, tokens, lengths):
        self._fits(lengths)
        return super().score(tokens, lengths)

    def score_tree(self, tokens, parents, lengths):
        self._fits(lengths)
        return super().score_tree(tokens, parents, lengths)


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("lookahead", [4, "3x2:6"])
@pytest.mark.parametrize("batch_size", [None, 3])
def test_rows_done_early_never_outgrow_a_cache_sized_for_the_run(overlap, lookahead, batch_size):
    """A row whose output is done is stepped on while its batch decodes, keeping what its
    draft gets accepted (here nearly all of it, while the last row's draft is often wrong); it
    must be reset before it holds more than prompt + max_new_tokens + lookahead, the room the
    engine checks for before decoding, and no row's output may change."""
    from thrifty.speculative.tree import parse_lookahead

    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, 4, (n,), generator=g).tolist() for n in (5, 1, 3, 7, 2, 4)]
    shape = parse_lookahead(str(lookahead), "lookahead")
    room = max(map(len, prompts)) + 30 + getattr(shape, "nodes", shape)
    v = _BoundedVerifier(room, vocab=6, eos=4, seed=2)
    draft = ToyDraft(vocab=6, table=v.table.clone())
    draft.table[:, :2] = -draft.table[:, :2]  # wrong after tokens 0 and 1: rows differ
    alone = [target_only(ToyVerifier(vocab=6, eos=4, seed=2), [p], 30).token_ids[0]
             for p in prompts]
    assert max(map(len, alone[:5])) < 8 and len(alone[5]) == 30  # five rows idle for long
    out = SpeculativeDecoder(v, draft, shape, overlap=overlap).generate(
        prompts, max_new_tokens=30, batch_size=batch_size)
    assert out.token_ids == alone
    assert v.max_context - 4 <= v.most <= v.max_context  # the bound is reached, not passed


@pytest.mark.parametrize("lookahead", [4, "3x2:6"])
def test_a_row_the_step_in_flight_finishes_is_not_stepped_past_its_room(lookahead):
    """With overlapped commits the next step is launched before the one in flight is
    committed. When that step brings the longest prompt's row to max_new_tokens while the
    other rows decode on (its draft is right, theirs often wrong), a step launched over it
    would need more than prompt + max_new_tokens + lookahead slots: the engine commits first
    near the cache's end, so the bound it checks before decoding holds."""
    from thrifty.speculative.tree import parse_lookahead

    prompts = [[0, 3, 0, 3, 5, 0, 4], [1, 5], [5, 1, 2]]
    shape = parse_lookahead(str(lookahead), "lookahead")
    v = _BoundedVerifier(7 + 30 + getattr(shape, "nodes", shape), vocab=6, eos=None, seed=2)
    draft = ToyDraft(vocab=6, table=v.table.clone())
    draft.table[:, :2] = -draft.table[:, :2]
    alone = [target_only(ToyVerifier(vocab=6, seed=2), [p], 30).token_ids[0] for p in prompts]
    out = SpeculativeDecoder(v, draft, shape, overlap=True).generate(prompts, max_new_tokens=30)
    assert out.token_ids == alone
    assert v.most <= v.max_context


@pytest.mark.parametrize("batch_size", [0, -2, 1.5, "4"])
def test_bad_batch_size_is_refused(batch_size):
    with pytest.raises(ConfigError, match="batch_size"):
        SpeculativeDecoder(ToyVerifier(vocab=5)).generate([[1]], batch_size=batch_size)
