"""Record a real energy/latency surface on a GPU: SmolLM2-135M decoding through thrifty's
speculative pipeline over the software knobs batch size × dtype × lookahead × draft, energy from
the NVML meter (read-only: no clocks are changed).

Each configuration: one warm-up ``generate``, then ``generate`` repeated inside one meter window
of at least ``--min-seconds``. Rows are appended (and flushed) as they are measured, in a seeded
shuffled order, so a ``--max-minutes`` budget or a crash leaves an evenly spread partial surface.
Lookahead 0 is target-only decoding: it is measured once per (batch, dtype) and written for every
draft name (the draft is unused), so the table stays a full product.

    python bench/record_surface.py --device cuda --max-minutes 8 \\
        --out data/surfaces/h100-smollm2-135m.csv
    python bench/optimizers.py --surfaces h100-smollm2-135m      # tune it by replay

Columns: the knobs, ``energy`` (J per generated token), ``latency`` (s per generated token of one
sequence: wall time / tokens per row), and diagnostics.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import platform
import random
import sys
import time
from pathlib import Path

PROMPTS = [
    "The history of the printing press begins",
    "def fibonacci(n):\n    ",
    "Here is a short recipe for tomato soup:",
    "Explain why the sky is blue in simple terms.",
    "Once upon a time, in a village by the sea,",
    "The main differences between TCP and UDP are",
    "import numpy as np\n\ndef normalize(x):",
    "Write a haiku about autumn leaves.",
    "The three laws of thermodynamics state that",
    "To install the package, first run",
    "Q: What is the capital of Australia?\nA:",
    "A good night's sleep matters because",
    "The quick brown fox",
    "In 1969, the Apollo 11 mission",
    "class Stack:\n    def __init__(self):",
    "My favourite board games are",
]
KNOBS = ["batch", "dtype", "draft", "lookahead"]


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="data/surfaces/h100-smollm2-135m.csv")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--verifier", default="hf", choices=["hf", "hf-fast"],
                    help="verifier and draft plugin (hf-fast: static cache and CUDA graphs)")
    ap.add_argument("--batch", default="1,4,16")
    ap.add_argument("--dtype", default="float32,bfloat16,float16")
    ap.add_argument("--lookahead", default="0,1,2,4")
    ap.add_argument("--drafts", default="smollm2-draft-l1,smollm2-draft-l2,smollm2-draft-l4,"
                                        "smollm2-draft-wide,ngram")
    ap.add_argument("--default", default="batch=1,dtype=bfloat16,lookahead=0",
                    help="the untuned configuration (its draft is the first draft)")
    ap.add_argument("--meter", default="nvml", help="energy meter NAME[:k=v;k=v]")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--min-seconds", type=float, default=1.0,
                    help="shortest meter window (NVML's counter updates every ~20-100 ms)")
    ap.add_argument("--max-minutes", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    import thrifty
    from thrifty.errors import ThriftyError
    from thrifty.tuning.cli import parse_ref

    deadline = time.monotonic() + 60 * args.max_minutes
    batches, dtypes, lookaheads, drafts = (ints(args.batch), names(args.dtype),
                                           ints(args.lookahead), names(args.drafts))
    meter_name, meter_options = parse_ref(args.meter)
    meter = thrifty.registry().energy_meter(meter_name).build(**meter_options)
    refs = [("ngram", {}) if d == "ngram" else (args.verifier, {"model": d}) for d in drafts]

    def build(dtype, refs):
        return thrifty.pipeline(verifier=(args.verifier, {"model": args.model,
                                                          "device": args.device,
                                                          "dtype": dtype}), drafts=refs)

    probe = build(dtypes[0], refs)      # drop drafts that do not load, before measuring
    for i, name in reversed(list(enumerate(drafts))):
        try:
            probe.draft(i)
        except ThriftyError as exc:
            print(f"skipping draft {name}: {exc}", file=sys.stderr)
            del drafts[i], refs[i]
    del probe
    pipes = {dt: build(dt, refs) for dt in dtypes}
    if not drafts:
        print("no draft could be loaded", file=sys.stderr)
        return 1

    # one measurement per distinct decoder: lookahead 0 ignores the draft
    work = [(b, dt, None, 0) for b, dt in itertools.product(batches, dtypes)] if 0 in lookaheads \
        else []
    work += [(b, dt, d, g) for b, dt, d, g in itertools.product(batches, dtypes, drafts,
                                                                  lookaheads) if g > 0]
    default = dict(item.split("=") for item in args.default.split(","))
    first = [w for w in work if str(w[0]) == default["batch"] and w[1] == default["dtype"]
             and w[3] == int(default["lookahead"])]
    rest = [w for w in work if w not in first]
    random.Random(args.seed).shuffle(rest)
    work = first + rest   # the default first: the surface is useless without it

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    header = [f"# knobs: {','.join(KNOBS)}",
              f"# default: batch={default['batch']},dtype={default['dtype']},"
              f"draft={Path(drafts[0]).name},"
              f"lookahead={default['lookahead']}",
              "# units: energy=J per generated token, latency=s per generated token of one "
              "sequence",
              f"# device: {gpu}; verifier {args.verifier}; torch {torch.__version__}; "
              f"thrifty {thrifty.__version__}; "
              f"{time.strftime('%Y-%m-%d %H:%M')}",
              f"# command: python {' '.join(sys.argv)}"]
    columns = KNOBS + ["energy", "latency", "tokens_per_s", "tar", "watts", "joules", "seconds",
                       "tokens", "meter"]
    done = 0
    with out.open("w", newline="") as fh:
        fh.write("\n".join(header) + "\n")
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        for batch, dtype, draft, gamma in work:
            if time.monotonic() > deadline:
                print(f"budget of {args.max_minutes} min spent after {done} of {len(work)} "
                      f"measurements", file=sys.stderr)
                break
            decoder = pipes[dtype].decoder(None if draft is None else drafts.index(draft),
                                           lookahead=gamma)
            prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
            decoder.generate(prompts, max_new_tokens=args.max_new_tokens)     # warm-up
            torch.cuda.synchronize() if args.device.startswith("cuda") else None
            tokens, tars = 0, []
            meter.start()
            begin = time.perf_counter()
            while time.perf_counter() - begin < args.min_seconds:
                result = decoder.generate(prompts, max_new_tokens=args.max_new_tokens)
                tokens += result.metrics.new_tokens
                tars.append(result.metrics.tar)
            torch.cuda.synchronize() if args.device.startswith("cuda") else None
            reading = meter.stop()
            row = {"batch": batch, "dtype": dtype, "lookahead": gamma,
                   "energy": reading.joules / tokens,
                   "latency": reading.seconds / (tokens / batch),
                   "tokens_per_s": tokens / reading.seconds, "tar": sum(tars) / len(tars),
                   "watts": reading.joules / reading.seconds, "joules": reading.joules,
                   "seconds": reading.seconds, "tokens": tokens,
                   "meter": f"{reading.source} res {reading.resolution_j:g} J"
                            + (" wrapped" if reading.wrapped else "")}
            for name in ([draft] if draft is not None else drafts):
                writer.writerow({**row, "draft": Path(name).name})  # a folder's name
            fh.flush()
            done += 1
            print(f"[{done}/{len(work)}] batch {batch} {dtype} {draft or 'target-only'} "
                  f"γ={gamma}: {1000 * row['energy']:.2f} mJ/token, "
                  f"{1000 * row['latency']:.2f} ms/token, TAR {row['tar']:.2f}", flush=True)
    print(f"wrote {out}; tune it with: python bench/optimizers.py --surfaces {out.stem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
