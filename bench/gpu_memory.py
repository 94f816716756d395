"""Peak GPU memory (and speed) of every decoding configuration, each in a fresh process.

A configuration is the verifier alone, or the verifier plus one draft, at a lookahead and a batch
size, on the static-cache CUDA-graph path (``hf-fast``; the n-gram draft has no weights),
written ``DRAFT[:γ]@B[/N]``: ``none@1``, ``smollm2-draft-feat:5@1/8`` (8 prompts one after
the other), ``smollm2-draft-feat:4@8/32`` (32 prompts through 8 continuously refilled rows).
Each runs in its own process, so that the peak of one (CUDA-graph pools, static caches) cannot
leak into the next; the same process also reports tok/s (median of 3 runs over its prompts),
with target-only in its own process as the baseline.

    python bench/gpu_memory.py --drafts smollm2-draft-l1,smollm2-draft-wide,ngram --batches 1,8
    python bench/gpu_memory.py --workload code --max-new-tokens 128 --config none@1/8 \\
        --config smollm2-draft-feat:5@1/8 --config none@8/32 --config smollm2-draft-feat:4@8/32

``--workload code`` and ``chat`` are the speed table's prompts (``bench/gpu_speed.py``);
``mixed`` (the default) is four short code and chat prompts.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

PROMPTS = [
    "def mean(values):\n    total = 0\n    for value in values:\n        total += value\n"
    "    return total / len(values)\n\n\ndef variance(values):\n",
    "Write a short story about a robot who learns to paint.",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n",
    "Explain what a hash table is, with an example in Python.",
]
SPEC = re.compile(r"(?P<draft>[^:@]+)(?::(?P<gamma>\d+))?@(?P<batch>\d+)(?:/(?P<prompts>\d+))?")


def parse(spec: str, gamma: int) -> dict:
    """``DRAFT[:γ]@B[/N]`` as a dict; γ defaults to ``gamma``, N to B."""
    m = SPEC.fullmatch(spec)
    if m is None:
        raise SystemExit(f"bad configuration {spec!r}: write DRAFT[:GAMMA]@BATCH[/PROMPTS], "
                         f"e.g. smollm2-draft-feat:4@8/32 or none@1")
    batch = int(m["batch"])
    return {"draft": m["draft"], "gamma": 0 if m["draft"] == "none" else int(m["gamma"] or gamma),
            "batch": batch, "prompts": int(m["prompts"] or batch)}


def prompts_of(workload: str, tokenizer, n: int) -> list:
    """``n`` prompts (strings for ``mixed``, token ids for the speed table's workloads)."""
    if workload == "mixed":
        every = PROMPTS
    else:
        from gpu_speed import workloads

        every = workloads(tokenizer, n)[workload]
    return [every[i % len(every)] for i in range(n)]


def one(config: dict, workload: str, max_new: int, dtype: str) -> dict:
    import torch

    import thrifty

    draft, batch = config["draft"], config["batch"]
    drafts = [] if draft == "none" else [("ngram", {}) if draft == "ngram" else
                                         ("hf-fast", {"model": draft, "dtype": dtype})]
    pipe = thrifty.pipeline(verifier=("hf-fast", {"model": "smollm2-135m", "dtype": dtype}),
                            drafts=drafts, lookahead=config["gamma"] or 1)
    prompts = prompts_of(workload, pipe.verifier.tokenizer, config["prompts"])
    decoder = pipe.decoder(None if draft == "none" else 0)
    decoder.generate(prompts[:batch], max_new_tokens=8, batch_size=batch)  # graph capture
    rates = []
    for _ in range(3):
        out = decoder.generate(prompts, max_new_tokens=max_new, batch_size=batch)
        rates.append(out.metrics.tokens_per_second)
    rates.sort()
    return config | {"tok_s": round(rates[1], 1), "tar": round(out.metrics.tar, 3),
                     "peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--drafts", default="smollm2-draft-l1,smollm2-draft-l2,smollm2-draft-l4,"
                                        "smollm2-draft-wide,ngram")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--gamma", type=int, default=3)
    ap.add_argument("--config", action="append", default=[], metavar="DRAFT[:γ]@B[/N]",
                    help="one configuration (repeatable); replaces the --drafts x --batches grid")
    ap.add_argument("--workload", choices=["mixed", "code", "chat"], default="mixed")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        row = one(parse(args.one, args.gamma), args.workload, args.max_new_tokens, args.dtype)
        print(json.dumps(row))
        return
    specs = args.config or [f"{d}@{b}" for b in args.batches.split(",")
                            for d in ["none"] + args.drafts.split(",")]
    configs = [parse(s, args.gamma) for s in specs]  # every spec checked before any runs
    rows = []
    for spec, config in zip(specs, configs):
        cmd = [sys.executable, __file__, "--one", spec, "--gamma", str(args.gamma),
               "--workload", args.workload, "--max-new-tokens", str(args.max_new_tokens),
               "--dtype", args.dtype]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            print(f"{spec} failed:\n{out.stderr[-1500:]}", file=sys.stderr)
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        base = next((b for b in rows if b["draft"] == "none" and b["batch"] == r["batch"]
                     and b["prompts"] == r["prompts"]), None)
        ratio = f"({r['tok_s'] / base['tok_s']:.2f}x)" if base else ""
        print(f"{spec:28s} {r['tok_s']:8.1f} tok/s {ratio:8s} TAR {r['tar']:.2f}  peak "
              f"{r['peak_mib']:8.1f} MiB", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
