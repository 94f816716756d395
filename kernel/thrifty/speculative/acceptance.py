"""The lossless acceptance rule (Leviathan et al. 2023; Chen et al. 2023), vectorised over rows.

Pure functions of tensors: given the target's probabilities ``p`` for every proposed position
plus one, the draft's proposals and the ``q`` they were sampled from, decide per row how many
proposals survive and which token follows them.
"""

from __future__ import annotations


def accept(p, tokens, lengths, q=None, generator=None, greedy=False):
    """Apply the speculative sampling rule to a batch of ragged proposals.

    Args:
        p: float [B, γ+1, V], target probabilities after :func:`warp`; ``p[b, i]`` is the
            distribution of the token at proposal position i (i = γ: the bonus position).
            Under ``greedy`` only its argmax matters, so raw logits may be passed.
        tokens: long [B, γ], the draft's proposals; row b's first ``lengths[b]`` are real.
        lengths: long [B].
        q: float [B, γ, V] the draft sampled from, or None for a point mass on each proposal.
        generator: torch.Generator for the uniform draws and the residual/bonus samples.
        greedy: accept while ``tokens == argmax p`` and emit the argmax (no randomness).

    Returns:
        (accepted long [B], next_tokens long [B]): row b keeps ``tokens[b, :accepted[b]]`` and
        then ``next_tokens[b]``, drawn from the residual norm(max(0, p − q)) at the first
        rejection, or from p at position ``lengths[b]`` (the bonus) when all were accepted.
    """
    import torch

    batch, gamma = tokens.shape
    device = p.device
    pos = torch.arange(gamma, device=device)
    real = pos[None, :] < lengths[:, None]
    rows = torch.arange(batch, device=device)
    if greedy:
        ok = tokens == p[:, :gamma].argmax(-1)
    else:
        p_tok = p[:, :gamma].gather(-1, tokens[..., None]).squeeze(-1)
        q_tok = torch.ones_like(p_tok) if q is None else q.gather(-1, tokens[..., None]).squeeze(-1)
        u = torch.rand(p_tok.shape, generator=generator, device=device)
        # accept with probability min(1, p/q); q_tok > 0 because the draft sampled the token
        ok = u * q_tok <= p_tok
    ok = ok & real
    accepted = ok.long().cumprod(dim=1).sum(dim=1)

    at = p[rows, accepted]  # [B, V]: the rejection position, or the bonus position
    if greedy:
        return accepted, at.argmax(-1)
    residual = at
    if gamma:  # computed for every row and then selected: asking "any rejected?" would wait
        rejected = accepted < lengths
        idx = accepted.clamp(max=gamma - 1)
        if q is None:
            q_at = torch.zeros_like(at)
            q_at[rows, tokens[rows, idx]] = 1.0
        else:
            q_at = q[rows, idx]
        diff = (at - q_at).clamp(min=0)
        mass = diff.sum(-1, keepdim=True)
        # a zero residual only arises from rounding when p == q; then p itself is the answer
        diff = torch.where(mass > 0, diff / mass.clamp(min=1e-30), at)
        residual = torch.where(rejected[:, None], diff, at)
    from .sampling import sample

    return accepted, sample(residual, generator)
