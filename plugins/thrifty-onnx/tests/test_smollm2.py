"""The ONNX draft on the real SmolLM2-135M verifier (CPU, float32).

The draft is a real thrifty draft folder, the format the shipped drafts use (two SmolLM2 layers
around the verifier's shared embedding), loaded by the ``hf`` plugin, exported through the
``onnx`` draft's factory into the thrifty cache and run by onnxruntime. The verifier is the
``hf`` zoo's conversion, made once per machine and reused.
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
def draft_dir(smollm2, tmp_path_factory):
    """A thrifty draft folder: SmolLM2 layers 0 and 29 around the shared embedding."""
    from thrifty_hf.distill import init_draft
    from thrifty_hf.drafts import save_draft

    draft, layers = init_draft(smollm2.model, depth=2, width=576, init="select")
    return save_draft(draft, tmp_path_factory.mktemp("draft") / "smollm2-select-l2",
                      verifier={"name": "smollm2-135m", "vocab_size": 49152},
                      architecture={"width": 576, "depth": 2, "init": "select",
                                    "layers": layers},
                      command="test", training={})


@pytest.fixture(scope="module")
def drafts(smollm2, draft_dir):
    """The same draft twice: in PyTorch (``hf``) and in onnxruntime (``onnx``)."""
    from thrifty_hf.models import make_draft as make_hf

    from thrifty_onnx.factory import make_draft as make_onnx

    torch_draft = make_hf(smollm2, str(draft_dir), device="cpu", dtype="float32")
    return torch_draft, make_onnx(smollm2, str(draft_dir), intra_op_threads=1)


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
    """Lossless whatever the draft proposes (this untrained one is rarely right)."""
    prompts = PROMPTS[:2] + PROMPTS[10:12]
    base = SpeculativeDecoder(smollm2).generate(prompts, max_new_tokens=16)
    spec = SpeculativeDecoder(smollm2, drafts[1], 3).generate(prompts, max_new_tokens=16)
    assert spec.metrics.proposed_at and spec.metrics.proposed_at[0] > 0
    assert spec.token_ids == base.token_ids
