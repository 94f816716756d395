"""Speculative decoding against target-only and transformers' strongest paths, interleaved.

A shared GPU's speed drifts between runs (thrifty target-only on one H100 measured 269 to 303
tok/s in one afternoon), so a ratio of two numbers taken minutes apart carries that drift. Here
each round runs thrifty target-only, every (draft, γ) and transformers ``generate`` with a static,
compiled cache on the same prompts, in one process, and each ratio is taken within the round;
the script prints each round's ratios and their median.

Baselines at batch 1, in the same process: transformers ``generate`` with
``cache_implementation="static"`` (compiled: every round), and once per workload on
``--hf-prompts`` prompts: eager ``generate`` (reference), prompt-lookup decoding and assisted
generation with ``--assistant`` (a token draft). ``vs_strongest`` divides by the fastest of them.

    python bench/speedup.py --suite heldout --drafts smollm2-draft-feat --gammas 3,4,5 \\
        --gammas-b8 2,3 --rounds 3 --refill-prompts 16 --out speedup.json

``--suite heldout`` (the default) reads bench/heldout (sources no draft was distilled on);
``--suite indist`` the standard-library code and chat prompts of gpu_speed.py.
``--refill-prompts N`` adds batch 8 with continuous batching: N prompts through 8 rows, each
row taking the next prompt as soon as its output is done (target-only runs the same way).
Every output is compared with target-only's; where some differ, each row's first divergence is
audited (the float32 verifier's logit gap there: ``near_ties``, ``max_gap``), so a bf16 rounding
flip at a near-tie is told apart from a defect. ``--dtype float32`` runs the GPU in float32,
where every output must equal target-only's.
``--expand`` adds each fast draft again growing EAGLE-2 trees (``trees=expand``; its trees
only), and ``--no-siblings`` leaves the other drafts to their chains. ``--compile`` gives
thrifty's verifier and drafts hf-fast's ``compile=true`` (norms, rotary and activations fused
by torch.compile under the CUDA graphs); an untimed round then compiles every shape before any
is timed, and its duration is reported (``compile_s``).
``new_tokens``: the mean length of target-only's outputs (the verifier ends a turn before
``--max-new-tokens`` on some workloads, and a short output carries its prefill over few tokens).
``--out`` is rewritten after each cell's compile round and each timed round (``in_progress``:
the rates so far), so a run stopped by a time limit keeps what it measured.
``--device cpu`` runs it off a GPU (with ``--dtype bfloat16``: where bf16 rounding parts
outputs, and by how much). ``--smoke`` runs everything on the CPU in float32 (a check of the
script).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import platform
import statistics
import time

import heldout
from gpu_speed import (cache_len, expanding, fast_models, fresh, hf_run, peak_mib, thrifty_run,
                       workloads, worth_timing)
from thrifty.atomic import write_json_atomically

HF_MODES = ("static", "eager", "lookup", "assisted")


def environment(device: str) -> dict:
    import torch
    import transformers

    return {"device": torch.cuda.get_device_name() if device == "cuda" else platform.processor()
            or platform.machine(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "date": datetime.date.today().isoformat()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", choices=("heldout", "indist"), default="heldout")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--drafts", default="smollm2-draft-feat", help="comma-separated")
    ap.add_argument("--gammas", default="3,4,5",
                    help="lookaheads at batch 1: γ, or token trees DEPTHxBRANCH[:NODES]")
    ap.add_argument("--gammas-b8", default="2,3", help="lookaheads at batch 8 (as --gammas)")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--hf-prompts", type=int, default=4,
                    help="prompts for the slow transformers references (eager, lookup, assisted)")
    ap.add_argument("--assistant", default="smollm2-draft-l1",
                    help="token draft for transformers assisted generation ('' to skip)")
    ap.add_argument("--assistant-gamma", type=int, default=4)
    ap.add_argument("--lookup-tokens", type=int, default=4,
                    help="prompt_lookup_num_tokens of transformers prompt-lookup decoding")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--refill-prompts", type=int, default=0,
                    help="also batch 8 continuously batched over this many prompts")
    ap.add_argument("--batches", default="1,8", help="which of batch 1 and static batch 8")
    ap.add_argument("--workloads", default="",
                    help=f"comma-separated (default: every workload of the suite; heldout has "
                         f"{','.join(heldout.WORKLOADS)}, indist has code,chat)")
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"),
                    help="float32 checks that every speculative output equals target-only's")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="cpu: exactness and the divergence audit off a GPU (timings mean little)")
    ap.add_argument("--compile", action="store_true",
                    help="thrifty's verifier and drafts with hf-fast's compile=true")
    ap.add_argument("--expand", action="store_true",
                    help="also each fast draft growing EAGLE-2 trees (trees=expand; its "
                         "trees only)")
    ap.add_argument("--no-siblings", action="store_true",
                    help="trees on the expanding drafts only (with --expand: each sibling tree "
                         "compiles its own shapes, and bench/tree_acceptance.py compares both)")
    ap.add_argument("--vocabs", default="0",
                    help="comma-separated sizes of the fast drafts' vocab option (the N most "
                         "frequent tokens of their ranking they may propose; 0: every token)")
    ap.add_argument("--smoke", action="store_true", help="CPU, float32 (a check of the script)")
    ap.add_argument("--out", default="speedup.json")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from thrifty_hf.loading import load_draft_named
    from thrifty_hf.models import eos_token_ids
    from thrifty_hf.zoo import resolve

    device, dtype = ("cpu", "float32") if args.smoke else (args.device, args.dtype)
    names = [w for w in args.workloads.split(",") if w] or (
        list(heldout.WORKLOADS) if args.suite == "heldout" else ["code", "chat"])
    n = max(args.prompts, args.refill_prompts)
    # the tokenizer decides the prompts' lengths, which decide the static cache's length
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve(args.model).path)
    if args.suite == "heldout":
        loads = heldout.load(tok, names, n)
    else:
        loads = {k: v for k, v in workloads(tok, n).items() if k in names}
    longest = max(len(p) for every in loads.values() for p in every)
    from thrifty.speculative.tree import parse_lookahead

    gammas = {1: [parse_lookahead(g, "--gammas") for g in args.gammas.split(",")],
              8: [parse_lookahead(g, "--gammas-b8") for g in args.gammas_b8.split(",")]}
    modes = [(int(b), False) for b in args.batches.split(",") if b] + \
        [(8, True)] * bool(args.refill_prompts)
    max_len = cache_len(longest, args.max_new_tokens,
                        [g for every in gammas.values() for g in every])
    tok, ver, drafts = fast_models(args.model, args.drafts, device, dtype, max_len=max_len,
                                   compile=args.compile,
                                   vocabs=[int(v) for v in args.vocabs.split(",")])
    if args.expand:
        drafts.update(expanding(drafts, ver.model, max_len, args.compile))
    hf = AutoModelForCausalLM.from_pretrained(
        resolve(args.model).path, dtype=getattr(torch, dtype)).to(device).eval()
    eos = eos_token_ids(hf, tok)
    assistant = load_draft_named(args.assistant, hf) if args.assistant else None
    res = {**environment(device), "suite": args.suite, "model": args.model, "dtype": dtype,
           "compile": args.compile,
           "max_new_tokens": args.max_new_tokens, "rounds": args.rounds, "rows": []}

    def save():
        write_json_atomically(args.out, res)

    def emit(row):
        res["rows"].append(row)
        res.pop("in_progress", None)
        print(json.dumps(row), flush=True)
        save()

    def progress(**state):
        """What a cell has measured so far, saved after its compile round and each round (a
        run cut short by a time limit keeps it) and printed."""
        res["in_progress"] = state
        print(json.dumps({"in_progress": state}), flush=True)
        save()

    for wl, every in loads.items():
        for batch, refill in modes:
            prompts = every[: args.refill_prompts if refill else args.prompts]
            configs = [(name, d, g) for name, d in drafts.items() for g in gammas[batch]
                       if worth_timing(name, g, siblings=not args.no_siblings)]
            rates = {c[:1] + c[2:]: [] for c in [("target-only", None, 0)] + configs}
            hf_rates = {"static": []} if batch == 1 else {}
            tars, same, peaks, audits = {}, {}, {}, {}
            fresh()
            if batch == 1:
                hf_once = transformers_references(hf, prompts[: args.hf_prompts], args, eos,
                                                  assistant)
            if args.compile:  # an untimed round: every shape compiles before any is timed
                began = time.perf_counter()
                for _, draft, gamma in [("target-only", None, 0)] + configs:
                    thrifty_run(ver, draft, gamma, prompts, batch, args.max_new_tokens, 1,
                                refill=refill)
                progress(workload=wl, batch=batch, refill=refill,
                         compile_s=round(time.perf_counter() - began, 1))
            for done in range(1, args.rounds + 1):
                fresh()
                base, _, ref = thrifty_run(ver, None, 0, prompts, batch, args.max_new_tokens, 1,
                                           refill=refill)
                peaks["target-only", 0] = peak_mib()
                new_tokens = statistics.mean(map(len, ref))  # the same every round
                rates[("target-only", 0)].append(base)
                for name, draft, gamma in configs:
                    fresh()
                    rate, tars[name, gamma], outs = thrifty_run(
                        ver, draft, gamma, prompts, batch, args.max_new_tokens, 1, refill=refill)
                    peaks[name, gamma] = peak_mib()
                    rates[name, gamma].append(rate)
                    same[name, gamma] = sum(a == b for a, b in zip(outs, ref))
                    if same[name, gamma] < len(prompts) and (name, gamma) not in audits:
                        audits[name, gamma] = audit(hf, prompts, ref, outs)
                if batch == 1:
                    rate, hf_out = hf_run(hf, prompts, args.max_new_tokens, eos, mode="static")
                    hf_rates["static"].append(rate)
                progress(workload=wl, batch=batch, refill=refill, rounds=done,
                         tok_s={f"{name} {gamma}": [round(r, 1) for r in rs]
                                for (name, gamma), rs in rates.items()},
                         transformers={m: [round(r, 1) for r in rs]
                                       for m, rs in hf_rates.items()})
            strongest = None
            if batch == 1:
                medians = {m: statistics.median(r) for m, r in hf_rates.items()}
                medians.update({m: r["tok_s"] for m, r in hf_once.items() if "tok_s" in r})
                strongest = max(medians, key=medians.get)
                for m, row in hf_once.items():
                    emit(dict(workload=wl, batch=1, config=f"transformers {m}", **row))
                emit(dict(workload=wl, batch=1, config="transformers static",
                          tok_s=round(medians["static"], 1),
                          tok_s_rounds=[round(r, 1) for r in hf_rates["static"]]))
            for (name, gamma), rs in rates.items():
                ratios = [r / b for r, b in zip(rs, rates[("target-only", 0)])]
                row = dict(workload=wl, batch=batch, refill=refill, config=name,
                           gamma=gamma if isinstance(gamma, int) else str(gamma),
                           tok_s=round(statistics.median(rs), 1),
                           ratio_median=round(statistics.median(ratios), 3),
                           ratios=[round(r, 3) for r in ratios],
                           tar=round(tars.get((name, gamma), 1.0), 3),
                           identical=f"{same.get((name, gamma), len(prompts))}/{len(prompts)}",
                           new_tokens=round(new_tokens, 1),
                           **audits.get((name, gamma), {}),
                           peak_mib=peaks.get((name, gamma)))
                if strongest is not None:
                    static = [r / s for r, s in zip(rs, hf_rates["static"])]
                    row.update(vs_static_median=round(statistics.median(static), 3),
                               strongest=strongest,
                               vs_strongest=round(statistics.median(rs) / medians[strongest], 3))
                emit(row)


def audit(hf, prompts, reference, outs) -> dict:
    """The outputs that differ from target-only's: at each first divergence, the float32
    verifier's logit gap between the two tokens (:mod:`thrifty_hf.audit`; near-tie: <= 0.5)."""
    from thrifty_hf.audit import audit_divergences

    found = audit_divergences(_float32(hf), prompts, reference, outs)
    return dict(near_ties=f"{sum(d.near_tie for d in found)}/{len(found)}",
                max_gap=round(max((d.gap for d in found), default=0.0), 4))


