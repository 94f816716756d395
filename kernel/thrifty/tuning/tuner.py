"""The tuning loop behind ``thrifty tune``: ask, measure, tell, log; warm start; Pareto plot.

Every trial is one JSON line (``config``, ``metrics``, ``feasible``), written and flushed before
the next trial starts, so a run that dies keeps what it measured and a later run can warm-start
from the log without measuring those configurations again.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import attrs

from ..errors import ConfigError
from ..atomic import atomic_path
from ..files import read_text
from .optimizers import SearchExhausted
from .space import Constraint, Trial, best_trial, pareto_front

Progress = Callable[[int, int, Trial, "Trial | None"], None]


@attrs.define
class TuneResult:
    """All trials (warm-started ones first), how many came from the log, and the best."""

    trials: list[Trial]
    warm: int
    objective: str
    best: Trial | None

    @property
    def measured(self) -> list[Trial]:
        return self.trials[self.warm:]


def read_log(path: str | Path) -> list[tuple[dict, dict]]:
    """(config, metrics) of every trial line of a JSON-lines tuning log."""
    out = []
    lines = read_text(path, "warm-start log").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            out.append((dict(entry["config"]), dict(entry["metrics"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}:{n} is not a tuning-log line (JSON with config and "
                              f"metrics): {line[:120]!r}") from exc
    return out


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric metrics, which is what an optimizer is told."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def tune(backend: Any, optimizer: Any, trials: int, *, objective: str = "energy",
         constraints: Sequence[Constraint] = (), log: str | Path | None = None,
         warm_start: Sequence[tuple[dict, dict]] = (), progress: Progress | None = None,
         on_error: str = "raise") -> TuneResult:
    """Run up to ``trials`` measurements (fewer if the space runs out) minimising ``objective``
    subject to ``constraints`` (the optimizer must have been built with the same two).

    Warm-start entries are told to the optimizer first and do not count against ``trials``.
    A measurement that raises is re-raised (``on_error="raise"``) or, with ``"record"``, logged
    with infinite metrics so the optimizer learns to avoid it (an out-of-memory batch size);
    a :class:`ConfigError` is always re-raised.
    """
    def trial(config: dict, metrics: dict) -> Trial:
        value = metrics.get(objective)
        ok = isinstance(value, (int, float)) and math.isfinite(value) and \
            all(c.holds(metrics) for c in constraints)
        return Trial(config, metrics, ok)

    history: list[Trial] = []
    for config, metrics in warm_start:
        optimizer.tell(config, _finite(metrics))
        history.append(trial(config, metrics))
    warm = len(history)
    sink = open(log, "a") if log else None
    try:
        for i in range(trials):
            try:
                config = dict(optimizer.ask())
            except SearchExhausted:
                break
            started = time.time()
            try:
                metrics = backend.measure(config)
            except ConfigError:
                raise  # bad input (a wrong placeholder, a value outside a domain): stop at once
            except Exception as exc:
                if on_error != "record":
                    raise
                metrics = {objective: math.inf, "error": f"{type(exc).__name__}: {exc}"}
                metrics.update({c.metric: math.inf for c in constraints})
            optimizer.tell(config, _finite(metrics))
            done = trial(config, metrics)
            history.append(done)
            if sink:
                sink.write(json.dumps({"trial": warm + i, "config": config, "metrics": metrics,
                                       "feasible": done.feasible, "started": started,
                                       "seconds": round(time.time() - started, 4)},
                                      default=str) + "\n")
                sink.flush()
            if progress:
                progress(i + 1, trials, done, best_trial(history, objective))
    finally:
        if sink:
            sink.close()
    return TuneResult(history, warm, objective, best_trial(history, objective))


def plot_front(result: TuneResult, path: str | Path, latency: str = "latency",
               slo: float | None = None, title: str = "") -> list[Trial]:
    """Write energy vs latency of every trial as a PNG, the Pareto front joined, the SLO as a
    line and the chosen (best feasible) point marked; return the front's trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [t for t in result.trials if math.isfinite(t.value(result.objective))
           and math.isfinite(t.value(latency))]
    xy = [(t.value(latency), t.value(result.objective)) for t in pts]
    front = [pts[i] for i in pareto_front(xy)]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    ax.scatter([p[0] for p in xy], [p[1] for p in xy], s=14, c="0.65",
               label=f"trials ({len(pts)})")
    ax.step([t.value(latency) for t in front], [t.value(result.objective) for t in front],
            where="post", c="tab:blue", marker="o", ms=4, label="Pareto front")
    if slo is not None:
        ax.axvline(slo, c="tab:red", ls="--", lw=1, label=f"SLO {slo:g}")
    if result.best is not None:
        ax.scatter([result.best.value(latency)], [result.best.value(result.objective)],
                   marker="*", s=220, c="tab:orange", edgecolors="k", zorder=5,
                   label="chosen")
    ax.set_xlabel(latency)
    ax.set_ylabel(result.objective)
    ax.set_title(title or "energy vs latency")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return front
