"""Does the throughput model predict? Predicted vs measured throughput over drafts x γ x batch.

The profile measures the model's terms (verifier and draft latencies, the engine's overhead at
γ = 1 and γmax, acceptance by record and replay); then every (draft, γ, batch) cell is run live
and compared with the prediction; ``--trees`` adds token-tree cells for the drafts that grow
them (their acceptance is measured live in the profile, their cost priced as 1 + nodes scored
tokens). Reports the median absolute % error (goal <= 10%) and whether
the selector's choice is within 5% of the measured best, per batch size (over every draft and γ)
and per (draft, batch) (the choice of γ).

    python bench/model_accuracy.py --device cpu --draft hf:smollm2-draft-l1 --draft ngram \\
        --gammas 1,2,4,8 --batches 1,4 --prompts 8 --max-new-tokens 32
    python bench/model_accuracy.py --device cuda --dtype bfloat16 \\
        --draft hf:smollm2-draft-l1 --draft hf:smollm2-draft-l2 --draft hf:smollm2-draft-l4 \\
        --draft hf:smollm2-draft-wide --draft ngram --gammas 1-8 --batches 1,4,16 --prompts 16
    python bench/model_accuracy.py --device cuda --dtype bfloat16 --verifier hf-fast \\
        --draft hf-fast:smollm2-draft-feat --gammas 2,3,4 --trees 3x2:6,4x2:8 --batches 1,8 \\
        --workload heldout:chat --prompts 16 --max-new-tokens 128
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def _range(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(v) for v in text.split(",")]


def _lookahead(value):
    """A cell's lookahead as JSON keeps it (γ, or a tree's shape as text) back to the engine's."""
    from thrifty.speculative.tree import parse_lookahead

    return parse_lookahead(value) if isinstance(value, str) else value


