"""The PairConnect draft model: a PairConnect LM behind thrifty's DraftModel protocol.

Its decoding state per row is the last W committed tokens (newest first, as
:meth:`PairConnect.step` reads them) plus the pending one (the last committed token, whose
successor is proposed next). Proposing γ tokens costs γ·(W·k lookups +
MLP + head); rolling back after the verifier's verdict is an index into the tokens already at
hand — nothing is recomputed. Weights are stored as fp16 safetensors with the model's config and
a fingerprint of the tokenizer it was distilled for.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from thrifty.errors import IncompatibleModelsError, ModelFormatError, ModelNotFoundError
from thrifty.atomic import atomic_path
from thrifty.protocols import Proposal, TreeProposal
from thrifty.speculative import Sampling, sample, warp
from thrifty.speculative.tree import sibling_tree

from .lm import PairConnectLM

PROBE = "Hello, world! def f(x):\n    return x ** 2  # café 123\n"
"""Text whose token ids identify a tokenizer (stored with the weights, checked on load)."""


def tokenizer_fingerprint(tokenizer) -> list[int]:
    return list(tokenizer.encode(PROBE, add_special_tokens=False))


class WindowDraft:
    """Follows :class:`thrifty.protocols.DraftModel` over ragged rows, for any one-token step
    whose state is the last W token ids, newest first.

    ``step(tokens [B, 1], past [B, W]) -> (logits [B, 1, V], next past [B, W])``: the PyTorch
    LM's :meth:`PairConnectLM.step` or an exported graph run by onnxruntime (:mod:`.onnx_step`);
    everything around it — start, sampling, the rollback gather — is the same for both.
    """

    def __init__(self, step, window: int, vocab_size: int, name: str, device="cpu") -> None:
        self.step, self.window, self.vocab_size = step, window, vocab_size
        self.name, self.device = name, torch.device(device)
        self._past = self._last = self._proposed = self._tree = None

    def start(self, prompts) -> None:
        past = torch.full((len(prompts), self.window), -1, dtype=torch.long, device=self.device)
        for b, prompt in enumerate(prompts):
            before = list(prompt[:-1])[-self.window:][::-1]
            if before:
                past[b, :len(before)] = torch.tensor(before)
        self._past = past
        self._last = torch.tensor([int(p[-1]) for p in prompts], device=self.device)
        self._proposed = self._last.new_zeros(len(prompts), 0)

    @torch.no_grad()
    def propose(self, gamma: int, sampling: Sampling, generator) -> Proposal:
        proposed, q, _ = self._chain(gamma, sampling, generator)
        self._proposed = proposed
        return Proposal(proposed, torch.full((len(proposed),), gamma, dtype=torch.long), q)

    @torch.no_grad()
    def propose_tree(self, shape, sampling: Sampling, generator) -> TreeProposal:
        """Its chain of ``shape.depth`` tokens with runners-up as leaf siblings
        (:func:`~thrifty.speculative.tree.sibling_tree`)."""
        chain, q, seen = self._chain(shape.depth, sampling, generator)
        probs = torch.stack(seen, 1).softmax(-1) if q is None else q
        tree, _ = sibling_tree(chain, probs, shape, sampled=q is not None)
        self._tree = tree.tokens
        return tree

    def _chain(self, gamma: int, sampling: Sampling, generator):
        """``gamma`` tokens one step at a time from the pending token and the past: the tokens
        [B, γ], their q [B, γ, V] (None under greedy) and the logits each was picked from
        ([B, V] a step)."""
        past, cur = self._past, self._last
        tokens, qs, seen = [], [], []
        for _ in range(gamma):
            logits, past = self.step(cur[:, None], past)
            logits = logits[:, 0].float()
            seen.append(logits)
            if sampling.greedy:
                cur = logits.argmax(-1)
            else:
                qs.append(warp(logits, sampling))
                cur = sample(qs[-1], generator)
            tokens.append(cur)
        if not tokens:
            return self._last.new_zeros(len(self._last), 0), None, seen
        return torch.stack(tokens, 1), torch.stack(qs, 1) if qs else None, seen

    def commit(self, accepted, next_tokens) -> None:
        """The new past is the newest W of (accepted proposals, pending, past): a gather."""
        proposed = self._proposed
        full = torch.cat([proposed.flip(1), self._last[:, None], self._past], 1)  # newest first
        start = proposed.shape[1] - accepted.to(self.device)  # the last accepted proposal
        index = start[:, None] + torch.arange(self.window, device=self.device)
        self._past = full.gather(1, index)
        self._last = next_tokens.to(self.device)
        self._proposed = self._last.new_zeros(len(self._last), 0)

    def commit_path(self, path, lengths, next_tokens) -> None:
        """The kept nodes' tokens (the path after the root) play the accepted proposals."""
        nodes = path[:, 1:].to(self.device)
        self._proposed = self._tree.to(self.device).gather(1, (nodes - 1).clamp(min=0))
        self.commit(lengths - 1, next_tokens)


