"""A real demonstration of co-scheduling: a small torch MLP on the CPU serves Poisson-arriving
inference requests and fine-tunes itself in the gaps, with or without the admission controller
(:mod:`thrifty.tuning.cosched`). ``tests/test_cosched.py`` runs it; by hand::

    python bench/coserve.py --slo 0.025 --seconds 3 --seeds 0 1 2

One thread does everything (as on a small edge board): when no request is waiting, it either
runs a fine-tuning step or waits for the next arrival. Without the controller it always runs a
step of the largest micro-batch; with it, :class:`AdmissionController` decides.
"""

from __future__ import annotations

import argparse
import time

import attrs
import numpy as np

from thrifty.tuning.cosched import AdmissionController, LatencyPredictor, Work


@attrs.frozen
class ServeReport:
    """SLO attainment and fine-tuning progress of one run."""

    controlled: bool
    requests: int
    attainment: float
    p50_ms: float
    p99_ms: float
    steps: int
    samples_per_s: float
    predictor: tuple[float, float, float]

    def as_dict(self) -> dict:
        return attrs.asdict(self)


class MLPWorkload:
    """A dense MLP and its analytic costs (FLOPs, bytes) for inference and training steps."""

    def __init__(self, widths=(128, 512, 512, 16), seed: int = 0) -> None:
        import torch

        torch.manual_seed(seed)
        layers = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        self.model = torch.nn.Sequential(*layers[:-1])
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-3)
        self.widths = widths
        self.params = sum(p.numel() for p in self.model.parameters())
        self.gen = torch.Generator().manual_seed(seed)

    def work(self, batch: int, train: bool) -> Work:
        macs = sum(a * b for a, b in zip(self.widths[:-1], self.widths[1:])) * batch
        acts = sum(self.widths) * batch
        if train:  # forward + two backward GEMMs; weights, gradients and update traffic
            return Work(6.0 * macs, 4.0 * (4 * self.params + 3 * acts))
        return Work(2.0 * macs, 4.0 * (self.params + acts))

    def infer(self, batch: int = 1) -> None:
        import torch

        with torch.no_grad():
            self.model(torch.randn(batch, self.widths[0], generator=self.gen))

    def train_step(self, batch: int) -> None:
        import torch

        x = torch.randn(batch, self.widths[0], generator=self.gen)
        y = torch.randint(0, self.widths[-1], (batch,), generator=self.gen)
        loss = torch.nn.functional.cross_entropy(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


def profile(workload: MLPWorkload, micro_batches, repeats: int = 3) -> LatencyPredictor:
    """Time inference and training steps of several sizes; fit the latency predictor."""
    work, seconds = [], []
    runs = [(1, False), (8, False)] + [(mb, True) for mb in micro_batches]
    for batch, train in runs:
        times = []
        for _ in range(repeats + 1):
            t = time.perf_counter()
            workload.train_step(batch) if train else workload.infer(batch)
            times.append(time.perf_counter() - t)
        work.append(workload.work(batch, train))
        seconds.append(float(np.median(times[1:])))
    return LatencyPredictor.fit(work, seconds)


def serve(workload: MLPWorkload, predictor: LatencyPredictor, *, slo: float, rate: float,
          seconds: float, micro_batches=(2, 8, 32, 128, 512), controlled: bool,
          seed: int = 0) -> ServeReport:
    """Serve Poisson arrivals (``rate`` per second) for ``seconds`` while fine-tuning."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, size=int(rate * seconds * 2) + 10))
    arrivals = arrivals[arrivals < seconds]
    controller = AdmissionController(predictor, slo, workload.work(1, False),
                                     lambda mb: workload.work(mb, True), micro_batches)
    latencies, steps, samples, i = [], 0, 0, 0
    start = time.perf_counter()
    while i < len(arrivals):
        now = time.perf_counter() - start
        if arrivals[i] <= now:                       # serve everything that has arrived
            workload.infer()
            latency = time.perf_counter() - start - arrivals[i]
            latencies.append(latency)
            controller.observe(latency)
            i += 1
            continue
        mb = controller.admit() if controlled else max(micro_batches)
        if mb is None:
            time.sleep(min(arrivals[i] - now, 0.002))
            continue
        workload.train_step(mb)
        steps, samples = steps + 1, samples + mb
    elapsed = time.perf_counter() - start
    lat = np.array(latencies)
    return ServeReport(controlled, len(lat), float(np.mean(lat <= slo)),
                       1000 * float(np.percentile(lat, 50)), 1000 * float(np.percentile(lat, 99)),
                       steps, samples / elapsed, predictor.coef)


def demo(slo: float | None = None, rate: float = 40.0, seconds: float = 2.0, seed: int = 0,
         threads: int = 1) -> tuple[ServeReport, ServeReport]:
    """Profile, then serve the same arrivals without and with the controller.

    ``slo=None`` sets the SLO to 30% of the largest fine-tuning step's predicted time, so that
    the demonstration means the same on a fast idle machine and on a slow loaded one: greedy
    fine-tuning then makes most requests that arrive during a step wait too long.
    """
    import torch

    torch.set_num_threads(threads)
    workload = MLPWorkload(seed=seed)
    micro_batches = (2, 8, 32, 128, 512)
    predictor = profile(workload, micro_batches)
    if slo is None:
        slo = 0.3 * predictor.predict(workload.work(max(micro_batches), True))
    free = serve(workload, predictor, slo=slo, rate=rate, seconds=seconds,
                 micro_batches=micro_batches, controlled=False, seed=seed)
    held = serve(workload, predictor, slo=slo, rate=rate, seconds=seconds,
                 micro_batches=micro_batches, controlled=True, seed=seed)
    return free, held


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slo", type=float, default=None,
                   help="seconds (default: 30%% of the largest fine-tuning step's prediction)")
    p.add_argument("--rate", type=float, default=40.0, help="requests per second")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds of arrivals per run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = p.parse_args()
    for seed in args.seeds:
        for report in demo(args.slo, args.rate, args.seconds, seed):
            print(f"seed {seed}: {report}")


if __name__ == "__main__":
    main()
