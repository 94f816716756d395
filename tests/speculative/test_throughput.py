import pytest

from thrifty.errors import ConfigError
from thrifty.speculative.profile import DraftProfile, Profile
from thrifty.speculative.record import Acceptance
from thrifty.speculative.throughput import (
    Hypothetical, ShapeModel, ThroughputModel, batch_tar, conditional_from_cumulative,
    conditional_from_matches, continuous_tar, iid_alpha, interp, mean_verify_ms, refill_tar,
    static_tar, tar_iid, tar_positional, throughput, tree_walks, walk)


def test_positional_tar_reduces_to_the_iid_closed_form():
    for alpha in (0.0, 0.3, 0.8, 1.0):
        for gamma in range(6):
            assert tar_positional([alpha] * 3, gamma) == pytest.approx(tar_iid(alpha, gamma))
    # decaying per-position acceptance gives less than the i.i.d. TAR of its first position
    assert tar_positional([0.8, 0.5, 0.2], 3) == pytest.approx(1 + 0.8 + 0.4 + 0.08)
    assert tar_positional([0.8, 0.5], 4, fallback=0.0) == pytest.approx(2.2)


def test_conditional_acceptance_from_match_histogram_and_cumulative():
    # 10 positions matched 0, 10 matched 1, 20 matched 2 (= all of γmax 2)
    cond = conditional_from_matches([10, 10, 20])
    assert cond == pytest.approx([30 / 40, 20 / 30])
    assert conditional_from_cumulative([0.75, 0.5]) == pytest.approx(cond)
    assert iid_alpha([10, 10, 20]) == pytest.approx(50 / 70)


def test_walk_replays_the_engine_step_rule():
    # t=0 keeps 2 of γ=2 (emits 3); t=3 keeps 0; t=4 keeps 1; t=6 keeps 0; t=7 keeps 2
    matches = [5, 0, 0, 0, 1, 0, 0, 9]
    assert walk(matches, 2, 8) == (5, 3 + 1 + 2 + 1 + 3)
    assert walk(matches, 0, 8) == (8, 8)


def test_batch_tar_counts_the_slowest_row_of_each_batch():
    fast, slow = [9] * 12, [0] * 12
    assert batch_tar([fast], 3, 1, 12) == pytest.approx(4.0)
    assert batch_tar([fast, slow], 3, 1, 12) == pytest.approx(24 / 15)
    # together, both rows run 12 passes: 24 tokens over 2 x 12 row-passes
    assert batch_tar([fast, slow], 3, 2, 12) == pytest.approx(1.0)


def test_tree_walks_idle_as_chain_walks_do():
    """A tree row's walk is the tokens it gained per pass: its passes are the walk's length."""
    fast, slow = [4, 4, 4], [1] * 12  # 12 tokens each: 3 passes, and 12
    assert tree_walks([fast, slow]) == [(3, 12), (12, 12)]
    assert static_tar(tree_walks([fast, slow]), 1) == pytest.approx(24 / 15)
    assert static_tar(tree_walks([fast, slow]), 2) == pytest.approx(24 / 24)
    rows = [slow, fast, fast, fast]
    assert static_tar(tree_walks(rows), 2) == pytest.approx(48 / 30)
    assert continuous_tar(tree_walks(rows), 2) == pytest.approx(48 / 24)


def test_verifier_latency_keeps_the_bends_it_was_profiled_with():
    # on a CPU at batch 1, scoring 3 tokens measured slower than 5 in every profile and in
    # live passes alike (small-matrix kernels): the model prices each width as profiled
    prof = _profile()
    prof.verify_ms[1] = [65.0, 95.0, 122.0, 86.0, 75.0]
    model = ThroughputModel(prof)
    assert [model.verify_ms(k, 1) for k in range(1, 6)] == pytest.approx(prof.verify_ms[1])
    assert model.verify_ms(3, 1) > model.verify_ms(5, 1)


def test_refill_tar_idles_rows_only_while_the_queue_drains():
    fast, slow = [9] * 12, [0] * 12  # 3 passes at γ3, and 12
    rows = [slow, fast, fast, fast]
    # static: [slow, fast] run 12 passes, [fast, fast] 3: 48 tokens over 2 x 15 row-passes
    assert batch_tar(rows, 3, 2, 12) == pytest.approx(48 / 30)
    # continuous: the second row serves the three fast prompts (9 passes) while the first
    # serves the slow one (12): 48 tokens over 2 x 12
    assert refill_tar(rows, 3, 2, 12) == pytest.approx(48 / 24)
    assert refill_tar(rows, 3, 4, 12) == pytest.approx(batch_tar(rows, 3, 4, 12))
    # the model predicts either batching from the same replayed rows
    prof = _profile()
    recorded = prof.drafts["d"].acceptance.rows
    recorded[:] = [[0] * 8, [4] * 8, [4] * 8, [4] * 8]
    static, refill = ThroughputModel(prof), ThroughputModel(prof, refill=True)
    assert static.tar("d", 2, 2) == pytest.approx(32 / 22)  # passes: 2 x 8, then 2 x 3
    assert refill.tar("d", 2, 2) == pytest.approx(32 / 18)  # 8 beside 3 + 3 + 3