class PairConnectDraft(WindowDraft):
    """The PyTorch PairConnect LM as a draft (on its own device, or moved to ``device``)."""

    def __init__(self, model: PairConnectLM, name: str = "pairconnect", device=None) -> None:
        self.model = model.eval()
        if device is not None:
            self.model.to(device)
        super().__init__(self.model.step, model.layer.window, model.vocab_size, name,
                         next(self.model.parameters()).device)


def save_draft(model: PairConnectLM, path: str | Path, tokenizer=None, **info) -> int:
    """Write fp16 weights + config (+ tokenizer fingerprint) as safetensors; returns bytes."""
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu", torch.float16).contiguous()
             for k, v in model.state_dict().items() if k != "head.weight"}  # tied to embed
    meta = {"config": json.dumps(model.config()), "info": json.dumps(info)}
    if tokenizer is not None:
        meta["tokenizer_fingerprint"] = json.dumps(tokenizer_fingerprint(tokenizer))
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path.stat().st_size


def stored_fingerprint(path: str | Path) -> list[int] | None:
    """The tokenizer fingerprint :func:`save_draft` stored with the weights (None: none)."""
    from safetensors import safe_open

    with safe_open(str(Path(path).expanduser()), framework="pt") as f:
        stored = (f.metadata() or {}).get("tokenizer_fingerprint")
    return json.loads(stored) if stored else None


def load_draft(path: str | Path, tokenizer=None, vocab_size: int | None = None,
               device="cpu") -> PairConnectLM:
    """Read what :func:`save_draft` wrote (as float32), checking it fits the given tokenizer."""
    from safetensors import safe_open

    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelNotFoundError(f"PairConnect draft weights {path} do not exist; distil them "
                                 f"with `thrifty distill-pairconnect --out {path}`")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k).float() for k in f.keys()}
        config = json.loads(meta["config"])
    except (KeyError, ValueError, OSError, RuntimeError) as exc:
        raise ModelFormatError(f"{path} is not a PairConnect draft written by save_draft "
                               f"({type(exc).__name__}: {exc})") from exc
    if vocab_size is not None and config["vocab_size"] != vocab_size:
        raise IncompatibleModelsError(
            f"PairConnect draft {path} has a vocabulary of {config['vocab_size']} tokens but the "
            f"verifier has {vocab_size}; distil a draft for this verifier")
    if tokenizer is not None and "tokenizer_fingerprint" in meta and \
            json.loads(meta["tokenizer_fingerprint"]) != tokenizer_fingerprint(tokenizer):
        raise IncompatibleModelsError(
            f"PairConnect draft {path} was distilled for a different tokenizer than the "
            f"verifier's (their token ids differ); distil a draft for this verifier")
    model = PairConnectLM.from_config(config)
    state["head.weight"] = state["layer.embed.weight"]
    model.load_state_dict(state)
    return model.to(device).eval()
