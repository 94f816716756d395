"""Exactness of hf-fast on a GPU, family by family: float32, CUDA graphs, against transformers.

For every tiny perturbed model of the test families (plugins/thrifty-hf/tests/families.py, and
the windowed Qwen2-MoE of test_fast_families.py), float32 on CUDA: transformers' greedy ``generate`` (its
own dynamic cache and attention) is the reference; hf-fast target-only and hf-fast speculative
with the n-gram draft (γ ``--gamma``; ``--modes`` adds ``ngram-tree``, token trees of
``--tree``, scored through the tree mask and kept by ``keep_path``) must produce the same tokens, at batch 1 (each prompt
alone) and as one ragged batch of 3. Generations outgrow every sliding window. Where a row
differs, the first divergence is audited (:mod:`thrifty_hf.audit`): the float32 logit gap
between the two tokens there, so that a near-tie is told apart from a defect. The body that ran
each family (fused or generic) is printed. Exit status 1 if any row differs.

    python bench/gpu_exactness.py --json gpu_exactness.json
    python bench/gpu_exactness.py --zoo smollm2-135m:chat:8   # also the real model, held-out chat
    python bench/gpu_exactness.py --modes ngram-tree --tree 4x2:8 --json trees.json
    python bench/gpu_exactness.py --smoke      # CPU, no graphs, two families: checks the script
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "plugins" / "thrifty-hf" / "tests")]

import families  # noqa: E402
from architectures import REAL, build, machine  # noqa: E402


def models(real: list[str]) -> dict:
    """Family name -> maker of its tiny perturbed float32 model, and for each name in ``real``
    a perturbed float32 model of that published shape (bench/architectures.py); all made on
    the CPU (the perturbation draws there)."""
    from test_fast_families import MODELS

    return {**MODELS, **{name: (lambda name=name: families.perturb(
        build(name, "cpu", "float32", smoke=False), seed=0)) for name in real}}


def zoo_model(spec: str):
    """``NAME[:WORKLOAD[:N]]`` -> (name, (maker of the zoo model in float32, the first N
    prompts of that held-out workload as its tokenizer encodes them))."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import heldout
    from thrifty_hf.zoo import resolve

    name, workload, n = (spec.split(":") + ["chat", "8"])[:3]
    path = resolve(name).path
    prompts = heldout.load(AutoTokenizer.from_pretrained(path), [workload], int(n))[workload]
    return name, (lambda: AutoModelForCausalLM.from_pretrained(path, dtype="float32"), prompts)


def reference(model, prompts, max_new: int) -> list[list[int]]:
    """transformers' greedy generate, one prompt at a time, exactly ``max_new`` tokens."""
    import torch

    outs = []
    for p in prompts:
        ids = torch.tensor([p], device=model.device)
        out = model.generate(ids, max_new_tokens=max_new, min_new_tokens=max_new,
                             do_sample=False, eos_token_id=None, pad_token_id=families.EOS)
        outs.append(out[0, len(p):].tolist())
    return outs


