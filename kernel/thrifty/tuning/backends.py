"""Backends: what turns a configuration into measured metrics.

* :class:`ReplayBackend` answers from a recorded table (CSV or JSON), so optimizer benchmarks
  and CI need no hardware and every optimizer sees exactly the same surface.
* :class:`MeasuredBackend` applies the knob values through a hardware context (which snapshots
  each knob before its first change and restores it on every exit path), runs the workload inside
  an energy-meter window and reports energy per query and latency.

Both expose ``space`` and ``measure(config) -> metrics``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import ConfigError, ThriftyError
from ..files import read_json, read_text
from .space import Space


class WorkloadError(ThriftyError):
    """The workload command failed or printed something that is not its result."""


def _scalar(text: str) -> Any:
    """CSV cells back to numbers where they are numbers."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


# -- replay ---------------------------------------------------------------------------------------
class ReplayBackend:
    """Answers ``measure`` from recorded rows; repeated rows of one configuration are averaged.

    A CSV names its knob columns in a first comment line ``# knobs: a,b,c`` (or the caller passes
    ``knobs=``); every other numeric column is a metric. A JSON file holds
    ``{"knobs": [...], "rows": [{...}, ...]}``.
    """

    def __init__(self, rows: Sequence[Mapping[str, Any]], knobs: Sequence[str],
                 source: str = "(rows)", meta: Mapping[str, Any] | None = None) -> None:
        knobs = list(knobs)
        if not rows:
            raise ConfigError(f"recorded table {source} has no rows")
        missing = [k for k in knobs if k not in rows[0]]
        if missing:
            raise ConfigError(f"recorded table {source} lacks knob column(s) {missing}; "
                              f"its columns are {list(rows[0])}")
        self.source = source
        self.meta = dict(meta or {})
        self.knobs = knobs
        sums: dict[tuple, dict[str, list[float]]] = {}
        for i, row in enumerate(rows):
            key = tuple(row.get(k) for k in knobs)
            slot = sums.setdefault(key, {})
            for name, value in row.items():
                if name not in knobs and isinstance(value, (int, float)) \
                        and not isinstance(value, bool):
                    if math.isnan(value):
                        raise ConfigError(f"recorded table {source}: row {i + 1} has {name} = "
                                          f"NaN; record a number (inf for a failed run)")
                    slot.setdefault(name, []).append(float(value))
        self.table = {k: {m: sum(v) / len(v) for m, v in slot.items()} for k, slot in sums.items()}
        self.space = Space.from_configs([dict(zip(knobs, k)) for k in self.table])

    @classmethod
    def load(cls, path: str | Path, knobs: Sequence[str] | None = None) -> "ReplayBackend":
        path = Path(path)
        meta: dict[str, Any] = {}
        if path.suffix == ".json":
            data = read_json(path, "recorded table")
            rows, file_knobs = data.get("rows", []), data.get("knobs")
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise ConfigError(f"recorded table {path}: rows must be a list of objects "
                                  f"(one per measurement)")
            if file_knobs is not None and not (isinstance(file_knobs, list) and all(
                    isinstance(k, str) for k in file_knobs)):
                raise ConfigError(f"recorded table {path}: knobs must be a list of column "
                                  f"names; got {file_knobs!r}")
            meta = {k: v for k, v in data.items() if k not in ("rows", "knobs")}
        else:
            lines = read_text(path, "recorded table").splitlines()
            file_knobs = None
            while lines and lines[0].startswith("#"):
                label, _, value = lines.pop(0).lstrip("# ").partition(":")
                if label.strip() == "knobs":
                    file_knobs = [k.strip() for k in value.split(",") if k.strip()]
                elif label.strip():
                    meta[label.strip()] = value.strip()
            rows = []
            for r in csv.DictReader(lines):
                if None in r or None in r.values():
                    raise ConfigError(f"recorded table {path}: the row after {len(rows)} rows "
                                      f"has {'more' if None in r else 'fewer'} cells than the "
                                      f"header")
                rows.append({k: _scalar(v) for k, v in r.items()})
        knobs = list(knobs or file_knobs or [])
        if not knobs:
            raise ConfigError(f"recorded table {path} does not say which columns are knobs; add "
                              f"a first line '# knobs: a,b' or pass knobs (--table-knobs a,b)")
        return cls(rows, knobs, str(path), meta)

    def measure(self, config: Mapping[str, Any]) -> dict[str, float]:
        return dict(self.table[self.space.key(config)])


