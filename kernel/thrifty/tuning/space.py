"""Discrete configuration spaces, SLO constraints and trials: the vocabulary every optimizer speaks.

A configuration is a plain dict ``knob name -> value``. A :class:`Space` is either the full
product of each knob's domain (what hardware knobs give) or an explicit list of allowed
configurations (what a recorded table gives: a surface may lack combinations that failed or make
no sense, such as a draft model with lookahead 0).
"""

from __future__ import annotations

import itertools
import math
import numbers
import re
from typing import Any, Iterator, Mapping, Sequence

import attrs
import numpy as np

from ..errors import ConfigError


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _freeze_knobs(knobs: Mapping[str, Sequence[Any]]) -> dict[str, tuple]:
    out = {}
    for name, values in dict(knobs).items():
        values = tuple(values)
        if not values:
            raise ConfigError(f"knob {name!r} has an empty domain; give it at least one value")
        if len(set(values)) != len(values):
            raise ConfigError(f"knob {name!r} lists a value twice: {list(values)}")
        if all(_is_number(v) for v in values):
            values = tuple(sorted(values))
        out[name] = values
    if not out:
        raise ConfigError("a configuration space needs at least one knob")
    return out


@attrs.frozen
class Space:
    """Knobs with discrete domains, optionally restricted to an explicit list of configurations.

    Numeric domains are kept sorted (they are ordered: a GP may treat them as a line);
    other domains (dtype names, draft names) are categorical.
    """

    knobs: Mapping[str, tuple] = attrs.field(converter=_freeze_knobs)
    allowed: tuple[tuple, ...] | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        if self.allowed is not None:
            keys = tuple(dict.fromkeys(tuple(k) for k in self.allowed))
            for key in keys:
                self._check_key(key)
            if not keys:
                raise ConfigError("a configuration space with an explicit list needs one entry")
            object.__setattr__(self, "allowed", keys)

    @classmethod
    def from_configs(cls, configs: Sequence[Mapping[str, Any]]) -> "Space":
        """The space of exactly these configurations (e.g. the rows of a recorded table)."""
        if not configs:
            raise ConfigError("cannot build a configuration space from an empty list")
        names = list(configs[0])
        domains: dict[str, list] = {n: [] for n in names}
        for c in configs:
            if list(c) != names:
                raise ConfigError(f"configuration {dict(c)} has knobs {list(c)}, expected {names}")
            for n in names:
                if c[n] not in domains[n]:
                    domains[n].append(c[n])
        return cls(domains, tuple(tuple(c[n] for n in names) for c in configs))

    # -- membership ------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.knobs)

    @property
    def size(self) -> int:
        if self.allowed is not None:
            return len(self.allowed)
        return math.prod(len(v) for v in self.knobs.values())

    def _check_key(self, key: tuple) -> None:
        for name, value in zip(self.names, key):
            if value not in self.knobs[name]:
                raise ConfigError(f"knob {name!r} has no value {value!r}; its domain is "
                                  f"{list(self.knobs[name])}")

    def key(self, config: Mapping[str, Any]) -> tuple:
        """The hashable form of ``config``; a ConfigError if it is not in this space."""
        if set(config) != set(self.names):
            raise ConfigError(f"configuration {dict(config)} does not name exactly the knobs "
                              f"{list(self.names)}; was it made for another space?")
        key = tuple(config[n] for n in self.names)
        self._check_key(key)
        if self.allowed is not None and key not in self._allowed_set:
            raise ConfigError(f"configuration {dict(config)} is not one of the space's "
                              f"{self.size} allowed configurations")
        return key

    @property
    def _allowed_set(self) -> frozenset:
        return frozenset(self.allowed or ())

    def config(self, key: Sequence[Any]) -> dict[str, Any]:
        return dict(zip(self.names, key))

    def keys(self) -> Iterator[tuple]:
        """Every configuration's key, in a fixed order (grid order)."""
        if self.allowed is not None:
            return iter(self.allowed)
        return itertools.product(*self.knobs.values())

    def configs(self) -> Iterator[dict[str, Any]]:
        return (self.config(k) for k in self.keys())

    def sample_keys(self, rng: np.random.Generator, n: int) -> list[tuple]:
        """Up to ``n`` distinct keys drawn uniformly, without enumerating a huge product space."""
        if self.allowed is not None or self.size <= 4 * n:
            keys = list(self.keys())
            pick = rng.permutation(len(keys))[:n]
            return [keys[i] for i in pick]
        found: dict[tuple, None] = {}
        domains = list(self.knobs.values())
        while len(found) < n:
            found[tuple(d[rng.integers(len(d))] for d in domains)] = None
        return list(found)

    def neighbors(self, key: Sequence[Any]) -> list[tuple]:
        """Keys one step away along one knob (the next value up or down, or another category)."""
        out = []
        for i, (name, domain) in enumerate(self.knobs.items()):
            j = domain.index(key[i])
            numeric = all(_is_number(v) for v in domain)
            steps = [j - 1, j + 1] if numeric else range(len(domain))
            for s in steps:
                if 0 <= s < len(domain) and s != j:
                    cand = tuple(key[:i]) + (domain[s],) + tuple(key[i + 1:])
                    if self.allowed is None or cand in self._allowed_set:
                        out.append(cand)
        return out

    # -- encoding for models ---------------------------------------------------------------------
    def encode(self, keys: Sequence[Sequence[Any]]) -> np.ndarray:
        """Map keys into [0, 1]^d: an ordered knob by rank (so powers of two and frequency
        ladders are evenly spaced), a categorical knob one-hot."""
        cols = []
        for i, domain in enumerate(self.knobs.values()):
            index = np.array([domain.index(k[i]) for k in keys], dtype=float)
            if all(_is_number(v) for v in domain):
                cols.append((index / max(len(domain) - 1, 1))[:, None])
            else:
                cols.append(np.eye(len(domain))[index.astype(int)])
        return np.concatenate(cols, axis=1) if keys else np.zeros((0, self.encoded_dim))

    @property
    def encoded_dim(self) -> int:
        return sum(1 if all(_is_number(v) for v in d) else len(d) for d in self.knobs.values())


