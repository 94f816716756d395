"""The profiler and the ``profile``/``select`` commands end to end, on the toy models."""

import json
import time

import pytest
import torch

from thrifty import DraftModelSpec, hookimpl
from thrifty.cli import main
from thrifty.speculative import SpeculativeDecoder, TreeShape
from thrifty.speculative import profile as profiling
from thrifty.speculative.profile import Profile, measure, profile, shape_latency, verifier_latency
from thrifty.speculative.throughput import ThroughputModel
from thrifty.testing.toy import ToyDraft, ToyVerifier

from .conftest import ToyPlugin, close_draft


def test_profile_measures_every_term_and_round_trips(toys, toy_prompts, tmp_path):
    verifier, draft = toys
    prof = profile(verifier, {"toy": (draft, {"name": "toy"})}, toy_prompts, batches=(1, 2),
                   gamma_max=3, max_new_tokens=8, repeats=2, warmup=1, temperature=1.0)
    assert sorted(prof.verify_ms) == [1, 2] and len(prof.verify_ms[1]) == 4
    d = prof.drafts["toy"]
    assert sorted(d.propose_ms[2]) == [1, 2, 3] and sorted(d.overhead_ms[1]) == [1, 3]
    assert len(d.acceptance.rows) == len(toy_prompts)
    assert len(d.acceptance.sampled["cumulative"]) == 3
    prof.save(tmp_path / "p.json")
    again = Profile.load(tmp_path / "p.json")
    assert again == prof
    model = ThroughputModel(again)
    assert model.predict("toy", 2, 2).throughput > 0
    assert ThroughputModel(again, sampled=True).tar("toy", 3) >= 1.0


def test_verifier_latency_spreads_a_slow_spell_over_sweeps(toys, toy_prompts, monkeypatch):
    """A pass over k tokens takes 10·k ms on a clock the verifier advances; a slow spell adds
    100 ms to the three passes of k = 2 in the first sweep. One sweep prices k = 2 with the
    spell; three sweeps price every width as it is."""
    verifier, _ = toys
    now, spell = [0.0], {"from": 0, "calls": 0}
    score = verifier.score

    def timed_score(tokens, lengths):
        spell["calls"] += 1
        slow = spell["from"] <= spell["calls"] < spell["from"] + 3
        now[0] += (10 * tokens.shape[1] + 100 * slow) / 1000
        return score(tokens, lengths)

    monkeypatch.setattr(verifier, "score", timed_score)
    monkeypatch.setattr(profiling, "_clock", lambda device: now[0])
    for sweeps, expected in ((1, [10, 120, 30, 40]), (3, [10, 20, 30, 40])):
        spell.update({"from": 4, "calls": 0})  # calls 1-3: k = 1 (1 warm-up, 2 timed)
        ms = verifier_latency(verifier, toy_prompts, 2, 4, repeats=2, warmup=1, sweeps=sweeps)
        assert ms == pytest.approx(expected)


def test_measure_reports_decode_throughput_and_the_live_tar(toys, toy_prompts):
    verifier, draft = toys
    m = measure(verifier, draft, 3, 3, toy_prompts, max_new_tokens=10, repeats=1)
    alone = measure(verifier, None, 0, 3, toy_prompts, max_new_tokens=10, repeats=1)
    assert m.throughput > 0 and alone.tar == 1.0 and m.tar > 1.0
    assert len(m.acceptance) == 3 and m.acceptance[0] >= m.acceptance[2]


def test_shape_latency_of_a_random_weight_decoder():
    pytest.importorskip("transformers")
    assert shape_latency(1, 64, 128, 2, repeats=2, warmup=1, context=8) > 0


@pytest.fixture
def cli(toy_registry):
    toy_registry()
    return main