def _prompts(name: str, tokenizer, n: int) -> list[list[int]]:
    """Token ids of ``n`` prompts of a built-in workload, or of ``heldout:NAME`` (bench/heldout:
    sources no draft was distilled on)."""
    if name.startswith("heldout:"):
        import heldout

        return heldout.load(tokenizer, [name.split(":", 1)[1]], n)[name.split(":", 1)[1]]
    from thrifty.speculative.workloads import workload

    return [tokenizer.encode(t) for t in workload(name, n=n).prompts]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--verifier", default="hf")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--draft", action="append", default=[], help="NAME or NAME:MODEL (repeatable)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--workload", default="code",
                   help="a built-in workload, or heldout:NAME (code, humaneval, chat, ...)")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--gammas", type=_range, default=list(range(1, 9)), help="e.g. 1-8 or 1,2,4")
    p.add_argument("--trees", default="",
                   help="token-tree shapes to time beside the chains, e.g. 3x2:6,4x2:8 (drafts "
                        "that grow trees)")
    p.add_argument("--batches", type=_range, default=[1, 4, 16])
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--confirm", type=int, default=0, metavar="ROUNDS",
                   help="where the selector's choice measures more than 5%% below the best, "
                        "time both cells this many more rounds, again while a verdict rests on "
                        "a cell not yet re-timed (a noisy machine's verdict)")
    p.add_argument("--refill", action="store_true",
                   help="continuous batching: all prompts through each batch size's rows")
    p.add_argument("--profile", help="reuse this saved profile if it exists, else save it here")
    p.add_argument("--profile-batches", type=_range, default=None,
                   help="batch sizes to profile (default: --batches); profile all of them once "
                        "to measure one batch size per run")
    p.add_argument("--json", help="write every cell to this JSON file")
    p.add_argument("--summarize", nargs="+", metavar="JSON",
                   help="only combine the cells of earlier --json files (e.g. one per batch size, "
                        "to keep each run short) and print the tables")
    p.add_argument("--profiles", nargs="+", metavar="PROFILE",
                   help="with --summarize: predict each file's cells again from its saved "
                        "profile (one per file) with the current model")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.summarize:
        runs = [json.loads(Path(f).read_text()) for f in args.summarize]
        if args.profiles:
            if len(args.profiles) != len(runs):
                p.error("--profiles takes one profile per --summarize file, in the same order")
            for run, path in zip(runs, args.profiles):
                _repredict(run["cells"], path, run["args"].get("refill", False))
        cells = [c for r in runs for c in r["cells"]]
        batches = sorted({c["batch"] for c in cells})
        drafts = sorted({c["draft"] for c in cells if c["draft"]})
        _print(runs[0]["args"] | {"batches": batches}, runs[0]["meta"], cells,
               _summary(cells, batches, drafts), None, None)
        return 0

    from thrifty.speculative.commands import build_models
    from thrifty.speculative.profile import Profile, measure, median_run, profile
    from thrifty.speculative.throughput import ThroughputModel, batched

    if not args.draft:
        p.error("give at least one --draft")
    verifier, drafts = build_models(args.verifier, args.model, args.draft, args.device,
                                    args.dtype)
    ids = _prompts(args.workload, verifier.tokenizer, args.prompts)
    trees = [_lookahead(t) for t in args.trees.split(",") if t]
    t0 = time.time()
    if args.profile and Path(args.profile).exists():
        prof = Profile.load(args.profile)
    else:
        prof = profile(verifier, drafts, ids, workload=args.workload,
                       batches=args.profile_batches or args.batches,
                       gamma_max=max(args.gammas), max_new_tokens=args.max_new_tokens,
                       repeats=args.repeats + 2, warmup=args.warmup, trees=trees,
                       progress=lambda m: print(f"  … {m}", file=sys.stderr))
        if args.profile:
            prof.save(args.profile)
    profile_s = time.time() - t0
    model = ThroughputModel(prof, refill=args.refill)
    cells = []
    # every chain, and every tree the profile holds for a draft (those that grow trees)
    drafted = {(None, 0): None} | {(label, g): draft for label, (draft, _) in drafts.items()
                                   for g in args.gammas + model.trees(label)}
    for b in args.batches:
        rows = batched(ids, b)
        runs: dict = {key: [] for key in drafted}

        def timed(keys, rounds):
            # in rounds over the cells: a slow spell of a shared machine then lands on all of
            # them alike, instead of deciding which cell of a batch size measures best
            for _ in range(rounds):
                for label, g in keys:
                    runs[label, g].append(measure(verifier, drafted[label, g], g, b, rows,
                                                  args.max_new_tokens, 1, refill=args.refill))

        def group():
            return [_cell(label, g, b, model.predict(label, g, b), median_run(ms), len(ms))
                    for (label, g), ms in runs.items()]

        timed(list(runs), args.repeats)
        confirmed: set = set()
        while args.confirm:  # until every verdict rests on confirmed cells
            verdicts = _summary(group(), [b], list(drafts))
            contested = {tuple(c[k]) for c in verdicts["per_batch"] + verdicts["per_draft_batch"]
                         if not c["within_5pct"] for k in ("chosen", "measured_best")}
            if contested <= confirmed:
                break
            timed(sorted(contested, key=str), args.confirm)
            confirmed |= contested
        cells += group()
        for c in cells[-len(runs):]:
            print(f"  batch {b:>2} {c['draft'] or 'target-only':>28} γ={c['gamma']}: predicted "
                  f"{c['predicted']:8.1f} measured {c['measured']:8.1f} tok/s "
                  f"({100 * c['error']:+.1f}%, {c['repeats']} runs)", file=sys.stderr)
    measure_s = time.time() - t0 - profile_s
    summary = _summary(cells, args.batches, list(drafts))
    _print(vars(args), prof.meta | {"verifier": prof.verifier}, cells, summary, profile_s,
           measure_s)
    if args.json:
        record = {"args": vars(args), "summary": summary, "cells": cells,
                  "meta": prof.meta | {"verifier": prof.verifier}}
        Path(args.json).write_text(json.dumps(record, indent=1))
    return 0


def _repredict(cells, profile_path, refill: bool) -> None:
    """Predict ``cells`` again from their saved profile with the current model (the
    measurements stay as they were)."""
    from thrifty.speculative.profile import Profile
    from thrifty.speculative.throughput import ThroughputModel

    model = ThroughputModel(Profile.load(profile_path), refill=refill)
    for c in cells:
        pred = model.predict(c["draft"], _lookahead(c["gamma"]), c["batch"])
        c.update(predicted=pred.throughput, tar_model=pred.tar,
                 error=(pred.throughput - c["measured"]) / c["measured"],
                 pred_ms=[pred.draft_ms, pred.verify_ms, pred.overhead_ms])


