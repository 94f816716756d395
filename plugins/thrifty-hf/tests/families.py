"""Tiny random decoders of every model family thrifty covers, saved as real Hugging Face folders.

Each family is one transformers config (2 layers, width 64, float32) made with a fixed seed and
written with ``save_pretrained`` beside one shared tokenizer, so that a draft of any family fits a
verifier of any other. Random initialisation leaves biases at zero and norm weights at one, which
hides code that ignores them; :func:`perturb` therefore adds noise to every 1-D parameter (biases,
norm weights, Gemma's ``(1 + w)`` offsets) and scales the matrices up so that logits are not flat
and greedy choices are not near-ties.

The tokenizer is a byte-level BPE trained offline on :data:`CORPUS` (vocabulary
:data:`VOCAB`), so no test downloads anything. ``<|endoftext|>`` (id 0) is every model's end of
sequence, so stopping is exercised too.

Other test suites import this module (``from families import ...``; the hf plugin's conftest puts
this folder on the path) or use the fixtures of the hf plugin's ``conftest.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

VOCAB = 384
EOS = 0  # "<|endoftext|>", the first special token the trainer adds

CORPUS = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n"
    "    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "import numpy as np\n\ndef softmax(x):\n    \"\"\"Numerically stable softmax.\"\"\"\n"
    "    e = np.exp(x - x.max())\n    return e / e.sum()\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"
    "        self.items.append(item)\n",
    "for i in range(10):\n    print(i, i * i)\n",
    "SELECT name, COUNT(*) FROM orders GROUP BY name;\n",
    "The capital of France is Paris, and the capital of Italy is Rome.",
    "Once upon a time, in a small village by the sea, there lived an old fisherman.",
    "Photosynthesis is the process by which plants turn light into sugar.",
    "Here are three tips for staying healthy:\n1. Sleep well.\n2. Eat well.\n3. Move.",
    "The quick brown fox — naïve café, 12,345.67 € — jumps over the lazy dog.\t\n  ",
    "In machine learning, overfitting happens when a model learns the noise in its data.",
]

# The configurations: (transformers config class, its arguments beyond the common ones).
COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, head_dim=16,
              max_position_embeddings=256, tie_word_embeddings=False, eos_token_id=EOS,
              bos_token_id=EOS, pad_token_id=None)

FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", {}),
    "llama-bias": ("LlamaConfig", dict(attention_bias=True, mlp_bias=True)),
    "llama3-rope": ("LlamaConfig", dict(
        max_position_embeddings=512,
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0,
                             low_freq_factor=1.0, high_freq_factor=4.0,
                             original_max_position_embeddings=64))),
    "mistral-window": ("MistralConfig", dict(sliding_window=16)),
    "qwen2": ("Qwen2Config", {}),  # q/k/v projections carry biases
    "qwen3": ("Qwen3Config", {}),  # q/k RMS norms
    "gemma2": ("Gemma2Config", dict(sliding_window=32, hidden_activation="gelu_pytorch_tanh",
                                    query_pre_attn_scalar=16, attn_logit_softcapping=50.0,
                                    final_logit_softcapping=30.0)),
    "gemma3": ("Gemma3TextConfig", dict(sliding_window=16, query_pre_attn_scalar=16,
                                        layer_types=["sliding_attention", "full_attention"],
                                        final_logit_softcapping=30.0)),
    "phi3": ("Phi3Config", dict(head_dim=None)),  # fused qkv and gate_up projections
    "gpt-neox": ("GPTNeoXConfig", dict(head_dim=None, rotary_pct=0.5, use_parallel_residual=True,
                                       hidden_act="gelu")),
    "qwen2-moe": ("Qwen2MoeConfig", dict(head_dim=None, num_experts=4, num_experts_per_tok=2,
                                         moe_intermediate_size=32,
                                         shared_expert_intermediate_size=64,
                                         decoder_sparse_step=1)),
    "mixtral": ("MixtralConfig", dict(num_local_experts=4, num_experts_per_tok=2,
                                      sliding_window=16)),  # experts, no shared one; a window
}
"""Family name -> (config class, overrides). Every name here must build with transformers 5.17."""

WINDOWS = {name: kw["sliding_window"] for name, (_, kw) in FAMILIES.items()
           if kw.get("sliding_window")}
"""The families with sliding-window layers, and their window."""


def build_tokenizer(folder: Path) -> Path:
    """Train the shared byte-level BPE on :data:`CORPUS` and save it into ``folder``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    assert tok.get_vocab_size() <= VOCAB and tok.token_to_id("<|endoftext|>") == EOS
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   bos_token="<|endoftext|>")
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    return folder


def make_config(family: str, layers: int = 2):
    """The transformers config of ``family`` with ``layers`` layers (windows and layer types
    cut to match)."""
    import transformers

    cls, extra = FAMILIES[family]
    kwargs = {**COMMON, **extra, "num_hidden_layers": layers}
    if kwargs.get("head_dim") is None:
        kwargs.pop("head_dim")
    if "layer_types" in kwargs:
        kwargs["layer_types"] = kwargs["layer_types"][:layers]
    return getattr(transformers, cls)(**kwargs)


def perturb(model: torch.nn.Module, seed: int, skip=frozenset()) -> torch.nn.Module:
    """Noise on every 1-D parameter (biases, norm weights), matrices scaled up by 8; the
    parameters named in ``skip`` (a draft's, shared with its verifier) are left alone."""
    gen = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name in skip:
                continue
            if p.dim() == 1:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
            else:
                p.mul_(8.0)
    return model


def make_model(family: str, layers: int = 2, seed: int = 0) -> torch.nn.Module:
    """A perturbed random causal LM of ``family`` in eval mode (float32, CPU)."""
    from transformers import AutoModelForCausalLM

    seed += 100 * list(FAMILIES).index(family)  # families of one shape get different weights
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(make_config(family, layers), dtype=torch.float32)
    return perturb(model, seed).eval()


def save_family(family: str, folder: Path, tokenizer: Path, layers: int = 2,
                seed: int = 0) -> Path:
    """Write ``family``'s model and the shared tokenizer into ``folder`` (an HF folder)."""
    model = make_model(family, layers, seed)
    model.save_pretrained(folder)
    for f in tokenizer.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    return folder


def truncate(src: Path, folder: Path, layers: int = 1) -> Path:
    """A same-family draft: the first ``layers`` layers of the model in ``src`` with its
    embedding, final norm and head (a draft that agrees with its verifier often)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(src)
    full = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    config.num_hidden_layers = layers
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[:layers]
    small = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = full.state_dict()
    small.load_state_dict({k: state[k] for k in small.state_dict()}, strict=True)
    small.eval().save_pretrained(folder)
    for f in src.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
            (folder / f.name).write_bytes(f.read_bytes())
    return folder


def manifest(folder: Path) -> dict:
    """``config.json`` of a saved folder (model type, windows) for assertions."""
    return json.loads((folder / "config.json").read_text())
