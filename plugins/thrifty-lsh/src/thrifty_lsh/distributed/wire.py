"""Collectives that count their bytes and can pretend to run over a slow link.

Every collective of distributed SLIDE goes through :class:`Wire`. It counts the bytes this rank
sends and receives by the volume of the standard algorithms (ring all-reduce: ``2 (R-1)/R`` of
the tensor each way; all-gather: ``(R-1)/R`` of the output), and with a :class:`Link` it sleeps
after each collective for the time that volume would take on a link of ``rate`` bits/s and
``latency`` seconds per message round (``2 (R-1)`` rounds for a ring all-reduce, ``R-1`` for an
all-gather) - so a "low-bandwidth interconnect" can be reproduced on one machine, and the same
formula projects measured byte counts to other links.
"""

from __future__ import annotations

import time

import attrs
import torch


@attrs.frozen
class Link:
    rate_bits: float
    latency_s: float = 0.0

    def seconds(self, nbytes: float, rounds: int) -> float:
        return nbytes * 8 / self.rate_bits + rounds * self.latency_s


class Wire:
    def __init__(self, link: Link | None = None, device: str = "cpu") -> None:
        import torch.distributed as dist

        self.dist = dist if dist.is_available() and dist.is_initialized() else None
        self.world = self.dist.get_world_size() if self.dist else 1
        self.link, self.device = link, device
        self.sent = self.received = 0
        self.rounds = 0
        self.delayed_s = 0.0

    def _account(self, nbytes: float, rounds: int) -> None:
        self.sent += int(nbytes)
        self.received += int(nbytes)
        self.rounds += rounds
        if self.link is not None:
            pause = self.link.seconds(nbytes, rounds)
            self.delayed_s += pause
            time.sleep(pause)

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over ranks (in place on a copy; returns it)."""
        if self.world == 1:
            return t
        buf = t.to(self.device)
        self.dist.all_reduce(buf)
        R = self.world
        self._account(2 * (R - 1) / R * buf.numel() * buf.element_size(), 2 * (R - 1))
        return buf.to(t.device)

    def all_gather(self, t: torch.Tensor) -> torch.Tensor:
        """``[R, *t.shape]``: every rank's tensor (same shape on all ranks)."""
        if self.world == 1:
            return t.unsqueeze(0)
        buf = t.to(self.device).contiguous()
        out = [torch.empty_like(buf) for _ in range(self.world)]
        self.dist.all_gather(out, buf)
        self._account((self.world - 1) * buf.numel() * buf.element_size(), self.world - 1)
        return torch.stack(out).to(t.device)

    def all_min(self, value: int) -> int:
        t = torch.tensor([value], dtype=torch.long)
        if self.world == 1:
            return value
        buf = t.to(self.device)
        self.dist.all_reduce(buf, op=self.dist.ReduceOp.MIN)
        return int(buf.item())

    def snapshot(self) -> tuple[int, int, int]:
        return self.sent, self.received, self.rounds
