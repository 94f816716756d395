"""Chains against token trees on the held-out suite: tokens per verifier pass, and the speed a
GPU profile predicts for them.

Acceptance under greedy decoding does not depend on the device, so it is measured here on the
CPU in float32 (SmolLM2-135M on ``hf-fast``, held-out prompts no draft was distilled on); every
output is checked identical to target-only. ``--profile`` (a ``thrifty profile`` JSON, e.g.
the H100 one in docs/benchmarks/gpu) then prices each configuration with the throughput model:
draft and engine time of its depth, verifier time of the 1 + nodes tokens it scores. Those
columns are predictions from that profile, not timings of this run.

    python bench/tree_acceptance.py --profile docs/benchmarks/gpu/profile-h100.json \\
        --json tree-acceptance.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout  # noqa: E402
from gpu_speed import EXPAND, expanding, fast_models, worth_timing  # noqa: E402

PROFILE_LABELS = {"ngram": "ngram", "smollm2-draft-feat": "hf-fast(model=smollm2-draft-feat)"}
"""The label each draft has in the profiles ``thrifty profile`` writes."""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--drafts", default="ngram,smollm2-draft-feat")
    ap.add_argument("--lookaheads", default="3,4,3x2:6,4x2:8,4x3:12",
                    help="chains (γ) and trees (DEPTHxBRANCH[:NODES]), comma-separated")
    ap.add_argument("--workloads", default="code,chat")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--expand", action="store_true",
                    help="also each fast draft with trees='expand' (EAGLE-2 trees; its "
                         "trees only: its chains are the draft's)")
    ap.add_argument("--profile", default="", help="a thrifty profile to price the configurations")
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    import torch
    import transformers

    from thrifty.speculative import SpeculativeDecoder
    from thrifty.speculative.tree import parse_lookahead
    from thrifty_ngram.draft import NgramDraft

    looks = [parse_lookahead(t, "--lookaheads") for t in args.lookaheads.split(",")]
    names = [d for d in args.drafts.split(",") if d]
    tok, ver, drafts = fast_models(args.model, ",".join(n for n in names if n != "ngram"),
                                   "cpu", "float32", max_len=2048)
    drafts = {n: NgramDraft() if n == "ngram" else drafts[n] for n in names}
    if args.expand:
        drafts.update(expanding(drafts, ver.model, max_len=2048))
    model = None
    if args.profile:
        from thrifty.speculative.profile import Profile
        from thrifty.speculative.throughput import ThroughputModel

        model = ThroughputModel(Profile.load(args.profile))
    loads = heldout.load(tok, args.workloads.split(","), args.prompts)
    rows = []
    for wl, prompts in loads.items():
        ref = SpeculativeDecoder(ver).generate(prompts, max_new_tokens=args.max_new_tokens,
                                               batch_size=1).token_ids
        base = None if model is None else model.predict(None, 0, 1).throughput
        for name, draft in drafts.items():
            for look in looks:
                if not worth_timing(name, look):
                    continue
                out = SpeculativeDecoder(ver, draft, look).generate(
                    prompts, max_new_tokens=args.max_new_tokens, batch_size=1)
                depth = look if isinstance(look, int) else look.depth
                scored = depth + 1 if isinstance(look, int) else look.nodes + 1
                row = dict(workload=wl, draft=name, lookahead=str(look), scored=scored,
                           tokens_per_pass=round(out.metrics.tar, 3),
                           identical=f"{sum(a == b for a, b in zip(out.token_ids, ref))}/"
                                     f"{len(ref)}")
                if model is not None:
                    # an expanding tree is priced with its draft's chain of its depth, which
                    # understates its wider draft steps (docs/trees.md says so beside the table)
                    label = PROFILE_LABELS[name.removesuffix(EXPAND)]
                    step = (model.draft_ms(label, depth, 1) + model.verify_ms(scored, 1)
                            + model.overhead_ms(label, depth, 1))
                    rate = 1000.0 * out.metrics.tar / step
                    row.update(predicted_tok_s=round(rate, 1),
                               predicted_vs_target=round(rate / base, 3))
                rows.append(row)
                print(json.dumps(row), flush=True)
    best = {}
    for r in rows:
        key = (r["workload"], r["draft"], "tree" if "x" in r["lookahead"] else "chain")
        best[key] = max(best.get(key, 0.0), r["tokens_per_pass"])
    for (wl, name, kind), tar in sorted(best.items()):
        print(f"{wl:>6} {name:>20} best {kind}: {tar:.2f} tokens per pass")
    if args.json:
        from thrifty.atomic import write_json_atomically

        write_json_atomically(args.json, {
            "machine": platform.machine(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "date": datetime.date.today().isoformat(), "args": vars(args),
            "rows": rows}, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
