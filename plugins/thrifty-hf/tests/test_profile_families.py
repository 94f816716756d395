"""``thrifty profile`` and ``thrifty select`` on the ``hf-fast`` verifier, family by family.

For each family (tiny perturbed random models of families.py, float32 on the CPU, where the fast
path runs eagerly: no CUDA graphs) the verifier and a same-family draft (its first layer, with
its embedding, final norm and head: ``tiny_family_draft``) are profiled by the command line
itself, chains and two token-tree shapes, at batch sizes 1 and 2; ``select`` ranks the profile,
once from the file and once measuring its picks live. What is checked:

* the profile record: every configuration profiled (each width the verifier scores, each γ and
  tree the draft proposes, each tree's own verifier pass, at every batch size) has a finite
  latency > 0, overheads >= 0, an acceptance row per prompt, and each tree's walk gains exactly
  the tokens target-only decoding emits for that prompt;
* the replayed acceptance is what the engine realises: the TAR the model predicts for every
  γ and tree at every batch size equals the live greedy run's, in static batches and with
  continuous batching (a tree's walk, measured once at batch 2, holds at batch 1 too);
* ``select``: per batch size, a ranking of exactly the candidates (target-only, the draft at
  γ = 1 … γmax and at each profiled tree), fastest first, whose first row is the recommendation;
  a recommendation that names the draft carries its thrifty settings; the schedule names the
  draft, covers batch 1 … 2 with choices among the candidates and agrees with the
  recommendation at each profiled size; ``--measure`` measures every shown row, with the draft
  built again with every option it was profiled with;
* losslessness: the settings ``select`` exports (``[speculative]`` from its ``thrifty`` TOML),
  each batch's recommendation, and the draft's fastest point by the model at each batch size
  all decode exactly what target-only decoding does, over ragged prompts that outgrow every
  sliding window and a third prompt admitted into a running row.

Which point wins is the profile's to say, so nothing here depends on it: on these models a
one-layer draft costs about two thirds of a verifier pass and agrees with it rarely, so
target-only usually wins; the draft's fastest point is run all the same.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tomllib

import pytest
import torch

import families
from thrifty.cli import main
from thrifty.pipeline import from_config
from thrifty.speculative import SpeculativeDecoder, TreeShape, commands
from thrifty.speculative.profile import Profile
from thrifty.speculative.schedule import gamma_at
from thrifty.speculative.throughput import ThroughputModel, batched

FAMILIES = ["qwen2", "qwen3", "mistral-window", "gemma2", "gemma3", "phi3", "gpt-neox",
            "qwen2-moe", "mixtral"]
"""Every family but the Llama ones: biases (qwen2), q/k norms (qwen3), windows (mistral-window,
gemma2, gemma3), soft-capping (gemma2, gemma3), fused projections (phi3), partial rotary and a
parallel residual (gpt-neox), experts with a shared expert (qwen2-moe) and without one, under
a window (mixtral)."""

BATCHES = [1, 2]
GAMMA_MAX = 3
TREES = ["2x2:3", "3x2:5"]
MAX_NEW = 12
MAX_LEN = 96  # the verifier's cache: an option of --verifier that select --measure keeps

PROFILE_PROMPTS = [
    "The capital of France is Paris, and the capital of Italy is",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea, there lived an old",
    "for i in range(10):",
]
"""The workload profiled (one prompt a line): ragged, two of them longer than every window
(16 or 32 tokens) once their continuations are added."""

PROMPTS = [
    "Here are three tips for staying healthy:",
    "x = 1",
    "Photosynthesis is the process by which plants turn light into sugar. In machine learning,",
]
"""Held-out prompts for the lossless checks; the third outgrows every window on its own."""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread while this module runs: models of width 64 gain nothing from a
    second one, which only spins, and stalls when a shared 2-core machine is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cli(argv: list[str]) -> tuple[int, str]:
    """``thrifty ARGV`` in this process through the real registry: (exit status, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue()


@pytest.fixture(scope="module", params=FAMILIES)
def run(request, tiny_family, tiny_family_draft, tmp_path_factory):
    """One family profiled and selected through the command line, and the models the
    selection's own thrifty settings build (``pipe``)."""
    family = request.param
    verifier_dir, draft_dir = tiny_family(family), tiny_family_draft(family)
    folder = tmp_path_factory.mktemp(f"select-{family}")
    workload = folder / "prompts.txt"
    workload.write_text("\n".join(PROFILE_PROMPTS) + "\n")
    path = folder / "profile.json"
    rc, out = _cli(["profile", "--verifier", f"hf-fast,max_len={MAX_LEN}",
                    "--model", str(verifier_dir),
                    "--device", "cpu", "--dtype", "float32",
                    "--draft", f"hf-fast:{draft_dir},graphs=false",
                    "--workload", str(workload), "--prompts", str(len(PROFILE_PROMPTS)),
                    "--batch", ",".join(map(str, BATCHES)), "--gamma-max", str(GAMMA_MAX),
                    "--max-new-tokens", str(MAX_NEW), "--repeats", "1", "--warmup", "1",
                    "--sweeps", "1", "--trees", ",".join(TREES), "-o", str(path)])
    assert rc == 0 and f"written to {path}" in out
    rc, out = _cli(["select", "--profile", str(path), "--json", "--top", "100", "--plot", ""])
    assert rc == 0
    selected = json.loads(out)
    rebuilt = []  # the drafts select --measure builds again from the profile: their configs
    rebuilt_max_len = []  # and its verifier's cache, an option of the profiled --verifier
    build_models = commands.build_models

    def spy(*args, **kwargs):
        verifier, drafts = build_models(*args, **kwargs)
        rebuilt.append({label: config for label, (_, config) in drafts.items()})
        rebuilt_max_len.append(verifier.lm.max_len)
        return verifier, drafts

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(commands, "build_models", spy)
        rc, out = _cli(["select", "--profile", str(path), "--json", "--top", "1", "--measure",
                        "--repeats", "1", "--plot", ""])
    assert rc == 0
    measured = json.loads(out)
    verifier = (f'verifier = {{ plugin = "hf-fast", model = {json.dumps(str(verifier_dir))}, '
                f'device = "cpu", dtype = "float32", graphs = false }}')
    pipe = from_config(f"[speculative]\n{verifier}\n{selected['thrifty']['toml']}\n")
    return {"family": family, "profile": Profile.load(path),
            "label": f"hf-fast(model={draft_dir},graphs=False)", "verifier_dir": verifier_dir,
            "selected": selected, "measured": measured, "rebuilt": rebuilt,
            "rebuilt_max_len": rebuilt_max_len, "pipe": pipe}


def _target_only(verifier, prompts, batch_size=None):
    return SpeculativeDecoder(verifier, None, 0).generate(
        prompts, max_new_tokens=MAX_NEW, batch_size=batch_size).token_ids


def _positive(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def _candidates(label):
    """(draft, γ, tree) of every point select may rank for one draft profiled as above."""
    return ({(None, 0, None)} | {(label, g, None) for g in range(1, GAMMA_MAX + 1)}
            | {(label, TreeShape.parse(t).depth, t) for t in TREES})


def test_the_profile_holds_every_configuration_with_positive_latencies(run):
    prof, label = run["profile"], run["label"]
    assert prof.verifier == f"hf-fast:{run['verifier_dir']}" and prof.device == "cpu"
    assert prof.meta["verifier_config"] == {"name": f"hf-fast,max_len={MAX_LEN}",
                                            "model": str(run["verifier_dir"]),
                                            "device": "cpu", "dtype": "float32"}
    assert "trees_skipped" not in prof.meta  # hf-fast scores and grows trees in every family
    assert prof.batches == BATCHES and prof.gamma_max == GAMMA_MAX
    assert list(prof.drafts) == [label]
    d = prof.drafts[label]
    widest = 1 + max(GAMMA_MAX, *(TreeShape.parse(t).nodes for t in TREES))
    for b in BATCHES:
        assert len(prof.verify_ms[b]) == widest  # k = 1 … 1 + the largest tree's nodes
        assert all(_positive(ms) for ms in prof.verify_ms[b])
        assert prof.target_overhead_ms[b] >= 0
        assert sorted(d.propose_ms[b]) == [1, 2, 3]
        assert all(_positive(ms) for ms in d.propose_ms[b].values())
        assert sorted(d.overhead_ms[b]) == [1, GAMMA_MAX]
        assert all(ms >= 0 for ms in d.overhead_ms[b].values())
    assert len(d.acceptance.rows) == len(PROFILE_PROMPTS) and all(d.acceptance.rows)
    assert d.acceptance.gamma_max == GAMMA_MAX and d.acceptance.max_new_tokens == MAX_NEW
    assert sorted(d.trees) == sorted(TREES)
    verifier = run["pipe"].verifier
    ids = [verifier.tokenizer.encode(p) for p in PROFILE_PROMPTS]
    assert max(map(len, ids)) + MAX_NEW > max(families.WINDOWS.values())
    emitted = [len(t) for t in _target_only(verifier, ids)]
    for shape, tree in d.trees.items():
        for b in BATCHES:
            assert _positive(tree.propose_ms[b]) and _positive(tree.verify_ms[b]), (shape, b)
            assert tree.overhead_ms[b] >= 0
        # a tree's walk is live: every pass gains >= 1 token, and the tokens add up to the
        # verifier's own output for the prompt
        assert [sum(row) for row in tree.rows] == emitted, shape


def test_every_candidate_realises_its_predicted_tar_and_decodes_target_only(run):
    """Each candidate select ranks (the draft at every γ and tree) run live over the profiled
    prompts at each batch size: its output is target-only's, and its TAR (tokens per row per
    verifier pass) is the one the model predicts from the profile's replay (chains) and tree
    walks (measured once, at batch 2), in static batches and with continuous batching."""
    prof, label, pipe = run["profile"], run["label"], run["pipe"]
    verifier, draft = pipe.verifier, pipe.draft(0)
    ids = [verifier.tokenizer.encode(p) for p in PROFILE_PROMPTS]
    static, refill = ThroughputModel(prof), ThroughputModel(prof, refill=True)
    # batch 1 refilled is batch 1 static: one prompt after another either way
    modes = {(1, "both"): (refill, static), (2, "static"): (static,), (2, "refill"): (refill,)}
    want = {}
    for b, how in modes:
        work = batched(ids, b)
        parts = [work] if how != "static" else [work[i:i + b] for i in range(0, len(work), b)]
        want[b, how] = [t for p in parts for t in _target_only(verifier, p, batch_size=b)]
    accepted = proposed = 0
    for lookahead in list(range(1, GAMMA_MAX + 1)) + [TreeShape.parse(t) for t in TREES]:
        decoder = SpeculativeDecoder(verifier, draft, lookahead)
        for (b, how), models in modes.items():
            work = batched(ids, b)
            parts = [work] if how != "static" else [work[i:i + b] for i in range(0, len(work), b)]
            runs = [decoder.generate(p, max_new_tokens=MAX_NEW, batch_size=b) for p in parts]
            what = (run["family"], str(lookahead), b, how)
            assert [t for g in runs for t in g.token_ids] == want[b, how], what
            metrics = [g.metrics for g in runs]
            live = sum(m.new_tokens for m in metrics) / (b * sum(m.target_passes for m in metrics))
            for model in models:
                assert model.predict(label, lookahead, b).tar == pytest.approx(live, abs=1e-12), \
                    what
            accepted += sum(sum(m.accepted_at) for m in metrics)
            proposed += sum(sum(m.proposed_at) for m in metrics)
    # the draft is right at times and wrong at others: the roll-back ran
    assert 0 < accepted < proposed


def test_select_ranks_the_candidates_and_names_the_draft(run):
    label, selected = run["label"], run["selected"]
    candidates = _candidates(label)
    assert [e["batch"] for e in selected["batches"]] == BATCHES
    for entry in selected["batches"]:
        ranking = entry["ranking"]
        assert {(r["draft"], r["gamma"], r["tree"]) for r in ranking} == candidates
        assert len(ranking) == len(candidates)
        speeds = [r["throughput"] for r in ranking]
        assert all(s > 0 for s in speeds) and speeds == sorted(speeds, reverse=True)
        best = entry["recommended"]
        assert best == {k: v for k, v in ranking[0].items() if k != "measured"}
        assert (best["draft"], best["gamma"], best["tree"]) in candidates
        if best["draft"] is None:  # target-only is fastest here: nothing to configure
            assert entry["config"] == {}
        else:
            thrifty = tomllib.loads(entry["config"]["thrifty"])
            assert thrifty["lookahead"] == (best["tree"] or best["gamma"])
            assert thrifty["drafts"] == tomllib.loads(selected["thrifty"]["toml"])["drafts"]
    schedule = selected["schedule"]
    assert schedule["draft"] == label  # the one profiled draft is the one scheduled
    ranges = schedule["ranges"]
    assert ranges[0][0] == 1 and ranges[-1][1] == max(BATCHES)
    assert all(nxt[0] == prev[1] + 1 for prev, nxt in zip(ranges, ranges[1:]))
    allowed = set(range(GAMMA_MAX + 1)) | set(TREES)
    assert all(choice in allowed for _, _, choice in ranges)
    assert selected["thrifty"]["lookahead"] == ranges
    assert tomllib.loads(selected["thrifty"]["toml"])["drafts"][0]["model"] == \
        label.removeprefix("hf-fast(model=").removesuffix(",graphs=False)")
    for entry in selected["batches"]:  # one draft: its schedule is the recommendation
        best = entry["recommended"]
        assert gamma_at(ranges, entry["batch"]) == (best["tree"] or best["gamma"])
    # --measure measures the draft the profile holds, every option as profiled (graphs=false
    # here), not one built again from its model name with default options; so the verifier
    assert run["rebuilt"] == [{label: d.config for label, d in run["profile"].drafts.items()}]
    assert run["rebuilt"][0][label]["options"]["graphs"] is False
    assert run["rebuilt_max_len"] == [MAX_LEN]
    measured = run["measured"]["batches"]
    assert [e["batch"] for e in measured] == BATCHES
    for entry in measured:
        assert entry["ranking"] and all(r["measured"] > 0 for r in entry["ranking"])
        assert all((r["draft"], r["gamma"], r["tree"]) in candidates for r in entry["ranking"])


def test_the_selected_configurations_decode_exactly_target_only(run):
    """At each batch size, over held-out ragged prompts (the third admitted into a running row
    at batch 2): the settings select exports (its per-batch schedule, as TOML), the batch's
    recommendation (its own thrifty settings, or target-only) and the draft's fastest point by
    the model (where target-only is recommended, what the draft would have run)."""
    label, selected, pipe = run["label"], run["selected"], run["pipe"]
    verifier = pipe.verifier
    ids = [verifier.tokenizer.encode(p) for p in PROMPTS]
    assert max(map(len, ids)) > max(families.WINDOWS.values())
    accepted = proposed = 0
    for entry in selected["batches"]:
        b = entry["batch"]
        want = _target_only(verifier, ids, batch_size=b)
        config = entry["config"]
        chosen = tomllib.loads(config["thrifty"])["lookahead"] if config else 0
        top = next(r for r in entry["ranking"] if r["draft"] == label)
        for what, lookahead in (("schedule", None), ("recommended", chosen),
                                ("draft's best", top["tree"] or top["gamma"])):
            if isinstance(lookahead, str):
                lookahead = TreeShape.parse(lookahead)
            got = pipe.decoder(lookahead=lookahead).generate(ids, max_new_tokens=MAX_NEW,
                                                             batch_size=b)
            assert got.token_ids == want, (run["family"], what, b)
            accepted += sum(got.metrics.accepted_at)
            proposed += sum(got.metrics.proposed_at)
    assert 0 < accepted < proposed  # the draft ran, kept proposals and refused some
