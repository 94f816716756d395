"""Conformance suite for optimizers. Subclass it in a plugin's tests::

    from thrifty.testing.optimizers import OptimizerSuite

    class TestMyOptimizer(OptimizerSuite):
        optimizer = "my-optimizer"          # the registered name
        options = {"initial": 2}            # optional factory options

The suite builds the optimizer through the registry (as ``thrifty tune`` does) and checks the
contract every tuner relies on: proposals lie in the space, are seeded, never repeat a told
configuration, exhaust a small space exactly, accept warm-start answers before any ``ask`` and
failed (infinite) measurements, and ``best()`` is the feasible minimum of what was told.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import pytest

from ..errors import ConfigError
from ..protocols import Optimizer
from ..tuning import Constraint, SearchExhausted, Space


def toy_metrics(config: dict) -> dict[str, float]:
    """A small deterministic surface: energy falls with batch and has a minimum in frequency,
    latency rises with batch and falls with frequency; fp16 is cheaper than fp32."""
    f, b = config["freq"], config["batch"]
    scale = 0.8 if config.get("dtype") == "fp16" else 1.0
    energy = scale * ((f - 600) ** 2 / 1e5 + 1.0) * (1.0 + 4.0 / b)
    latency = scale * b * 300.0 / f
    return {"energy": energy, "latency": latency}


class OptimizerSuite:
    """Contract tests for one registered optimizer."""

    optimizer: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}

    space = Space({"freq": (300, 450, 600, 900), "batch": (1, 2, 4), "dtype": ("fp32", "fp16")})
    slo = Constraint("latency", 2.0)

    def make(self, space: Space | None = None, seed: int = 0, constraints=None):
        from . import fresh_registry

        spec = fresh_registry().optimizer(self.optimizer)
        return spec.build(space or self.space, "energy",
                          [self.slo] if constraints is None else constraints, seed,
                          **self.options)

    def run(self, opt, n: int) -> list[dict]:
        asked = []
        for _ in range(n):
            config = dict(opt.ask())
            opt.tell(config, toy_metrics(config))
            asked.append(config)
        return asked

    def test_follows_the_protocol(self):
        assert isinstance(self.make(), Optimizer)

    def test_exhausts_the_space_without_repeats(self):
        opt = self.make()
        asked = self.run(opt, self.space.size)
        keys = [self.space.key(c) for c in asked]  # raises if a proposal is outside the space
        assert len(set(keys)) == self.space.size
        with pytest.raises(SearchExhausted):
            opt.ask()

    def test_same_seed_same_proposals(self):
        assert self.run(self.make(seed=3), 8) == self.run(self.make(seed=3), 8)

    def test_best_is_the_feasible_minimum_told(self):
        opt = self.make()
        asked = self.run(opt, 10)
        feasible = [c for c in asked if self.slo.holds(toy_metrics(c))]
        best = opt.best()
        if not feasible:
            assert best is None
            return
        want = min(toy_metrics(c)["energy"] for c in feasible)
        assert best.feasible and math.isclose(best.metrics["energy"], want)
        assert best.metrics["latency"] <= self.slo.bound

    def test_warm_start_before_ask_is_never_proposed_again(self):
        opt = self.make()
        told = list(self.space.configs())[::3]
        for config in told:
            opt.tell(config, toy_metrics(config))
        told_keys = {self.space.key(c) for c in told}
        asked = self.run(opt, self.space.size - len(told))
        assert not told_keys & {self.space.key(c) for c in asked}

    def test_failed_measurements_are_infeasible(self):
        opt = self.make()
        config = dict(opt.ask())
        opt.tell(config, {"energy": math.inf, "latency": math.inf})
        assert opt.best() is None
        self.run(opt, 4)  # it keeps proposing after a failure
        assert opt.best() is None or math.isfinite(opt.best().metrics["energy"])

    def test_rejects_configurations_from_another_space(self):
        opt = self.make()
        with pytest.raises(ConfigError, match="domain"):
            opt.tell({"freq": 123, "batch": 1, "dtype": "fp32"}, {"energy": 1.0, "latency": 1.0})
        with pytest.raises(ConfigError, match="lack"):
            opt.tell({"freq": 300, "batch": 1, "dtype": "fp32"}, {"energy": 1.0})

    def test_explicit_configuration_lists(self):
        allowed = [c for c in self.space.configs() if c["batch"] != 2]
        space = Space.from_configs(allowed)
        asked = self.run(self.make(space=space), space.size)
        assert sorted(map(space.key, asked)) == sorted(map(space.key, allowed))
