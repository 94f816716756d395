"""``thrifty export-draft``: a thrifty draft as a stock Hugging Face checkpoint.

The end-to-end test loads the export in a Python that cannot import thrifty and runs
transformers' own assisted generation with it: output identical to the verifier's greedy
output, acceptance close to thrifty's engine with the same draft and γ.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig

import pytest
import torch

from thrifty.errors import ConfigError, IncompatibleModelsError

GAMMA = 4
NEW_TOKENS = 20
ROWS = (0, 4, 12)
"""Two code prompts and one prose prompt of the session's list (conftest.PROMPTS)."""


@pytest.mark.parametrize("width", [32, 64, 16])
def test_folded_checkpoint_computes_the_drafts_logits(tiny_llama, tiny_draft, width):
    """Projections (width != 32) fold into embedding and head: same logits in float32."""
    from thrifty_hf.export import stock_model

    verifier = tiny_llama()
    draft = tiny_draft(verifier, width, depth=2)
    with torch.no_grad():  # perturbed norms, so a dropped or misplaced norm would show
        for name, p in draft.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.3)
    stock = stock_model(draft)
    assert type(stock).__name__ == "LlamaForCausalLM"
    assert stock.config.hidden_size == width
    ids = torch.randint(0, 40, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = draft(input_ids=ids).logits, stock(input_ids=ids).logits
    assert want.shape == got.shape == (2, 11, 40)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["qwen2", "gemma2", "gemma3", "gpt-neox"])
def test_a_wide_draft_of_another_family_folds_into_that_familys_class(family, tmp_path):
    """Gemma scales its embedding (2: in the model, 3: in the embedding module) and soft-caps
    its logits; GPT-NeoX names its head differently: the folded checkpoint, saved and loaded
    by transformers, still computes the draft's logits."""
    import families
    from transformers import AutoModelForCausalLM

    from thrifty_hf.distill import init_draft
    from thrifty_hf.export import stock_model

    verifier = families.make_model(family)
    draft, _ = init_draft(verifier, depth=1, width=128, init="fresh")
    with torch.no_grad():  # the fresh layers' norms and biases perturbed
        for p in draft.model.parameters():
            p.add_(0.3 * torch.randn_like(p)) if p.dim() == 1 else None
    stock_model(draft).save_pretrained(tmp_path)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert type(plain).__name__ == type(verifier).__name__
    assert plain.config.hidden_size == 128
    ids = torch.tensor([[3, 14, 15, 92, 65, 35, 89]])
    with torch.no_grad():
        want = draft(input_ids=ids).logits
        torch.testing.assert_close(plain(input_ids=ids).logits, want, rtol=1e-4,
                                   atol=1e-4 * float(want.abs().max()))


def test_feature_draft_is_refused_with_the_reason(tmp_path, tiny_llama, tiny_draft):
    from thrifty_hf.export import EAGLE_DIFFERENCES, engine_settings, export_draft, stock_model

    out = tmp_path / "feat-hf"
    with pytest.raises(IncompatibleModelsError, match="feature draft") as err:
        export_draft("smollm2-draft-feat", out)
    assert "EAGLE" in str(err.value) and "docs/interop.md" in str(err.value)
    assert not out.exists()
    verifier = tiny_llama()
    with pytest.raises(IncompatibleModelsError, match="no final norm|final norm"):
        stock_model(tiny_draft(verifier, 32, features=True))
    assert len(EAGLE_DIFFERENCES) == 3
    # and `thrifty select` offers no vLLM/transformers settings for it
    assert engine_settings({"model": "smollm2-draft-feat"}) is None
    l1 = engine_settings({"model": "smollm2-draft-l1"})
    assert l1.prepare == "thrifty export-draft smollm2-draft-l1 --out smollm2-draft-l1-hf"
    assert l1.vllm == {"method": "draft_model", "model": "smollm2-draft-l1-hf"}
    assert l1.assistant == {"num_assistant_tokens_schedule": "constant",
                            "assistant_confidence_threshold": 0.0}


