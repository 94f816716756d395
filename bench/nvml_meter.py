"""Cross-check the NVML energy counter against power sampling around a matmul load (READ-ONLY).

Nothing is set on the GPU: the script reads the clocks and power limit through the thrifty-nvml
knobs' ``read()`` and measures with two ``nvml`` meters at once (``mode="counter"`` and
``mode="sampling"``). It reports, per window length, the median over repeats of the counter's
joules, the sampled joules and their ratio, and the counter's update period (how often its value
changes under load), which bounds the shortest window worth measuring.

    python bench/nvml_meter.py --device cuda [--gpu 0] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def _update_period(gpu, seconds: float, load) -> float:
    """Median time between changes of the energy counter while ``load`` keeps the GPU busy."""
    changes, last, t_end = [], gpu("nvmlDeviceGetTotalEnergyConsumption"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        load()
        value = gpu("nvmlDeviceGetTotalEnergyConsumption")
        if value != last:
            changes.append(time.perf_counter())
            last = value
    gaps = [b - a for a, b in zip(changes, changes[1:])]
    return statistics.median(gaps) if gaps else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="torch device for the load (cuda)")
    p.add_argument("--gpu", type=int, default=0, help="NVML index of the same GPU")
    p.add_argument("--size", type=int, default=8192, help="matmul size n (n x n, bf16)")
    p.add_argument("--windows", default="0.1,0.5,2.0", help="window lengths in seconds")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--period", type=float, default=0.01, help="power sampling period (s)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    import torch
    import thrifty_nvml.plugin as nvml_plugin
    from thrifty.testing import fresh_registry

    if not args.device.startswith("cuda") or not torch.cuda.is_available():
        print("needs --device cuda and a visible NVIDIA GPU", file=sys.stderr)
        return 2
    reg = fresh_registry(load_entry_points=False, plugins={"nvml": nvml_plugin})
    knobs = {n: reg.hardware_knob(n).build(device=args.gpu) for n in
             ("nvml.gpu-locked-clocks", "nvml.mem-locked-clocks", "nvml.power-limit")}
    counter = reg.energy_meter("nvml").build(device=args.gpu, mode="counter")
    sampler = reg.energy_meter("nvml").build(device=args.gpu, mode="sampling",
                                             period_s=args.period)
    gpu = counter.gpu
    a = torch.randn(args.size, args.size, device=args.device, dtype=torch.bfloat16)
    b = torch.randn_like(a)

    def load(seconds: float = 0.0) -> int:
        n, t_end = 0, time.perf_counter() + seconds
        while True:
            a @ b
            torch.cuda.synchronize()
            n += 1
            if time.perf_counter() >= t_end:
                return n

    load(2.0)   # warm up: clocks ramp, cuBLAS picks its kernel
    result = {"gpu": gpu("nvmlDeviceGetName"), "torch": torch.__version__,
              "read_only": True, "size": args.size,
              "idle_clocks": {n: k.read() for n, k in knobs.items()}}
    result["counter_update_period_s"] = _update_period(gpu, 1.0, lambda: load())
    result["loaded_clocks"] = {n: k.read() for n, k in knobs.items()}
    rows = []
    for label, seconds, busy in [("idle 1.0 s", 1.0, False)] + [
            (f"matmul {w} s", float(w), True) for w in args.windows.split(",")]:
        per = []
        for _ in range(args.repeats):
            torch.cuda.synchronize()
            counter.start()
            sampler.start()
            if busy:
                iters = load(seconds)
            else:
                time.sleep(seconds)
                iters = 0
            s, c = sampler.stop(), counter.stop()
            per.append((c.joules, s.joules, c.seconds, iters))
        cj = statistics.median(x[0] for x in per)
        sj = statistics.median(x[1] for x in per)
        secs = statistics.median(x[2] for x in per)
        tflops = statistics.median(2 * args.size**3 * x[3] / x[2] / 1e12 for x in per)
        rows.append({"window": label, "counter_J": cj, "sampled_J": sj,
                     "ratio_sampled_over_counter": sj / cj if cj else float("nan"),
                     "seconds": secs, "watts": cj / secs, "tflops": tflops,
                     "counter_spread_J": max(x[0] for x in per) - min(x[0] for x in per)})
    result["windows"] = rows
    print(f"GPU {result['gpu']} (read-only), torch {result['torch']}, matmul {args.size}^2 bf16")
    print(f"clocks idle {result['idle_clocks']}, under load {result['loaded_clocks']}")
    print(f"energy counter update period under load: "
          f"{result['counter_update_period_s'] * 1000:.1f} ms (median)")
    print("| window | counter J | sampled J | sampled/counter | W | TFLOP/s | counter spread J |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['window']} | {r['counter_J']:.2f} | {r['sampled_J']:.2f} | "
              f"{r['ratio_sampled_over_counter']:.3f} | {r['watts']:.0f} | {r['tflops']:.0f} | "
              f"{r['counter_spread_J']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
