"""γ by batch size: the schedule's shape rules, how the model fills it, the policy that follows
it in the engine, and the settings `thrifty select` exports for it."""

import json

import pytest

from thrifty import DraftModelSpec, EngineSettings, Option, hookimpl
from thrifty.cli import main
from thrifty.errors import ConfigError, IncompatibleModelsError
from thrifty.pipeline import from_config
from thrifty.speculative import BatchLookahead, SpeculativeDecoder, TreeShape
from thrifty.speculative.commands import engine_settings, export_config, schedule_export
from thrifty.speculative.profile import DraftProfile, Profile, TreeProfile
from thrifty.speculative.record import Acceptance
from thrifty.speculative.schedule import check_schedule, gamma_at, gamma_schedule, schedule_draft
from thrifty.speculative.throughput import ThroughputModel
from thrifty.testing import fresh_registry
from thrifty.testing.toy import ToyDraft

from .conftest import ToyPlugin, close_draft


def assert_shape(ranges, top):
    """The rules vLLM's num_speculative_tokens_per_batch_size and thrifty share."""
    assert ranges[0][0] == 1 and ranges[-1][1] == top
    for (lo, hi, gamma), nxt in zip(ranges, ranges[1:] + [None]):
        assert 1 <= lo <= hi and (isinstance(gamma, str) or gamma >= 0)
        if nxt is not None:
            assert nxt[0] == hi + 1 and nxt[2] != gamma  # contiguous, neighbours merged


@pytest.mark.parametrize("bad, rule", [
    ([], "non-empty"),
    ([[2, 4, 1]], "starting at 1"),
    ([[1, 4, 1], [6, 8, 1]], "starting at 5"),
    ([[1, 4, 1], [3, 8, 1]], "starting at 5"),
    ([[1, 0, 1]], "starting at 1"),
    ([[1, 4, -1]], ">= 0"),
    ([[1, 4]], "three integers"),
    ([[1, 4, 2.5]], "three integers"),
    ([[1, 4, True]], "three integers"),
    ("1-4:2", "non-empty list"),
    ([[1, 4, "4y2"]], r"schedule entry \[1, 4, '4y2'\]: a tree shape is DEPTHxBRANCH"),
    ([[1, 4, "4x2:3"]], "depth 4 needs at least 4 nodes"),
])
def test_a_schedule_that_breaks_a_rule_is_refused_naming_it(bad, rule):
    with pytest.raises(ConfigError, match=rule):
        check_schedule(bad)


def test_gamma_at_reads_the_range_and_keeps_the_last_past_its_end():
    ranges = check_schedule([[1, 3, 5], [4, 9, 2], [10, 16, 0]])
    assert [gamma_at(ranges, b) for b in (1, 3, 4, 9, 10, 16, 64)] == [5, 5, 2, 2, 0, 0, 0]


def _profile() -> Profile:
    """Verification nearly free at batch 1, linear in tokens at batch 16 (speculation loses)."""
    rows = [[2, 0, 3, 1, 2, 0, 1, 4] * 2, [1, 1, 0, 2, 4, 0, 0, 3] * 2]
    acc = Acceptance(gamma_max=4, max_new_tokens=16, rows=rows)
    spans = {1: {1: 0.5, 4: 2.0}, 4: {1: 0.8, 4: 3.2}, 16: {1: 1.0, 4: 4.0}}
    draft = DraftProfile("d", {"name": "toy-draft", "options": {}}, propose_ms=spans,
                         overhead_ms={b: {1: 0.2, 4: 0.2} for b in spans}, acceptance=acc)
    return Profile("v", "cpu", "w", 4, [1, 4, 16],
                   verify_ms={1: [10.0, 10.2, 10.4, 10.6, 10.8],
                              4: [20.0, 24.0, 28.0, 32.0, 36.0],
                              16: [40.0, 80.0, 120.0, 160.0, 200.0]},
                   target_overhead_ms={1: 0.2, 4: 0.2, 16: 0.2}, drafts={"d": draft})