# -- measured -------------------------------------------------------------------------------------
Workload = Callable[[Mapping[str, Any]], Any]
"""``workload(config)`` runs once under ``config`` and returns the number of queries served, or a
dict with ``queries`` and optionally its own ``latency`` (seconds per query, e.g. a p95)."""


class MeasuredBackend:
    """Runs a real workload under knob values applied through a hardware context.

    ``context`` is a :class:`thrifty.hw.HardwareContext` (anything with ``apply(knob, value)``);
    ``meter`` an :class:`thrifty.protocols.EnergyMeter`. The workload is repeated until the meter
    window lasts at least ``min_seconds`` (energy counters update every 10-100 ms).
    """

    def __init__(self, knobs: Sequence[Any], workload: Workload, meter: Any, context: Any,
                 min_seconds: float = 0.5) -> None:
        self.knobs = {k.name: k for k in knobs}
        self.workload = workload
        self.meter = meter
        self.context = context
        self.min_seconds = min_seconds
        self.space = Space({k.name: tuple(k.domain()) for k in knobs})

    def measure(self, config: Mapping[str, Any]) -> dict[str, Any]:
        self.space.key(config)
        readback = {name: self.context.apply(self.knobs[name], value)
                    for name, value in config.items()}
        queries, latencies, runs = 0.0, [], 0
        self.meter.start()
        begin = time.perf_counter()
        while True:
            result = self.workload(dict(config))
            runs += 1
            if isinstance(result, Mapping):
                queries += float(result.get("queries", 1))
                if "latency" in result:
                    latencies.append(float(result["latency"]))
            else:
                queries += float(1 if result is None else result)
            if time.perf_counter() - begin >= self.min_seconds:
                break
        reading = self.meter.stop()
        if queries <= 0:
            raise WorkloadError(f"workload served {queries} queries under {dict(config)}; it "
                                f"must return the number of queries (> 0) it served")
        return {
            "energy": reading.joules / queries,
            "latency": max(latencies) if latencies else reading.seconds / runs,
            "power": reading.joules / reading.seconds if reading.seconds > 0 else math.nan,
            "joules": reading.joules, "seconds": reading.seconds, "queries": queries,
            "meter": f"{reading.source} ±{reading.resolution_j:g} J"
                     + (" (wrapped)" if reading.wrapped else ""),
            "readback": readback,
        }


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def knob_variable(name: str) -> str:
    """The environment variable that carries knob ``name`` to a workload: ``THRIFTY_KNOB_`` and
    the name in upper case with every other character than a letter or digit turned into ``_``
    (``acme.file`` -> ``THRIFTY_KNOB_ACME_FILE``), so that any shell can read it."""
    return "THRIFTY_KNOB_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def fill_placeholders(template: str, config: Mapping[str, Any]) -> str:
    """``template`` with each ``{knob}`` replaced by its value (``{{`` and ``}}`` are braces).
    Knob names are matched whole, dots included (``{acme.file}``): not Python's format
    mini-language, which would read a dot as an attribute."""

    def value(match: re.Match) -> str:
        if match.group(1) is None:
            return match.group(0)[0]
        name = match.group(1).strip()
        if name not in config:
            raise ConfigError(f"workload command {template!r} names {name!r} which is not a "
                              f"knob; knobs: {sorted(config)}")
        return str(config[name])

    return _PLACEHOLDER.sub(value, template)


def command_workload(template: str, timeout: float | None = None) -> Workload:
    """A workload that runs a shell command per call. ``{knob}`` placeholders in ``template`` are
    filled with the configuration, and environment variables (:func:`knob_variable`) carry it
    too. If the last line of stdout is JSON (``{"queries": 32, "latency": 0.041}``) it is the
    result, else one query is counted."""

    def run(config: Mapping[str, Any]) -> Any:
        command = fill_placeholders(template, config)
        variables: dict[str, str] = {}
        for name in config:
            other = variables.setdefault(knob_variable(name), name)
            if other != name:
                raise ConfigError(f"knobs {other!r} and {name!r} both map to environment "
                                  f"variable {knob_variable(name)}; rename one of them")
        env = dict(os.environ)
        env.update({var: str(config[name]) for var, name in variables.items()})
        proc = subprocess.run(shlex.split(command), capture_output=True, text=True, env=env,
                              timeout=timeout)
        if proc.returncode != 0:
            raise WorkloadError(f"workload {command!r} exited with {proc.returncode}: "
                                f"{proc.stderr.strip()[-500:]}")
        last = (proc.stdout.strip().splitlines() or [""])[-1]
        try:
            return json.loads(last) if last.startswith("{") else 1
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"workload {command!r} printed a last line that is not JSON: "
                                f"{last!r}") from exc

    return run
