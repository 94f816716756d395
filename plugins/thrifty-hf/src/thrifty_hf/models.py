"""The verifier and the draft model over Hugging Face causal LMs, and their factories.

Both wrap a :class:`~thrifty_hf.cached.CachedLM`. The verifier is a thin delegation: the
engine's ``start/score/keep`` contract, and ``score_tree/keep_path`` for token trees, are
exactly CachedLM's. The draft keeps each row's
committed tokens and a cache that covers a prefix of them; every ``propose`` first feeds what
the cache lacks (ragged), then extends each row one token at a time, and ``commit`` rolls the
cache back to the part of its proposals that was accepted. A token tree is the draft's chain with
its runners-up as leaf siblings (:func:`thrifty.speculative.tree.sibling_tree`), so the draft
never attends over a tree: it keeps the chain nodes of the path the verifier accepted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import torch

from thrifty.errors import ConfigError, IncompatibleModelsError, ModelFormatError
from thrifty.protocols import Proposal, TreeProposal
from thrifty.speculative import Sampling, sample, warp
from thrifty.speculative.tree import kept_on_path, sibling_tree

from .cached import CachedLM, pad
from .plugin import DEVICES, DTYPES
from .zoo import resolve

PROBE = ("def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)  # 0x1F\n"
         "The quick brown fox — naïve café, 12,345.67 € — jumps over the lazy dog.\t\n  ")
"""Text whose token ids (by the verifier's tokenizer) a draft's tokenizer must read as the same
tokens (code, prose, digits, Unicode, whitespace runs)."""


class HFVerifier:
    """A Hugging Face causal LM as the target model (follows :class:`thrifty.protocols.Verifier`).

    ``model`` is the ``nn.Module``; ``lm`` the cached adapter that scores and rolls back.
    """

    def __init__(self, model: Any, tokenizer: Any, name: str) -> None:
        self.model = model
        self.lm = CachedLM(model)
        self.name = name
        self.max_context = getattr(model.config, "max_position_embeddings", None)
        self.tokenizer = tokenizer
        self.vocab_size = int(model.config.vocab_size)
        self.eos_token_ids = eos_token_ids(model, tokenizer)
        self.device = self.lm.device

    def start(self, prompts: Sequence[Sequence[int]]) -> None:
        self.lm.start(prompts)

    def score(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.lm.score(tokens, lengths)

    def keep(self, lengths: torch.Tensor) -> None:
        self.lm.keep(lengths)

    def score_tree(self, tokens: torch.Tensor, parents: torch.Tensor,
                   lengths: torch.Tensor) -> torch.Tensor:
        return self.lm.score_tree(tokens, parents, lengths)

    def keep_path(self, path: torch.Tensor, lengths: torch.Tensor) -> None:
        self.lm.keep_path(path, lengths)


class HFDraft:
    """A Hugging Face causal LM as a draft (follows :class:`thrifty.protocols.DraftModel`).

    Under greedy sampling it proposes its argmax and reports ``q=None``; otherwise it samples
    each proposal from ``warp(logits, sampling)`` with the engine's generator and reports that
    very ``q``, as the lossless acceptance rule requires.
    """

    def __init__(self, model: Any, name: str) -> None:
        self.model = model
        self.lm = CachedLM(model)
        self.name = name
        self.max_context = getattr(model.config, "max_position_embeddings", None)
        self.vocab_size = int(model.config.vocab_size)
        self._rows: list[list[int]] = []
        self._proposed: list[list[int]] = []  # the last chain, or the last tree's nodes 1..
        self._on_chain: list[list[bool]] = []  # which of the last tree's nodes are its chain
        self._fed = 0  # how many of the chain's tokens went into the cache

    def start(self, prompts: Sequence[Sequence[int]]) -> None:
        self._rows = [list(map(int, p)) for p in prompts]
        self._proposed = [[] for _ in self._rows]
        self._fed = 0
        self.lm.start(self._rows)

    def propose(self, gamma: int, sampling: Sampling, generator: Any) -> Proposal:
        batch = len(self._rows)
        out_device = generator.device if generator is not None else self.lm.device
        if gamma <= 0:
            empty = torch.zeros(batch, 0, dtype=torch.long, device=out_device)
            return Proposal(empty, torch.zeros(batch, dtype=torch.long, device=out_device))
        proposal, q, _ = self._chain(gamma, sampling, generator, out_device)
        self._proposed = proposal.tolist()
        return Proposal(proposal, torch.full((batch,), gamma, dtype=torch.long,
                                             device=out_device), q)

    def propose_tree(self, shape, sampling: Sampling, generator: Any) -> TreeProposal:
        """Its chain of ``shape.depth`` tokens with runners-up as leaf siblings
        (:func:`~thrifty.speculative.tree.sibling_tree`)."""
        out_device = generator.device if generator is not None else self.lm.device
        chain, q, logits = self._chain(shape.depth, sampling, generator, out_device)
        tree, on_chain = sibling_tree(chain, logits.softmax(-1) if q is None else q, shape,
                                      sampled=q is not None)
        self._proposed = tree.tokens.tolist()
        self._on_chain = on_chain.tolist()
        return tree

    def _chain(self, gamma: int, sampling: Sampling, generator: Any, out_device):
        """Feed what the cache lacks, then draft ``gamma`` tokens one at a time. Returns the
        tokens [B, γ], their q [B, γ, V] (None under greedy) and the logits they came from."""
        batch = len(self._rows)
        # Feed each row's committed tokens that the cache lacks; keep the logits after the last.
        counts = self.lm.counts.tolist()
        tokens, lengths = pad([r[c:] for r, c in zip(self._rows, counts)], self.lm.device)
        width = tokens.shape[1]
        skip = width - int(lengths.min())  # leftmost column whose logits any row needs
        logits = self.lm.append(tokens, lengths, logits=skip + 1)
        logits = logits[torch.arange(batch, device=logits.device), lengths - 1 - (width - skip - 1)]
        drafted, qs, seen = [], [], []
        ones = torch.ones(batch, dtype=torch.long, device=self.lm.device)
        for i in range(gamma):
            seen.append(logits.to(out_device))
            token, q = _pick(seen[-1], sampling, generator)
            drafted.append(token)
            qs.append(q)
            if i + 1 < gamma:
                logits = self.lm.append(token[:, None].to(self.lm.device), ones)[:, 0]
        self._fed = gamma - 1
        q = None if sampling.greedy else torch.stack(qs, dim=1)
        return torch.stack(drafted, dim=1), q, torch.stack(seen, dim=1)

    def commit(self, accepted: torch.Tensor, next_tokens: torch.Tensor) -> None:
        accepted = accepted.tolist()
        kept = [prop[:a] for prop, a in zip(self._proposed, accepted)]
        self._extend(kept, accepted, next_tokens.tolist())

    def commit_path(self, path: torch.Tensor, lengths: torch.Tensor,
                    next_tokens: torch.Tensor) -> None:
        """The path runs down the chain and may end on a sibling leaf: the cache keeps the
        chain nodes on it, and the row gains every kept token."""
        kept, chain = kept_on_path(path, lengths, self._proposed, self._on_chain)
        self._extend(kept, chain, next_tokens.tolist())

    def _extend(self, kept: list[list[int]], chain: list[int], next_tokens: list[int]) -> None:
        """Row b gains ``kept[b]`` and ``next_tokens[b]``; its cache keeps the first
        ``chain[b]`` of the proposals it holds (the chain's first ``_fed``)."""
        keep = []
        for row, toks, c, t in zip(self._rows, kept, chain, next_tokens):
            keep.append(len(row) + min(c, self._fed))
            row.extend(toks)
            row.append(int(t))
        self.lm.truncate(torch.tensor(keep, dtype=torch.long))
        self._proposed = [[] for _ in self._rows]
        self._fed = 0


def _pick(logits: torch.Tensor, sampling: Sampling, generator: Any):
    """One proposal per row from float32 logits [B, V]: argmax (q None) or a sample from q."""
    if sampling.greedy:
        return logits.argmax(-1), None
    q = warp(logits, sampling)
    return sample(q, generator), q


# -- loading ---------------------------------------------------------------------------------------
def resolve_device(device: str) -> torch.device:
    if device not in DEVICES:
        raise ConfigError(f"device must be one of {list(DEVICES)}; got {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA device; use "
                          "device='cpu' or 'auto'")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: float32 on CPU; bfloat16 on a GPU that supports it, else float16."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {list(DTYPES)}; got {dtype!r}")
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, dtype)


