"""Synthetic energy/latency surfaces shaped like PolyThrottle's measurements (no hardware needed).

The knobs are CPU, GPU and memory frequency and batch size, as on a Jetson. The model is a
roofline with DVFS power:

* latency of a batch = CPU time (pre-processing cycles / f_cpu) + GPU time, where the GPU time is
  work divided by the *smaller* of the compute throughput (∝ f_gpu) and the memory throughput
  (∝ f_mem), plus a fixed launch overhead;
* power = static + Σ over components of C · f · V(f)² · (idle share + busy share × utilisation),
  with V(f) flat at the lowest frequencies and rising towards the top of the ladder;
* energy per query = power × latency / batch size.

So energy per query has an interior minimum in each frequency (static power rewards racing,
dynamic power rewards slowing down) and falls with batch size while latency rises with it: under
a latency SLO the best point sits on the SLO boundary, as on real boards.
"""

from __future__ import annotations

import attrs
import numpy as np

from .space import Space


@attrs.frozen
class Workload:
    """Per-query work of one model on one board."""

    name: str
    cpu_mcycles: float        # pre-processing per query, millions of cycles
    gflop: float              # GPU work per query
    weight_mb: float          # bytes read once per batch (weights)
    act_mb: float             # bytes per query (activations)
    flop_per_cycle: float     # GPU throughput: GFLOP per GHz-second
    bytes_per_cycle: float    # memory throughput: MB per MHz-second
    overhead_ms: float
    static_w: float
    cpu_w: float              # dynamic power at top CPU frequency and full load
    gpu_w: float
    mem_w: float
    cpu_mhz: tuple
    gpu_mhz: tuple
    mem_mhz: tuple
    batch: tuple
    slo_quantile: float = 0.4


def _voltage(f: np.ndarray, ladder: tuple) -> np.ndarray:
    """Relative voltage: flat over the lowest third of the ladder, then rising to 1."""
    lo, hi = min(ladder), max(ladder)
    x = (f - lo) / (hi - lo)
    return 0.6 + 0.4 * np.clip((x - 0.3) / 0.7, 0.0, 1.0) ** 1.3


def evaluate(w: Workload, cpu, gpu, mem, batch) -> tuple[np.ndarray, np.ndarray]:
    """Energy per query (J) and batch latency (s) of configurations (arrays broadcast)."""
    cpu, gpu, mem, batch = (np.asarray(a, dtype=float) for a in (cpu, gpu, mem, batch))
    t_cpu = w.cpu_mcycles * batch / cpu                                   # Mcycles / MHz = s
    t_compute = w.gflop * batch / (w.flop_per_cycle * gpu / 1000.0)
    t_memory = (w.weight_mb + w.act_mb * batch) / (w.bytes_per_cycle * mem)
    t_gpu = np.maximum(t_compute, t_memory) + 0.15 * np.minimum(t_compute, t_memory)
    latency = t_cpu + t_gpu + w.overhead_ms / 1000.0

    def dynamic(peak_w, f, ladder, busy):
        v = _voltage(f, ladder)
        return peak_w * (f / max(ladder)) * v**2 * (0.25 + 0.75 * busy)

    power = (w.static_w
             + dynamic(w.cpu_w, cpu, w.cpu_mhz, t_cpu / latency)
             + dynamic(w.gpu_w, gpu, w.gpu_mhz, t_compute / latency)
             + dynamic(w.mem_w, mem, w.mem_mhz, np.minimum(t_memory / latency, 1.0)))
    return power * latency / batch, latency


def surface(w: Workload, noise: float = 0.01, seed: int = 0) -> tuple[Space, list[dict], float]:
    """The full table of ``w``: the space, one row per configuration (knobs + ``energy`` in J per
    query + ``latency`` in s per batch, with multiplicative measurement noise) and the SLO (the
    ``slo_quantile`` of latencies, so that share of configurations is feasible)."""
    space = Space({"cpu_mhz": w.cpu_mhz, "gpu_mhz": w.gpu_mhz, "mem_mhz": w.mem_mhz,
                   "batch": w.batch})
    keys = list(space.keys())
    cpu, gpu, mem, batch = (np.array(col) for col in zip(*keys))
    energy, latency = evaluate(w, cpu, gpu, mem, batch)
    rng = np.random.default_rng(seed)
    energy = energy * np.exp(noise * rng.standard_normal(len(keys)))
    latency = latency * np.exp(noise * rng.standard_normal(len(keys)))
    rows = [dict(space.config(k), energy=float(e), latency=float(t))
            for k, e, t in zip(keys, energy, latency)]
    return space, rows, float(np.quantile(latency, w.slo_quantile))


_ORIN_CPU = (729, 1036, 1267, 1497, 1728, 1958, 2188)
_ORIN_GPU = (306, 408, 510, 612, 714, 816, 918, 1020, 1122, 1224, 1300)
_ORIN_EMC = (204, 665, 2133, 3199)
_TX2_CPU = (345, 652, 960, 1267, 1574, 1881, 2035)
_TX2_GPU = (114, 216, 318, 420, 522, 624, 726, 828, 930, 1032, 1134, 1236, 1300)
_TX2_EMC = (408, 800, 1331, 1866)

WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    Workload("orin-efficientnet-b0", cpu_mcycles=1.5, gflop=0.8, weight_mb=21, act_mb=6,
             flop_per_cycle=2600.0, bytes_per_cycle=40.0, overhead_ms=2.0, static_w=9.0,
             cpu_w=9.0, gpu_w=28.0, mem_w=7.0, cpu_mhz=_ORIN_CPU, gpu_mhz=_ORIN_GPU,
             mem_mhz=_ORIN_EMC, batch=(1, 2, 4, 8, 16, 32)),
    Workload("orin-bert-base", cpu_mcycles=0.8, gflop=11.0, weight_mb=440, act_mb=24,
             flop_per_cycle=4200.0, bytes_per_cycle=45.0, overhead_ms=3.0, static_w=10.0,
             cpu_w=7.0, gpu_w=35.0, mem_w=10.0, cpu_mhz=_ORIN_CPU[::2], gpu_mhz=_ORIN_GPU,
             mem_mhz=_ORIN_EMC, batch=(1, 2, 4, 8, 16), slo_quantile=0.5),
    Workload("tx2-efficientnet-b4", cpu_mcycles=4.0, gflop=4.5, weight_mb=77, act_mb=30,
             flop_per_cycle=560.0, bytes_per_cycle=18.0, overhead_ms=4.0, static_w=4.5,
             cpu_w=4.0, gpu_w=11.0, mem_w=3.0, cpu_mhz=_TX2_CPU[1:], gpu_mhz=_TX2_GPU,
             mem_mhz=_TX2_EMC, batch=(1, 2, 4, 8, 16), slo_quantile=0.3),
    Workload("tx2-resnet18-small", cpu_mcycles=2.0, gflop=1.8, weight_mb=45, act_mb=10,
             flop_per_cycle=560.0, bytes_per_cycle=18.0, overhead_ms=3.0, static_w=4.5,
             cpu_w=4.0, gpu_w=11.0, mem_w=3.0, cpu_mhz=_TX2_CPU[1::2], gpu_mhz=_TX2_GPU[::2],
             mem_mhz=_TX2_EMC[1:], batch=(1, 2, 4, 8)),
)}
"""Four boards × models: 1,848, 880, 1,560 and 252 configurations."""