def test_bad_targets_are_refused(tmp_path, small_draft_dir):
    from thrifty_hf.export import export_draft

    with pytest.raises(ConfigError, match="checkpoint already"):
        export_draft(str(small_draft_dir), tmp_path / "x")
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigError, match="exists"):
        export_draft("smollm2-draft-l1", tmp_path / "taken")


# Runs in `python -I -S` with only the standard library and site-packages on sys.path: editable
# installs (thrifty, its plugins) hook in through .pth files, which are never read, so thrifty
# cannot be imported, and the script checks that it cannot.
_ASSISTED = r"""
import importlib.util, json, sys
sys.path.append(sys.argv[1])
assert importlib.util.find_spec("thrifty") is None
assert importlib.util.find_spec("thrifty_hf") is None
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging
logging.set_verbosity_error()
logging.disable_progress_bar()
draft_dir, verifier_dir, gamma, new = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
prompts = json.loads(sys.argv[6])  # token ids
draft = AutoModelForCausalLM.from_pretrained(draft_dir, dtype=torch.float32).eval()
# transformers reads the assistant's lookahead from the assistant's generation config: γ every
# step (a constant schedule, no confidence cut-off), as thrifty proposes
draft.generation_config.update(num_assistant_tokens=gamma,
                               num_assistant_tokens_schedule="constant",
                               assistant_confidence_threshold=0.0)
target = AutoModelForCausalLM.from_pretrained(verifier_dir, dtype=torch.float32).eval()
tok = AutoTokenizer.from_pretrained(draft_dir)
passes = [0]
target.register_forward_pre_hook(lambda *a: passes.__setitem__(0, passes[0] + 1))
out = []
for prompt in prompts:
    ids = {"input_ids": torch.tensor([prompt]), "attention_mask": torch.ones(1, len(prompt))}
    common = dict(max_new_tokens=new, do_sample=False)
    with torch.no_grad():
        plain = target.generate(**ids, **common)[0, len(prompt):].tolist()
        passes[0] = 0
        assisted = target.generate(**ids, **common, assistant_model=draft)
    assisted = assisted[0, len(prompt):].tolist()
    out.append({"plain": plain, "assisted": assisted, "passes": passes[0]})
print(json.dumps({"class": type(draft).__name__, "rows": out}))
"""


def test_export_runs_in_transformers_without_thrifty(tmp_path, smollm2, prompt_ids):
    """Export the shipped one-layer draft; in a Python without thrifty, transformers' assisted
    generation with it reproduces the verifier's greedy output, and tokens per verifier pass
    come out close to thrifty's engine with the same draft and γ.

    The schedules differ only at the ends: transformers' first pass also prefills the prompt
    (thrifty prefills separately), and near ``max_new_tokens`` it proposes fewer than γ."""
    from thrifty.speculative import SpeculativeDecoder
    from thrifty_hf.export import export_draft
    from thrifty_hf.models import make_draft

    out = export_draft("smollm2-draft-l1", tmp_path / "l1-hf")
    assert {"config.json", "model.safetensors", "generation_config.json",
            "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert not list(tmp_path.glob(".l1-hf.*"))  # the temporary folder was renamed, not left
    site = sysconfig.get_paths()["purelib"]
    ids = [prompt_ids[i] for i in ROWS]
    run = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _ASSISTED, site, str(out),
         str(smollm2.model.name_or_path), str(GAMMA), str(NEW_TOKENS), json.dumps(ids)],
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["class"] == "LlamaForCausalLM"
    rows = found["rows"]
    for row in rows:
        assert len(row["plain"]) == NEW_TOKENS
        assert row["assisted"] == row["plain"]
    tf_tar = sum(len(r["assisted"]) for r in rows) / sum(r["passes"] for r in rows)

    draft = make_draft(smollm2, "smollm2-draft-l1", device="cpu", dtype="float32")
    gen = SpeculativeDecoder(smollm2, draft, GAMMA).generate(ids, max_new_tokens=NEW_TOKENS,
                                                             batch_size=1)
    assert gen.token_ids == [r["plain"] for r in rows]  # one greedy output, three ways
    ours = gen.metrics.tar
    assert tf_tar > 1.2  # the export accepts: a garbage draft would sit near 1.0
    assert abs(tf_tar - ours) / ours < 0.1, (tf_tar, ours)
