"""Co-scheduling: the latency predictor, the admission controller, and a real small torch model
serving requests while fine-tuning, with and without the controller."""

from pathlib import Path

import pytest

from thrifty.errors import ConfigError
from thrifty.tuning.cosched import AdmissionController, LatencyPredictor, Work


def test_predictor_recovers_a_linear_law():
    work = [Work(f, f / ai) for f, ai in [(1e6, 2), (5e6, 10), (2e7, 40), (8e7, 5), (3e8, 60)]]
    true = (1e-4, 2e-9, 3e-5)
    seconds = [true[0] + true[1] * w.flops + true[2] * w.intensity for w in work]
    fitted = LatencyPredictor.fit(work, seconds)
    assert fitted.coef == pytest.approx(true, rel=1e-6)
    with pytest.raises(ConfigError, match="collinear"):
        LatencyPredictor.fit([Work(1e6, 1e6)] * 3, [1.0, 1.0, 1.0])


def test_controller_picks_the_largest_fitting_step_and_backs_off():
    predictor = LatencyPredictor((0.001, 1e-9, 0.0))           # 1 ms + 1 ns per FLOP
    ctl = AdmissionController(predictor, slo=0.020, infer_work=Work(1e6, 1e6),
                              step_work=lambda mb: Work(1e6 * mb, 1e6), micro_batches=(1, 4, 16),
                              margin=0.8, target=0.9, window=10)
    assert ctl.admit() == 4                                    # 16 ms + 2 ms > 16 ms budget
    for _ in range(5):
        ctl.observe(0.05)                                      # requests miss the SLO
    assert ctl.admit() is None
    for _ in range(10):
        ctl.observe(0.005)                                     # attainment recovers
    assert ctl.admit() == 4
    tight = AdmissionController(predictor, 0.003, Work(1e6, 1e6), lambda mb: Work(1e6 * mb, 1e6),
                                (1, 4))
    assert tight.admit() is None                               # nothing fits: serve only


def test_serving_while_fine_tuning_meets_the_slo_only_with_the_controller(monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    from coserve import demo

    free, held = demo(slo=None, rate=40.0, seconds=1.5)  # SLO: 30% of the largest step
    assert free.requests == held.requests > 30
    assert free.steps > 0                     # greedy fine-tuning ran big steps ...
    assert held.attainment >= 0.9                     # the controller keeps the SLO ...
    assert held.attainment > free.attainment + 0.3   # ... which greedy fine-tuning breaks
