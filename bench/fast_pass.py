"""The fast path's pass time against an earlier revision of it, on the same GPU in one process.

Loads an earlier ``plugins/thrifty-hf/src/thrifty_hf/fast.py`` (``--old``, a copy written with
``git show REV:plugins/thrifty-hf/src/thrifty_hf/fast.py``) next to this checkout's, builds both
over one random-weight model of SmolLM2-135M's shape (30 layers, width 576, 9 query and 3 KV
heads, vocabulary 49,152; no weights needed) and, for batch 1 and 8
and k = 1, 4, 6 scored tokens after a 200-token prefill, prints the median ms of a graph-replayed
pass (rounds alternate the two), the ratio, and the largest logit difference between them. Then
the median time of a 150-token prefill with each.

    git show a70c1e4:plugins/thrifty-hf/src/thrifty_hf/fast.py > /tmp/fast_old.py
    python bench/fast_pass.py --old /tmp/fast_old.py --out fast_pass.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from pathlib import Path


def load(path: str):
    """The fast-path module in ``path`` (an earlier revision's copy)."""
    spec = importlib.util.spec_from_file_location("fast_old", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed_ms(fn, repeats: int) -> float:
    import torch

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="an earlier revision's fast.py")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default="fast_pass.json")
    args = ap.parse_args()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from thrifty_hf import fast

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         rope_theta=100000.0, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).to("cuda", torch.bfloat16).eval()
    lms = {"old": load(args.old).StaticLM(model, max_len=1024),
           "this checkout": fast.StaticLM(model, max_len=1024)}
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "passes": []}
    for batch in (1, 8):
        prompts = [list(range(100 + b, 300 + b)) for b in range(batch)]
        counts = {name: lm.prefill(prompts)[0] for name, lm in lms.items()}
        for k in (1, 4, 6):
            tokens = torch.randint(0, 1000, (batch, k), device="cuda")
            logits = {name: lm.run(tokens, counts[name])[1].clone() for name, lm in lms.items()}
            times: dict = {name: [] for name in lms}
            for _ in range(args.rounds):
                for name, lm in lms.items():
                    times[name].append(timed_ms(lambda: lm.run(tokens, counts[name]), 30))
            old, new = (statistics.median(times[name]) for name in lms)
            row = dict(batch=batch, k=k, old_ms=round(old, 3), new_ms=round(new, 3),
                       new_vs_old=round(new / old, 3),
                       max_logit_diff=float((logits["old"] - logits["this checkout"])
                                            .abs().max()))
            res["passes"].append(row)
            print(json.dumps(row), flush=True)
    for name, lm in lms.items():
        ms = [timed_ms(lambda: lm.prefill([list(range(100 + r, 250 + r))]), 1)
              for r in range(args.rounds + 2)][2:]
        res[f"prefill_150_ms {name}"] = round(statistics.median(ms), 3)
        print(f"150-token prefill, {name}: {statistics.median(ms):.2f} ms", flush=True)
    Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