def test_verifier_cost_follows_the_widths_the_engine_scores():
    cost = {1: 10.0, 2: 12.0, 3: 14.0, 4: 16.0, 5: 18.0}.__getitem__
    def none(rows):  # nothing accepted: every position is visited
        return [[0] * len(r) for r in rows]

    def priced(proposed, gamma, batch, matches=None):
        return mean_verify_ms(matches or none(proposed), proposed, gamma, batch, 100, cost)

    assert priced([[4] * 6], 3, 1) == pytest.approx(cost(4))  # always full
    assert priced([[0] * 6], 3, 1) == pytest.approx(cost(1))  # never a match
    # half the positions propose 2, half nothing: widths 3 and 1
    assert priced([[2, 0] * 3], 4, 1) == pytest.approx((14.0 + 10.0) / 2)
    # in a batch, each pass scores the longest proposal among its rows
    assert priced([[2, 0, 0], [0, 0, 1]], 4, 2) == pytest.approx((14.0 + 10.0 + 12.0) / 3)
    # accepted proposals skip positions: the first pass keeps 3 and jumps to position 4, so
    # the long proposals at positions 1 and 2 are never scored (widths 3, 0, 0, not 3x3, 3x0)
    assert priced([[4, 4, 4, 0, 0, 0]], 3, 1, [[3, 0, 0, 0, 0, 0]]) == pytest.approx(12.0)
    # without recorded proposal lengths (older profiles) a pass costs γ + 1 tokens
    model_full = ThroughputModel(_profile())
    assert model_full.predict("d", 2, 1).verify_ms == pytest.approx(model_full.verify_ms(3, 1))


def test_model_prices_short_proposals_by_their_scored_width():
    prof = _profile()
    prof.drafts["d"].acceptance.proposed = [[4, 0] * 4, [4, 0] * 4]
    model = ThroughputModel(prof)
    assert model.predict("d", 2, 1).verify_ms == pytest.approx((10.0 + 10.0) / 2)
    assert model.predict("d", 4, 4).verify_ms == pytest.approx((26.0 + 20.0) / 2)


def test_interp_is_piecewise_linear_and_extends_the_ends():
    xs, ys = [1, 4, 16], [10.0, 16.0, 40.0]
    assert interp(4, xs, ys) == 16.0
    assert interp(2, xs, ys) == pytest.approx(12.0)
    assert interp(32, xs, ys) == pytest.approx(72.0)
    assert interp(0, [1, 2], [1.0, 5.0]) == 0.0  # never negative
    with pytest.raises(ConfigError):
        interp(1, [], [])


def test_shape_model_recovers_a_per_layer_line_and_interpolates_width():
    points = [{"layers": n, "width": w, "batch": 1, "ms": 2.0 + n * (0.5 if w == 64 else 1.5)}
              for n in (1, 2, 4) for w in (64, 128)]
    shape = ShapeModel.fit(points)
    assert shape.step_ms(8, 64, 1) == pytest.approx(6.0)
    assert shape.step_ms(2, 96, 1) == pytest.approx(2.0 + 2 * 1.0)
    with pytest.raises(ConfigError, match="two depths"):
        ShapeModel.fit([{"layers": 1, "width": 64, "batch": 1, "ms": 1.0}])


def _profile() -> Profile:
    """A hand-made profile whose predictions can be worked out on paper."""
    acc = Acceptance(gamma_max=4, max_new_tokens=8, rows=[[4] * 8, [0] * 8])
    draft = DraftProfile("d", {"name": "toy"},
                         propose_ms={1: {1: 1.0, 4: 4.0}, 4: {1: 2.0, 4: 8.0}},
                         overhead_ms={1: {1: 0.5, 4: 0.5}, 4: {1: 1.0, 4: 1.0}},
                         acceptance=acc)
    return Profile("v", "cpu", "w", 4, [1, 4],
                   verify_ms={1: [10.0, 10.0, 10.0, 11.0, 12.0],
                              4: [20.0, 20.0, 22.0, 24.0, 26.0]},
                   target_overhead_ms={1: 0.4, 4: 0.8}, drafts={"d": draft},
                   shapes=[{"layers": n, "width": 64, "batch": b, "ms": b * (1.0 + n)}
                           for n in (1, 2) for b in (1, 4)])


def test_model_prediction_is_the_formula_on_the_fitted_terms():
    model = ThroughputModel(_profile())
    p = model.predict("d", 2, 1)
    assert (p.draft_ms, p.verify_ms, p.overhead_ms) == pytest.approx((2.0, 10.0, 0.5))
    assert p.tar == pytest.approx(batch_tar([[4] * 8, [0] * 8], 2, 1, 8))
    assert p.throughput == pytest.approx(throughput(1, p.tar, 2.0, 10.0, 0.5))
    assert sum(p.shares().values()) == pytest.approx(1.0)
    assert "draft 16%" in p.explain() and "verify 80%" in p.explain()
    # an unseen batch size interpolates every term linearly between batch 1 and 4
    assert model.predict("d", 4, 2).verify_ms == pytest.approx(12.0 + 14.0 / 3)
    base = model.predict(None, 3, 4)
    assert (base.gamma, base.tar, base.step_ms) == (0, 1.0, pytest.approx(20.8))


def test_rank_orders_by_throughput_and_includes_target_only():
    model = ThroughputModel(_profile())
    ranked = model.rank(1)
    assert [p.throughput for p in ranked] == sorted((p.throughput for p in ranked), reverse=True)
    assert any(p.draft is None for p in ranked) and len(ranked) == 1 + 4
    assert model.best(1) == ranked[0]


def test_hypothetical_draft_is_costed_from_its_shape():
    model = ThroughputModel(_profile())
    model.add_hypothetical(Hypothetical("wide", layers=3, width=64, acceptance=0.5))
    p = model.predict("wide", 2, 4)
    assert p.draft_ms == pytest.approx(2 * 4 * (1.0 + 3))
    assert p.tar == pytest.approx(tar_iid(0.5, 2))
    assert p.overhead_ms == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="not in the profile"):
        model.predict("nope", 1, 1)
