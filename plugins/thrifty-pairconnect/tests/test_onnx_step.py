"""The PairConnect step exported to ONNX and run by onnxruntime: same proposals as PyTorch."""

import sys

import pytest
import torch

from thrifty.errors import (IncompatibleModelsError, ModelNotFoundError, NotSupportedError,
                            ThriftyError)
from thrifty.speculative import Sampling, SpeculativeDecoder
from thrifty.testing.drafts import DraftModelSuite
from thrifty.testing.toy import ToyTokenizer, ToyVerifier
from thrifty_pairconnect.draft import PairConnectDraft, save_draft
from thrifty_pairconnect.lm import PairConnectLM
from thrifty_pairconnect.onnx_step import (FORMAT, NotPairConnectGraphError,
                                           OnnxUnavailableError, export_error, export_step,
                                           graph_ids, onnx_draft)

pytest.importorskip("onnxruntime")  # the optional extra `onnx`; tested where it is installed


def small_lm(vocab, seed=0, **kw):
    torch.manual_seed(seed)
    opts = dict(table_size=512, window=3, buckets=3, hashes=2, hidden=64, depth=1)
    opts.update(kw)
    return PairConnectLM(vocab, 32, **opts).eval()


_GRAPHS = {}


def graph_of(vocab):
    """One exported graph per vocabulary size (exporting takes a fraction of a second)."""
    if vocab not in _GRAPHS:
        _GRAPHS[vocab] = export_step(small_lm(vocab))
    return _GRAPHS[vocab]


class TestPairConnectOnnxDraft(DraftModelSuite):
    @pytest.fixture
    def make_draft(self):
        return lambda verifier: onnx_draft(graph_of(verifier.vocab_size), verifier=verifier)


def test_graph_ids_are_the_lean_steps_ids_exactly():
    """The export-friendly hashing (int64 Mul/Add/Mod) gives the ids of PairConnect.step_ids,
    also for large token ids whose hash products need all of int64."""
    lm = small_lm(50_000, table_size=1 << 16, window=8, buckets=4, hashes=3, hash_seed=7)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 50_000, (6, 1), generator=g)
    past = torch.randint(-1, 50_000, (6, 8), generator=g)
    past[0, 3:] = -1
    assert torch.equal(graph_ids(lm.layer, tokens, past), lm.layer.step_ids(tokens, past))


@pytest.mark.parametrize("options", [{}, {"weighting": "sum", "hashes": 1},
                                     {"window": 6, "buckets": 4, "depth": 2}],
                         ids=["distance-k2", "sum-k1", "w6-depth2"])
def test_graph_matches_the_model_at_other_batch_sizes(options):
    """Traced with batch 2, run with 5 (dynamic batch); the next past is exact."""
    lm = small_lm(11, **options)
    assert export_error(lm, export_step(lm), batch=5) < 1e-5


def test_greedy_proposals_equal_pytorch_across_ragged_commits():
    lm = small_lm(9, seed=2)
    ours, ref = onnx_draft(export_step(lm)), PairConnectDraft(lm)
    prompts = [[1, 2, 3, 4, 5, 6], [7], [3, 3], [0, 8, 1, 2, 5, 5, 4, 1, 0]]
    for draft in (ours, ref):
        draft.start(prompts)
    g = torch.Generator().manual_seed(1)
    for gamma in (4, 3, 1, 5, 2):
        got, want = ours.propose(gamma, Sampling(), None), ref.propose(gamma, Sampling(), None)
        assert got.tokens.tolist() == want.tokens.tolist()
        accepted = torch.randint(0, gamma + 1, (len(prompts),), generator=g)
        accepted[0] = gamma  # always one row that keeps everything and one that keeps nothing
        accepted[1] = 0
        bonus = torch.randint(0, 9, (len(prompts),), generator=g)
        for draft in (ours, ref):
            draft.commit(accepted, bonus)


def test_sampled_proposals_and_q_follow_pytorch():
    lm = small_lm(9, seed=4)
    ours, ref = onnx_draft(export_step(lm)), PairConnectDraft(lm)
    sampling = Sampling(temperature=0.8, top_k=5)
    for draft in (ours, ref):
        draft.start([[1, 2, 3], [4]])
    got = ours.propose(4, sampling, torch.Generator().manual_seed(3))
    want = ref.propose(4, sampling, torch.Generator().manual_seed(3))
    assert got.tokens.tolist() == want.tokens.tolist()
    torch.testing.assert_close(got.q, want.q, atol=1e-5, rtol=0)


def test_speculative_output_equals_target_only_greedy():
    verifier = ToyVerifier(vocab=8, seed=0)
    prompts = [[1, 2, 3], [4], [5, 6, 7, 0, 1]]
    base = SpeculativeDecoder(verifier).generate(prompts, max_new_tokens=20)
    out = SpeculativeDecoder(verifier, onnx_draft(graph_of(8), verifier=verifier), 4).generate(
        prompts, max_new_tokens=20)
    assert out.token_ids == base.token_ids


def test_missing_onnxruntime_is_a_thrifty_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with pytest.raises(OnnxUnavailableError, match=r"thrifty-pairconnect\[onnx\]") as info:
        onnx_draft(graph_of(8))
    assert isinstance(info.value, NotSupportedError) and isinstance(info.value, ThriftyError)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter's notice
def test_refuses_what_is_not_a_pairconnect_graph(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a graph at all")
    with pytest.raises(NotPairConnectGraphError, match="export-pairconnect-onnx"):
        onnx_draft(garbage)
    other = tmp_path / "linear.onnx"
    torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), str(other), dynamo=False)
    with pytest.raises(NotPairConnectGraphError, match=FORMAT):
        onnx_draft(other)
    with pytest.raises(ModelNotFoundError, match="export-pairconnect-onnx"):
        onnx_draft(tmp_path / "nope.onnx")


def test_registered_draft_from_graph_or_weights_and_the_command(tmp_path, capsys):
    import json

    from thrifty.cli import main
    from thrifty.testing import fresh_registry
    from thrifty_pairconnect import plugin

    weights, graph = tmp_path / "d.safetensors", tmp_path / "d.onnx"
    save_draft(small_lm(8), weights, tokenizer=ToyTokenizer())
    assert main(["export-pairconnect-onnx", "--weights", str(weights), "--out", str(graph),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["path"] == str(graph) and report["max_abs_logit_error"] < 1e-5

    reg = fresh_registry(load_entry_points=False, plugins={"pairconnect": plugin})
    spec = reg.draft_model("pairconnect-onnx")
    verifier = ToyVerifier(vocab=8)
    prompts = [[1, 2, 3], [4, 5]]
    ref = PairConnectDraft(small_lm(8).half().float())  # the fp16-stored weights
    ref.start(prompts)
    want = ref.propose(4, Sampling(), None).tokens.tolist()
    for model in (graph, weights):
        draft = spec.build(verifier, model=str(model), threads=1)
        assert draft.name == "pairconnect-onnx" and draft.vocab_size == 8
        draft.start(prompts)
        assert draft.propose(4, Sampling(), None).tokens.tolist() == want

    with pytest.raises(IncompatibleModelsError, match="vocabulary of 8"):
        spec.build(ToyVerifier(vocab=9), model=str(graph))

    class Shifted(ToyTokenizer):
        def encode(self, text, add_special_tokens=False):
            return [i + 1 for i in super().encode(text)]

    shifted = ToyVerifier(vocab=8)
    shifted.tokenizer = Shifted()
    with pytest.raises(IncompatibleModelsError, match="different tokenizer"):
        spec.build(shifted, model=str(graph))
