"""How much of a static batch idles: tokens per pass per running row against per row slot.

A static batch runs until its slowest row has all its tokens, so rows whose draft accepts more
finish early and sit idle. For each workload and γ this prints the TAR of the running rows
(``Metrics.tar``), the tokens per pass per row *slot* (new tokens / (passes x batch)), and the
share of row-passes spent on rows that were already done. Target-only decoding idles none (every
row takes exactly ``--max-new-tokens`` passes). Runs on the CPU in fp32 (acceptance does not
depend on the device).

    python bench/idle_rows.py --draft smollm2-draft-feat --gammas 3,4 --batch 8
"""

from __future__ import annotations

import argparse

from gpu_speed import fast_models, workloads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--draft", default="smollm2-draft-feat")
    ap.add_argument("--gammas", default="3,4")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from thrifty.speculative import SpeculativeDecoder

    torch.set_num_threads(args.threads)
    tok, verifier, drafts = fast_models(args.model, args.draft, "cpu", "float32")
    draft = drafts[args.draft]
    print("| workload | γ | passes | TAR (running rows) | tokens per pass per row slot | idle |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, prompts in workloads(tok, args.batch).items():
        for gamma in (int(g) for g in args.gammas.split(",")):
            m = SpeculativeDecoder(verifier, draft, gamma).generate(
                prompts, max_new_tokens=args.max_new_tokens).metrics
            per_slot = m.new_tokens / (m.target_passes * len(prompts))
            idle = 1 - m.row_steps / (m.target_passes * len(prompts))
            print(f"| {name} | {gamma} | {m.target_passes} | {m.tar:.3f} | {per_slot:.3f} | "
                  f"{100 * idle:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
