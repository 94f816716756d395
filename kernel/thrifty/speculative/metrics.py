"""Per-run metrics of speculative decoding: passes, tokens per pass, acceptance, where time went."""

from __future__ import annotations

import attrs


@attrs.define
class Metrics:
    """Counters filled in by the engine during one ``generate`` call.

    ``tar`` is the paper code's TAR: mean tokens emitted per target pass per row, bonus included
    (1 … γ+1). ``acceptance[i]`` is the share of proposals at position i that were accepted,
    among rows that proposed a token there.
    """

    batch_size: int = 0
    target_passes: int = 0
    new_tokens: int = 0
    row_steps: int = 0
    emitted: int = 0
    draft_ms: float = 0.0
    verify_ms: float = 0.0
    total_ms: float = 0.0
    proposed_at: list[int] = attrs.field(factory=list)
    accepted_at: list[int] = attrs.field(factory=list)

    @property
    def tar(self) -> float:
        return self.emitted / self.row_steps if self.row_steps else 0.0

    @property
    def other_ms(self) -> float:
        return max(self.total_ms - self.draft_ms - self.verify_ms, 0.0)

    @property
    def tokens_per_second(self) -> float:
        return 1000.0 * self.new_tokens / self.total_ms if self.total_ms else 0.0

    @property
    def acceptance(self) -> list[float]:
        return [a / p if p else 0.0 for a, p in zip(self.accepted_at, self.proposed_at)]

    def record_step(self, proposed: list[int], accepted: list[int], emitted: list[int]) -> None:
        """Add one target pass: per active row, proposals, accepted proposals, tokens emitted."""
        self.target_passes += 1
        self.row_steps += len(emitted)
        self.emitted += sum(emitted)
        width = max(proposed, default=0)
        while len(self.proposed_at) < width:
            self.proposed_at.append(0)
            self.accepted_at.append(0)
        for n_prop, n_acc in zip(proposed, accepted):
            for i in range(n_prop):
                self.proposed_at[i] += 1
                self.accepted_at[i] += i < n_acc

    @classmethod
    def merged(cls, runs: "list[Metrics]") -> "Metrics":
        """The metrics of several runs as one: counters and times add up, so rates (tok/s,
        TAR, acceptance) are over all tokens, not a mean of per-run rates."""
        out = cls(batch_size=max((m.batch_size for m in runs), default=0))
        for m in runs:
            for name in ("target_passes", "new_tokens", "row_steps", "emitted", "draft_ms",
                         "verify_ms", "total_ms"):
                setattr(out, name, getattr(out, name) + getattr(m, name))
            for i, (p, a) in enumerate(zip(m.proposed_at, m.accepted_at)):
                if i == len(out.proposed_at):
                    out.proposed_at.append(0)
                    out.accepted_at.append(0)
                out.proposed_at[i] += p
                out.accepted_at[i] += a
        return out

    def as_dict(self) -> dict:
        """Plain numbers, for ``--json`` output and benchmark logs."""
        return {
            "batch_size": self.batch_size,
            "target_passes": self.target_passes,
            "new_tokens": self.new_tokens,
            "tar": round(self.tar, 4),
            "acceptance_per_position": [round(a, 4) for a in self.acceptance],
            "draft_ms": round(self.draft_ms, 3),
            "verify_ms": round(self.verify_ms, 3),
            "other_ms": round(self.other_ms, 3),
            "total_ms": round(self.total_ms, 3),
            "tokens_per_second": round(self.tokens_per_second, 3),
        }
