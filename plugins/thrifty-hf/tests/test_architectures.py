"""The exactness matrix: every model family, both HF paths, every kind of draft.

Selected with ``pytest -k architecture``.

For each family of :mod:`families` (tiny perturbed random models, float32, CPU), greedy decoding
through thrifty must reproduce transformers' own ``generate(do_sample=False)`` token for token:
target-only and speculative, on the ``hf`` and the ``hf-fast`` path, at batch 1 and in a ragged
batch of 3, with the n-gram draft, a same-family draft (the verifier's first layer with its
embedding and head) and a cross-family draft (a model of another family over the same
tokenizer). The reference is ``generate`` on one prompt at a time, so no padding enters it.

Families with sliding-window layers run on ``hf`` only while no row outgrows the window
(prompts of 2-4 tokens, 8 new tokens); a longer run there is refused, naming ``hf-fast``.

The sampling test checks the distribution, not tokens: with top-k 3 the 9 possible two-token
continuations of a Qwen2 verifier are enumerable, and speculative samples must follow them
(chi-square), as tests/test_lossless_sampling.py does on toy models.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

import families
from thrifty.errors import ConfigError
from thrifty.speculative import Sampling, SpeculativeDecoder, warp
from thrifty.testing import fresh_registry

FAMILIES = list(families.FAMILIES)
PATHS = ["hf", "hf-fast"]
TEXTS = ["x = 1\n", "import numpy as np\n", "for i in range(10):\n    print("]  # 4, 11, 16 tokens
LONGEST = 16
NEW, GAMMA = 12, 3
SHORT_NEW = 8  # windowed families on 'hf': prompts cut to 2, 3, 4 tokens, 4 + 8 - 1 + 3 <= 16
DRAFTS = ["ngram", "same-family", "cross-family"]


def cross_family(family: str) -> str:
    """A draft family other than ``family`` (no sliding window, so any run fits it)."""
    return "qwen2" if family != "qwen2" else "llama"


def windowed_on(family: str, path: str) -> bool:
    """Whether ``family`` runs the short workload on ``path`` (see the module docstring)."""
    window = families.WINDOWS.get(family)
    return path == "hf" and window is not None and window < LONGEST + NEW - 1 + GAMMA


class Matrix:
    """Models, verifiers and references, each built once per module on first use."""

    def __init__(self, tiny_family, tiny_family_draft, family_tokenizer) -> None:
        from transformers import AutoTokenizer

        self.folder, self.draft_folder = tiny_family, tiny_family_draft
        # one tokenizer for the prompts: a Qwen2 folder loads another class over the same
        # vocabulary, which splits text differently (the models only ever see these ids)
        self.prompts = [AutoTokenizer.from_pretrained(family_tokenizer).encode(t) for t in TEXTS]
        assert [len(p) for p in self.prompts] == [4, 11, LONGEST]
        self.registry = fresh_registry()
        self._verifiers: dict = {}
        self._references: dict = {}

    def verifier(self, family: str, path: str):
        key = (family, path)
        if key not in self._verifiers:
            options = {"max_len": 64} if path == "hf-fast" else {}
            self._verifiers[key] = self.registry.get("verifiers", path).build(
                model=str(self.folder(family)), device="cpu", dtype="float32", **options)
        return self._verifiers[key]

    def workload(self, family: str, path: str) -> tuple[list[list[int]], int]:
        """(prompts as token ids, new tokens) of this cell."""
        if windowed_on(family, path):
            return [p[: 2 + i] for i, p in enumerate(self.prompts)], SHORT_NEW
        return self.prompts, NEW

    def reference(self, family: str, prompts, new: int) -> list[list[int]]:
        """transformers' greedy output for each prompt alone (up to and with its EOS)."""
        key = (family, tuple(map(tuple, prompts)), new)
        if key not in self._references:
            model = self.verifier(family, "hf").model
            outs = []
            for ids in prompts:
                out = model.generate(torch.tensor([ids]), max_new_tokens=new, do_sample=False,
                                     pad_token_id=families.EOS)
                outs.append(out[0, len(ids):].tolist())
            self._references[key] = outs
        return self._references[key]

    def draft(self, kind: str, family: str, path: str, verifier):
        if kind == "ngram":
            return self.registry.get("draft_models", "ngram").build(verifier)
        folder = self.draft_folder(family) if kind == "same-family" \
            else self.folder(cross_family(family))
        return self.registry.get("draft_models", path).build(verifier, model=str(folder))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these models are too small to split, and a second thread that
    spins while the machine is busy costs far more CPU time than it saves."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def matrix(tiny_family, tiny_family_draft, family_tokenizer):
    return Matrix(tiny_family, tiny_family_draft, family_tokenizer)


