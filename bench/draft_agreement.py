"""How often each draft's top token is the verifier's, on the held-out suite.

A draft's training run reports agreement on a held-out split of its own corpus, which changes
with the corpus; this measures every draft on the same text no draft was distilled on: each
held-out prompt (``bench/heldout``) followed by the verifier's greedy continuation of it (the
tokens speculative decoding must guess), the last ``--length`` tokens of each. At every
position the draft's top-1 token is compared with the verifier's (a feature draft reading the
verifier's hidden states; ``top1_own``: reading its own predicted ones, as its second and later
proposals do), with the KL from the verifier's distribution, as ``thrifty distill`` evaluates.

    python bench/draft_agreement.py --drafts OLD_DRAFT_FOLDER,smollm2-draft-feat \\
        --json draft-agreement.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout  # noqa: E402


def sequences(model, tokenizer, prompts, new_tokens: int, length: int):
    """[N, length] long: each prompt then the verifier's greedy continuation, the last
    ``length`` tokens (target-only decoding on the fast path, its output equal to
    transformers' greedy one)."""
    import torch

    from thrifty.speculative import SpeculativeDecoder
    from thrifty_hf.fast import FastVerifier

    longest = max(map(len, prompts)) + new_tokens + 16
    verifier = FastVerifier(model, tokenizer, max_len=-(-longest // 256) * 256)
    out = SpeculativeDecoder(verifier).generate(prompts, max_new_tokens=new_tokens,
                                                batch_size=1)
    rows = [(p + o)[-length:] for p, o in zip(prompts, out.token_ids)]
    short = [i for i, r in enumerate(rows) if len(r) < length]
    if short:
        raise SystemExit(f"prompts {short} with their continuations are shorter than "
                         f"--length {length}; lower it")
    return torch.tensor(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--drafts", default="smollm2-draft-feat",
                    help="comma-separated zoo names or draft folders")
    ap.add_argument("--workloads", default=",".join(heldout.WORKLOADS))
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--length", type=int, default=96,
                    help="tokens of each sequence scored (the continuation and the prompt's end)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    import contextlib

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thrifty_hf.distill import evaluate
    from thrifty_hf.loading import load_draft_named
    from thrifty_hf.zoo import resolve

    path = resolve(args.model).path
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(args.device)
    model.eval()
    loads = heldout.load(tok, args.workloads.split(","), args.prompts)
    held = {wl: sequences(model, tok, p, args.new_tokens, args.length)
            for wl, p in loads.items()}
    rows = []
    for name in args.drafts.split(","):
        draft = load_draft_named(name, model).eval()
        for wl, ids in held.items():
            found = evaluate(draft, model, ids, args.device, contextlib.nullcontext(),
                             batches=-(-len(ids) // 8))
            row = dict(draft=name, workload=wl, sequences=len(ids),
                       top1=found["heldout_top1"], kl=found["heldout_kl"],
                       **({"top1_own": found["heldout_top1_own"]}
                          if "heldout_top1_own" in found else {}))
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        out = dict(machine=platform.processor() or platform.machine(), torch=torch.__version__,
                   date=datetime.date.today().isoformat(), model=args.model,
                   prompts=args.prompts, new_tokens=args.new_tokens, length=args.length,
                   rows=rows)
        tmp = Path(args.json).with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=2))
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
