"""What committing each step on the host while the GPU runs the next one buys.

The engine's overlap (``SpeculativeDecoder(overlap=...)``, on by default on CUDA) against the
same engine waiting for every step: same process, same prompts, the two settings alternated
``--rounds`` times, for target-only decoding and each draft at each γ, batch 1 and 8. Prints
tok/s, the ratio on/off and whether the outputs are identical (they must be).

    python bench/overlap.py --drafts smollm2-draft-feat --gammas 3,5 --out overlap.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from gpu_speed import fast_models, fresh, thrifty_run, workloads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--drafts", default="smollm2-draft-feat", help="comma-separated")
    ap.add_argument("--gammas", default="3,5")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workloads", default="code,chat")
    ap.add_argument("--out", default="overlap.json")
    args = ap.parse_args()

    import torch

    tok, ver, drafts = fast_models(args.model, args.drafts)
    configs = [("target-only", None, 0)] + [(name, d, int(g)) for name, d in drafts.items()
                                            for g in args.gammas.split(",")]
    loads = {k: v for k, v in workloads(tok, args.prompts).items()
             if k in args.workloads.split(",")}
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": []}
    for wl, prompts in loads.items():
        for batch in (int(b) for b in args.batches.split(",")):
            for label, draft, gamma in configs:
                fresh()
                rates = {False: [], True: []}
                outs = {}
                for _ in range(args.rounds):
                    for overlap in (False, True):
                        rate, tar, outs[overlap] = thrifty_run(
                            ver, draft, gamma, prompts, batch, args.max_new_tokens, 1, overlap)
                        rates[overlap].append(rate)
                off, on = (statistics.median(rates[k]) for k in (False, True))
                row = dict(workload=wl, batch=batch, config=label, gamma=gamma,
                           tok_s_off=round(off, 1), tok_s_on=round(on, 1),
                           on_vs_off=round(on / off, 3), tar=round(tar, 3),
                           identical=outs[False] == outs[True])
                res["rows"].append(row)
                print(json.dumps(row), flush=True)
                Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