@attrs.frozen
class Constraint:
    """``metric <= bound``: the latency SLO, or any other cap on a measured metric."""

    metric: str
    bound: float

    def holds(self, metrics: Mapping[str, float]) -> bool:
        value = metrics.get(self.metric)
        return value is not None and math.isfinite(value) and value <= self.bound

    def __str__(self) -> str:
        return f"{self.metric}<={self.bound:g}"


_SLO = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*<=?\s*([0-9.eE+-]+)\s*(ms|s|us)?\s*$")


def parse_constraint(text: str) -> Constraint:
    """Parse ``"latency<=0.05"``, ``"latency<50ms"`` or ``"latency=0.05"`` (seconds)."""
    m = _SLO.match(text.replace("=", "<=", 1) if "<" not in text else text)
    if not m:
        raise ConfigError(f"cannot read SLO {text!r}; write it as metric<=bound, "
                          f"e.g. latency<=50ms or latency<=0.05")
    metric, number, unit = m.groups()
    try:
        bound = float(number)
    except ValueError as exc:
        raise ConfigError(f"SLO {text!r}: {number!r} is not a number") from exc
    return Constraint(metric, bound * {None: 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}[unit])


@attrs.frozen
class Trial:
    """One measured configuration and whether it met every constraint."""

    config: Mapping[str, Any] = attrs.field(converter=dict)
    metrics: Mapping[str, float] = attrs.field(converter=dict)
    feasible: bool

    def value(self, metric: str) -> float:
        v = self.metrics.get(metric, math.inf)
        return float(v) if v is not None and math.isfinite(v) else math.inf


def best_trial(trials: Sequence[Trial], objective: str) -> Trial | None:
    """The feasible trial with the lowest objective (the earliest on ties), or None."""
    feasible = [t for t in trials if t.feasible and math.isfinite(t.value(objective))]
    return min(feasible, key=lambda t: t.value(objective), default=None)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats in both coordinates (both minimised), ordered
    by the first coordinate."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best_second = [], math.inf
    for i in order:
        if points[i][1] < best_second:
            front.append(i)
            best_second = points[i][1]
    return front
