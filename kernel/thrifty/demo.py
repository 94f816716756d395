"""``thrifty demo``: speculative decoding of SmolLM2-135M with the n-gram draft on bundled code
and prose prompts, on the CPU, against target-only decoding of the same prompts."""

from __future__ import annotations

import json
import sys
from importlib import resources

from .errors import UnknownNameError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def bundled_prompts() -> dict[str, list[str]]:
    """The demo's prompts by kind (``code``, ``prose``)."""
    return tomllib.loads(resources.files("thrifty.data").joinpath("prompts.toml").read_text())


def run_demo(args) -> int:
    from .pipeline import pipeline
    from .speculative.metrics import Metrics

    try:
        pipe = pipeline(verifier=("hf", {"model": "smollm2-135m", "device": "cpu",
                                         "dtype": "float32"}),
                        drafts=[("ngram", {})], lookahead=args.lookahead)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{exc} The demo needs the thrifty-hf and thrifty-ngram "
                               f"plugins: `make demo` installs them.") from exc
    print("loading SmolLM2-135M-Instruct (fp32, CPU) ...", flush=True)
    pipe.verifier  # load once, before timing  # noqa: B018
    rows = []
    for kind, prompts in bundled_prompts().items():
        base = [pipe.decoder(None).generate([p], max_new_tokens=args.max_new_tokens)
                for p in prompts]
        spec = [pipe.decoder(0).generate([p], max_new_tokens=args.max_new_tokens)
                for p in prompts]
        mb, ms = (Metrics.merged([g.metrics for g in runs]) for runs in (base, spec))
        rows.append({
            "prompts": kind,
            "target_only_tok_s": round(mb.tokens_per_second, 2),
            "speculative_tok_s": round(ms.tokens_per_second, 2),
            "speedup": round(ms.tokens_per_second / mb.tokens_per_second, 3),
            "tar": round(ms.tar, 3),
            "identical_outputs": sum(a.token_ids == b.token_ids for a, b in zip(spec, base)),
            "n": len(prompts),
        })
        if not args.json:
            sample = spec[0].texts[0].strip().splitlines()[:2]
            print(f"[{kind}] first continuation: {' / '.join(sample)}", flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"\nSmolLM2-135M + n-gram draft (γ={args.lookahead}), batch 1, "
          f"{args.max_new_tokens} new tokens per prompt, CPU fp32:")
    for r in rows:
        print(f"  {r['prompts']:6s} target-only {r['target_only_tok_s']:7.1f} tok/s   speculative "
              f"{r['speculative_tok_s']:7.1f} tok/s   speedup {r['speedup']:.2f}x   TAR "
              f"{r['tar']:.2f}   identical {r['identical_outputs']}/{r['n']}")
    return 0