def test_profile_then_select_with_measurement_plot_and_json(cli, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("abcabd\nfedcba\nabcdef\naabbcc\n")
    flags = ["--verifier", "toy", "--draft", "toy-draft", "--workload", str(prompts),
             "--batch", "1,2", "--gamma-max", "3", "--max-new-tokens", "8", "--repeats", "2",
             "--warmup", "1", "--sweeps", "2"]
    assert cli(["profile", *flags, "-o", str(tmp_path / "p.json")]) == 0
    capsys.readouterr()
    assert json.loads((tmp_path / "p.json").read_text())["meta"]["sweeps"] == 2
    png = tmp_path / "select.png"
    assert cli(["select", "--profile", str(tmp_path / "p.json"), "--measure", "--json",
                "--top", "2", "--plot", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [b["batch"] for b in out["batches"]] == [1, 2]
    for entry in out["batches"]:
        ranking = entry["ranking"]
        assert any(r["draft"] is None for r in ranking)
        assert all(r["measured"] > 0 for r in ranking)
        assert entry["recommended"]["throughput"] == max(r["throughput"] for r in ranking)
    assert png.read_bytes()[:4] == b"\x89PNG"
    # ranked for continuous batching, and measured that way: the TAR a pass realises is the
    # replay's for rows refilled from the queue
    assert cli(["select", "--profile", str(tmp_path / "p.json"), "--measure", "--json",
                "--refill", "--plot", ""]) == 0
    refill = json.loads(capsys.readouterr().out)
    assert all(r["measured"] > 0 for b in refill["batches"] for r in b["ranking"])
    tar = {(b["batch"], r["draft"], r["gamma"]): r["tar"] for b in refill["batches"]
           for r in b["ranking"]}
    static = {(b["batch"], r["draft"], r["gamma"]): r["tar"] for b in out["batches"]
              for r in b["ranking"]}
    assert all(tar[k] >= static[k] for k in tar.keys() & static.keys())


def test_select_reports_bad_input_as_a_thrifty_error(cli, tmp_path, capsys):
    assert cli(["select", "--profile", str(tmp_path / "missing.json"), "--plot", ""]) == 2
    assert "cannot read profile" in capsys.readouterr().err
    assert cli(["profile", "--verifier", "toy", "--batch", "0"]) == 2
    capsys.readouterr()
    assert cli(["profile", "--verifier", "toy", "--batch", "1", "--sweeps", "0"]) == 2
    assert "sweeps >= 1" in capsys.readouterr().err


@pytest.fixture(scope="module")
def saved_profile(tmp_path_factory):
    verifier = ToyVerifier(vocab=6, seed=0)
    prof = profile(verifier, {"toy": (close_draft(verifier), {"name": "toy"})},
                   [[0, 1, 2], [3, 4, 5, 0]], batches=(1,), gamma_max=2, max_new_tokens=6,
                   repeats=1, warmup=0, sweeps=1, trees=("2x2",))
    path = tmp_path_factory.mktemp("profile") / "p.json"
    prof.save(path)
    return json.loads(path.read_text())


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p["verify_ms"]["1"].__setitem__(0, -1.0), "verify_ms at batch 1, k=1 must be a "
                                                          "finite number > 0; got -1.0"),
    (lambda p: p["verify_ms"]["1"].__setitem__(1, 0), "k=2 must be a finite number > 0"),
    (lambda p: p["drafts"]["toy"]["propose_ms"]["1"].__setitem__("2", 0.0),
     "draft 'toy' propose_ms at batch 1, γ=2 must be a finite number > 0"),
    (lambda p: p["drafts"]["toy"]["acceptance"].__setitem__("rows", [[1, 0], []]),
     "draft 'toy' has an empty acceptance row"),
    (lambda p: p["drafts"]["toy"]["acceptance"].__setitem__("rows", []),
     "draft 'toy' has an empty acceptance row (or none)"),
    (lambda p: p["verify_ms"].__setitem__("1", [1.0]), "verify_ms at batch 1 must list 3"),
    (lambda p: p["drafts"]["toy"]["trees"].__setitem__(
        "2y2", p["drafts"]["toy"]["trees"].pop("2x2:4")),
     "draft 'toy' tree '2y2': a tree shape is DEPTHxBRANCH[:NODES]"),
    (lambda p: p["drafts"]["toy"]["trees"]["2x2:4"]["rows"][0].__setitem__(0, 0),
     "draft 'toy' tree '2x2:4' row 0 must be an integer >= 1; got 0"),
    (lambda p: p["drafts"]["toy"]["trees"]["2x2:4"].__setitem__("rows", []),
     "draft 'toy' tree '2x2:4' has no rows"),
    (lambda p: p["drafts"]["toy"]["trees"]["2x2:4"]["propose_ms"].__setitem__("1", -1.0),
     "draft 'toy' tree '2x2:4' propose_ms at batch 1 must be a finite number > 0"),
    (lambda p: p["drafts"]["toy"]["trees"]["2x2:4"].pop("overhead_ms"),
     "draft 'toy' tree '2x2:4': KeyError('overhead_ms')"),
    (lambda p: p["verify_ms"].__setitem__("1", p["verify_ms"]["1"][:3]),
     "draft 'toy' tree '2x2:4' scores 5 tokens a row, but verify_ms at batch 1 lists 3"),
])
def test_select_refuses_a_profile_with_bad_numbers(cli, saved_profile, tmp_path, capsys, mutate,
                                                   message):
    bad = json.loads(json.dumps(saved_profile))
    mutate(bad)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    assert cli(["select", "--profile", str(path), "--plot", ""]) == 2
    err = capsys.readouterr().err
    assert f"profile {path}: " in err and message in err and "Traceback" not in err


