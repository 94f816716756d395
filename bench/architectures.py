"""Speed per family: hf-fast target-only against transformers' static compiled `generate`.

Random weights of real shapes (the configs below, no download), bf16 on a GPU, batch 1 and 8,
``--max-new-tokens`` (128) greedy tokens from random prompts of ``--prompt-len`` tokens, every
run forced to its full length (no end of sequence). In one process, per family:

- ``hf-fast``: thrifty target-only on the static cache (the body the fast path picks is
  printed: ``fused`` or ``generic``), CUDA graphs;
- ``static``: transformers ``generate(cache_implementation="static")``, which compiles the
  decoding forward on CUDA (``torch.compile``, mode ``reduce-overhead``; whether it compiled is
  recorded), the strongest transformers baseline;
- ``eager``: transformers ``generate`` with its dynamic cache, for reference.

Each configuration is warmed up (graph capture, compilation), then timed ``--repeats`` times,
the configurations interleaved so that drift in clocks or temperature hits all alike; the
median of each is reported with the ratio hf-fast / static. ``--json FILE`` writes everything
with machine, versions and date. ``--smoke`` runs tiny configs on the CPU with a few tokens, to
check the script itself; its timings mean nothing.

``--floors`` adds, per family and batch, how far hf-fast's pass is from two floors: the
bandwidth floor (the weights' bytes over this GPU's copy bandwidth, measured here) and the
graph-replay floor (a CUDA graph of as many trivial kernels as one hf-fast pass launches,
replayed: the cost of the kernel count alone); kernels per pass and their summed device time
come from the profiler, as the difference between two run lengths (prefill cancels out).

    python bench/architectures.py --json architectures.json
    python bench/architectures.py --families smollm2-135m --floors --batches 1
    python bench/architectures.py --smoke
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_speed import fresh, peak_mib, sync  # noqa: E402

REAL: dict[str, tuple[str, dict]] = {
    "smollm2-135m": ("LlamaConfig", dict(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, head_dim=64, rms_norm_eps=1e-5,
        max_position_embeddings=8192, tie_word_embeddings=True,
        rope_parameters=dict(rope_type="default", rope_theta=100000.0))),
    "qwen2.5-0.5b": ("Qwen2Config", dict(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, rms_norm_eps=1e-6,
        max_position_embeddings=32768, tie_word_embeddings=True,
        rope_parameters=dict(rope_type="default", rope_theta=1000000.0))),
    "llama-3.2-1b": ("LlamaConfig", dict(
        vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, rms_norm_eps=1e-5,
        max_position_embeddings=131072, tie_word_embeddings=True,
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=32.0,
                             low_freq_factor=1.0, high_freq_factor=4.0,
                             original_max_position_embeddings=8192))),
    "gemma-3-1b": ("Gemma3TextConfig", dict(
        vocab_size=262144, hidden_size=1152, intermediate_size=6912, num_hidden_layers=26,
        num_attention_heads=4, num_key_value_heads=1, head_dim=256, rms_norm_eps=1e-6,
        max_position_embeddings=32768, sliding_window=512, query_pre_attn_scalar=256,
        hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
        layer_types=["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                     for i in range(26)])),
    "qwen1.5-moe-a2.7b": ("Qwen2MoeConfig", dict(
        vocab_size=151936, hidden_size=2048, intermediate_size=5632, moe_intermediate_size=1408,
        shared_expert_intermediate_size=5632, num_experts=60, num_experts_per_tok=4,
        decoder_sparse_step=1, num_hidden_layers=24, num_attention_heads=16,
        num_key_value_heads=16, rms_norm_eps=1e-6, max_position_embeddings=8192,
        tie_word_embeddings=False, rope_parameters=dict(rope_type="default",
                                                        rope_theta=1000000.0))),
}
"""Family -> (transformers config class, the published model's shape)."""

SMOKE_SHAPE = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                   moe_intermediate_size=32, shared_expert_intermediate_size=64, num_experts=4,
                   num_experts_per_tok=2, sliding_window=16)
"""What ``--smoke`` puts over every config: a tiny model of the same family."""


def config(name: str, smoke: bool):
    import transformers

    cls, kwargs = REAL[name]
    kwargs = dict(kwargs)
    if smoke:
        kwargs.update({k: v for k, v in SMOKE_SHAPE.items()
                       if k in kwargs or k in ("sliding_window", "head_dim")
                       and name.startswith("gemma")})
        if "layer_types" in kwargs:
            kwargs["layer_types"] = kwargs["layer_types"][4:6]
    return getattr(transformers, cls)(**kwargs)


