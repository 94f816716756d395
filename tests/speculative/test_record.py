import pytest

from thrifty.errors import ConfigError
from thrifty.speculative import SpeculativeDecoder
from thrifty.speculative.record import Recording, record, replay


@pytest.mark.parametrize("batch", [1, 3])
def test_replayed_tar_equals_live_tar_for_greedy(toys, toy_prompts, batch):
    verifier, draft = toys
    rec = record(verifier, toy_prompts, max_new_tokens=20, horizon=6)
    acc = replay(rec, draft, batch=4)
    # the toy draft always proposes all it is asked for; the model prices passes by this
    assert acc.proposed == [[6] * len(row) for row in acc.rows]
    tars = []
    for gamma in range(1, 7):
        live = []
        for i in range(0, len(toy_prompts), batch):
            live.append(SpeculativeDecoder(verifier, draft, gamma).generate(
                toy_prompts[i:i + batch], max_new_tokens=20).metrics)
        live_tar = sum(m.emitted for m in live) / sum(m.row_steps for m in live)
        assert acc.tar(gamma) == pytest.approx(live_tar, abs=1e-12)
        tars.append(live_tar)
    assert len(set(tars)) > 1  # the lookahead matters: the test would notice a wrong walk


def test_recording_is_the_greedy_continuation_and_round_trips(toys, toy_prompts, tmp_path):
    verifier, _ = toys
    rec = record(verifier, toy_prompts, max_new_tokens=5, horizon=3)
    alone = SpeculativeDecoder(verifier, None).generate(toy_prompts[:1], max_new_tokens=8)
    assert rec.continuations[0] == alone.token_ids[0]
    rec.save(tmp_path / "r.json")
    assert Recording.load(tmp_path / "r.json") == rec


def test_replay_rejects_lookahead_beyond_the_recording(toys, toy_prompts):
    verifier, draft = toys
    rec = record(verifier, toy_prompts, max_new_tokens=4, horizon=2)
    with pytest.raises(ConfigError, match="horizon"):
        replay(rec, draft, gamma_max=3)
    with pytest.raises(ConfigError, match="gamma_max"):
        replay(rec, draft, gamma_max=2).tar(3)


@pytest.mark.parametrize("refill", [False, True], ids=["static", "continuous"])
def test_effective_tar_equals_the_live_batch_for_greedy(toys, toy_prompts, refill):
    """The TAR a batch realises (tokens per row slot per pass, idle rows included) is what the
    replayed walks predict: static batches wait for their slowest row, continuous ones only
    drain."""
    from thrifty.speculative.throughput import batch_tar, refill_tar

    verifier, draft = toys
    rec = record(verifier, toy_prompts, max_new_tokens=20, horizon=6)
    acc = replay(rec, draft, batch=4)
    effective = refill_tar if refill else batch_tar
    tars = set()
    for gamma in (1, 3, 6):
        decoder = SpeculativeDecoder(verifier, draft, gamma)
        parts = [toy_prompts] if refill else [toy_prompts[i:i + 2] for i in range(0, 6, 2)]
        runs = [decoder.generate(p, max_new_tokens=20, batch_size=2).metrics for p in parts]
        live = sum(m.new_tokens for m in runs) / (2 * sum(m.target_passes for m in runs))
        assert effective(acc.rows, gamma, 2, 20) == pytest.approx(live, abs=1e-12)
        tars.add(live)
    assert len(tars) == 3
