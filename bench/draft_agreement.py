"""How often each draft's top token is the verifier's, on the held-out suite.

A draft's training run reports agreement on a held-out split of its own corpus, which changes
with the corpus; this measures every draft on the same text no draft was distilled on: each
held-out prompt (``bench/heldout``) followed by the verifier's greedy continuation of it (the
tokens speculative decoding must guess). At every position that predicts a continuation token
the draft's top-1 token is compared with the verifier's (a feature draft reading the
verifier's hidden states; ``top1_own``: reading its own predicted ones, as its second and later
proposals do), with the KL from the verifier's distribution, as ``thrifty distill`` evaluates.

    python bench/draft_agreement.py --drafts ROUND4_FOLDER,smollm2-draft-feat \\
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
from gpu_speed import cache_len  # noqa: E402
from thrifty.atomic import write_json_atomically  # noqa: E402


def continued(model, tokenizer, prompts, new_tokens: int):
    """Each prompt with the verifier's greedy continuation of it, and where that begins
    (target-only decoding on the fast path, its output equal to transformers' greedy one)."""
    from thrifty.speculative import SpeculativeDecoder
    from thrifty_hf.fast import FastVerifier

    verifier = FastVerifier(model, tokenizer,
                            max_len=cache_len(max(map(len, prompts)), new_tokens))
    out = SpeculativeDecoder(verifier).generate(prompts, max_new_tokens=new_tokens,
                                                batch_size=1)
    return [(p + o, len(p)) for p, o in zip(prompts, out.token_ids)]


def agreement(draft, model, texts) -> dict:
    """Top-1 agreement and mean KL over the positions that predict a continuation token."""
    import contextlib

    import torch

    from thrifty_hf.distill import kl_loss, student, teacher

    same, own, kls, total = 0, 0, [], 0
    unroll = 1 if draft.fc is None else 2
    with torch.no_grad():
        for ids, start in texts:
            ids = torch.tensor([ids])
            feats, t = teacher(model, ids, contextlib.nullcontext())
            passes = student(draft, ids, feats, contextlib.nullcontext(), unroll)
            t = t[:, start - 1: -1]
            picks = [s[:, start - 1: -1].argmax(-1) for _, s in passes]
            same += int((picks[0] == t.argmax(-1)).sum())
            own += int((picks[-1] == t.argmax(-1)).sum())
            kls.append(float(kl_loss(t, passes[0][1][:, start - 1: -1])) * t.shape[1])
            total += t.shape[1]
    out = {"positions": total, "top1": round(same / total, 4), "kl": round(sum(kls) / total, 4)}
    if unroll > 1:
        out["top1_own"] = round(own / total, 4)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--drafts", default="smollm2-draft-feat",
                    help="comma-separated zoo names or draft folders")
    ap.add_argument("--workloads", default=",".join(heldout.WORKLOADS))
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thrifty_hf.loading import load_draft_named
    from thrifty_hf.zoo import resolve

    path = resolve(args.model).path
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(args.device)
    model.eval()
    loads = heldout.load(tok, args.workloads.split(","), args.prompts)
    held = {wl: continued(model, tok, p, args.new_tokens) for wl, p in loads.items()}
    rows = []
    for name in args.drafts.split(","):
        draft = load_draft_named(name, model).eval()
        for wl, ids in held.items():
            row = dict(draft=name, workload=wl, sequences=len(ids),
                       **agreement(draft, model, ids))
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        out = dict(machine=platform.processor() or platform.machine(), torch=torch.__version__,
                   date=datetime.date.today().isoformat(), model=args.model,
                   prompts=args.prompts, new_tokens=args.new_tokens,
                   rows=rows)
        write_json_atomically(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
