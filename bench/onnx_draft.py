"""ONNX Runtime vs PyTorch eager for the shipped SmolLM2 drafts: draft step latency and
end-to-end speculative decoding throughput, measured side by side in one process.

For each draft and batch size it measures, alternating the two runtimes repeat by repeat (so
that a noisy machine slows both alike) and reporting medians:

* ``step``: one single-token draft forward with a KV cache (the unit of autoregressive
  drafting), through each adapter's own cache bookkeeping (``CachedLM.append`` for PyTorch,
  ``OnnxDraft.forward`` for onnxruntime);
* ``propose``: one ``propose(γ)`` + ``commit`` as the engine calls it;
* end-to-end greedy speculative decoding on SmolLM2-135M with each draft, and target-only
  decoding, in tokens per second (outputs are checked to be identical).

    python bench/onnx_draft.py --threads 2 --batches 1,4
    python bench/onnx_draft.py --device cuda            # GPU: needs onnxruntime-gpu

Writes a Markdown report (``--out``, default docs/benchmarks/onnx_draft.md).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

PROMPTS = [
    "def quicksort(arr):\n    if len(arr) <= 1:\n        return arr\n    pivot = arr[0]\n",
    "The history of the Roman Empire",
    "import numpy as np\n\ndef softmax(x):\n    \"\"\"Numerically stable softmax.\"\"\"\n",
    "Here are three tips for staying healthy:\n1.",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n",
    "Photosynthesis is the process by which plants",
    "def is_prime(n: int) -> bool:\n    if n < 2:\n        return False\n",
    "Once upon a time, in a small village by the sea, there lived",
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--drafts", default="",
                   help="comma-separated draft names or folders (default: every shipped draft)")
    p.add_argument("--batches", default="1,4")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for both runtimes")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--gamma", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--step-repeats", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3, help="end-to-end repeats per variant")
    p.add_argument("--out", default="docs/benchmarks/onnx_draft.md")
    return p.parse_args(argv)


def median_ms(samples):
    return 1000 * statistics.median(samples)


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sync(device):
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def step_latency(torch_draft, onnx_draft, prompts, args):
    """Median ms of one single-token forward, and of one propose(γ)+commit, per runtime."""
    import numpy as np
    import torch

    from thrifty.speculative import Sampling

    batch = len(prompts)
    for d in (torch_draft, onnx_draft):
        d.start(prompts)
        prop = d.propose(args.gamma, Sampling(), None)  # prefill, then steady state
        d.commit(torch.full((batch,), args.gamma - 1), prop.tokens[:, 0].cpu())
    tok = prop.tokens[:, :1].cpu()
    ones = torch.ones(batch, dtype=torch.long)
    steps = {"torch": [], "onnx": []}
    proposes = {"torch": [], "onnx": []}
    real, column = np.ones((batch, 1), dtype=bool), np.zeros(1, dtype=np.int64)
    lm = torch_draft.lm
    for _ in range(args.step_repeats):
        steps["torch"].append(timed(lambda: (lm.append(tok.to(lm.device), ones),
                                             sync(args.device))))
        steps["onnx"].append(timed(lambda: onnx_draft.forward(tok.numpy(), real, column)))
    for d in (torch_draft, onnx_draft):  # the appends above are not part of any row
        d.start(prompts)
        d.propose(args.gamma, Sampling(), None)
        d.commit(torch.full((batch,), args.gamma - 1), prop.tokens[:, 0].cpu())
    for _ in range(args.step_repeats):
        for key, d in (("torch", torch_draft), ("onnx", onnx_draft)):
            t0 = time.perf_counter()
            p = d.propose(args.gamma, Sampling(), None)
            d.commit(torch.full((batch,), args.gamma // 2), p.tokens[:, 0].cpu())
            sync(args.device)
            proposes[key].append(time.perf_counter() - t0)
    return ({k: median_ms(v) for k, v in steps.items()},
            {k: median_ms(v) for k, v in proposes.items()})


def end_to_end(verifier, drafts, prompts, args):
    """Median tok/s per variant (None = target-only); the runs must agree token for token."""
    from thrifty.speculative import SpeculativeDecoder

    speeds = {name: [] for name in drafts}
    outputs, tar = {}, {}
    for _ in range(args.repeats):
        for name, draft in drafts.items():
            dec = SpeculativeDecoder(verifier, draft, args.gamma if draft else None)
            out = dec.generate(prompts, max_new_tokens=args.max_new_tokens)
            speeds[name].append(out.metrics.tokens_per_second)
            outputs[name], tar[name] = out.token_ids, out.metrics.tar
    reference = outputs["target-only"]
    same = {name: ids == reference for name, ids in outputs.items()}
    return {n: statistics.median(v) for n, v in speeds.items()}, tar, same


def main(argv=None) -> int:
    args = parse_args(argv)
    import onnxruntime as ort
    import torch
    import transformers

    import thrifty
    from thrifty_hf.models import make_draft as make_torch_draft
    from thrifty_hf.models import make_verifier
    from thrifty_hf.zoo import shipped_drafts
    from thrifty_onnx.factory import make_draft as make_onnx_draft

    torch.set_num_threads(args.threads)
    names = [d for d in args.drafts.split(",") if d] or list(shipped_drafts())
    if not names:
        sys.exit("no shipped drafts found in thrifty_hf/zoo_drafts; pass --drafts NAME_OR_DIR")
    batches = [int(b) for b in args.batches.split(",")]
    load_before = os.getloadavg()
    verifier = make_verifier("smollm2-135m", device=args.device, dtype="float32")
    provider = "cuda" if args.device == "cuda" else "cpu"
    step_rows, e2e_rows = [], []
    for name in names:
        torch_draft = make_torch_draft(verifier, name, device=args.device, dtype="float32")
        onnx_draft = make_onnx_draft(verifier, name, providers=provider,
                                     intra_op_threads=args.threads, inter_op_threads=1)
        label = Path(name).name
        for batch in batches:
            prompts = [verifier.tokenizer.encode(p) for p in PROMPTS[:batch]]
            step, propose = step_latency(torch_draft, onnx_draft, prompts, args)
            step_rows.append((label, batch, step["torch"], step["onnx"],
                              propose["torch"], propose["onnx"]))
            print(f"{label} batch {batch}: step torch {step['torch']:.2f} ms, onnx "
                  f"{step['onnx']:.2f} ms ({step['torch'] / step['onnx']:.2f}x); propose("
                  f"{args.gamma}) torch {propose['torch']:.1f} ms, onnx {propose['onnx']:.1f} ms "
                  f"({propose['torch'] / propose['onnx']:.2f}x)", flush=True)
            speeds, tar, same = end_to_end(
                verifier, {"target-only": None, "torch": torch_draft, "onnx": onnx_draft},
                [PROMPTS[i % len(PROMPTS)] for i in range(batch)], args)
            e2e_rows.append((label, batch, speeds, tar, same))
            print(f"{label} batch {batch}: tok/s target-only {speeds['target-only']:.1f}, "
                  f"torch draft {speeds['torch']:.1f}, onnx draft {speeds['onnx']:.1f} "
                  f"({speeds['onnx'] / speeds['torch']:.2f}x); TAR {tar['onnx']:.2f}; "
                  f"identical outputs: {all(same.values())}", flush=True)
    load_after = os.getloadavg()

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                if ln.startswith("model name")), platform.processor()) \
        if Path("/proc/cpuinfo").exists() else platform.processor()
    command = "python bench/onnx_draft.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        "# ONNX Runtime vs PyTorch eager drafts (SmolLM2-135M)",
        "",
        f"- date: {datetime.date.today()}",
        f"- machine: {args.device.upper()}, {cpu}, {os.cpu_count()} cores "
        f"(shared: load average {load_before[0]:.1f} at start, {load_after[0]:.1f} at end), "
        f"{args.threads} threads per runtime",
        f"- versions: thrifty {thrifty.__version__}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, onnxruntime {ort.__version__}, Python "
        f"{platform.python_version()}",
        f"- command: `{command}`",
        f"- settings: float32, greedy, γ = {args.gamma}, {args.max_new_tokens} new tokens, "
        f"medians of {args.step_repeats} step repeats and {args.repeats} end-to-end repeats, "
        f"runtimes alternated repeat by repeat",
        "",
        "## Draft step latency",
        "",
        "`step`: one single-token forward with a KV cache; `propose`: one propose(γ) + commit.",
        "",
        "| draft | batch | step PyTorch ms | step ONNX ms | speed-up | propose PyTorch ms "
        "| propose ONNX ms | speed-up |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, batch, st, so, pt, po in step_rows:
        lines.append(f"| {label} | {batch} | {st:.2f} | {so:.2f} | {st / so:.2f}x | {pt:.1f} | "
                     f"{po:.1f} | {pt / po:.2f}x |")
    lines += [
        "",
        "## End-to-end speculative decoding",
        "",
        "| draft | batch | target-only tok/s | PyTorch draft tok/s | ONNX draft tok/s "
        "| ONNX / PyTorch | TAR | outputs identical |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for label, batch, speeds, tar, same in e2e_rows:
        lines.append(f"| {label} | {batch} | {speeds['target-only']:.1f} | {speeds['torch']:.1f} "
                     f"| {speeds['onnx']:.1f} | {speeds['onnx'] / speeds['torch']:.2f}x | "
                     f"{tar['onnx']:.2f} | {'yes' if all(same.values()) else 'NO'} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