@functools.cache
def _float32(hf):
    """The verifier in float32 for :func:`audit`, copied once: a bf16 run audits several
    configurations (the audit itself would copy the model for each)."""
    import copy

    import torch

    return hf if next(hf.parameters()).dtype == torch.float32 else copy.deepcopy(hf).float()


def transformers_references(hf, prompts, args, eos, assistant) -> dict[str, dict]:
    """Eager, prompt-lookup and assisted ``generate`` once each on ``prompts`` (slow paths:
    every step is an eager forward), with how many outputs equal eager greedy's."""
    out = {}
    rate, ref = hf_run(hf, prompts, args.max_new_tokens, eos, mode="eager")
    out["eager"] = dict(tok_s=round(rate, 1), prompts=len(prompts))
    runs = [("lookup", None, args.lookup_tokens)] + \
        [("assisted", assistant, args.assistant_gamma)] * (assistant is not None)
    for mode, helper, gamma in runs:
        try:
            rate, outs = hf_run(hf, prompts, args.max_new_tokens, eos, assistant=helper,
                                gamma=gamma, mode=mode)
        except Exception as exc:  # reported in the table, not hidden
            if _device_fault(exc):
                raise RuntimeError(f"transformers {mode} generation faulted on the device; the "
                                   f"CUDA context is lost, so nothing after it would run") \
                    from exc
            out[mode] = dict(error=repr(exc)[:300])
            continue
        out[mode] = dict(tok_s=round(rate, 1), gamma=gamma, prompts=len(prompts),
                         same_as_eager=f"{sum(a == b for a, b in zip(outs, ref))}/{len(ref)}")
    return out


def _device_fault(exc: Exception) -> bool:
    """Whether ``exc`` is a fault of the GPU itself (a kernel's illegal access or launch
    failure): it poisons every later CUDA call, which would then be blamed for it."""
    import torch

    return isinstance(exc, getattr(torch, "AcceleratorError", ())) or "CUDA error" in str(exc)


if __name__ == "__main__":
    main()