def load_hf(path: Path, device: torch.device, dtype: torch.dtype, tokenizer: bool = True):
    """An HF causal LM folder -> (model in eval mode on ``device``, tokenizer or None).

    Refused with :class:`ModelFormatError`: an encoder-decoder model (transformers would load
    its decoder alone, as ``BartForCausalLM``, with the encoder's weights dropped) and a
    checkpoint that lacks weights of the class it loads into (they would be random)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(path)
        if getattr(config, "is_encoder_decoder", False):
            raise ModelFormatError(
                f"{path} holds {config.model_type!r}, an encoder-decoder model: thrifty decodes "
                f"with decoder-only causal LMs (docs/models.md lists the families)")
        model, info = AutoModelForCausalLM.from_pretrained(path, dtype=dtype,
                                                           output_loading_info=True)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFormatError(
            f"cannot load {path} as a Hugging Face causal LM: {first}. Point model at a folder "
            f"written by save_pretrained (config.json plus weights) of a decoder-only model") \
            from exc
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        raise ModelFormatError(
            f"{path} lacks {len(missing)} weight(s) of {type(model).__name__} "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}), which would be "
            f"random: save the whole model with save_pretrained")
    model.to(device).eval().requires_grad_(False)
    tok = None
    if tokenizer and _has_tokenizer(path):
        tok = AutoTokenizer.from_pretrained(path)
    return model, tok


def _has_tokenizer(path: Path) -> bool:
    return any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json",
                                              "tokenizer.model", "vocab.json"))


def eos_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """The ids that end generation, taken where ``model.generate`` takes them: the generation
    config, then the model config; the tokenizer only when neither names one."""
    for source in (getattr(model, "generation_config", None), model.config):
        ids = getattr(source, "eos_token_id", None) if source is not None else None
        if ids is not None:
            return frozenset([ids] if isinstance(ids, int) else map(int, ids))
    tid = getattr(tokenizer, "eos_token_id", None)
    return frozenset() if tid is None else frozenset({int(tid)})


def vocabulary_fingerprint(tokenizer: Any, ids: Sequence[int]) -> str:
    """A short hash of what a tokenizer's ids mean: its full vocabulary (token -> id, added
    tokens included) when it exposes one (``get_vocab``), and always what it reads for each of
    ``ids`` (the token, or the text of a tokenizer that names no tokens). Two tokenizers of
    different classes over the same vocabulary agree here even when they split text
    differently: a draft only ever sees the verifier's token ids."""
    name = getattr(tokenizer, "convert_ids_to_tokens", None)
    read = name(list(ids)) if name is not None else [tokenizer.decode([i]) for i in ids]
    h = hashlib.sha256(json.dumps(read).encode())
    if hasattr(tokenizer, "get_vocab"):
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    return h.hexdigest()[:12]