def build(name: str, device: str, dtype: str, smoke: bool):
    """A randomly initialised model of ``name``'s shape, made on ``device`` (no host copy)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config(name, smoke), dtype=getattr(torch, dtype))
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.eval()


def machine(device: str) -> dict:
    import torch
    import transformers

    import thrifty

    return {"device": torch.cuda.get_device_name() if device == "cuda" else platform.processor()
            or platform.machine(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "thrifty": thrifty.__version__, "python": platform.python_version(),
            "cuda": torch.version.cuda,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def timed(fn) -> float:
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def family_runs(model, prompts, max_new: int, max_len: int, body: str, compile: bool):
    """{config: zero-argument function that generates ``max_new`` tokens for every prompt and
    returns the new tokens}, and {hf-fast config: its verifier} (``compile``: also
    ``hf-fast+compile``, the static forward compiled by ``torch.compile`` before graph
    capture)."""
    import torch

    from thrifty.speculative import SpeculativeDecoder
    from thrifty.testing.toy import ToyTokenizer  # decodes nothing here; ids are the output
    from thrifty_hf.fast import FastVerifier

    def fast_run(**options):
        fv = FastVerifier(model, ToyTokenizer(), max_len=max_len, eos_token_ids=(), body=body,
                          **options)
        dec = SpeculativeDecoder(fv)
        return fv, lambda: dec.generate(prompts, max_new_tokens=max_new).token_ids

    fv, fast = fast_run()
    ids = torch.tensor(prompts, device=model.device)
    kw = dict(max_new_tokens=max_new, min_new_tokens=max_new, do_sample=False)

    def static():
        return model.generate(ids, cache_implementation="static", **kw)[:, ids.shape[1]:].tolist()

    def eager():
        return model.generate(ids, **kw)[:, ids.shape[1]:].tolist()

    runs = {"hf-fast": fast, "static": static, "eager": eager}
    verifiers = {"hf-fast": fv}
    if compile:
        verifiers["hf-fast+compile"], runs["hf-fast+compile"] = fast_run(compile=True)
    return runs, verifiers


def device_work(fn) -> tuple[int, float, Counter]:
    """(kernels and copies the GPU ran, their summed time in ms, ms by kernel name) while
    ``fn`` ran."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        sync()
    work = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    by_name: Counter = Counter()
    for e in work:
        by_name[e.name] += e.time_range.elapsed_us() / 1e3
    return len(work), sum(by_name.values()), by_name


def graph_floor_ms(kernels: int, replays: int = 50) -> float:
    """Replay time of a CUDA graph of ``kernels`` serial one-element kernels: what launching
    that many kernels from a graph costs with no work in them."""
    import torch

    x = torch.zeros(1, device="cuda")
    x.add_(1)  # kernel loaded before capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(kernels):
            x.add_(1)
    graph.replay()
    return timed(lambda: [graph.replay() for _ in range(replays)]) * 1e3 / replays


def copy_bandwidth(nbytes: int = 2**30) -> float:
    """This GPU's device-to-device copy bandwidth in bytes/s (read + write counted)."""
    import torch

    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    seconds = statistics.median(timed(lambda: dst.copy_(src)) for _ in range(10))
    return 2 * nbytes / seconds


def weight_bytes(model) -> int:
    """The bytes a pass must read at least: every weight, but of a mixture of experts only the
    share of top-k experts a token routes to (every row may pick the same ones)."""
    cfg = model.config
    experts = getattr(cfg, "num_experts", None) or getattr(cfg, "num_local_experts", None)
    share = cfg.num_experts_per_tok / experts if experts else 1.0
    return round(sum(p.numel() * p.element_size() * (share if ".experts." in name else 1.0)
                     for name, p in model.named_parameters()))


def floors(model, fv, prompts, rate: float) -> dict:
    """hf-fast's time per pass (target-only: one pass a token) against its floors."""
    from thrifty.speculative import SpeculativeDecoder

    dec = SpeculativeDecoder(fv)  # the verifier's graphs are captured already
    short, long = 16, 48
    (k0, ms0, names0), (k1, ms1, names1) = (
        device_work(lambda n=n: dec.generate(prompts, max_new_tokens=n)) for n in (short, long))
    kernels = round((k1 - k0) / (long - short))
    names1.subtract(names0)  # the passes' kernels, without the prefill's
    if kernels < 1:
        raise SystemExit("the profiler saw no kernels in hf-fast's passes (CUPTI unavailable?)")
    weights = weight_bytes(model)
    return dict(pass_ms=round(len(prompts) * 1e3 / rate, 3), kernels_per_pass=kernels,
                busy_ms=round((ms1 - ms0) / (long - short), 3),
                graph_floor_ms=round(graph_floor_ms(kernels), 3),
                bandwidth_floor_ms=round(weights / copy_bandwidth() * 1e3, 3),
                top_kernels_ms={name[:80]: round(ms / (long - short), 4)
                                for name, ms in names1.most_common(8)})


