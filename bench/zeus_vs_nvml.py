"""The ``zeus`` meter (Zeus's ZeusMonitor) against thrifty's ``nvml`` meter over the same windows.

Both meters watch one GPU while a bf16 matmul loop keeps it busy for each window length (and
one idle window). The two windows nest; which meter opens first alternates between repeats, so
neither is always the outer one. Per window length: the median over repeats of each meter's
joules, their ratio and each meter's spread. Read-only: nothing is set on the GPU.

    python bench/zeus_vs_nvml.py [--gpu 0] [--windows 0.05,0.2,1,4] [--repeats 5] [--json out.json]

Needs a CUDA GPU, ``pip install zeus`` and the thrifty-zeus and thrifty-nvml plugins.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpu", type=int, default=0, help="CUDA (and NVML) index of the GPU")
    p.add_argument("--size", type=int, default=8192, help="matmul size n (n x n, bf16)")
    p.add_argument("--windows", default="0.05,0.2,1,4", help="busy window lengths in seconds")
    p.add_argument("--repeats", type=int, default=5, help="windows per length (median)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    import torch
    import thrifty_nvml.plugin as nvml_plugin
    import thrifty_zeus.plugin as zeus_plugin
    from thrifty.testing import fresh_registry

    if not torch.cuda.is_available():
        print("needs a visible NVIDIA GPU (CUDA)", file=sys.stderr)
        return 2
    reg = fresh_registry(load_entry_points=False,
                         plugins={"nvml": nvml_plugin, "zeus": zeus_plugin})
    nvml = reg.energy_meter("nvml").build(device=args.gpu, mode="counter")
    zeus = reg.energy_meter("zeus").build(device=args.gpu)
    dev = torch.device("cuda", args.gpu)
    a = torch.randn(args.size, args.size, device=dev, dtype=torch.bfloat16)
    b = torch.randn_like(a)

    def load(seconds: float) -> None:
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            a @ b
            torch.cuda.synchronize(dev)

    load(2.0)  # warm up: clocks ramp, cuBLAS picks its kernel
    rows = []
    for label, seconds, busy in [("idle 1 s", 1.0, False)] + [
            (f"matmul {w} s", float(w), True) for w in args.windows.split(",")]:
        per = []
        for i in range(args.repeats):
            outer, inner = (zeus, nvml) if i % 2 == 0 else (nvml, zeus)
            torch.cuda.synchronize(dev)
            outer.start()
            inner.start()
            load(seconds) if busy else time.sleep(seconds)
            got = {inner.name: inner.stop()}
            got[outer.name] = outer.stop()
            per.append(got)
        z = [g["zeus"] for g in per]
        n = [g["nvml"] for g in per]
        zj, nj = statistics.median(r.joules for r in z), statistics.median(r.joules for r in n)
        rows.append({
            "window": label, "zeus_J": zj, "nvml_J": nj,
            "ratio_zeus_over_nvml": zj / nj if nj else float("nan"),
            "zeus_s": statistics.median(r.seconds for r in z),
            "nvml_s": statistics.median(r.seconds for r in n),
            "zeus_spread_J": max(r.joules for r in z) - min(r.joules for r in z),
            "nvml_spread_J": max(r.joules for r in n) - min(r.joules for r in n),
            "ratios": [g["zeus"].joules / g["nvml"].joules if g["nvml"].joules else None
                       for g in per]})
    from importlib.metadata import version

    result = {"gpu": torch.cuda.get_device_name(dev), "torch": torch.__version__,
              "zeus": version("zeus"), "size": args.size, "repeats": args.repeats,
              "nvml_source": nvml.source, "date": time.strftime("%Y-%m-%d"), "windows": rows}
    print(f"{result['gpu']}, torch {result['torch']}, zeus {result['zeus']}, "
          f"matmul {args.size}^2 bf16, median of {args.repeats}")
    print("| window | zeus J | nvml J | zeus/nvml | zeus spread J | nvml spread J |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['window']} | {r['zeus_J']:.3f} | {r['nvml_J']:.3f} | "
              f"{r['ratio_zeus_over_nvml']:.4f} | {r['zeus_spread_J']:.3f} | "
              f"{r['nvml_spread_J']:.3f} |")
    if args.json:
        tmp = f"{args.json}.tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=2)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