def make_verifier(model: str = "smollm2-135m", device: str = "auto",
                  dtype: str = "auto") -> HFVerifier:
    """Factory of the ``hf`` verifier."""
    dev = resolve_device(device)
    net, tok = load_verifier(model, dev, resolve_dtype(dtype, dev))
    return HFVerifier(net, tok, _label(model))


def load_verifier(model: str, device: torch.device, dtype: torch.dtype):
    """(model, tokenizer) of a verifier given by zoo name or Hugging Face folder: what the
    ``hf`` verifier, the ``hf-fast`` verifier and ``thrifty distill`` all start from."""
    where = resolve(model)
    if where.kind != "hf":
        raise ConfigError(f"{model!r} is a thrifty draft (it shares a verifier's embedding) and "
                          f"cannot be a verifier; use it as a draft with verifier model "
                          f"'smollm2-135m' or another full model")
    net, tok = load_hf(where.path, device, dtype)
    if tok is None:
        raise ModelFormatError(f"{where.path} has no tokenizer files; a verifier needs one. Save "
                               f"it next to the model with tokenizer.save_pretrained(...)")
    return net, tok


def make_draft(verifier: Any, model: str, device: str = "auto", dtype: str = "auto") -> HFDraft:
    """Factory of the ``hf`` draft: a zoo name, a thrifty draft folder or an HF model folder.

    ``auto`` device and dtype follow the verifier. Raises :class:`IncompatibleModelsError` when
    the draft's vocabulary or tokenizer is not the verifier's.
    """
    vmodel = getattr(verifier, "model", None)
    dev = verifier.device if device == "auto" else resolve_device(device)
    if dtype == "auto":
        vparam = next(vmodel.parameters(), None) if vmodel is not None else None
        dt = vparam.dtype if vparam is not None else resolve_dtype("auto", dev)
    else:
        dt = resolve_dtype(dtype, dev)
    net = load_draft_for(verifier, model, dev, dt)
    if getattr(net, "fc", None) is not None:
        raise IncompatibleModelsError(
            f"draft {model!r} is a feature draft: it reads the verifier's hidden states, "
            f"which only the fast path passes on; use draft 'hf-fast' with verifier "
            f"'hf-fast' (both run on the CPU too)")
    return HFDraft(net, _label(model))


