"""Record the verifier once, then score any number of drafts without it.

Under greedy decoding the verifier's output on a workload does not depend on the draft, so its
greedy continuation of each prompt is all that is needed to know, for any draft, how many
proposals every step would keep: walk the draft along the recorded continuation and, at each
position, count how many of its greedy proposals agree (``matches``). :func:`walk` then replays
speculative decoding at any γ exactly — the replayed TAR equals the live one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import attrs

from ..errors import ConfigError, DatasetFormatError
from ..atomic import write_json_atomically
from ..protocols import reads_features


@attrs.define
class Recording:
    """The verifier's greedy continuations of a workload's prompts (token ids).

    Each continuation is recorded ``horizon`` tokens past ``max_new_tokens`` (or up to the end of
    sequence), so that proposals made near the last position can still be checked.
    """

    verifier: str
    workload: str
    max_new_tokens: int
    horizon: int
    prompts: list[list[int]]
    continuations: list[list[int]]

    def save(self, path: str | Path) -> None:
        write_json_atomically(path, attrs.asdict(self), indent=None)

    @classmethod
    def load(cls, path: str | Path) -> "Recording":
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise DatasetFormatError(f"cannot read recording {path}: {exc}; "
                                     f"make one with thrifty.speculative.record.record()") from exc


@attrs.define
class Acceptance:
    """How often a draft's proposals survive, per position, on one workload.

    ``rows[r][t]``: greedy matches of the draft at output position t of prompt r (replay).
    ``proposed[r][t]``: how many tokens it proposed there when asked for γmax (a lookup draft
    proposes fewer, or none, where it finds no match; the verifier then scores fewer tokens).
    ``sampled``: ``{"temperature": T, "cumulative": [P(accepted ≥ i+1)]}`` measured live.
    """

    gamma_max: int
    max_new_tokens: int
    rows: list[list[int]] = attrs.field(factory=list)
    sampled: dict | None = None
    proposed: list[list[int]] = attrs.field(factory=list)

    @property
    def match_hist(self) -> list[int]:
        """``hist[m]``: output positions where exactly m proposals matched (capped at γmax)."""
        hist = [0] * (self.gamma_max + 1)
        for row in self.rows:
            for m in row[: self.max_new_tokens]:
                hist[min(m, self.gamma_max)] += 1
        return hist

    def tar(self, gamma: int) -> float:
        """Replayed TAR at γ over all rows, counted as :class:`Metrics` counts it."""
        from .throughput import walk

        if gamma > self.gamma_max:
            raise ConfigError(f"replay knows {self.gamma_max} proposals per position; "
                              f"γ={gamma} needs a replay with gamma_max >= {gamma}")
        steps = emitted = 0
        for row in self.rows:
            s, e = walk(row, gamma, self.max_new_tokens)
            steps, emitted = steps + s, emitted + e
        return emitted / steps if steps else 0.0


def _encode(verifier, prompts: Sequence) -> list[list[int]]:
    return [verifier.tokenizer.encode(p) if isinstance(p, str) else [int(t) for t in p]
            for p in prompts]


def record(verifier, prompts: Sequence, max_new_tokens: int = 64, horizon: int = 8,
           batch: int = 8, workload: str = "") -> Recording:
    """Run the verifier alone, greedily, over ``prompts`` and keep its continuations."""
    from .engine import SpeculativeDecoder

    if max_new_tokens < 1 or horizon < 0 or batch < 1:
        raise ConfigError("record needs max_new_tokens >= 1, horizon >= 0 and batch >= 1")
    ids = _encode(verifier, prompts)
    decoder = SpeculativeDecoder(verifier, None)
    continuations = []
    for i in range(0, len(ids), batch):
        out = decoder.generate(ids[i:i + batch], max_new_tokens=max_new_tokens + horizon)
        continuations += out.token_ids
    return Recording(verifier.name, workload, max_new_tokens, horizon, ids, continuations)


def replay(recording: Recording, draft, gamma_max: int | None = None,
           batch: int = 16, verifier=None) -> Acceptance:
    """Score ``draft`` against ``recording``: its greedy matches at every output position.

    The draft is walked along each recorded continuation one token at a time (it proposes
    γmax tokens, none is accepted, the recorded token is committed), so a single pass over the
    workload yields the matches for every γ <= γmax. Assumes, as every autoregressive or
    lookup draft satisfies, that the first γ of γmax greedy proposals are the γ proposals.
    A feature draft also needs the verifier's hidden states of the recorded text: pass
    ``verifier``, which computes them in one prefill per batch (no decoding).
    """
    import torch

    from .sampling import Sampling

    feeds = reads_features(draft)
    if feeds and verifier is None:
        raise ConfigError(f"{draft.name} reads the verifier's hidden states; pass the verifier "
                          f"to replay so that it can compute them for the recorded text")

    gamma_max = recording.horizon if gamma_max is None else gamma_max
    if not 1 <= gamma_max <= recording.horizon:
        raise ConfigError(f"gamma_max must be in 1..{recording.horizon} (the recording's "
                          f"horizon); record with a larger horizon for longer lookaheads")
    greedy = Sampling()
    generator = torch.Generator().manual_seed(0)
    rows: list[list[int]] = []
    proposed: list[list[int]] = []
    for i in range(0, len(recording.prompts), batch):
        prompts = recording.prompts[i:i + batch]
        conts = recording.continuations[i:i + batch]
        steps = min(recording.max_new_tokens, max(map(len, conts)))
        matches: list[list[int]] = [[] for _ in conts]
        offered: list[list[int]] = [[] for _ in conts]
        if feeds:
            verifier.start([list(p) + list(c) for p, c in zip(prompts, conts)])
            seen = verifier.features
            draft.observe(seen)
            rows_at = torch.arange(len(prompts), device=seen.device)
            first = torch.tensor([len(p) - 1 for p in prompts], device=seen.device)
        draft.start(prompts)
        for t in range(steps):
            proposal = draft.propose(gamma_max, greedy, generator)
            if feeds:  # the verifier's feature of the token committed before this step
                draft.observe(seen[rows_at, (first + t).clamp(max=seen.shape[1] - 1)][:, None])
            tokens, lengths = proposal.tokens.tolist(), proposal.lengths.tolist()
            for b, cont in enumerate(conts):
                if t < len(cont):
                    target = cont[t:t + gamma_max]
                    m = 0
                    while m < min(lengths[b], len(target)) and tokens[b][m] == target[m]:
                        m += 1
                    matches[b].append(m)
                    offered[b].append(lengths[b])
            device = proposal.tokens.device
            nxt = torch.tensor([c[t] if t < len(c) else c[-1] for c in conts], device=device)
            draft.commit(torch.zeros(len(conts), dtype=torch.long, device=device), nxt)
        rows += matches
        proposed += offered
    return Acceptance(gamma_max, recording.max_new_tokens, rows, proposed=proposed)
