"""Sampling settings and the logits -> probabilities transform shared by target and draft.

Losslessness needs p (target) and q (draft) to go through *the same* transform; both sides call
:func:`warp` with one :class:`Sampling`. Temperature 0 means greedy decoding.
"""

from __future__ import annotations

import attrs

from ..checks import check_number


def _check(instance: "Sampling", attribute: attrs.Attribute, value: float) -> None:
    where = f"sampling {attribute.name}"
    if attribute.name == "temperature":
        check_number(where, value, low=0)
    elif attribute.name == "top_k":
        check_number(where, value, low=0, integer=True)
    else:
        check_number(where, value, low=0, high=1, low_open=True)


@attrs.frozen
class Sampling:
    """Temperature, top-k and top-p, applied identically to the target's and the draft's logits.

    Temperature is finite and >= 0 (0 = greedy), top-k an int >= 0 (0 = off), top-p in (0, 1]
    (1 = off): an infinite temperature or a NaN would turn every distribution into noise.
    """

    temperature: float = attrs.field(default=0.0, validator=_check)
    top_k: int = attrs.field(default=0, validator=_check)
    top_p: float = attrs.field(default=1.0, validator=_check)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def warp(logits, sampling: Sampling):
    """Float32 probabilities after temperature, top-k and top-p (last dimension = vocabulary).

    Under greedy sampling this is the point mass on the argmax, so that the general acceptance
    rule reduces to "accept while the draft token equals the target's argmax".
    """
    import torch

    logits = logits.float()
    if sampling.greedy:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    logits = logits / sampling.temperature
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        sorted_probs = sorted_logits.softmax(-1)
        # drop a token when the tokens ranked above it already reach top_p
        drop_sorted = sorted_probs.cumsum(-1) - sorted_probs >= sampling.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits.softmax(-1)


def sample(probs, generator=None):
    """Draw one token per row of ``probs`` [..., V]; returns a LongTensor [...]."""
    import torch

    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])
