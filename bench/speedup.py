"""Speculative vs target-only decoding on a GPU, interleaved: the headline ratio, robustly.

A shared GPU's speed drifts between runs (thrifty target-only on one H100 measured 269 to 303
tok/s in one afternoon), so a ratio of two numbers taken minutes apart carries that drift. Here
each round runs target-only and then every (draft, γ) on the same prompts, in one process, and
the ratio is taken within the round; the script prints each round's ratios and their median.

    python bench/speedup.py --drafts smollm2-draft-feat --gammas 3,4,5 --gammas-b8 2,3 \
        --rounds 5 --out speedup.json

``--refill-prompts N`` adds batch 8 with continuous batching: N prompts through 8 rows, each
row taking the next prompt as soon as its output is done (target-only runs the same way).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from gpu_speed import fast_models, fresh, thrifty_run, workloads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--drafts", default="smollm2-draft-feat", help="comma-separated")
    ap.add_argument("--gammas", default="3,4,5", help="lookaheads at batch 1")
    ap.add_argument("--gammas-b8", default="2,3", help="lookaheads at batch 8")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--refill-prompts", type=int, default=0,
                    help="also batch 8 continuously batched over this many prompts")
    ap.add_argument("--workloads", default="code,chat")
    ap.add_argument("--out", default="speedup.json")
    args = ap.parse_args()

    import torch

    tok, ver, drafts = fast_models(args.model, args.drafts)
    gammas = {1: [int(g) for g in args.gammas.split(",")],
              8: [int(g) for g in args.gammas_b8.split(",")]}
    loads = {k: v for k, v in workloads(tok, max(args.prompts, args.refill_prompts)).items()
             if k in args.workloads.split(",")}
    modes = [(1, False), (8, False)] + [(8, True)] * bool(args.refill_prompts)
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "max_new_tokens": args.max_new_tokens, "rounds": args.rounds, "rows": []}
    for wl, every in loads.items():
        for batch, refill in modes:
            grid = gammas[batch]
            prompts = every[: args.refill_prompts if refill else args.prompts]
            configs = [(name, d, g) for name, d in drafts.items() for g in grid]
            rates = {c[:1] + c[2:]: [] for c in [("target-only", None, 0)] + configs}
            tars, same = {}, {}
            fresh()
            for _ in range(args.rounds):
                base, _, ref = thrifty_run(ver, None, 0, prompts, batch, args.max_new_tokens, 1,
                                           refill=refill)
                rates[("target-only", 0)].append(base)
                for name, draft, gamma in configs:
                    rate, tars[name, gamma], outs = thrifty_run(
                        ver, draft, gamma, prompts, batch, args.max_new_tokens, 1, refill=refill)
                    rates[name, gamma].append(rate)
                    same[name, gamma] = sum(a == b for a, b in zip(outs, ref))
            for (name, gamma), rs in rates.items():
                ratios = [r / b for r, b in zip(rs, rates[("target-only", 0)])]
                row = dict(workload=wl, batch=batch, refill=refill, config=name, gamma=gamma,
                           tok_s=round(statistics.median(rs), 1),
                           ratio_median=round(statistics.median(ratios), 3),
                           ratios=[round(r, 3) for r in ratios],
                           tar=round(tars.get((name, gamma), 1.0), 3),
                           identical=f"{same.get((name, gamma), len(prompts))}/{len(prompts)}")
                res["rows"].append(row)
                print(json.dumps(row), flush=True)
                Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
