"""Adaptive lookahead vs every fixed γ, on the same prompts, in one process.

The adaptive policy (``thrifty.speculative.adaptive.AdaptiveLookahead``) starts from the
profile's acceptance, updates per-position Beta posteriors after every step and picks the γ that
maximises the throughput model's expected tokens per unit time. A mixed workload (code, prose and
chat prompts interleaved) is where a single fixed γ must compromise. Prints decode throughput for
γ = 1 … γmax and the adaptive policy, and the ratio adaptive / best fixed γ.

    python bench/adaptive_lookahead.py --device cpu --draft ngram --batches 1,4
    python bench/adaptive_lookahead.py --device cuda --dtype bfloat16 \\
        --draft hf:smollm2-draft-l2 --batches 1,8 --prompts 24
"""

from __future__ import annotations

import argparse
import collections
import platform
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--verifier", default="hf")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--draft", default="ngram", help="NAME or NAME:MODEL")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--workloads", default="code,prose,chat", help="interleaved workloads")
    p.add_argument("--prompts", type=int, default=12, help="prompts in all")
    p.add_argument("--gamma-max", type=int, default=8)
    p.add_argument("--batches", default="1,4")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    import torch

    from thrifty.speculative.adaptive import AdaptiveLookahead
    from thrifty.speculative.commands import build_models
    from thrifty.speculative.profile import measure, profile
    from thrifty.speculative.throughput import ThroughputModel, batched
    from thrifty.speculative.workloads import workload

    verifier, drafts = build_models(args.verifier, args.model, [args.draft], args.device,
                                    args.dtype)
    (label, (draft, _)), = drafts.items()
    names = args.workloads.split(",")
    per = -(-args.prompts // len(names))
    pools = [workload(n, n=per).prompts for n in names]
    prompts = [pool[i] for i in range(per) for pool in pools if i < len(pool)][: args.prompts]
    ids = [verifier.tokenizer.encode(t) for t in prompts]
    batches = [int(b) for b in args.batches.split(",")]
    t0 = time.time()
    prof = profile(verifier, drafts, prompts, workload="+".join(names), batches=batches,
                   gamma_max=args.gamma_max, max_new_tokens=args.max_new_tokens,
                   repeats=args.repeats + 2,
                   progress=lambda m: print(f"  … {m}", file=sys.stderr))
    model = ThroughputModel(prof)
    print(f"# adaptive lookahead: {prof.verifier} + {label} on {args.device} "
          f"({platform.machine()}, torch {torch.__version__}"
          f"{', ' + prof.meta['gpu'] if 'gpu' in prof.meta else ''}), workloads "
          f"{'+'.join(names)}, {len(prompts)} prompts x {args.max_new_tokens} tokens")
    print(f"command: python bench/adaptive_lookahead.py {' '.join(sys.argv[1:])}")
    print(f"profile {time.time() - t0:.0f} s\n")
    print("| batch | target only | " + " | ".join(f"γ={g}" for g in range(1, args.gamma_max + 1))
          + " | adaptive | adaptive / best fixed | γ chosen (share of steps) |")
    print("| --- " * (args.gamma_max + 5) + "|")
    for b in batches:
        rows = batched(ids, b)
        base = measure(verifier, None, 0, b, rows, args.max_new_tokens, args.repeats)
        fixed = [measure(verifier, draft, g, b, rows, args.max_new_tokens, args.repeats)
                 for g in range(1, args.gamma_max + 1)]
        policy = AdaptiveLookahead.from_model(model, label, batch=b)
        adaptive = measure(verifier, draft, policy, b, rows, args.max_new_tokens, args.repeats)
        best = max(fixed, key=lambda m: m.throughput)
        counts = collections.Counter(policy.history)
        used = ", ".join(f"{g}: {100 * n / len(policy.history):.0f}%"
                         for g, n in sorted(counts.items()))
        print(f"| {b} | {base.throughput:.1f} | "
              + " | ".join(f"{m.throughput:.1f}" for m in fixed)
              + f" | {adaptive.throughput:.1f} | {adaptive.throughput / best.throughput:.2f}x "
                f"(best γ={fixed.index(best) + 1}) | {used} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