def measure(name: str, args) -> list[dict]:
    import torch

    fresh()
    model = build(name, args.device, args.dtype, args.smoke)
    params = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(1)
    rows = []
    for batch in args.batches:
        prompts = torch.randint(1, model.config.vocab_size, (batch, args.prompt_len),
                                generator=gen).tolist()
        runs, verifiers = family_runs(model, prompts, args.max_new_tokens,
                                      args.prompt_len + args.max_new_tokens + 8, args.body,
                                      args.compile)
        outs = {}
        for cfg, fn in runs.items():  # warm-up: graph capture, compilation
            outs[cfg] = fn()
        times: dict[str, list[float]] = {cfg: [] for cfg in runs}
        for _ in range(args.repeats):
            for cfg, fn in runs.items():
                if cfg == "eager" and len(times[cfg]) >= args.eager_repeats:
                    continue
                times[cfg].append(timed(fn))
        tokens = batch * args.max_new_tokens
        rate = {cfg: tokens / statistics.median(t) for cfg, t in times.items()}
        row = dict(family=name, params_m=round(params / 1e6, 1), batch=batch,
                   body=verifiers["hf-fast"].lm.body.kind,
                   compiled=hasattr(model, "_compiled_call"),
                   tok_s={k: round(v, 1) for k, v in rate.items()},
                   fast_vs_static=round(rate["hf-fast"] / rate["static"], 3),
                   **({"compiled_fast_vs_static": round(rate["hf-fast+compile"]
                                                        / rate["static"], 3)}
                      if args.compile else {}),
                   fast_vs_eager=round(rate["hf-fast"] / rate["eager"], 3),
                   same_tokens_as_static=sum(a == b for a, b in zip(outs["hf-fast"],
                                                                    outs["static"])),
                   peak_mib=peak_mib(), repeats={k: len(v) for k, v in times.items()})
        if args.floors:
            row["floors"] = {cfg: floors(model, fv, prompts, rate[cfg])
                             for cfg, fv in verifiers.items()}
            for cfg, floor in row["floors"].items():
                print(f"{name:>18} b{batch}  {cfg} floors: {floor}", flush=True)
        rows.append(row)
        print(f"{name:>18} b{batch}  {row['body']:>7}  hf-fast {rate['hf-fast']:9.1f}  "
              f"static {rate['static']:9.1f}{'' if row['compiled'] else ' (not compiled)'}  "
              f"eager {rate['eager']:8.1f} tok/s  hf-fast/static {row['fast_vs_static']:.2f}x  "
              f"same as static {row['same_tokens_as_static']}/{batch}"
              + (f"  hf-fast+compile/static {row['compiled_fast_vs_static']:.2f}x"
                 if args.compile else ""), flush=True)
        del runs, verifiers
        fresh()
    del model
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default=",".join(REAL), help="comma-separated, of: "
                    + ", ".join(REAL))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of each configuration")
    ap.add_argument("--eager-repeats", type=int, default=2, help="of the slow eager reference")
    ap.add_argument("--body", default="auto", choices=["auto", "fused", "generic"],
                    help="hf-fast body (auto: fused Llama where its allow-list holds)")
    ap.add_argument("--compile", action="store_true",
                    help="also time hf-fast with its static forward torch.compile'd")
    ap.add_argument("--floors", action="store_true",
                    help="also hf-fast's pass against its bandwidth and graph-replay floors")
    ap.add_argument("--json", default="", help="write the results to this file")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny configs on the CPU, 4 tokens: checks the script, times nothing")
    args = ap.parse_args()
    if args.smoke:
        args.device, args.dtype, args.max_new_tokens, args.prompt_len = "cpu", "float32", 4, 8
        args.repeats, args.eager_repeats = 1, 1
    args.batches = [int(b) for b in args.batches.split(",")]
    if args.floors and args.device != "cuda":
        ap.error("--floors measures CUDA graphs and copy bandwidth: it needs --device cuda")
    info = machine(args.device)
    print(" | ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    rows = []
    for name in args.families.split(","):
        rows += measure(name, args)
        if args.json:  # after each family: a run stopped at a time limit keeps what it measured
            Path(args.json).write_text(json.dumps({"machine": info, "args": vars(args),
                                                   "rows": rows}, indent=2))
    worst = min(r["fast_vs_static"] for r in rows)
    print(f"lowest hf-fast / static ratio: {worst:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
