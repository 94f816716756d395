"""Distributed SLIDE vs dense data-parallel training (DDP, all-reduce of every gradient - what
Horovod does), in one torchrun launch.

    torchrun --nproc-per-node 4 bench/distributed_slide.py                  # gloo, loopback, CPU
    torchrun --nproc-per-node 4 bench/distributed_slide.py --quick          # small shapes
    torchrun --nproc-per-node 4 bench/distributed_slide.py --backend nccl --device cuda

Phases: (1) SLIDE, the output layer sharded over the ranks, trained until P@1 reaches
``--target-p1`` (or ``--steps``), with bytes per step counted by the wire; (2) the same for a
few steps through a delaying link (``--check-rate``), to check that measured time equals
unlimited time + the projection from counted bytes; (3) DDP on the dense network for
``--ddp-steps`` steps (its bytes per step: a ring all-reduce of all gradients). Time to the
target at 100 Mbit/s and 1 Gbit/s is projected from the counted bytes and message rounds.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.distributed as dist


def log(*a):
    if dist.get_rank() == 0:
        print(*a, flush=True)


def projected(step_s: float, nbytes: float, rounds: float, rate: float, lat: float) -> float:
    return step_s + nbytes * 8 / rate + rounds * lat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="gloo")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n-train", type=int, default=16384)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--target-p1", type=float, default=0.2)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--ddp-steps", type=int, default=3)
    ap.add_argument("--check-rate", type=float, default=100e6, help="bits/s of the delay check")
    ap.add_argument("--latency", type=float, default=1e-4, help="seconds per message round")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dist.init_process_group(args.backend)
    if args.device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    rank, world = dist.get_rank(), dist.get_world_size()
    wire_device = f"cuda:{torch.cuda.current_device()}" if args.device == "cuda" else "cpu"

    from thrifty_lsh.distributed.sharded import ShardedNet
    from thrifty_lsh.distributed.wire import Link, Wire
    from thrifty_lsh.synthetic import generate
    from thrifty_lsh.train import evaluate

    features, labels = (2000, 20000) if args.quick else (135_909, 670_091)
    n_train = 2048 if args.quick else args.n_train
    common = dict(n_features=features, n_labels=labels, labels_per_point=5.45,
                  features_per_point=75.7, structure_seed=0)
    train, test = generate(n_train, seed=1, **common), generate(500, seed=2, **common)
    batch_size, hidden = 256, 128
    slide = dict(k=10, l=16, budget=4096)
    log(f"# {world} ranks, backend {args.backend}, {labels} labels, {features} features, "
        f"{n_train} train points, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")

    # (1) distributed SLIDE to the target
    wire = Wire(device=wire_device)
    net = ShardedNet(features, labels, hidden, wire, rank, seed=0, **slide)
    batches = (b for e in range(1000) for b in train.batches(batch_size, seed=e))
    times, sent, rounds, reached = [], [], [], None
    for step in range(1, args.steps + 1):
        b = next(batches)
        s0, r0 = wire.sent, wire.rounds
        dist.barrier()
        t0 = time.perf_counter()
        net.step(b)
        times.append(time.perf_counter() - t0)
        sent.append(wire.sent - s0)
        rounds.append(wire.rounds - r0)
        if step % args.eval_every == 0:
            p1 = evaluate(net.predict, test, 500)["p1"]
            log(f"slide step {step}: P@1 {p1:.4f}, {np.median(times)*1e3:.0f} ms/step")
            if p1 >= args.target_p1:
                reached = step
                break
    slide_step, slide_bytes, slide_rounds = np.median(times), np.mean(sent), np.mean(rounds)
    steps_to = reached or len(times)

    # (2) the delaying link: measured vs projected on a few steps
    wire.link = Link(args.check_rate, args.latency)
    delayed = []
    for _ in range(5):
        b = next(batches)
        dist.barrier()
        t0 = time.perf_counter()
        net.step(b)
        delayed.append(time.perf_counter() - t0)
    wire.link = None
    proj_check = projected(slide_step, slide_bytes, slide_rounds, args.check_rate, args.latency)

    # (3) DDP dense baseline
    from torch.nn.parallel import DistributedDataParallel as DDP

    from thrifty_lsh.model import build_net
    from thrifty_lsh.slide import softmax_loss

    dense = build_net(features, labels, hidden, "dense", seed=0)
    for p in dense.parameters():
        p.data = p.data.to(args.device)
    dense.hidden.forward = _dense_input(dense.hidden)
    ddp = DDP(_Logits(dense), device_ids=None if args.device == "cpu" else [torch.cuda.current_device()])
    opt = torch.optim.Adam(ddp.parameters(), lr=1e-3)
    n_params = sum(p.numel() for p in dense.parameters())
    ddp_times = []
    for _ in range(args.ddp_steps):
        b = next(batches)
        sub = _to(_slice(b, np.arange(rank, len(b), world)), args.device)  # this rank's share
        dist.barrier()
        t0 = time.perf_counter()
        loss = softmax_loss(ddp(sub), sub.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if args.device == "cuda":
            torch.cuda.synchronize()
        ddp_times.append(time.perf_counter() - t0)
    ddp_step = float(np.median(ddp_times))
    ddp_bytes = 2 * (world - 1) / world * n_params * 4
    ddp_rounds = 2 * (world - 1)

    log(f"\nbytes sent per rank per step: slide {slide_bytes:,.0f}  ddp {ddp_bytes:,.0f}  "
        f"ratio {ddp_bytes / slide_bytes:,.0f}x")
    log(f"time per step (unlimited): slide {slide_step*1e3:.0f} ms  ddp {ddp_step*1e3:.0f} ms")
    log(f"delay check at {args.check_rate/1e6:.0f} Mbit/s: measured {np.median(delayed)*1e3:.0f}"
        f" ms/step, projected {proj_check*1e3:.0f} ms/step")
    what = f"P@1 >= {args.target_p1}" if reached else f"P@1 after {steps_to} steps (target " \
        f"not reached)"
    log(f"slide: {what} in {steps_to} steps")
    for rate, name in ((100e6, "100 Mbit/s"), (1e9, "1 Gbit/s"), (None, "unlimited")):
        s = steps_to * (slide_step if rate is None else
                        projected(slide_step, slide_bytes, slide_rounds, rate, args.latency))
        d = steps_to * (ddp_step if rate is None else
                        projected(ddp_step, ddp_bytes, ddp_rounds, rate, args.latency))
        log(f"time for {steps_to} steps at {name}: slide {s:.1f} s  ddp {d:.1f} s  "
            f"ratio {d / s:.0f}x  (ddp assumed to need as many steps: a lower bound for it)")
    dist.destroy_process_group()


class _Logits(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, batch):
        return self.net.output(self.net.hidden(batch))


def _dense_input(layer):
    """A dense-gradient first layer for DDP (DDP all-reduces dense gradients, as Horovod)."""
    import torch.nn.functional as F

    def forward(batch):
        x = F.embedding_bag(batch.indices, layer.weight, batch.offsets, mode="sum",
                            per_sample_weights=batch.values, sparse=False)
        return torch.relu(x + layer.bias)

    return forward


def _slice(b, rows):
    from thrifty_lsh.model import Batch

    offs = torch.cat([b.offsets, torch.tensor([b.indices.numel()])])
    idx = [torch.arange(offs[r], offs[r + 1]) for r in rows]
    lens = torch.tensor([len(i) for i in idx])
    take = torch.cat(idx)
    return Batch(b.indices[take], torch.cat([torch.zeros(1, dtype=torch.long),
                                             lens.cumsum(0)[:-1]]), b.values[take],
                 b.labels[torch.as_tensor(rows)])


def _to(b, device):
    from thrifty_lsh.model import Batch

    return Batch(b.indices.to(device), b.offsets.to(device), b.values.to(device),
                 b.labels.to(device))


if __name__ == "__main__":
    main()
