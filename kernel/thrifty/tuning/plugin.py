"""Built-in tuning parts, registered through the ``thrifty`` entry point like any plugin: the
``grid`` and ``random`` optimizers, the software knobs and the ``tune`` command."""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..records import CommandSpec, OptimizerSpec
from .knobs import software_knob_specs


def _grid(space, objective="energy", constraints=(), seed=0):
    from .optimizers import GridSearch

    return GridSearch(space, objective, constraints, seed)


def _random(space, objective="energy", constraints=(), seed=0):
    from .optimizers import RandomSearch

    return RandomSearch(space, objective, constraints, seed)


@hookimpl
def thrifty_optimizers():
    return [
        OptimizerSpec(name="grid", factory=_grid,
                      description="every configuration in grid order (last knob fastest)"),
        OptimizerSpec(name="random", factory=_random, priority=1,
                      description="uniform random sampling without replacement, seeded"),
    ]


@hookimpl
def thrifty_hardware_knobs():
    return software_knob_specs()


@hookimpl
def thrifty_commands():
    from . import cli

    return [CommandSpec(name="tune", configure=cli.configure, run=cli.run,
                        description="find the least-energy configuration that meets a latency "
                                    "SLO")]