def _decode(verifier, draft, prompts, new, batch):
    decoder = SpeculativeDecoder(verifier, draft, GAMMA)
    out = []
    for i in range(0, len(prompts), batch):
        out += decoder.generate(prompts[i:i + batch], max_new_tokens=new).token_ids
    return out


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("family", FAMILIES)
def test_architecture_target_only_equals_transformers(matrix, family, path):
    verifier = matrix.verifier(family, path)
    prompts, new = matrix.workload(family, path)
    expected = matrix.reference(family, prompts, new)
    assert _decode(verifier, None, prompts, new, batch=3) == expected
    assert _decode(verifier, None, prompts[-1:], new, batch=1) == expected[-1:]


@pytest.mark.parametrize("draft", DRAFTS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("family", FAMILIES)
def test_architecture_speculative_equals_transformers(matrix, family, path, draft):
    verifier = matrix.verifier(family, path)
    prompts, new = matrix.workload(family, path)
    expected = matrix.reference(family, prompts, new)
    proposer = matrix.draft(draft, family, path, verifier)
    assert _decode(verifier, proposer, prompts, new, batch=3) == expected
    assert _decode(verifier, proposer, prompts[-1:], new, batch=1) == expected[-1:]


@pytest.mark.parametrize("family", sorted(f for f in families.WINDOWS if windowed_on(f, "hf")))
def test_architecture_hf_refuses_a_run_past_the_window(matrix, family):
    """The same prompts that run exactly on 'hf-fast' are refused on 'hf' once a row would
    outgrow the window: never decoded with attention the model does not have."""
    with pytest.raises(ConfigError, match="hf-fast") as err:
        _decode(matrix.verifier(family, "hf"), None, matrix.prompts, NEW, batch=3)
    assert f"window {families.WINDOWS[family]} tokens" in str(err.value)


# -- sampling: the distribution of a non-Llama family ----------------------------------------------
SAMPLING = Sampling(temperature=1.0, top_k=3)
SAMPLES = 3000


def exact_continuations(model, prompt: list[int], new: int) -> dict[tuple, float]:
    """P(continuation of ``new`` tokens) under ``model`` with :data:`SAMPLING`, enumerated
    over the top-k tokens of each step."""
    out: dict[tuple, float] = {}

    def walk(ctx: list[int], prob: float, depth: int) -> None:
        if depth == new:
            out[tuple(ctx[len(prompt):])] = prob
            return
        with torch.no_grad():
            p = warp(model(torch.tensor([ctx])).logits[0, -1].float(), SAMPLING)
        for tok in p.nonzero()[:, 0].tolist():
            walk(ctx + [tok], prob * float(p[tok]), depth + 1)

    walk(list(prompt), 1.0, 0)
    return out


@pytest.mark.parametrize("path", PATHS)
def test_architecture_sampled_speculative_follows_qwen2(matrix, path):
    from scipy.stats import chi2

    verifier = matrix.verifier("qwen2", path)
    prompt = matrix.workload("qwen2", path)[0][1]
    expected = exact_continuations(matrix.verifier("qwen2", "hf").model, prompt, 2)
    assert len(expected) == 9 and abs(sum(expected.values()) - 1) < 1e-5
    draft = matrix.draft("same-family", "qwen2", path, verifier)
    out = SpeculativeDecoder(verifier, draft, 2).generate(
        [prompt] * SAMPLES, max_new_tokens=2, sampling=SAMPLING, seed=5)
    counts = Counter(tuple(t) for t in out.token_ids)
    assert set(counts) <= set(expected), "sampled a continuation outside the top-k"
    stat = sum((counts.get(k, 0) - SAMPLES * p) ** 2 / (SAMPLES * p) for k, p in expected.items())
    pvalue = float(chi2.sf(stat, df=len(expected) - 1))
    assert pvalue > 1e-3, f"speculative samples differ from Qwen2's distribution (p={pvalue:.2e})"
    assert sum(out.metrics.accepted_at) > 0  # the draft took part


def test_architecture_families_are_what_they_claim(tiny_family):
    """Each fixture has the feature its family is in the matrix for, with biases and norm
    weights that are neither zero nor one."""
    from transformers import AutoModelForCausalLM

    for name in FAMILIES:
        model = AutoModelForCausalLM.from_pretrained(tiny_family(name))
        vectors = [p for n, p in model.named_parameters() if p.dim() == 1]
        assert vectors and all(not torch.all((p == 0) | (p == 1)) for p in vectors), name
    config = families.manifest
    assert config(tiny_family("gemma3"))["layer_types"] == ["sliding_attention", "full_attention"]
    assert config(tiny_family("mistral-window"))["sliding_window"] == 16
    assert config(tiny_family("gpt-neox"))["rope_parameters"]["partial_rotary_factor"] == 0.5
    assert config(tiny_family("llama3-rope"))["rope_parameters"]["rope_type"] == "llama3"
    assert config(tiny_family("llama-bias"))["attention_bias"]
    assert list(families.WINDOWS) == ["mistral-window", "gemma2", "gemma3", "mixtral"]


# -- what the paths refuse ---------------------------------------------------------------------
def _save_with_tokenizer(model, folder, family_tokenizer):
    model.save_pretrained(folder)
    for f in family_tokenizer.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    return folder


@pytest.fixture(scope="module")
def unsupported(tmp_path_factory, family_tokenizer):
    """Folders of architectures no path runs: two encoder-decoders and a state-space model."""
    import transformers

    torch.manual_seed(0)
    small = dict(vocab_size=families.VOCAB)
    made = {
        "t5": transformers.T5ForConditionalGeneration(transformers.T5Config(
            d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4, decoder_start_token_id=0,
            **small)),
        "bart": transformers.BartForConditionalGeneration(transformers.BartConfig(
            d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
            max_position_embeddings=64, **small)),
        "mamba": transformers.MambaForCausalLM(transformers.MambaConfig(
            hidden_size=32, num_hidden_layers=1, state_size=4, **small)),
    }
    return {name: _save_with_tokenizer(model, tmp_path_factory.mktemp(name), family_tokenizer)
            for name, model in made.items()}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", ["t5", "bart", "mamba"])
def test_architecture_unsupported_is_refused_at_load(matrix, unsupported, name, path):
    """Never a raw AttributeError or a decoder loaded without its encoder: a ThriftyError at
    load that names the architecture."""
    from thrifty.errors import ThriftyError

    with pytest.raises(ThriftyError, match="(?i)encoder-decoder" if name != "mamba"
                       else "Mamba"):
        matrix.registry.get("verifiers", path).build(model=str(unsupported[name]),
                                                     device="cpu", dtype="float32")


PAIRS = [("hf", "hf"), ("hf-fast", "hf-fast"), ("hf", "hf-fast")]
"""(verifier, draft) plugins; an hf-fast draft beside the hf verifier is checked like any."""


@pytest.mark.parametrize("path,draft_path", PAIRS)
def test_architecture_draft_check_compares_vocabularies_not_classes(matrix, tmp_path, path,
                                                                    draft_path):
    """A Qwen2 folder loads another tokenizer class than a Llama folder over the same files,
    one that splits text differently; the draft is still accepted, since a draft only sees
    the verifier's ids. The same files with two ids swapped are refused."""
    import json

    from thrifty.errors import IncompatibleModelsError
    from thrifty_hf.models import PROBE

    verifier = matrix.verifier("llama", path)
    qwen2 = matrix.verifier("qwen2", "hf").tokenizer
    assert type(qwen2) is not type(verifier.tokenizer)
    assert qwen2.encode(PROBE) != verifier.tokenizer.encode(PROBE)
    draft = matrix.draft("cross-family", "llama", draft_path, verifier)
    assert SpeculativeDecoder(verifier, draft, GAMMA).generate(matrix.prompts[:1],
                                                               max_new_tokens=4).token_ids

    swapped = tmp_path / "swapped"
    swapped.mkdir()
    for f in matrix.folder("qwen2").iterdir():
        (swapped / f.name).write_bytes(f.read_bytes())
    spec = json.loads((swapped / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[300:302]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (swapped / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(IncompatibleModelsError, match="vocabulary"):
        matrix.registry.get("draft_models", draft_path).build(verifier, model=str(swapped))


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma3"])
def test_architecture_fast_draft_beside_the_hf_verifier_keeps_its_acceptance(matrix, family):
    """An hf-fast draft proposes what the same draft proposes on 'hf': acceptance, not just
    output, is the same (it collapsed to TAR 1 while the fast forward ignored what it could
    not compute), and nothing is reported as collapsed."""
    verifier = matrix.verifier(family, "hf")
    prompts, new = matrix.workload(family, "hf")
    runs = [SpeculativeDecoder(verifier, matrix.draft("same-family", family, kind, verifier),
                               GAMMA).generate(prompts, max_new_tokens=new)
            for kind in PATHS]
    assert runs[0].token_ids == runs[1].token_ids
    assert runs[0].metrics.accepted_at == runs[1].metrics.accepted_at
    assert sum(runs[1].metrics.accepted_at) > 0 and not runs[1].metrics.collapsed


def test_architecture_hf_passes_the_current_cache_keyword(matrix):
    """transformers deprecates ``past_key_values`` (gone in 5.40): the adapters use the keyword
    the installed release has, so a run prints no FutureWarning."""
    import warnings

    verifier = matrix.verifier("qwen2", "hf")
    draft = matrix.draft("same-family", "qwen2", "hf", verifier)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        SpeculativeDecoder(verifier, draft, GAMMA).generate(matrix.prompts, max_new_tokens=4)
    assert not [w for w in caught if issubclass(w.category, FutureWarning)]


def test_architecture_both_paths_stop_at_the_same_tokens(tiny_family, family_tokenizer):
    """One rule for the ids that end generation on both paths: the generation config, the
    model config, and the tokenizer only when neither names one."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thrifty_hf.fast import FastVerifier
    from thrifty_hf.models import HFVerifier

    model = AutoModelForCausalLM.from_pretrained(tiny_family("qwen3")).eval()
    tokenizer = AutoTokenizer.from_pretrained(family_tokenizer)
    model.config.eos_token_id = model.generation_config.eos_token_id = None
    paths = [HFVerifier(model, tokenizer, "hf"), FastVerifier(model, tokenizer, max_len=32)]
    assert [v.eos_token_ids for v in paths] == [frozenset({families.EOS})] * 2
    model.generation_config.eos_token_id = [5, 7]
    paths = [HFVerifier(model, tokenizer, "hf"), FastVerifier(model, tokenizer, max_len=32)]
    assert [v.eos_token_ids for v in paths] == [frozenset({5, 7})] * 2