@pytest.mark.parametrize("text, message", [
    ('{"verify_ms": NaN}', "NaN is not a JSON number"),
    ("[1, 2]", "holds a JSON list, expected a JSON object"),
])
def test_select_refuses_a_profile_that_is_not_a_profile(cli, tmp_path, capsys, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    assert cli(["select", "--profile", str(path), "--plot", ""]) == 2
    assert message in capsys.readouterr().err


def test_select_checks_the_plot_path_before_profiling(cli, tmp_path, capsys):
    bad = tmp_path / "missing" / "select.png"
    assert cli(["select", "--verifier", "toy", "--plot", str(bad)]) == 2
    assert f"--plot {bad}: folder {bad.parent} does not exist" in capsys.readouterr().err


def test_a_profile_without_trees_loads(saved_profile, tmp_path):
    old = json.loads(json.dumps(saved_profile))
    del old["drafts"]["toy"]["trees"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    prof = Profile.load(tmp_path / "old.json")
    assert prof.drafts["toy"].trees == {} and prof.drafts["toy"].acceptance.rows
    assert all(p.tree is None for p in ThroughputModel(prof).rank(1))


@pytest.fixture(scope="module")
def tree_profile():
    """The toy models profiled with two tree shapes at batch sizes 2 and 3."""
    verifier = ToyVerifier(vocab=6, seed=0)
    prompts = [[0, 1, 2], [3, 4], [5, 0, 1, 1], [2, 2], [4, 1, 0], [1, 5, 3]]
    prof = profile(verifier, {"toy": (close_draft(verifier), {"name": "toy"})}, prompts,
                   batches=(2, 3), gamma_max=3, max_new_tokens=12, repeats=1, warmup=0,
                   sweeps=1, temperature=1.0, trees=("3x2:6", "2x3"))
    return prof, verifier, prompts


def test_profile_measures_trees_and_round_trips(tree_profile, tmp_path):
    prof, _, prompts = tree_profile
    assert all(len(row) == 7 for row in prof.verify_ms.values())  # k = 1 … 1 + 6 nodes
    trees = prof.drafts["toy"].trees
    assert sorted(trees) == ["2x3:6", "3x2:6"]
    for tree in trees.values():
        assert sorted(tree.propose_ms) == sorted(tree.overhead_ms) == sorted(tree.verify_ms) \
            == [2, 3]
        assert len(tree.rows) == len(tree.sampled["rows"]) == len(prompts)
        assert all(sum(row) == 12 for row in tree.rows)  # the toy verifier has no EOS
    prof.save(tmp_path / "p.json")
    again = Profile.load(tmp_path / "p.json")
    assert again == prof
    pred = ThroughputModel(again).predict("toy", TreeShape(3, 2, 6), 3)
    assert pred.tree == "3x2:6" and pred.gamma == 3
    assert pred.verify_ms == trees["3x2:6"].verify_ms[3]
    assert pred.draft_ms == trees["3x2:6"].propose_ms[3]
    assert "tree 3x2:6 batch 3" in pred.explain() and pred.as_dict()["tree"] == "3x2:6"
    assert ThroughputModel(again, sampled=True).predict("toy", TreeShape(2, 3, 6), 2).tar >= 1


class _SlowTrees(ToyVerifier):
    """A verifier whose tree passes cost 20 ms more than chain passes of as many tokens."""

    def score_tree(self, tokens, parents, lengths):
        time.sleep(0.02)
        return super().score_tree(tokens, parents, lengths)


def test_a_tree_is_priced_by_its_own_pass():
    verifier = _SlowTrees(vocab=6, seed=0)
    prompts = [[0, 1, 2], [3, 4]]
    prof = profile(verifier, {"toy": (close_draft(verifier), {"name": "toy"})}, prompts,
                   batches=(1,), gamma_max=2, max_new_tokens=4, repeats=1, warmup=0, sweeps=1,
                   trees=("2x2",))
    tree = prof.drafts["toy"].trees["2x2:4"]
    assert tree.verify_ms[1] >= 20 > prof.verify_ms[1][4]  # 1 + 4 tokens scored as a chain
    model = ThroughputModel(prof)
    assert model.predict("toy", TreeShape(2, 2, 4), 1).verify_ms == tree.verify_ms[1]
    tree.verify_ms = {}  # as a profile saved before trees' passes were timed
    assert model.predict("toy", TreeShape(2, 2, 4), 1).verify_ms == model.verify_ms(5, 1)


@pytest.mark.parametrize("refill", [False, True], ids=["static", "continuous"])
@pytest.mark.parametrize("batch", [2, 3])
def test_predicted_tree_tar_equals_the_live_batch(tree_profile, refill, batch):
    """A tree's walks, measured once, give the TAR a batch of any size realises, idle rows
    included: static batches wait for their slowest row, continuous ones only drain."""
    prof, verifier, prompts = tree_profile
    model = ThroughputModel(prof, refill=refill)
    tars = set()
    for shape in model.trees("toy"):
        decoder = SpeculativeDecoder(verifier, close_draft(verifier), shape)
        parts = [prompts] if refill else [prompts[i:i + batch]
                                          for i in range(0, len(prompts), batch)]
        runs = [decoder.generate(p, max_new_tokens=12, batch_size=batch).metrics for p in parts]
        live = sum(m.new_tokens for m in runs) / (batch * sum(m.target_passes for m in runs))
        assert model.predict("toy", shape, batch).tar == pytest.approx(live, abs=1e-12)
        tars.add(live)
    assert len(tars) == 2  # the shape matters: a wrong walk would be noticed


class _ChainOnlyDraft(ToyDraft):
    propose_tree = None


class _ChainOnlyPlugin(ToyPlugin):
    """The toy verifier, a draft that grows trees and one that does not."""

    @hookimpl
    def thrifty_draft_models(self):
        def chain_only(v, **o):
            d = close_draft(v)
            return _ChainOnlyDraft(vocab=v.vocab_size, table=d.table)
        return [DraftModelSpec(name="toy-draft", factory=lambda v, **o: close_draft(v)),
                DraftModelSpec(name="chain-draft", factory=chain_only)]


def test_select_ranks_trees_with_chains_and_skips_drafts_without_trees(toy_registry, tmp_path,
                                                                      capsys):
    toy_registry(_ChainOnlyPlugin())
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("abcabd\nfedcba\nabcdef\naabbcc\n")
    assert main(["profile", "--verifier", "toy", "--draft", "toy-draft", "--draft",
                 "chain-draft", "--workload", str(prompts), "--batch", "1,2", "--gamma-max",
                 "2", "--max-new-tokens", "6", "--repeats", "1", "--warmup", "0", "--sweeps",
                 "1", "--trees", "2x2:3", "-o", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "draft chain-draft: no token trees profiled: draft 'toy-draft' has no " \
           "propose_tree/commit_path (chains only)" in out
    prof = Profile.load(tmp_path / "p.json")
    assert list(prof.drafts["toy-draft"].trees) == ["2x2:3"] and not prof.drafts[
        "chain-draft"].trees
    assert main(["select", "--profile", str(tmp_path / "p.json"), "--json", "--top", "20",
                 "--measure", "--plot", ""]) == 0
    report = json.loads(capsys.readouterr().out)
    model = ThroughputModel(prof)
    for entry in report["batches"]:
        trees = [r for r in entry["ranking"] if r["tree"]]
        assert [(r["draft"], r["tree"], r["gamma"]) for r in trees] == [("toy-draft", "2x2:3",
                                                                         2)]
        assert trees[0]["tar"] == round(model.predict("toy-draft", TreeShape(2, 2, 3),
                                                      entry["batch"]).tar, 4)
        assert trees[0]["measured"] > 0
        speeds = [r["throughput"] for r in entry["ranking"]]
        assert speeds == sorted(speeds, reverse=True) and len(speeds) == 1 + 2 * 2 + 1


def test_profile_refuses_bad_tree_text(cli, capsys):
    assert cli(["profile", "--verifier", "toy", "--trees", "4y2"]) == 2
    assert "a tree shape is DEPTHxBRANCH[:NODES], such as 4x2:8; got '4y2'" in \
        capsys.readouterr().err
    assert cli(["profile", "--verifier", "toy", "--trees", ","]) == 2
    assert "--trees takes comma-separated tree shapes" in capsys.readouterr().err
