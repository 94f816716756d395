"""Trials to reach within 5% of the best feasible energy: grid, random, cbo, Optuna TPE
and Optuna GP, side by side on the same replayed surfaces.

Surfaces: the synthetic PolyThrottle-shaped ones of :mod:`thrifty.tuning.synthetic` (CPU × GPU ×
memory frequency × batch size) and every recorded table in ``data/surfaces/*.csv``. For each
(surface, method, seed) the search runs until its best *feasible* trial is within 5% of the
surface's best feasible energy (or the budget runs out, shown as ">budget"); the report is the
median over seeds of the number of distinct configurations measured, with the median number of
SLO-violating configurations measured on the way beside it.

For a recorded surface with a ``# default:`` line, the SLO is the default configuration's latency
(× ``--slo-factor``) and the bench also prints what a 15-trial cbo run saves against the
default configuration under that SLO.

    python bench/optimizers.py                       # all surfaces, 20 seeds
    python bench/optimizers.py --seeds 5 --surfaces tx2-resnet18-small
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # tiny matrices: BLAS threads only spin on a shared box

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import thrifty  # noqa: E402
from thrifty.tuning import Constraint, SearchExhausted  # noqa: E402
from thrifty.tuning.backends import ReplayBackend  # noqa: E402
from thrifty.tuning.synthetic import WORKLOADS, surface  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["grid", "random", "cbo", "optuna-tpe", "optuna-gp"]


def synthetic_surfaces():
    for name, w in WORKLOADS.items():
        space, rows, slo = surface(w)
        yield name, ReplayBackend(rows, list(space.names), name), Constraint("latency", slo), None


def parse_default(text: str, backend: ReplayBackend) -> dict:
    config = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        domain = backend.space.knobs[key.strip()]
        config[key.strip()] = next(v for v in domain if str(v) == value.strip())
    return config


def recorded_surfaces(slo_factor: float):
    for path in sorted((ROOT / "data" / "surfaces").glob("*.csv")):
        backend = ReplayBackend.load(path)
        default = parse_default(backend.meta["default"], backend) if "default" in backend.meta \
            else None
        if default is not None:
            slo = backend.measure(default)["latency"] * slo_factor
        else:
            slo = float(np.quantile([m["latency"] for m in backend.table.values()], 0.4))
        yield path.stem, backend, Constraint("latency", slo), default


# -- optimizers ---------------------------------------------------------------------------------
class OptunaSearch:
    """Optuna's sampler driven through ask/tell; ordered knobs as integer indices (so the
    sampler sees their order), categorical ones as categories; constraints via ``Trial.set_constraint``.
    A suggestion outside an explicit list of configurations snaps to the nearest allowed one."""

    def __init__(self, kind, space, objective, constraints, seed):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = (optuna.samplers.TPESampler(seed=seed) if kind == "tpe"
                   else optuna.samplers.GPSampler(seed=seed))
        self.study = optuna.create_study(sampler=sampler)
        self.space, self.objective, self.constraints = space, objective, constraints
        self.dists, self._ordered = {}, {}
        for name, domain in space.knobs.items():
            numeric = all(isinstance(v, (int, float)) for v in domain)
            self._ordered[name] = numeric
            self.dists[name] = (optuna.distributions.IntDistribution(0, len(domain) - 1)
                                if numeric else optuna.distributions.CategoricalDistribution(
                                    list(domain)))
        self._allowed = list(space.keys()) if space.allowed is not None else None

    def ask(self):
        trial = self.study.ask(self.dists)
        key = tuple(self.space.knobs[n][trial.params[n]] if self._ordered[n] else trial.params[n]
                    for n in self.space.names)
        if self._allowed is not None and key not in set(self._allowed):
            x = self.space.encode([key])
            key = self._allowed[int(np.argmin(((self.space.encode(self._allowed) - x) ** 2)
                                              .sum(1)))]
        self._trial = trial
        return self.space.config(key)

    def tell(self, config, metrics):
        for c in self.constraints:  # optuna >= 5: a constraint value <= 0 means feasible
            self._trial.set_constraint(c.metric, metrics[c.metric] - c.bound)
        self.study.tell(self._trial, metrics[self.objective])


def build(method, space, constraint, seed):
    if method.startswith("optuna-"):
        return OptunaSearch(method.split("-")[1], space, "energy", [constraint], seed)
    return thrifty.registry().optimizer(method).build(space, "energy", [constraint], seed)


def run_one(method, backend, constraint, seed, budget, target):
    """Distinct configurations measured until the best feasible energy <= target, the SLO
    violations measured on the way, and the best-so-far curve."""
    opt = build(method, backend.space, constraint, seed)
    seen, violations, best, curve, asks = {}, 0, math.inf, [], 0
    while len(seen) < budget and asks < 20 * budget:
        asks += 1
        try:
            config = opt.ask()
        except SearchExhausted:
            break
        key = backend.space.key(config)
        metrics = backend.measure(config)
        opt.tell(config, metrics)
        if key in seen:       # a repeat (Optuna may re-suggest): free, not a new measurement
            continue
        seen[key] = metrics
        ok = constraint.holds(metrics)
        violations += not ok
        if ok:
            best = min(best, metrics["energy"])
        curve.append(best)
        if best <= target:
            return len(seen), violations, curve
    return math.inf, violations, curve


def median(values):
    return float(np.median(values)) if values else math.nan


def fmt(v, budget):
    return f">{budget}" if math.isinf(v) else f"{v:g}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budget", type=int, default=80, help="max distinct trials per run "
                                                          "(grid and random: the whole space)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--surfaces", default="", help="comma-separated surface names (default all)")
    ap.add_argument("--slo-factor", type=float, default=1.0,
                    help="recorded surfaces: SLO = default configuration's latency × this")
    ap.add_argument("--out", default=str(ROOT / ".work" / "bench-optimizers.json"))
    args = ap.parse_args(argv)
    methods = args.methods.split(",")
    only = set(filter(None, args.surfaces.split(",")))
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, python "
          f"{platform.python_version()}, numpy {np.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    results = {}
    for name, backend, constraint, default in [*synthetic_surfaces(),
                                               *recorded_surfaces(args.slo_factor)]:
        if only and name not in only:
            continue
        feasible = [m["energy"] for m in backend.table.values() if constraint.holds(m)]
        best = min(feasible)
        target = 1.05 * best
        n_near = sum(e <= target for e in feasible)
        print(f"\n## {name}: {backend.space.size} configurations, SLO {constraint}, "
              f"{len(feasible)} feasible, {n_near} within 5% of the best ({best:.4g})", flush=True)
        print(f"{'method':<12} {'median trials':>14} {'median SLO violations':>22} "
              f"{'reached':>8} {'s/run':>7}")
        results[name] = {"size": backend.space.size, "slo": constraint.bound,
                         "feasible": len(feasible), "near": n_near, "methods": {}}
        for method in methods:
            budget = backend.space.size if method in ("grid", "random") else args.budget
            trials, viols, curves, t0 = [], [], [], time.perf_counter()
            for seed in range(1 if method == "grid" else args.seeds):
                n, v, curve = run_one(method, backend, constraint, seed, budget, target)
                trials.append(n), viols.append(v), curves.append(curve)
            per_run = (time.perf_counter() - t0) / len(trials)
            reached = sum(math.isfinite(t) for t in trials)
            results[name]["methods"][method] = {"trials": trials, "violations": viols,
                                                "median_trials": median(trials),
                                                "median_violations": median(viols),
                                                "seconds_per_run": per_run}
            print(f"{method:<12} {fmt(median(trials), budget):>14} {median(viols):>22g} "
                  f"{reached:>5}/{len(trials):<2} {per_run:>7.2f}", flush=True)
        if default is not None:
            results[name]["default"] = savings(name, backend, constraint, default)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    print(f"\nraw results: {args.out}")
    return 0


def savings(name, backend, constraint, default, trials=15, seeds=5):
    """What a ``trials``-trial cbo run finds against the default configuration."""
    base = backend.measure(default)
    found = []
    for seed in range(seeds):
        opt = build("cbo", backend.space, constraint, seed)
        for _ in range(trials):
            c = opt.ask()
            opt.tell(c, backend.measure(c))
        found.append(opt.best())
    energies = [b.value("energy") if b else math.inf for b in found]
    med = float(np.median(energies))
    chosen = found[int(np.argsort(energies)[len(energies) // 2])]
    print(f"default {default}: energy {base['energy']:.4g}, latency {base['latency']:.4g} "
          f"(SLO {constraint})")
    print(f"cbo, {trials} trials, median over {seeds} seeds: energy {med:.4g} "
          f"({100 * (1 - med / base['energy']):.1f}% less than default), e.g. "
          f"{chosen.config if chosen else None}")
    return {"default": default, "default_metrics": base, "tuned_median_energy": med,
            "saving": 1 - med / base["energy"], "example": chosen.config if chosen else None}


if __name__ == "__main__":
    sys.exit(main())
