"""``thrifty demo``: speculative decoding of SmolLM2-135M with the n-gram draft on bundled code
and prose prompts, on the CPU, against target-only decoding of the same prompts.

The two are measured interleaved, prompt by prompt, in alternating order, and compared by the
ratio of their median speeds: a machine whose load changes during the demo slows both sides of
each pair alike, so the printed speedup is the draft's, not the load's.
"""

from __future__ import annotations

import json
import statistics
import sys
import warnings
from importlib import resources

from thrifty.errors import UnknownNameError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def bundled_prompts() -> dict[str, list[str]]:
    """The demo's prompts by kind (``code``, ``prose``)."""
    return tomllib.loads(resources.files("thrifty_hf").joinpath("prompts.toml").read_text())


def configure(p) -> None:
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--lookahead", type=int, default=3)
    p.add_argument("--json", action="store_true")


def interleaved(pipe, prompts: list[str], max_new_tokens: int) -> tuple[list, list]:
    """Target-only and speculative generations of each prompt, one right after the other, the
    order alternating from prompt to prompt (so neither side always runs first)."""
    base, spec = [], []
    for i, prompt in enumerate(prompts):
        for draft in ((None, 0) if i % 2 == 0 else (0, None)):
            out = pipe.decoder(draft).generate([prompt], max_new_tokens=max_new_tokens)
            (base if draft is None else spec).append(out)
    return base, spec


def summary(kind: str, base: list, spec: list) -> dict:
    """One row of the demo's table: median speeds, their ratio, TAR, identical outputs."""
    from thrifty.speculative.metrics import Metrics

    base_tok_s = statistics.median(g.metrics.tokens_per_second for g in base)
    spec_tok_s = statistics.median(g.metrics.tokens_per_second for g in spec)
    return {
        "prompts": kind,
        "target_only_tok_s": round(base_tok_s, 2),
        "speculative_tok_s": round(spec_tok_s, 2),
        "speedup": round(spec_tok_s / base_tok_s, 3),
        "tar": round(Metrics.merged([g.metrics for g in spec]).tar, 3),
        "identical_outputs": sum(a.token_ids == b.token_ids for a, b in zip(spec, base)),
        "n": len(spec),
    }


def run(args) -> int:
    from thrifty.pipeline import pipeline

    from .zoo import quiet_transformers

    try:
        pipe = pipeline(verifier=("hf", {"model": "smollm2-135m", "device": "cpu",
                                         "dtype": "float32"}),
                        drafts=[("ngram", {})], lookahead=args.lookahead)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{exc} The demo needs the thrifty-hf and thrifty-ngram "
                               f"plugins: `make demo` installs them.") from exc
    print("loading SmolLM2-135M-Instruct (fp32, CPU) ...", file=sys.stderr, flush=True)
    rows = []
    with warnings.catch_warnings(), quiet_transformers():
        # the demo shows thrifty's output; a library's deprecation notes are for developers
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        prompts = bundled_prompts()
        first = next(iter(prompts.values()))[0]
        interleaved(pipe, [first, first], 4)  # load the model and warm up both paths, untimed
        for kind, texts in prompts.items():
            base, spec = interleaved(pipe, texts, args.max_new_tokens)
            rows.append(summary(kind, base, spec))
            if not args.json:
                sample = spec[0].texts[0].strip().splitlines()[:2]
                print(f"[{kind}] first continuation: {' / '.join(sample)}", flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"\nSmolLM2-135M + n-gram draft (γ={args.lookahead}), batch 1, "
          f"{args.max_new_tokens} new tokens per prompt, CPU fp32, median over prompts, "
          f"target-only and speculative interleaved:")
    for r in rows:
        print(f"  {r['prompts']:6s} target-only {r['target_only_tok_s']:7.1f} tok/s   speculative "
              f"{r['speculative_tok_s']:7.1f} tok/s   speedup {r['speedup']:.2f}x   TAR "
              f"{r['tar']:.2f}   identical {r['identical_outputs']}/{r['n']}")
    return 0