def check_family(name: str, make, prompts, args) -> list[dict]:
    from thrifty.speculative import SpeculativeDecoder
    from thrifty.speculative.tree import parse_lookahead
    from thrifty.testing.toy import ToyTokenizer  # ids are compared, never decoded
    from thrifty_hf.audit import audit_divergences
    from thrifty_hf.fast import FastVerifier
    from thrifty_ngram.draft import NgramDraft

    model = make().to(args.device)
    model.generation_config.eos_token_id = None
    ref = reference(model, prompts, args.max_new_tokens)
    tree = parse_lookahead(args.tree, "--tree")
    # room for the longest prompt, its new tokens and the widest lookahead (the engine resets
    # a row whose output is done before it outgrows that)
    room = max(map(len, prompts)) + args.max_new_tokens + max(args.gamma, tree.nodes)
    fv = FastVerifier(model, ToyTokenizer(), max_len=room, eos_token_ids=(),
                      graphs=args.device == "cuda", body=args.body, compile=args.compile)
    rows = []
    modes = {"target-only": (None, 0), "ngram": (NgramDraft(), args.gamma),
             "ngram-tree": (NgramDraft(), tree)}
    for mode in args.modes.split(","):
        draft, lookahead = modes[mode]
        dec = SpeculativeDecoder(fv, draft, lookahead)
        for batch in (1, 3):
            if batch == 1:
                got = [dec.generate([p], max_new_tokens=args.max_new_tokens).token_ids[0]
                       for p in prompts]
            else:
                got = dec.generate(prompts, max_new_tokens=args.max_new_tokens).token_ids
            found = audit_divergences(model, prompts, ref, got, args.tol)
            rows.append(dict(family=name, body=fv.lm.body.kind, mode=mode, batch=batch,
                             identical=len(prompts) - len(found),
                             rows=len(prompts),
                             divergences=[dict(row=d.row, position=d.position,
                                               reference=d.reference_token,
                                               candidate=d.candidate_token,
                                               gap=round(d.gap, 6), near_tie=d.near_tie)
                                          for d in found]))
            r = rows[-1]
            gaps = ", ".join(f"row {d['row']} token {d['position']} gap {d['gap']:.3g}"
                             f"{'' if d['near_tie'] else ' NOT A TIE'}" for d in r["divergences"])
            print(f"{name:>15} {r['body']:>7} {mode:>11} batch {batch}: "
                  f"{r['identical']}/{r['rows']} identical{'; ' + gaps if gaps else ''}",
                  flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="", help="comma-separated (default: all tiny ones)")
    ap.add_argument("--real", default="", help="also these published shapes, float32, random "
                    "perturbed weights: comma-separated, of " + ", ".join(REAL))
    ap.add_argument("--zoo", default="", help="also this zoo model (real weights, float32) on "
                    "held-out prompts: NAME[:WORKLOAD[:N]], e.g. smollm2-135m:chat:8")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--max-new-tokens", type=int, default=48,
                    help="long enough to outgrow every window")
    ap.add_argument("--gamma", type=int, default=4)
    ap.add_argument("--modes", default="target-only,ngram",
                    help="comma-separated, of target-only, ngram (a chain of --gamma) and "
                         "ngram-tree (token trees of --tree)")
    ap.add_argument("--tree", default="4x2:8", help="the tree shape of the ngram-tree mode")
    ap.add_argument("--tol", type=float, default=0.5, help="largest logit gap called a near-tie")
    ap.add_argument("--body", default="auto", choices=["auto", "generic"],
                    help="hf-fast body (auto: fused Llama where its allow-list holds)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the static forward")
    ap.add_argument("--json", default="", help="write the results to this file")
    ap.add_argument("--smoke", action="store_true",
                    help="CPU, no graphs, two families, few tokens: checks the script")
    args = ap.parse_args()
    if args.smoke:
        args.device, args.max_new_tokens, args.families = "cpu", 20, "gemma2,qwen2-moe"
    real = [r for r in args.real.split(",") if r]
    makers = models(real)
    names = (args.families.split(",") if args.families else
             sorted(set(makers) - set(real))) + real
    print(" | ".join(f"{k} {v}" for k, v in machine(args.device).items()), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tok = families.build_tokenizer(Path(tmp) / "tokenizer")
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tok)
    prompts = {name: [tokenizer.encode(t) for t in families.CORPUS[:3]] for name in names}
    if args.zoo:
        zoo, loaded = zoo_model(args.zoo)
        makers[zoo], prompts[zoo] = loaded
        names.append(zoo)
    rows = []
    for name in names:
        rows += check_family(name, makers[name], prompts[name], args)
        if args.json:  # after each family: a run stopped at a time limit keeps what it checked
            Path(args.json).write_text(json.dumps({"machine": machine(args.device),
                                                   "args": vars(args), "rows": rows}, indent=2))
    bad = [r for r in rows if r["identical"] != r["rows"]]
    print(f"{len(rows) - len(bad)}/{len(rows)} configurations identical to transformers; "
          f"divergences: {sum(len(r['divergences']) for r in rows)}, of which not near-ties: "
          f"{sum(not d['near_tie'] for r in rows for d in r['divergences'])}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
