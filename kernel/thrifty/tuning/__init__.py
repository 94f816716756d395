"""Energy tuning under a latency SLO: spaces, optimizers, backends, the tuner and co-scheduling.

* :mod:`.space`: :class:`Space`, :class:`Constraint`, :class:`Trial`, the Pareto front;
* :mod:`.optimizers`: the ask/tell base class and the built-in ``grid`` and ``random``;
* :mod:`.knobs`: software knobs (batch size, threads, dtype, draft, lookahead);
* :mod:`.backends`: :class:`ReplayBackend` (a recorded table) and :class:`MeasuredBackend`
  (a real workload under chosen knob values with an energy meter);
* :mod:`.tuner`: the loop behind ``thrifty tune`` (JSON-lines log, warm start, Pareto plot);
* :mod:`.cosched`: the latency predictor and admission controller that co-schedule
  fine-tuning with inference.
"""

from .optimizers import GridSearch, RandomSearch, SearchExhausted, SearchOptimizer
from .space import Constraint, Space, Trial, best_trial, parse_constraint, pareto_front

__all__ = ["Constraint", "GridSearch", "RandomSearch", "SearchExhausted", "SearchOptimizer",
           "Space", "Trial", "best_trial", "parse_constraint", "pareto_front"]