def load_draft_for(verifier: Any, model: str, device: torch.device, dtype: torch.dtype):
    """The draft module named ``model`` (zoo name, thrifty draft folder or HF model folder) for
    ``verifier``, once :func:`check_compatible` has passed: what the ``hf`` and the ``hf-fast``
    draft factories both load. A thrifty draft is built around the verifier's embedding."""
    where = resolve(model)
    if where.kind == "draft":
        vmodel = getattr(verifier, "model", None)
        if vmodel is None:
            raise IncompatibleModelsError(
                f"draft {model!r} shares its verifier's embedding, so it needs a Hugging Face "
                f"verifier (plugin 'hf'); verifier {verifier.name!r} is a "
                f"{type(verifier).__name__}")
        from .drafts import load_draft

        net, tok = load_draft(where.path, vmodel, device, dtype), None
    else:
        net, tok = load_hf(where.path, device, dtype)
    check_compatible(verifier, net, tok, model)
    return net


def check_compatible(verifier: Any, draft_model: Any, draft_tokenizer: Any, label: str) -> None:
    """Raise :class:`IncompatibleModelsError` unless the draft speaks the verifier's tokens."""
    dv, vv = int(draft_model.config.vocab_size), int(verifier.vocab_size)
    probe = verifier.tokenizer.encode(PROBE, add_special_tokens=False)
    dfp = vocabulary_fingerprint(draft_tokenizer, probe) if draft_tokenizer is not None else None
    vfp = vocabulary_fingerprint(verifier.tokenizer, probe)
    if dv != vv or (dfp is not None and dfp != vfp):
        raise IncompatibleModelsError(
            f"draft {label!r} (vocabulary {dv}, tokens {dfp or 'not saved'}) does not match "
            f"verifier {verifier.name!r} (vocabulary {vv}, tokens {vfp}): a draft must use "
            f"the verifier's vocabulary, token for token. Pick a draft trained with the "
            f"verifier's tokenizer, or distil one for this verifier with `thrifty distill`")


def _label(model: str) -> str:
    path = Path(model)
    return path.name if len(path.parts) > 1 or path.is_dir() else model
