"""Per-run metrics of speculative decoding: passes, tokens per pass, acceptance, where time went."""

from __future__ import annotations

import attrs

COLLAPSE_MIN_STEPS = 8
"""Row-steps with proposals below which a run is too short to call its acceptance collapsed."""
COLLAPSE_ACCEPTED = 0.05
"""Mean accepted tokens per proposing row-step under which a draft's acceptance has collapsed."""


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

    @property
    def collapsed(self) -> bool:
        """Whether the draft's acceptance collapsed over the run: at least
        :data:`COLLAPSE_MIN_STEPS` row-steps proposed, and their mean accepted length is under
        :data:`COLLAPSE_ACCEPTED` tokens (TAR about 1). The output is still the verifier's, but
        the draft only costs time: the mark of a draft that does not fit its verifier (another
        vocabulary, or a forward that computes another model than its weights describe)."""
        steps = self.proposed_at[0] if self.proposed_at else 0  # row-steps that proposed
        return steps >= COLLAPSE_MIN_STEPS and sum(self.accepted_at) < COLLAPSE_ACCEPTED * steps

    def collapse_warning(self, draft: str) -> str | None:
        """One line saying that ``draft``'s acceptance collapsed, or None (see :attr:`collapsed`)."""
        if not self.collapsed:
            return None
        return (f"warning: draft {draft!r} had {sum(self.accepted_at)} of "
                f"{sum(self.proposed_at)} proposed tokens accepted (TAR {self.tar:.2f}): it "
                f"costs time and saves no target pass; check that it was made for this "
                f"verifier, or decode without it (--no-draft)")

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
            "acceptance_collapsed": self.collapsed,
        }