def _tree_profile() -> Profile:
    """:func:`_profile` and a 2x2:4 tree that emits 3 tokens a pass where the chain at γ = 4
    emits about 2.7: the tree wins where scoring 5 tokens is nearly free, target-only where
    it is not."""
    prof = _profile()
    prof.drafts["d"].trees["2x2:4"] = TreeProfile(
        propose_ms={1: 1.0, 4: 1.6, 16: 2.0}, overhead_ms={1: 0.3, 4: 0.3, 16: 0.3},
        rows=[[3] * 5 + [1], [3] * 4 + [2, 2]])
    return prof


def test_the_schedule_runs_a_tree_where_it_beats_every_chain():
    model = ThroughputModel(_tree_profile())
    ranges = gamma_schedule(model, "d", [1, 4, 16])
    chains = gamma_schedule(model, "d", [1, 4, 16], trees=False)
    assert_shape(ranges, 16)
    assert_shape(chains, 16)
    assert ranges[0][2] == "2x2:4" and ranges[-1][2] == 0
    assert all(isinstance(g, int) for _, _, g in chains) and chains != ranges
    for b in range(1, 17):
        best = max([model.predict(None, 0, b), model.predict("d", TreeShape(2, 2, 4), b)]
                   + [model.predict("d", g, b) for g in range(1, 5)], key=lambda p: p.throughput)
        assert gamma_at(ranges, b) == (best.tree or best.gamma)
        assert gamma_at(chains, b) == model.best(b, trees=False).gamma


def test_a_schedule_with_a_tree_answers_by_batch():
    policy = BatchLookahead([[1, 2, "3x2"], [3, 8, 2], [9, 16, 0]])
    assert policy.trees and policy.gamma_max == 6
    answers = []
    for rows in (1, 2, 3, 9):
        policy.start(rows)
        answers.append((policy.tree(), policy.gamma()))
    assert answers == [(TreeShape(3, 2, 6), 3)] * 2 + [(None, 2), (None, 0)]
    assert not BatchLookahead([[1, 4, 2]]).trees


class _Counting(ToyDraft):
    def propose_tree(self, shape, sampling, generator):
        self.trees += 1
        return super().propose_tree(shape, sampling, generator)

    def propose(self, gamma, sampling, generator):
        self.chains += 1
        return super().propose(gamma, sampling, generator)


@pytest.mark.parametrize("rows, trees, chains", [(1, True, False), (2, False, True),
                                                 (3, False, False)])
def test_a_schedule_with_a_tree_range_drives_the_engine(toys, toy_prompts, rows, trees, chains):
    verifier, draft = toys
    counting = _Counting(vocab=verifier.vocab_size, table=draft.table)
    counting.trees = counting.chains = 0
    policy = BatchLookahead([[1, 1, "3x2:5"], [2, 2, 2], [3, 8, 0]])
    out = SpeculativeDecoder(verifier, counting, policy).generate(toy_prompts, max_new_tokens=8,
                                                                  batch_size=rows)
    assert (counting.trees > 0, counting.chains > 0) == (trees, chains)
    plain = SpeculativeDecoder(verifier, None).generate(toy_prompts, max_new_tokens=8)
    assert out.token_ids == plain.token_ids  # lossless whether a step is a tree or a chain


class _ChainOnly(ToyDraft):
    propose_tree = None


def test_a_chain_schedule_runs_a_draft_without_trees_and_a_tree_schedule_refuses_it(toys):
    verifier, draft = toys
    chain_only = _ChainOnly(vocab=verifier.vocab_size, table=draft.table)
    SpeculativeDecoder(verifier, chain_only, BatchLookahead([[1, 4, 2]]))
    with pytest.raises(IncompatibleModelsError, match="propose_tree/commit_path"):
        SpeculativeDecoder(verifier, chain_only, BatchLookahead([[1, 4, 2], [5, 8, "2x2"]]))


def test_the_model_fills_every_batch_size_with_its_best_gamma():
    model = ThroughputModel(_profile())
    ranges = gamma_schedule(model, "d", [1, 4, 16])
    assert_shape(ranges, 16)
    assert ranges[0][2] >= 2 and ranges[-1][2] == 0  # long lookahead alone, target-only full
    for b in range(1, 17):
        preds = [model.predict(None, 0, b)] + [model.predict("d", g, b) for g in range(1, 5)]
        assert gamma_at(ranges, b) == max(preds, key=lambda p: p.throughput).gamma
    assert schedule_draft(model, [1, 4, 16]) == "d"


