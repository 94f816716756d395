"""GPU speed of thrifty's fast path against transformers, with the shipped drafts.

One run, same prompts and max tokens for every configuration (SmolLM2-135M, bf16 unless noted):
transformers `generate`; thrifty target-only (hf-fast); thrifty speculative with each draft at
batch 1 and 8 over a γ grid; transformers assisted generation with the best draft; peak GPU
memory of each configuration; fp32 exactness (thrifty target-only vs transformers greedy, and
speculative vs target-only); bf16 divergences audited for near-ties.

Batch-1 throughput is the median over prompts of each prompt's tokens/s (every prompt is its own
timing), over ``--repeats`` passes; batch-8 throughput is the median over repeats.

    python bench/gpu_speed.py --device cuda --drafts smollm2-draft-l1,smollm2-draft-l2,... \
        --out results.json
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path

CHAT = ["How do I reverse a list in Python?", "Write a haiku about autumn leaves.",
        "What is the difference between a process and a thread?",
        "Tell me a short story about a lost cat finding its way home.",
        "Explain what a hash table is.", "Write a Python function that checks for palindromes.",
        "Why is the sky blue?", "Give me three tips for a job interview.",
        # 24 more for continuous batching (none of them a distillation topic)
        "How do I read a CSV file in Python?", "Write a limerick about a sleepy owl.",
        "What causes the seasons on Earth?", "Describe a busy market in the morning.",
        "What is the difference between a list and a tuple in Python?",
        "Give me a recipe for a simple tomato soup.", "Explain how a bicycle stays upright.",
        "Write a Python function that counts the vowels in a string.",
        "What are the benefits of learning a second language?",
        "Tell me a short story about a lighthouse keeper's dog.",
        "How does a refrigerator keep food cold?", "Write a thank-you note to a teacher.",
        "What is an API, in simple terms?", "Suggest a weekend plan for a rainy city.",
        "Explain the rules of chess in a few sentences.",
        "Write a SQL query that finds the five most recent orders.",
        "Why do cats purr?", "Describe the taste of a ripe mango.",
        "How do vaccines train the immune system?", "Write a short speech for a friend's wedding.",
        "What is the Pythagorean theorem used for?", "Give me tips for growing basil indoors.",
        "Explain what Git branches are for.", "Write a two-line poem about the sea."]


def code_prompts(n: int) -> list[str]:
    """Beginnings of held-out standard-library functions (never seen in distillation)."""
    from thrifty_hf.distill import stdlib_files

    out = []
    for path in stdlib_files("heldout"):
        text = path.read_text(encoding="utf-8", errors="ignore")
        i = text.find("\ndef ")
        if i < 0 or len(text) < i + 700:
            continue
        out.append(text[i + 1: i + 500])
        if len(out) == n:
            break
    return out


def workloads(tokenizer, n: int) -> dict[str, list[list[int]]]:
    chat = [tokenizer.apply_chat_template([{"role": "user", "content": c}], tokenize=False,
                                          add_generation_prompt=True) for c in CHAT[:n]]
    return {"code": [tokenizer.encode(t) for t in code_prompts(n)],
            "chat": [tokenizer.encode(t, add_special_tokens=False) for t in chat]}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def sync():
    import torch

    if _cuda():
        torch.cuda.synchronize()


def fresh():
    import torch

    gc.collect()
    if _cuda():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_mib() -> float:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1) if _cuda() else 0.0


def thrifty_run(verifier, draft, gamma, prompts, batch, max_new, repeats, overlap=None,
                refill=False):
    """(tok/s, TAR, outputs) of thrifty decoding; warm-up (graph capture) excluded. ``refill``:
    all prompts through ``batch`` rows, each refilled as its output ends (continuous batching),
    instead of static batches of ``batch`` prompts."""
    from thrifty.speculative import SpeculativeDecoder

    dec = SpeculativeDecoder(verifier, draft, gamma if draft is not None else 0, overlap=overlap)
    dec.generate(prompts if refill else prompts[:batch], max_new_tokens=8, batch_size=batch)
    rates, tars, outs = [], [], {}
    for _ in range(repeats):
        if batch == 1:
            per = []
            for i, p in enumerate(prompts):
                sync()
                t = time.perf_counter()
                g = dec.generate([p], max_new_tokens=max_new)
                sync()
                per.append(g.metrics.new_tokens / (time.perf_counter() - t))
                tars.append(g.metrics.tar)
                outs[i] = g.token_ids[0]
            rates.append(statistics.median(per))
        else:
            step = len(prompts) if refill else batch  # one refilled run, or static batches
            for s in range(0, len(prompts), step):
                sync()
                t = time.perf_counter()
                g = dec.generate(prompts[s: s + step], max_new_tokens=max_new, batch_size=batch)
                sync()
                rates.append(g.metrics.new_tokens / (time.perf_counter() - t))
                tars.append(g.metrics.tar)
                outs.update({s + i: o for i, o in enumerate(g.token_ids)})
    return statistics.median(rates), statistics.mean(tars), [outs[i] for i in sorted(outs)]


def hf_run(model, prompts, max_new, eos, assistant=None, gamma=4, mode="eager"):
    """Median per-prompt tok/s and outputs of transformers greedy ``generate``.

    ``mode``: ``"eager"`` (a dynamic cache), ``"static"`` (``cache_implementation="static"``,
    which ``generate`` compiles on a GPU: the strongest transformers path), ``"lookup"``
    (prompt-lookup decoding, ``gamma`` tokens) or ``"assisted"`` (``assistant`` proposes
    ``gamma`` tokens a step, a constant schedule). The warm-up runs the longest prompt first,
    so the static cache is sized once for every prompt (transformers keeps the largest size it
    has seen) and the compiled decode step never recompiles while timing."""
    import torch

    kw = dict(do_sample=False, max_new_tokens=max_new, eos_token_id=list(eos),
              pad_token_id=list(eos)[0])
    if mode == "static":
        kw["cache_implementation"] = "static"
    elif mode == "lookup":
        kw["prompt_lookup_num_tokens"] = gamma
    elif mode == "assisted":
        assistant.generation_config.num_assistant_tokens = gamma
        assistant.generation_config.num_assistant_tokens_schedule = "constant"
        kw["assistant_model"] = assistant
    elif mode != "eager":
        raise ValueError(f"unknown transformers mode {mode!r}")
    longest = max(prompts, key=len)
    for _ in range(2 if mode == "static" else 1):  # compile, then one run on the compiled step
        model.generate(torch.tensor([longest], device=model.device), **kw)
    per, outs = [], []
    for p in prompts:
        ids = torch.tensor([p], device=model.device)
        sync()
        t = time.perf_counter()
        out = model.generate(ids, **kw)
        sync()
        new = out[0, len(p):].tolist()
        per.append(len(new) / (time.perf_counter() - t))
        outs.append(new)
    return statistics.median(per), outs


def cache_len(longest: int, max_new_tokens: int, lookaheads=()) -> int:
    """Static cache slots a run needs: its longest prompt, the new tokens and the widest of
    ``lookaheads`` (an int γ or a tree's nodes), rounded up to 256 so that runs of nearby
    lengths share captured graphs (the engine resets a row whose output is done before it
    outgrows that)."""
    widest = max((getattr(x, "nodes", x) for x in lookaheads), default=0)
    return -(-(longest + max_new_tokens + widest + 16) // 256) * 256


def fast_models(model: str, drafts: str, device: str = "cuda", dtype: str = "bfloat16",
                max_len: int = 1024, compile: bool = False, vocabs=(0,)):
    """(tokenizer, hf-fast verifier, {name: fast draft}), by default in bf16 on the GPU, for the
    benchmarks that time thrifty alone (``drafts``: comma-separated zoo names or folders);
    ``max_len``: the static cache's tokens per row; ``compile``: the option of hf-fast;
    ``vocabs``: each draft once per size of the hf-fast draft's ``vocab`` option, named
    ``NAME,vocab=N`` (0: every token, the plain name)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thrifty_hf.fast import FastVerifier, fast_draft
    from thrifty_hf.loading import load_draft_named
    from thrifty_hf.ranking import proposable_for
    from thrifty_hf.zoo import resolve

    path = resolve(model).path
    tok = AutoTokenizer.from_pretrained(path)
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()
    return tok, FastVerifier(hf, tok, max_len=max_len, compile=compile), {
        name + (f"{VOCAB}{v}" if v else ""): fast_draft(
            load_draft_named(name, hf), max_len=max_len, compile=compile,
            vocab=proposable_for(name, hf.config.vocab_size, v))
        for name in drafts.split(",") if name for v in vocabs}


VOCAB = ",vocab="
"""What a fast draft's name carries before the size of its proposable vocabulary."""


EXPAND = ",trees=expand"
"""The suffix of a fast draft's name when it grows EAGLE-2 trees (``trees="expand"``)."""


def expanding(drafts: dict, verifier_model, max_len: int, compile: bool = False) -> dict:
    """Each fast draft of ``drafts`` ({name: draft}) again, growing EAGLE-2 trees, as
    ``NAME,trees=expand``; its chains are the draft's own, so only its trees are worth timing."""
    from thrifty_hf.fast import FastDraft, FastFeatureDraft, fast_draft
    from thrifty_hf.loading import load_draft_named

    return {name + EXPAND: fast_draft(load_draft_named(name.split(VOCAB)[0], verifier_model),
                                      max_len=max_len, compile=compile, trees="expand",
                                      vocab=d.lm.proposable)
            for name, d in drafts.items() if isinstance(d, (FastDraft, FastFeatureDraft))}


def worth_timing(name: str, lookahead, siblings: bool = True) -> bool:
    """Whether draft ``name`` is worth running at ``lookahead`` (an int γ or a TreeShape): an
    expanding draft's chains are the draft's own, so it runs trees only; the other drafts run
    chains, and their sibling trees unless ``siblings`` is false."""
    if isinstance(lookahead, int):
        return not name.endswith(EXPAND)
    return siblings or name.endswith(EXPAND)


def agreeing(outs, reference) -> str:
    """``"k/n"``: how many of the n outputs equal their reference token for token."""
    return f"{sum(a == b for a, b in zip(outs, reference))}/{len(outs)}"


def strip(outs, eos):
    """Outputs cut after their first EOS, so that comparisons look at real tokens only."""
    res = []
    for o in outs:
        o = list(o)
        for i, t in enumerate(o):
            if t in eos:
                o = o[: i + 1]
                break
        res.append(o)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--drafts", required=True, help="comma-separated zoo names or folders")
    ap.add_argument("--names", default="", help="comma-separated labels for --drafts")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--hf-prompts", type=int, default=4, help="prompts for the slow HF runs")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--gammas", default="2,4,6")
    ap.add_argument("--gammas-b8", default="2,4")
    ap.add_argument("--repeats", type=int, default=2, help="passes over the prompts at batch 1")
    ap.add_argument("--repeats-b8", type=int, default=5, help="timed batches at batch 8")
    ap.add_argument("--exact-gamma", type=int, default=4, help="lookahead of the fp32 check")
    ap.add_argument("--workloads", default="code,chat",
                    help="which of code, chat (one per process keeps GPU memory low)")
    ap.add_argument("--out", default="gpu_speed.json")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thrifty_hf.audit import audit_divergences
    from thrifty_hf.fast import FastVerifier, fast_draft
    from thrifty_hf.loading import load_draft_named
    from thrifty_hf.models import eos_token_ids
    from thrifty_hf.zoo import resolve

    path = resolve(args.model).path
    tok = AutoTokenizer.from_pretrained(path)
    drafts = args.drafts.split(",")
    labels = args.names.split(",") if args.names else [Path(d).name for d in drafts]
    loads = {k: v for k, v in workloads(tok, args.prompts).items()
             if k in args.workloads.split(",")}
    res = {"device": torch.cuda.get_device_name() if _cuda() else "cpu", "torch": torch.__version__,
           "max_new_tokens": args.max_new_tokens, "rows": []}
    import transformers

    res["transformers"] = transformers.__version__

    def save():
        Path(args.out).write_text(json.dumps(res, indent=2))

    def hf(dtype):
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(args.device).eval()

    def row(**kw):
        res["rows"].append(kw)
        print(json.dumps(kw), flush=True)
        save()

    # --- fp32 exactness first, on a fresh GPU: every draft at --exact-gamma
    for wl, prompts in loads.items():
        fresh()
        model = hf(torch.float32)
        eos = eos_token_ids(model, tok)
        sub = prompts[: args.hf_prompts]
        _, hf_out = hf_run(model, sub, 64, eos)
        ver = FastVerifier(model, tok, max_len=1024)
        _, _, fast_out = thrifty_run(ver, None, 0, sub, 1, 64, 1)
        fast_s = strip(fast_out, eos)
        for label, name in zip(labels, drafts):
            dr = fast_draft(load_draft_named(name, model), max_len=1024)
            _, _, spec1 = thrifty_run(ver, dr, args.exact_gamma, sub, 1, 64, 1)
            _, _, spec_b = thrifty_run(ver, dr, args.exact_gamma, sub, len(sub), 64, 1)
            row(workload=wl, config="fp32 exactness", draft=label, gamma=args.exact_gamma,
                fast_vs_transformers=agreeing(fast_s, strip(hf_out, eos)),
                spec_b1_vs_target=agreeing(strip(spec1, eos), fast_s),
                spec_batched_vs_target=agreeing(strip(spec_b, eos), fast_s))
            del dr
        del ver, model
    bf16 = torch.bfloat16
    baseline = {}
    for wl, prompts in loads.items():
        # --- transformers generate, batch 1
        fresh()
        model = hf(bf16)
        eos = eos_token_ids(model, tok)
        rate, hf_out = hf_run(model, prompts[: args.hf_prompts], args.max_new_tokens, eos)
        row(workload=wl, config="transformers generate", batch=1, tok_s=round(rate, 1),
            peak_mib=peak_mib())
        baseline[(wl, "hf")] = rate
        del model
        # --- thrifty target-only and speculative, per batch
        for batch in (1, 8):
            fresh()
            model = hf(bf16)
            ver = FastVerifier(model, tok, max_len=1024)
            reps = args.repeats if batch == 1 else args.repeats_b8
            rate, _, base_out = thrifty_run(ver, None, 0, prompts, batch, args.max_new_tokens,
                                            reps)
            row(workload=wl, config="thrifty target-only", batch=batch, tok_s=round(rate, 1),
                peak_mib=peak_mib(), vs_transformers=round(rate / baseline[(wl, "hf")], 2))
            baseline[(wl, batch)] = (rate, base_out)
            del ver, model
            gammas = [int(g) for g in (args.gammas if batch == 1 else args.gammas_b8).split(",")]
            for label, name in zip(labels, drafts):
                fresh()
                model = hf(bf16)
                ver = FastVerifier(model, tok, max_len=1024)
                dr = fast_draft(load_draft_named(name, model), max_len=1024)
                for g in gammas:
                    fresh()
                    rate, tar, out = thrifty_run(ver, dr, g, prompts, batch,
                                                 args.max_new_tokens, reps)
                    same = sum(a == b for a, b in zip(strip(out, eos),
                                                      strip(base_out, eos)))
                    found = [] if same == len(out) else audit_divergences(
                        model, prompts, strip(base_out, eos), strip(out, eos))
                    row(workload=wl, config=f"thrifty spec {label}", draft=label, gamma=g,
                        batch=batch, tok_s=round(rate, 1), tar=round(tar, 3),
                        peak_mib=peak_mib(),
                        speedup=round(rate / baseline[(wl, batch)][0], 2),
                        identical=f"{same}/{len(out)}",
                        divergence_gaps=[round(d.gap, 3) for d in found],
                        all_near_ties=all(d.near_tie for d in found))
                del ver, dr, model
    # --- transformers assisted generation with the best batch-1 token draft per workload (a
    # feature draft needs the verifier's hidden states, which assisted generation cannot pass)
    for wl, prompts in loads.items():
        fresh()
        model = hf(bf16)
        ranked = sorted((r for r in res["rows"] if r["workload"] == wl and r.get("draft")
                         and r.get("batch") == 1 and "tok_s" in r), key=lambda r: -r["tok_s"])
        for best in ranked:
            assist = load_draft_named(drafts[labels.index(best["draft"])], model)
            if getattr(assist, "fc", None) is None:
                break
        else:
            row(workload=wl, config="transformers assisted",
                skipped="no token-only draft among --drafts")
            del model
            continue
        try:
            rate, out = hf_run(model, prompts[: args.hf_prompts], args.max_new_tokens, eos,
                               assistant=assist, gamma=best["gamma"], mode="assisted")
            base = baseline[(wl, 1)][1][: args.hf_prompts]
            row(workload=wl, config=f"transformers assisted {best['draft']}",
                draft=best["draft"], gamma=best["gamma"], batch=1, tok_s=round(rate, 1),
                peak_mib=peak_mib(), identical=agreeing(strip(out, eos), strip(base, eos)),
                thrifty_vs_assisted=round(best["tok_s"] / rate, 2))
        except Exception as exc:  # reported, not hidden: the table says it failed and why
            row(workload=wl, config="transformers assisted", error=repr(exc)[:300])
        del model
    save()


if __name__ == "__main__":
    main()
