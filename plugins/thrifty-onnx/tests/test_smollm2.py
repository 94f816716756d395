"""The ONNX draft on the real SmolLM2-135M verifier (CPU, float32).

The draft is the shipped ``smollm2-draft-l1`` (one distilled layer around the verifier's shared
embedding), loaded by the ``hf`` plugin, exported through the ``onnx`` draft's factory into the
thrifty cache (once per machine) and run by onnxruntime. The verifier is the ``hf`` zoo's
conversion, also made once per machine and reused.
"""

from __future__ import annotations

import pytest
import torch

from thrifty.speculative import Sampling, SpeculativeDecoder

PROMPTS = [
    "def fibonacci(n):\n", "import numpy as np\n\ndef softmax(x):\n", "for i in range(10):\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n", "SELECT name FROM",
    "#include <stdio.h>\n\nint main(void) {\n", "function add(a, b) {\n",
    "def is_prime(n: int) -> bool:\n    if n < 2:\n", "# Sum the second column of a CSV\n",
    "def quicksort(arr):\n    if len(arr) <= 1:\n        return arr\n",
    "The capital of France is", "Once upon a time, in a small village by the sea,",
    "Photosynthesis is the process by which plants", "My favourite book is",
    "Here are three tips for staying healthy:\n1.", "The history of the Roman Empire",
    "Water boils at 100 degrees Celsius because", "In machine learning, overfitting means",
    "The sun rose over the mountains, and", "Dear team, thank you all for your work.",
    "A haiku about autumn:\n",
]


@pytest.fixture(scope="module")
def smollm2():
    from thrifty_hf.models import make_verifier

    return make_verifier("smollm2-135m", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def drafts(smollm2):
    """The same draft twice: in PyTorch (``hf``) and in onnxruntime (``onnx``)."""
    from thrifty_hf.models import make_draft as make_hf

    from thrifty_onnx.factory import make_draft as make_onnx

    torch_draft = make_hf(smollm2, "smollm2-draft-l1", device="cpu", dtype="float32")
    return torch_draft, make_onnx(smollm2, "smollm2-draft-l1", intra_op_threads=1)


def test_greedy_proposals_match_the_pytorch_draft(smollm2, drafts):
    """21 ragged prompts in one batch, two rounds with partial acceptance per row."""
    torch_draft, onnx_draft = drafts
    ids = [smollm2.tokenizer.encode(p) for p in PROMPTS]
    g = torch.Generator().manual_seed(0)
    for d in drafts:
        d.start(ids)
    for _ in range(2):
        ref = torch_draft.propose(4, Sampling(), None)
        got = onnx_draft.propose(4, Sampling(), None)
        assert got.tokens.tolist() == ref.tokens.tolist()
        accepted = torch.randint(0, 5, (len(ids),), generator=g)
        nxt = ref.tokens[:, 0]  # any token: both drafts must roll back to the same rows
        for d in drafts:
            d.commit(accepted, nxt)


def test_speculative_output_equals_target_only(smollm2, drafts):
    prompts = PROMPTS[:2] + PROMPTS[10:12]
    base = SpeculativeDecoder(smollm2).generate(prompts, max_new_tokens=16)
    spec = SpeculativeDecoder(smollm2, drafts[1], 3).generate(prompts, max_new_tokens=16)
    assert spec.token_ids == base.token_ids
    assert spec.metrics.tar > 1  # proposals were accepted: rows emitted >1 token per pass
