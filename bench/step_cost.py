"""Where a speculative step's time goes on the GPU: the device's busy time against the wall.

A step that costs more than its kernels is waiting on the host (Python, eager launches, a
synchronisation), and no faster kernel shortens it. For each lookahead (an int γ or a tree
shape; trees grown by the draft with ``--expand``) this decodes held-out prompts at batch 1
under ``torch.profiler`` and prints, per step: wall ms; GPU-busy ms (the union of the kernels'
intervals) and the kernels that take most of it; kernels run, kernel launches and graph
replays issued by the host; host ops (every ``aten::`` call the host dispatched, views
included); time the host spent blocked in CUDA synchronisation; and the engine's own phase
split (draft / verify / the rest, CUDA events); with ``--host``, the host functions that take
most of a step (cProfile, own time).
Target-only (lookahead 0) is the floor every step is measured against.

    python bench/step_cost.py --draft smollm2-draft-feat --lookaheads 0,3,3x3:8,5x4:16 \\
        --expand --compile --workload chat --json step-cost.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import heldout
from gpu_speed import cache_len, expanding, fast_models, sync
from thrifty.atomic import write_json_atomically

SYNCS = ("cudaStreamSynchronize", "cudaEventSynchronize", "cudaDeviceSynchronize")


def busy_us(intervals) -> float:
    """The length of the union of ``intervals`` [(start, end)]: kernels of one stream never
    overlap, but copies and kernels of several streams may."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def profiled(decode, cuda: bool) -> dict:
    """What ``decode()`` cost the host and the device, from one profiled run."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * cuda) as prof:
        decode()
        sync()
    kernels, launches, graphs, ops, blocked = [], 0, 0, 0, 0.0
    by_name: dict[str, float] = {}
    for e in prof.events():
        name = e.name
        if e.device_type.name == "CUDA":
            kernels.append((e.time_range.start, e.time_range.end))
            by_name[name] = by_name.get(name, 0.0) + e.time_range.end - e.time_range.start
        elif name in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"):
            launches += 1
        elif name == "cudaGraphLaunch":
            graphs += 1
        elif name in SYNCS:
            blocked += e.cpu_time_total
        elif name.startswith("aten::") and e.cpu_parent is None:
            ops += 1
    return dict(busy_us=busy_us(kernels), launches=launches, graphs=graphs,
                ops=ops, blocked_us=blocked, kernels=len(kernels), by_name=by_name)


def host_profile(decode, steps: int, top: int) -> dict:
    """Host microseconds a step in the functions that take the most of it (own time, cProfile
    over one run of ``steps`` steps, greedy as the timed one: the Python, dispatch and launch
    work the GPU may wait for)."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    decode()
    sync()
    prof.disable()
    stats = pstats.Stats(prof).stats
    ranked = sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]
    return {f"{Path(f).name}:{line}({fn})": round(1e6 * v[2] / steps, 1)
            for (f, line, fn), v in ranked}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--draft", default="smollm2-draft-feat")
    ap.add_argument("--lookaheads", default="0,3,3x3:8,5x4:16",
                    help="comma-separated: 0 (target-only), γ, or DEPTHxBRANCH:NODES")
    ap.add_argument("--vocab", type=int, default=0,
                    help="the draft's vocab option: the N most frequent tokens of its ranking "
                         "(0: every token)")
    ap.add_argument("--expand", action="store_true",
                    help="trees grown by the draft (trees=expand) instead of sibling trees")
    ap.add_argument("--compile", action="store_true", help="hf-fast's compile=true")
    ap.add_argument("--workload", default="chat")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--top", type=int, default=12, help="kernels listed by GPU time a step")
    ap.add_argument("--host", action="store_true",
                    help="also the host functions that take most of a step (cProfile)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    import torch
    from transformers import AutoTokenizer

    from thrifty.speculative import SpeculativeDecoder
    from thrifty.speculative.tree import parse_lookahead
    from thrifty_hf.zoo import resolve

    looks = [parse_lookahead(x, "--lookaheads") for x in args.lookaheads.split(",")]
    tok = AutoTokenizer.from_pretrained(resolve(args.model).path)
    prompts = heldout.load(tok, [args.workload], args.prompts)[args.workload]
    max_len = cache_len(max(map(len, prompts)), args.max_new_tokens, looks)
    _, ver, drafts = fast_models(args.model, args.draft, args.device, args.dtype,
                                 max_len=max_len, compile=args.compile, vocabs=(args.vocab,))
    chain = next(iter(drafts.values()))
    tree = next(iter(expanding(drafts, ver.model, max_len, args.compile).values())) \
        if args.expand else chain
    rows = []
    for look in looks:
        draft = None if look == 0 else chain if isinstance(look, int) else tree
        dec = SpeculativeDecoder(ver, draft, look)

        def decode(dec=dec):
            return [dec.generate([p], max_new_tokens=args.max_new_tokens) for p in prompts]

        decode()  # compiles and captures every shape
        sync()
        began = time.perf_counter()
        gens = decode()
        sync()
        wall = time.perf_counter() - began
        prof = profiled(decode, args.device == "cuda")
        steps = sum(g.metrics.target_passes for g in gens)
        tokens = sum(g.metrics.new_tokens for g in gens)
        row = dict(lookahead=str(look), steps=steps, tokens_per_step=round(tokens / steps, 3),
                   tok_s=round(tokens / wall, 1), wall_ms=round(1e3 * wall / steps, 3),
                   gpu_busy_ms=round(prof["busy_us"] / 1e3 / steps, 3),
                   kernels=round(prof["kernels"] / steps, 1),
                   launches=round(prof["launches"] / steps, 1),
                   graph_replays=round(prof["graphs"] / steps, 2),
                   host_ops=round(prof["ops"] / steps, 1),
                   blocked_ms=round(prof["blocked_us"] / 1e3 / steps, 3),
                   **{f"{k}_ms": round(sum(getattr(g.metrics, f"{k}_ms") for g in gens) / steps,
                                       3) for k in ("draft", "verify", "other")})
        top = sorted(prof["by_name"].items(), key=lambda kv: -kv[1])[: args.top]
        row["top_kernels_us"] = {name[:120]: round(us / steps, 1) for name, us in top}
        if args.host:
            row["top_host_us"] = host_profile(decode, steps, 2 * args.top)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        out = dict(device=torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                   torch=torch.__version__, model=args.model, draft=args.draft,
                   vocab=args.vocab,
                   expand=args.expand, compile=args.compile, workload=args.workload,
                   prompts=len(prompts), max_new_tokens=args.max_new_tokens,
                   date=time.strftime("%Y-%m-%d"), rows=rows)
        write_json_atomically(args.json, out)


if __name__ == "__main__":
    main()