class _Spy(BatchLookahead):
    def gamma(self):
        g = super().gamma()
        self.seen.append(g)
        return g


@pytest.mark.parametrize("rows, gamma", [(1, 3), (2, 1), (3, 0)])
def test_the_engine_follows_the_schedule_with_continuous_batching(toys, toy_prompts, rows,
                                                                   gamma):
    verifier, draft = toys
    policy = _Spy([[1, 1, 3], [2, 2, 1], [3, 8, 0]])
    policy.seen = []
    out = SpeculativeDecoder(verifier, draft, policy).generate(toy_prompts, max_new_tokens=6,
                                                              batch_size=rows)
    assert policy.seen and set(policy.seen) == {gamma}
    plain = SpeculativeDecoder(verifier, None).generate(toy_prompts, max_new_tokens=6)
    assert out.token_ids == plain.token_ids  # lossless whatever γ the schedule picks


def test_a_pipeline_takes_the_schedule_as_its_lookahead():
    toml = """[speculative]
verifier = { plugin = "toy" }
drafts = [ { plugin = "toy-draft" } ]
lookahead = [[1, 4, 3], [5, 64, 1]]
"""
    reg = fresh_registry(load_entry_points=False, plugins={"toy": _ToyPlugin()})
    pipe = from_config(toml, registry=reg)
    assert isinstance(pipe.lookahead, BatchLookahead)
    assert list(pipe.lookahead.ranges) == [(1, 4, 3), (5, 64, 1)]
    with pytest.raises(ConfigError, match="ascending and contiguous"):
        from_config(toml.replace("[5, 64, 1]", "[6, 64, 1]"), registry=reg)


class _ToyPlugin(ToyPlugin):
    """The toy verifier, and drafts with and without engine settings."""

    @hookimpl
    def thrifty_draft_models(self):
        export = lambda o: EngineSettings(  # noqa: E731
            vllm={"method": "draft_model", "model": f"/ckpt/{o['size']}"},
            transformers={"assistant_model": f"/ckpt/{o['size']}"},
            assistant={"num_assistant_tokens_schedule": "constant"},
            transformers_gamma="num_assistant_tokens", prepare="make-ckpt")
        return [DraftModelSpec(name="toy-draft", factory=lambda v, **o: close_draft(v),
                               options={"size": Option(str, "s", "which checkpoint")},
                               export=export),
                DraftModelSpec(name="plain-draft", factory=lambda v, **o: close_draft(v))]


@pytest.fixture
def registry(toy_registry):
    return toy_registry(_ToyPlugin())


def test_settings_come_from_the_drafts_record(registry):
    found = engine_settings({"name": "toy-draft", "options": {}}, [[1, 2, 4], [3, 16, 0]])
    assert found["vllm"] == {"method": "draft_model", "model": "/ckpt/s",  # default filled in
                             "num_speculative_tokens": 4,
                             "num_speculative_tokens_per_batch_size": [[1, 2, 4], [3, 16, 0]]}
    assert found["transformers"] == {  # γ of batch 1, where transformers reads it
        "assistant_model": "/ckpt/s", "assistant_generation_config": {
            "num_assistant_tokens_schedule": "constant", "num_assistant_tokens": 4}}
    assert found["prepare"] == "make-ckpt"
    assert found["thrifty"]["lookahead"] == [[1, 2, 4], [3, 16, 0]]
    lines = export_config({"name": "toy-draft", "options": {"size": "m"}}, 3)
    assert json.loads(lines["vllm"].removeprefix("speculative_config=")) == {
        "method": "draft_model", "model": "/ckpt/m", "num_speculative_tokens": 3}
    assert lines["transformers"] == (
        "assistant = AutoModelForCausalLM.from_pretrained('/ckpt/m'); assistant.generation_config"
        ".update(num_assistant_tokens_schedule='constant', num_assistant_tokens=3); "
        "model.generate(**inputs, assistant_model=assistant)")
    assert lines["thrifty"] == 'drafts = [{ plugin = "toy-draft", size = "m" }]\nlookahead = 3'
    # target-only everywhere: nothing to hand vLLM or transformers
    none = export_config({"name": "toy-draft", "options": {}}, [[1, 8, 0]])
    assert none["vllm"].startswith("(no speculative_config")
    assert none["transformers"] == "model.generate(**inputs)"
    # a record without export: thrifty's settings only, and a note that says why
    plain = export_config({"name": "plain-draft", "options": {}}, 2)
    assert set(plain) == {"note", "thrifty"} and "exports none" in plain["note"]