def _cell(draft, gamma, batch, pred, m, repeats: int) -> dict:
    return {"draft": draft, "gamma": gamma if isinstance(gamma, int) else str(gamma),
            "batch": batch, "repeats": repeats,
            "predicted": pred.throughput,
            "measured": m.throughput, "error": (pred.throughput - m.throughput) / m.throughput,
            "tar_model": pred.tar, "tar_live": m.tar,
            "pred_ms": [pred.draft_ms, pred.verify_ms, pred.overhead_ms],
            "live_ms": [m.draft_ms, m.verify_ms, m.overhead_ms]}


def _summary(cells, batches, drafts) -> dict:
    errors = [abs(c["error"]) for c in cells]
    per_batch, per_draft = [], []
    for b in batches:
        group = [c for c in cells if c["batch"] == b]
        per_batch.append(_choice(group, f"batch {b}"))
        for d in drafts:
            per_draft.append(_choice([c for c in group if c["draft"] == d], f"{d}, batch {b}"))
    return {"median_abs_error": statistics.median(errors), "max_abs_error": max(errors),
            "cells": len(cells), "per_batch": per_batch, "per_draft_batch": per_draft,
            "all_within_5pct": all(c["within_5pct"] for c in per_batch + per_draft)}


def _choice(group, name) -> dict:
    """The model's pick in ``group`` vs the measured best: is the pick within 5% of it?"""
    pick = max(group, key=lambda c: c["predicted"])
    best = max(group, key=lambda c: c["measured"])
    return {"cell": name, "chosen": [pick["draft"], pick["gamma"]],
            "measured_best": [best["draft"], best["gamma"]],
            "shortfall": 1 - pick["measured"] / best["measured"],
            "within_5pct": pick["measured"] >= 0.95 * best["measured"]}


def _print(args: dict, meta: dict, cells, summary, profile_s, measure_s) -> None:
    gpu = f", {meta['gpu']}" if "gpu" in meta else ""
    print(f"# model accuracy: {meta.get('verifier', '?')} on {args['device']} "
          f"({meta.get('machine')}, torch {meta.get('torch')}{gpu}), workload "
          f"{args['workload']}, {args['prompts']} prompts x {args['max_new_tokens']} tokens, "
          f"{meta.get('date')}")
    if profile_s is not None:
        print(f"command: python bench/model_accuracy.py {' '.join(sys.argv[1:])}")
        print(f"profile {profile_s:.0f} s, measurement {measure_s:.0f} s")
    print("\n| batch | draft | γ | TAR model | TAR live | predicted tok/s | measured tok/s | "
          "error |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for c in cells:
        print(f"| {c['batch']} | {c['draft'] or 'target only'} | {c['gamma']} | "
              f"{c['tar_model']:.2f} | {c['tar_live']:.2f} | {c['predicted']:.1f} | "
              f"{c['measured']:.1f} | {100 * c['error']:+.1f}% |")
    print(f"\nmedian |error| {100 * summary['median_abs_error']:.1f}% over {summary['cells']} "
          f"cells (max {100 * summary['max_abs_error']:.1f}%)\n")
    print("| cell | chosen (draft, γ) | measured best | shortfall | within 5% |")
    print("| --- | --- | --- | --- | --- |")
    for c in summary["per_batch"] + summary["per_draft_batch"]:
        print(f"| {c['cell']} | {c['chosen'][0]}, {c['chosen'][1]} | {c['measured_best'][0]}, "
              f"{c['measured_best'][1]} | {100 * c['shortfall']:.1f}% | "
              f"{'yes' if c['within_5pct'] else 'NO'} |")
    print(f"\nselector within 5% of the measured best in every cell: "
          f"{'yes' if summary['all_within_5pct'] else 'NO'}")


if __name__ == "__main__":
    sys.exit(main())
