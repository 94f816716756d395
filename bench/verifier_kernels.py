"""Where a fast-path verifier pass spends its GPU time, by number of scored tokens.

For k = 1, 2, 4, 8 tokens at batch 1 (SmolLM2-135M, bf16, after a 200-token prefill): the
eager static forward under ``torch.profiler`` (so each kernel is timed on its own; top kernels
by GPU time per pass), then the same forward replayed as a CUDA graph (ms per pass, mean of
50 after warm-up). k = 1 is the baseline the wider passes are read against.

    python bench/verifier_kernels.py
"""

from __future__ import annotations

import collections


def main() -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoModelForCausalLM

    from thrifty_hf.fast import StaticLM
    from thrifty_hf.zoo import resolve

    path = resolve("smollm2-135m").path
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).cuda().eval()
    for graphs in (False, True):
        lm = StaticLM(model, max_len=1024, graphs=graphs)
        n, _ = lm.prefill([list(range(100, 300))])
        for k in (1, 2, 4, 8):
            tokens = torch.randint(0, 1000, (1, k), device="cuda")
            for _ in range(5):
                lm.run(tokens, n)
            torch.cuda.synchronize()
            if graphs:
                start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
                start.record()
                for _ in range(50):
                    lm.run(tokens, n)
                end.record()
                torch.cuda.synchronize()
                print(f"graph k={k}: {start.elapsed_time(end) / 50:.3f} ms/pass")
                continue
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(10):
                    lm.run(tokens, n)
                torch.cuda.synchronize()
            total, count = collections.Counter(), collections.Counter()
            for ev in prof.events():
                if ev.device_type == torch.autograd.DeviceType.CUDA:
                    total[ev.name[:60]] += ev.device_time / 10
                    count[ev.name[:60]] += 1 / 10
            print(f"eager k={k}: {sum(total.values()) / 1000:.3f} ms kernel time/pass, "
                  f"{sum(count.values()):.0f} kernels")
            for name, us in total.most_common(12):
                print(f"   {us:8.1f} us  x{count[name]:5.0f}  {name}")


if __name__ == "__main__":
    main()
