"""Peak GPU memory (and speed) of every decoding configuration, each in a fresh process.

A configuration is the verifier alone, or the verifier plus one draft, at one batch size, on the
static-cache CUDA-graph path (``hf-fast``; the n-gram draft has no weights). Each runs in its own
process, so that the peak of one (CUDA-graph pools, static caches) cannot leak into the next; the
same process also reports tok/s for the same prompts, with target-only in its own process as the
baseline.

    python bench/gpu_memory.py --drafts smollm2-draft-l1,smollm2-draft-wide,ngram --batches 1,8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

PROMPTS = [
    "def mean(values):\n    total = 0\n    for value in values:\n        total += value\n"
    "    return total / len(values)\n\n\ndef variance(values):\n",
    "Write a short story about a robot who learns to paint.",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n",
    "Explain what a hash table is, with an example in Python.",
]


def one(draft: str, batch: int, gamma: int, max_new: int, dtype: str) -> dict:
    import torch

    import thrifty

    drafts = [] if draft == "none" else [("ngram", {}) if draft == "ngram" else
                                         ("hf-fast", {"model": draft, "dtype": dtype})]
    pipe = thrifty.pipeline(verifier=("hf-fast", {"model": "smollm2-135m", "dtype": dtype}),
                            drafts=drafts, lookahead=gamma)
    prompts = (PROMPTS * batch)[:batch]
    decoder = pipe.decoder(None if draft == "none" else 0)
    decoder.generate(prompts, max_new_tokens=8)  # warm-up: graph capture
    rates = []
    for _ in range(3):
        out = decoder.generate(prompts, max_new_tokens=max_new)
        rates.append(out.metrics.tokens_per_second)
    rates.sort()
    return {"draft": draft, "batch": batch, "gamma": gamma if draft != "none" else 0,
            "tok_s": round(rates[1], 1), "tar": round(out.metrics.tar, 3),
            "peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--drafts", default="smollm2-draft-l1,smollm2-draft-l2,smollm2-draft-l4,"
                                        "smollm2-draft-wide,ngram")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--gamma", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        draft, batch = args.one.split("@")
        print(json.dumps(one(draft, int(batch), args.gamma, args.max_new_tokens, args.dtype)))
        return
    rows = []
    for batch in map(int, args.batches.split(",")):
        for draft in ["none"] + args.drafts.split(","):
            cmd = [sys.executable, __file__, "--one", f"{draft}@{batch}", "--gamma",
                   str(args.gamma), "--max-new-tokens", str(args.max_new_tokens), "--dtype",
                   args.dtype]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                print(f"{draft} batch {batch} failed:\n{out.stderr[-1500:]}", file=sys.stderr)
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            base = next(r for r in rows if r["batch"] == batch and r["draft"] == "none")
            r = rows[-1]
            print(f"batch {batch:2d}  {draft:22s} γ={r['gamma']}  {r['tok_s']:8.1f} tok/s "
                  f"({r['tok_s'] / base['tok_s']:.2f}x)  TAR {r['tar']:.2f}  peak "
                  f"{r['peak_mib']:8.1f} MiB", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