def test_select_json_carries_the_vllm_schedule(registry, toy_prompts, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("abcabd\nfedcba\nabcdef\naabbcc\n")
    assert main(["profile", "--verifier", "toy", "--draft", "toy-draft", "--workload",
                 str(prompts), "--batch", "1,3", "--gamma-max", "3", "--max-new-tokens", "8",
                 "--repeats", "1", "--warmup", "0", "--sweeps", "1",
                 "-o", str(tmp_path / "p.json")]) == 0
    capsys.readouterr()
    assert main(["select", "--profile", str(tmp_path / "p.json"), "--json", "--plot", ""]) == 0
    out = json.loads(capsys.readouterr().out)
    ranges = out["vllm"]["num_speculative_tokens_per_batch_size"]
    assert_shape([tuple(r) for r in ranges], 3)
    assert out["schedule"]["ranges"] == ranges == out["thrifty"]["lookahead"]
    assert out["vllm"]["num_speculative_tokens"] == max(max(r[2] for r in ranges), 0)
    assert out["vllm"]["method"] == "draft_model" and out["prepare"] == "make-ckpt"
    # each profiled batch size gets the γ select recommends there
    for entry in out["batches"]:
        best = entry["recommended"]
        want = best["gamma"] if best["draft"] == out["schedule"]["draft"] else 0
        assert gamma_at([tuple(r) for r in ranges], entry["batch"]) == want
    assert main(["select", "--profile", str(tmp_path / "p.json"), "--plot", ""]) == 0
    text = capsys.readouterr().out
    assert "by batch size, with draft" in text and "num_speculative_tokens_per_batch_size" in text


def test_select_of_the_verifier_alone_exports_no_schedule(registry, tmp_path, capsys):
    prof = _profile()
    prof.drafts.clear()
    prof.save(tmp_path / "v.json")
    assert main(["select", "--profile", str(tmp_path / "v.json"), "--json", "--plot", ""]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "schedule" not in out and "vllm" not in out
    assert all(b["recommended"]["draft"] is None for b in out["batches"])


def test_select_exports_chains_to_vllm_and_the_trees_to_thrifty(registry):
    model = ThroughputModel(_tree_profile())
    found = schedule_export(model, model.profile, [1, 4, 16])
    ranges, chains = found["schedule"]["ranges"], found["schedule"]["chain_ranges"]
    assert ranges[0][2] == "2x2:4" and all(isinstance(r[2], int) for r in chains)
    assert found["vllm"]["num_speculative_tokens_per_batch_size"] == chains
    assert found["thrifty"]["lookahead"] == ranges
    assert "chains only" in found["trees"]
    # thrifty's TOML runs the trees: a pipeline reads it into a schedule that asks for them
    pipe = from_config("[speculative]\nverifier = { plugin = \"toy\" }\n"
                       + found["thrifty"]["toml"], registry=registry)
    assert pipe.lookahead.trees and [list(r) for r in pipe.lookahead.ranges] == ranges
    # one batch where a tree is best: vLLM gets the best chain there, thrifty the tree
    best = model.best(1)
    assert best.tree == "2x2:4"
    lines = export_config({"name": "toy-draft", "options": {}}, model.best(1, trees=False).gamma,
                          lookahead=best.tree)
    assert lines["thrifty"].endswith('lookahead = "2x2:4"') and "trees" in lines
    assert json.loads(lines["vllm"].removeprefix("speculative_config="))[
        "num_speculative_tokens"] == model.best(1, trees=False).gamma
    assert from_config("[speculative]\nverifier = { plugin = \"toy\" }\n" + lines["thrifty"],
                       registry=registry).lookahead.tree() == TreeShape(2, 2, 4)
