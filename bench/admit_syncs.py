"""Does admitting a prompt wait for the GPU? Host synchronisations of continuous batching.

With continuous batching a row that is done takes the next prompt while the step launched
before it still runs on the GPU (the engine's overlap). Any synchronising call in ``admit`` (a
copy from pageable host memory, a ``.item()``) makes the host wait for that step, so each
admitted prompt would cost one step's overlap. torch's sync debug mode warns on every such
call; this counts them inside every ``admit`` of the verifier and the draft during
a refilled ``generate``, and everywhere else in it, with the pinned uploads the fast path
uses and with plain (pageable) ones. ``--rounds N`` also times what the
pinned copies buy: the same refilled run with pinned and with pageable (synchronising) uploads,
alternated N times in one process, and the median ratio.

    python bench/admit_syncs.py --draft smollm2-draft-feat --gamma 4 --prompts 32
"""

from __future__ import annotations

import argparse
import contextlib
import json
import warnings

from gpu_speed import fast_models, thrifty_run, workloads


def syncs(fn) -> int:
    """How many synchronising CUDA calls ``fn()`` makes."""
    import torch

    before = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:  # nested: the inner call keeps its own
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode(before)
    return sum("synchroniz" in str(w.message) for w in caught)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draft", default="smollm2-draft-feat")
    ap.add_argument("--gamma", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--workload", default="code")
    ap.add_argument("--rounds", type=int, default=0, help="also time pinned vs pageable uploads")
    args = ap.parse_args()

    from thrifty.speculative import SpeculativeDecoder

    tok, ver, drafts = fast_models("smollm2-135m", args.draft)
    draft = drafts[args.draft]
    prompts = workloads(tok, args.prompts)[args.workload][: args.prompts]
    dec = SpeculativeDecoder(ver, draft, args.gamma)
    run = lambda: dec.generate(prompts, max_new_tokens=args.max_new_tokens,  # noqa: E731
                               batch_size=args.batch)
    run()  # warm-up: every graph captured
    out = {"draft": args.draft, "gamma": args.gamma, "batch": args.batch,
           "prompts": len(prompts)}
    for name in UPLOADS:
        with uploading(name):
            out[f"syncs_{name}"] = counted(ver, draft, run)
    if args.rounds:
        out |= timed(ver, draft, args, prompts)
    print(json.dumps(out))


UPLOADS = ("pageable", "pinned")


def pageable(values, device):
    """The upload before pinned memory: a plain copy, which synchronises the stream."""
    import torch

    return torch.as_tensor(values, dtype=torch.long).to(device)


@contextlib.contextmanager
def uploading(name: str):
    """Inside, the fast path uploads admitted prompts the ``name`` way (``pinned``: its own)."""
    from thrifty_hf import fast

    pinned = fast._upload
    fast._upload = pinned if name == "pinned" else pageable
    try:
        yield
    finally:
        fast._upload = pinned


def counted(ver, draft, run) -> dict:
    """Synchronisations inside the verifier's and the draft's ``admit`` during ``run()``, and
    elsewhere in it."""
    inside: dict[str, list[int]] = {"verifier": [], "draft": []}
    for part, model in (("verifier", ver), ("draft", draft)):
        model.admit = lambda *a, _admit=model.admit, _tally=inside[part]: _tally.append(
            syncs(lambda: _admit(*a)))
    try:
        elsewhere = syncs(run)
    finally:
        for model in (ver, draft):
            del model.admit
    return {"admitted": len(inside["verifier"]), "in_verifier_admit": sum(inside["verifier"]),
            "in_draft_admit": sum(inside["draft"]), "elsewhere": elsewhere}


def timed(ver, draft, args, prompts) -> dict:
    """tok/s of the refilled run with pinned and with pageable uploads, alternated."""
    import statistics

    rates: dict[str, list[float]] = {name: [] for name in UPLOADS}
    for _ in range(args.rounds):
        for name in UPLOADS:
            with uploading(name):
                rates[name].append(thrifty_run(ver, draft, args.gamma, prompts, args.batch,
                                               args.max_new_tokens, 1, refill=True)[0])
    ratios = [a / b for a, b in zip(rates["pinned"], rates["pageable"])]
    return {"tok_s_pinned": round(statistics.median(rates["pinned"]), 1),
            "tok_s_pageable": round(statistics.median(rates["pageable"]), 1),
            "ratio_median": round(statistics.median(ratios), 4),
            "ratios": [round(r, 4) for r in ratios]}


if __name__ == "__main__":
    main()
