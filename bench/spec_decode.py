"""Speculative decoding vs target-only decoding vs transformers, in one run, on one machine.

For each prompt set (the bundled code and prose prompts of `thrifty demo`) and the same dtype:

* thrifty target-only greedy decoding (the baseline every ratio is taken against);
* thrifty speculative decoding with the chosen draft (n-gram by default);
* transformers ``generate`` (greedy), and transformers' own speculative path with the same
  draft: prompt lookup (``prompt_lookup_num_tokens``) for the n-gram draft, assisted generation
  (``assistant_model``) for an HF draft.

Each configuration runs every prompt at batch 1, ``--repeats`` times; tok/s is total tokens over
total time per repeat, and the table shows the median over repeats. It also counts how many
outputs are token-for-token identical to thrifty's target-only greedy output.

    python bench/spec_decode.py --device cpu --threads 2 --max-new-tokens 64 --repeats 3
    python bench/spec_decode.py --draft hf:smollm2-draft-l1 --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import thrifty
from thrifty_hf.demo import bundled_prompts
from thrifty.speculative import Metrics


def thrifty_run(pipe, draft, prompts, max_new):
    runs = [pipe.decoder(draft).generate([p], max_new_tokens=max_new) for p in prompts]
    m = Metrics.merged([g.metrics for g in runs])
    return [g.token_ids[0] for g in runs], m.tokens_per_second, m.tar


def hf_run(model, tokenizer, prompts, max_new, **kwargs):
    outs, tokens, seconds = [], 0, 0.0
    eos = model.generation_config.eos_token_id
    for p in prompts:
        ids = torch.tensor([tokenizer.encode(p)], device=model.device)
        sync(model.device)
        t0 = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=max_new, pad_token_id=eos, **kwargs)
        sync(model.device)
        seconds += time.perf_counter() - t0
        new = out[0, ids.shape[1]:].tolist()
        outs.append(new)
        tokens += len(new)
    return outs, tokens / seconds


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--draft", default="ngram", help="ngram, or hf:<zoo name or folder>")
    ap.add_argument("--lookahead", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sets", default="code,prose")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    name, _, model = args.draft.partition(":")
    draft_ref = (name, {"model": model}) if model else (name, {})
    pipe = thrifty.pipeline(verifier=("hf", {"model": args.model, "device": args.device,
                                             "dtype": args.dtype}),
                            drafts=[draft_ref], lookahead=args.lookahead)
    hf_model, tok = pipe.verifier.model, pipe.verifier.tokenizer
    if name == "ngram":
        hf_spec = {"prompt_lookup_num_tokens": args.lookahead}
        hf_label = f"transformers prompt lookup (num_tokens={args.lookahead})"
    else:
        hf_spec = {"assistant_model": pipe.draft(0).model}
        hf_label = "transformers assisted generation (same draft)"

    prompt_sets = bundled_prompts()
    results = []
    for set_name in args.sets.split(","):
        prompts = prompt_sets[set_name]
        thrifty_run(pipe, None, prompts[:1], 4)  # warm-up
        rows: dict[str, list] = {k: [] for k in ("target", "spec", "hf", "hf_spec")}
        tar = []
        for _ in range(args.repeats):
            ref, tps, _ = thrifty_run(pipe, None, prompts, args.max_new_tokens)
            rows["target"].append(tps)
            spec_out, tps, t = thrifty_run(pipe, 0, prompts, args.max_new_tokens)
            rows["spec"].append(tps)
            tar.append(t)
            hf_out, tps = hf_run(hf_model, tok, prompts, args.max_new_tokens)
            rows["hf"].append(tps)
            hf_spec_out, tps = hf_run(hf_model, tok, prompts, args.max_new_tokens, **hf_spec)
            rows["hf_spec"].append(tps)
        med = {k: statistics.median(v) for k, v in rows.items()}
        same = lambda outs: sum(a == b for a, b in zip(outs, ref))  # noqa: E731
        results.append({
            "set": set_name, "prompts": len(prompts), "draft": args.draft,
            "lookahead": args.lookahead, "tok_s": {k: round(v, 2) for k, v in med.items()},
            "speculative_vs_target_only": round(med["spec"] / med["target"], 3),
            "speculative_vs_hf_speculative": round(med["spec"] / med["hf_spec"], 3),
            "target_only_vs_hf_generate": round(med["target"] / med["hf"], 3),
            "tar": round(statistics.median(tar), 3),
            "identical_to_target_only": {"thrifty_speculative": same(spec_out),
                                         "hf_generate": same(hf_out),
                                         "hf_speculative": same(hf_spec_out)},
        })

    print(f"model {args.model}, draft {args.draft}, γ={args.lookahead}, {args.device} "
          f"{args.dtype}, threads {torch.get_num_threads()}, torch {torch.__version__}, "
          f"batch 1, {args.max_new_tokens} new tokens, median of {args.repeats}")
    for r in results:
        t = r["tok_s"]
        print(f"\n[{r['set']}] {r['prompts']} prompts")
        print(f"  thrifty target-only        {t['target']:8.2f} tok/s   1.00x")
        print(f"  thrifty speculative        {t['spec']:8.2f} tok/s   "
              f"{r['speculative_vs_target_only']:.2f}x   TAR {r['tar']:.2f}")
        print(f"  transformers generate      {t['hf']:8.2f} tok/s   {t['hf'] / t['target']:.2f}x")
        print(f"  {hf_label:26s} {t['hf_spec']:8.2f} tok/s   {t['hf_spec'] / t['target']:.2f}x")
        print(f"  thrifty speculative / transformers speculative: "
              f"{r['speculative_vs_hf_speculative']:.2f}x")
        print(f"  identical to thrifty target-only greedy: {r['identical_to_target_only']} "
              f"of {r['prompts']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
