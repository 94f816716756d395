"""``thrifty tune``: workload × backend × optimizer × SLO, with progress, a JSON-lines log, warm
start and a Pareto-front PNG.

Examples::

    thrifty tune --table data/surfaces/h100-smollm2-135m-fast.csv --slo 'latency<=4.5ms' \\
        --plot front.png
    thrifty tune --backend measure --knob nvml.gpu-locked-clocks:device=0 \\
        --knob 'batch-size:values=1,4,16' --meter nvml:device=0 \\
        --workload 'python serve.py --batch {batch-size}' --slo 'latency<=50ms'
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ..checks import check_number
from ..errors import ConfigError
from ..files import check_writable


def configure(p) -> None:
    p.add_argument("--backend", choices=["replay", "measure"], default=None,
                   help="replay: answer from --table; measure: run --workload under --knob values "
                        "with --meter (default: replay when --table is given)")
    p.add_argument("--table", help="recorded table (CSV or JSON) for the replay backend")
    p.add_argument("--table-knobs", help="comma-separated knob columns, if the CSV does not say")
    p.add_argument("--knob", action="append", default=[], metavar="NAME[:k=v;k=v]",
                   help="a registered knob to tune, with options (repeatable; measure backend)")
    p.add_argument("--meter", metavar="NAME[:k=v;k=v]", help="registered energy meter (measure)")
    p.add_argument("--workload", help="shell command run per measurement; {knob} placeholders and "
                                      "THRIFTY_KNOB_<NAME> variables carry the configuration; a "
                                      "JSON last line {\"queries\": n, \"latency\": s} is its result")
    p.add_argument("--min-seconds", type=float, default=0.5,
                   help="repeat the workload until the meter window is this long (measure)")
    p.add_argument("--recovery-file", help="where the hardware context records original knob "
                                           "values (for `thrifty hw restore`)")
    p.add_argument("--optimizer", default=None,
                   help="registered optimizer (default: the one of highest priority, see "
                        "`thrifty plugins`)")
    p.add_argument("--optimizer-option", action="append", default=[], metavar="K=V")
    p.add_argument("--objective", default="energy", help="metric to minimise (default: energy)")
    p.add_argument("--slo", action="append", default=[], metavar="METRIC<=BOUND",
                   help="constraint such as 'latency<=50ms' (repeatable)")
    p.add_argument("--trials", type=int, default=20, help="measurements to make (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log", help="append every trial to this JSON-lines file")
    p.add_argument("--warm-start", action="append", default=[], metavar="LOG",
                   help="tell the optimizer the trials of an earlier log first (repeatable)")
    p.add_argument("--plot", help="write the energy-latency Pareto front to this PNG")
    p.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _value(text: str) -> Any:
    """An option value from the command line: a boolean, a number, or the text itself."""
    from .backends import _scalar

    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return _scalar(text)


def parse_ref(text: str) -> tuple[str, dict[str, Any]]:
    """``name:key=value;key=value`` -> (name, options). Values become int/float/bool if they
    read as such; commas stay inside a value (``values=1,2,4``)."""
    name, _, rest = text.partition(":")
    options = {}
    for item in filter(None, (s.strip() for s in rest.split(";"))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"cannot read option {item!r} of {name!r}; write key=value")
        options[key.strip()] = _value(value.strip())
    return name.strip(), options


def _progress(i: int, n: int, trial, best) -> None:
    metrics = " ".join(f"{k}={v:.4g}" for k, v in trial.metrics.items()
                       if isinstance(v, float) and k in ("energy", "latency"))
    mark = "ok " if trial.feasible else "VIOLATES"
    best_txt = f"best {best.metrics.get('energy', float('nan')):.4g}" if best else "no feasible yet"
    print(f"[{i:>3}/{n}] {mark} {metrics}  {best_txt}  {trial.config}", file=sys.stderr,
          flush=True)


def _optimizer(args, reg, space, constraints):
    args.optimizer = args.optimizer or reg.preferred("optimizers")
    name = args.optimizer
    options = dict(parse_ref("x:" + ";".join(args.optimizer_option))[1])
    return reg.optimizer(name).build(space, args.objective, constraints, args.seed, **options)


def run(args) -> int:
    from ..registry import registry
    from .backends import MeasuredBackend, ReplayBackend, command_workload
    from .space import parse_constraint
    from .tuner import plot_front, read_log, tune

    reg = registry()
    check_number("--trials", args.trials, low=1, integer=True)
    # output paths are checked before the first trial, so that a typo in them never costs
    # the trials' work (and the best configuration is printed)
    for flag, path in (("--log", args.log), ("--plot", args.plot)):
        if path:
            check_writable(path, flag)
    constraints = [parse_constraint(s) for s in args.slo]
    warm = [entry for path in args.warm_start for entry in read_log(path)]
    backend_name = args.backend or ("replay" if args.table else None)
    progress = None if args.quiet else _progress

    if backend_name == "replay":
        if not args.table:
            raise ConfigError("the replay backend needs --table PATH (a recorded CSV or JSON)")
        knobs = args.table_knobs.split(",") if args.table_knobs else None
        backend = ReplayBackend.load(args.table, knobs)
        optimizer = _optimizer(args, reg, backend.space, constraints)
        result = tune(backend, optimizer, args.trials, log=args.log, warm_start=warm,
                      progress=progress, objective=args.objective,
                      constraints=constraints)
    elif backend_name == "measure":
        if not (args.knob and args.meter and args.workload):
            raise ConfigError("the measure backend needs --knob (one or more), --meter and "
                              "--workload; see `thrifty tune --help`")
        from ..hw import HardwareContext

        meter_name, meter_options = parse_ref(args.meter)
        meter = reg.energy_meter(meter_name).build(**meter_options)
        with HardwareContext(recovery_file=args.recovery_file) as ctx:
            knobs = [ctx.knob(name, **options) for name, options in map(parse_ref, args.knob)]
            backend = MeasuredBackend(knobs, command_workload(args.workload), meter, ctx,
                                      args.min_seconds)
            optimizer = _optimizer(args, reg, backend.space, constraints)
            result = tune(backend, optimizer, args.trials, log=args.log, warm_start=warm,
                          progress=progress, on_error="record",
                          objective=args.objective, constraints=constraints)
    else:
        raise ConfigError("choose a backend: --table PATH (replay) or --backend measure")

    front = None
    if args.plot:
        latency = constraints[0].metric if constraints else "latency"
        front = plot_front(result, args.plot, latency, constraints[0].bound if constraints
                           else None, title=f"{getattr(backend, 'source', 'measured')}")
    out = {
        "optimizer": args.optimizer,
        "slo": [str(c) for c in constraints],
        "trials": len(result.measured), "warm_started": result.warm,
        "feasible": sum(t.feasible for t in result.measured),
        "best": None if result.best is None else {"config": result.best.config,
                                                   "metrics": result.best.metrics},
        "pareto_front": None if front is None else [t.config for t in front],
        "log": args.log, "plot": args.plot,
    }
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    elif result.best is None:
        print(f"no configuration met {out['slo']} in {out['trials']} trials")
    else:
        m = result.best.metrics
        print(f"best of {out['trials']} trials ({out['feasible']} feasible): {result.best.config}")
        print("  " + ", ".join(f"{k}={v:.4g}" for k, v in m.items() if isinstance(v, float)))
    return 0 if result.best is not None else 1
