"""Registers the ``cbo`` optimizer, the tuner's default where installed (priority 10, above the
built-in ``random``). scipy is imported only when one is built."""

from __future__ import annotations

from thrifty import Option, OptimizerSpec, hookimpl


def build(space, objective="energy", constraints=(), seed=0, **options):
    from .optimizer import ConstrainedBO

    return ConstrainedBO(space, objective, constraints, seed, **options)


@hookimpl
def thrifty_optimizers():
    return [OptimizerSpec(
        name="cbo", factory=build, priority=10,
        description="constrained Bayesian optimisation: Matérn 5/2 GPs on energy and latency, "
                    "lowest optimistic energy among configurations likely to meet the SLO",
        options={
            "initial": Option(int, 0, "size of the space-filling initial design (0: knobs + 1, "
                                      "at least 3)"),
            "safe": Option(bool, False, "after the initial design, propose only configurations "
                                        "predicted to meet every SLO with probability >= "
                                        "safe_threshold"),
            "safe_threshold": Option(float, 0.95, "probability of feasibility required in safe "
                                                  "mode"),
            "candidates": Option(int, 4000, "configurations scored per step when the space is "
                                            "too large to enumerate"),
            "restarts": Option(int, 2, "L-BFGS-B starting points for the GP hyper-parameters "
                                         "(the previous fit is always one of them)"),
            "log": Option(bool, True, "model positive metrics on a log scale"),
            "acquisition": Option(str, "lcb", "lcb: lowest optimistic energy (mean - beta·sd) "
                                              "among configurations with P(meets SLOs) >= 1/2; "
                                              "ei: expected improvement × P(meets SLOs)",
                                  choices=("lcb", "ei")),
            "beta": Option(float, 0.25, "optimism of the lcb acquisition, in posterior sds"),
        })]
