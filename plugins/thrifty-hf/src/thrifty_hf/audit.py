"""Audit of low-precision divergences: is every one a near-tie in the verifier's logits?

Speculative decoding in bf16 scores several tokens per pass where target-only decoding scores
one, so the two runs round differently and greedy outputs can part ways. That is harmless
exactly when, at the first token where they differ, the verifier itself barely prefers one
token over the other. :func:`audit_divergences` finds each row's first divergence and measures
the verifier's logit gap between the two tokens there, recomputed in float32 on the common
prefix; a gap within ``tol`` is a near-tie. After the first divergence the contexts differ, so
later tokens are not comparable and are not counted.
"""

from __future__ import annotations

import attrs

from thrifty.errors import ConfigError


@attrs.frozen
class Divergence:
    row: int
    position: int  # index in the generated tokens
    reference_token: int
    candidate_token: int
    gap: float  # |logit(reference) - logit(candidate)| in the float32 verifier
    near_tie: bool


def first_divergence(a, b) -> int | None:
    """Index of the first differing token of two token lists (None if one prefixes the other)."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None


def audit_divergences(model, prompts, reference, candidate, tol: float = 0.5) -> list[Divergence]:
    """Per row whose outputs differ, the first divergence and whether it is a near-tie.

    ``model``: the verifier as a Hugging Face causal LM (it is run in float32 on its device);
    ``prompts``: token-id lists; ``reference``/``candidate``: generated token-id lists per row.
    """
    import copy

    import torch

    if not len(prompts) == len(reference) == len(candidate):
        raise ConfigError("prompts, reference and candidate must have one entry per row")
    found = []
    ref32 = model if next(model.parameters()).dtype == torch.float32 else copy.deepcopy(model).float()
    device = next(ref32.parameters()).device
    for row, (prompt, ref, cand) in enumerate(zip(prompts, reference, candidate)):
        i = first_divergence(ref, cand)
        if i is None:
            continue
        ids = torch.tensor([list(prompt) + list(ref[:i])], device=device)
        with torch.no_grad():
            logits = ref32(input_ids=ids).logits[0, -1].float()
        gap = float((logits[ref[i]] - logits[cand[i]]).abs())
        found.append(Divergence(row, i, int(ref[i]), int(cand[i]), gap, gap <= tol))
    return found


def configure(p) -> None:
    p.add_argument("--verifier", default="smollm2-135m", help="zoo name or HF folder")
    p.add_argument("--draft", default="smollm2-draft-l2", help="draft zoo name or folder")
    p.add_argument("--prompts-file", required=True, help="one prompt per line")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--lookahead", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--tol", type=float, default=0.5, help="largest logit gap called a near-tie")
    p.add_argument("--json", action="store_true")


def run(args) -> int:
    """Decode target-only and speculatively (hf-fast, ``--dtype``) and audit the differences."""
    import json
    from pathlib import Path

    from thrifty.speculative import SpeculativeDecoder

    from .fast_plugin import make_fast_draft, make_fast_verifier

    texts = [ln for ln in Path(args.prompts_file).read_text().splitlines() if ln.strip()]
    verifier = make_fast_verifier(args.verifier, args.device, args.dtype)
    draft = make_fast_draft(verifier, args.draft)
    prompts = [verifier.tokenizer.encode(t) for t in texts]
    base = SpeculativeDecoder(verifier).generate(prompts, max_new_tokens=args.max_new_tokens)
    spec = SpeculativeDecoder(verifier, draft, args.lookahead).generate(
        prompts, max_new_tokens=args.max_new_tokens)
    found = audit_divergences(verifier.model, prompts, base.token_ids, spec.token_ids, args.tol)
    report = {"rows": len(prompts), "identical": len(prompts) - len(found),
              "divergences": [attrs.asdict(d) for d in found],
              "all_near_ties": all(d.near_tie for d in found)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['identical']}/{len(prompts)} rows identical; "
              f"{sum(d.near_tie for d in found)}/{len(found)} divergences are near-ties "
              f"(gap <= {args.tol})")
        for d in found:
            print(f"  row {d.row} token {d.position}: {d.reference_token} vs "
                  f"{d.candidate_token}, gap {d.gap:.3f}{'' if d.near_tie else '  NOT A TIE'}")
    return 0 if report["all_near_ties"] else 1
